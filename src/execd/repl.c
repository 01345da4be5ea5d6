#include "code.h"
int
kn_repl_store_init(kn_execd_t *ex, kn_error_t *err)
{
    return 0;
}
void
kn_repl_store_free(kn_execd_t *ex)
{
}
