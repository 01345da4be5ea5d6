/* code.h - stores of long-lived language processes (code contexts, bash sessions). */
#ifndef KN_EXECD_CODE_H
#define KN_EXECD_CODE_H

#include "core/error.h"
#include "execd.h"

/* Creates ex->repls. -1 with err on failure. */
int kn_repl_store_init(kn_execd_t *ex, kn_error_t *err);
/* Kills every language process and frees the store. */
void kn_repl_store_free(kn_execd_t *ex);

#endif
