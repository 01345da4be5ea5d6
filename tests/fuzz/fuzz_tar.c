/* fuzz_tar.c - the tar reader parses untrusted image layers. Reads every
 * entry and its data, and runs the path rules on names and link targets;
 * extraction itself is covered by the unit and integration tests. */
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "core/tar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct mem {
    const uint8_t *p;
    size_t len, pos;
} mem_t;

static ssize_t
mem_read(void *ctx, void *buf, size_t n, kn_error_t *err)
{
    mem_t *m = ctx;
    if (n > m->len - m->pos)
        n = m->len - m->pos;
    memcpy(buf, m->p + m->pos, n);
    m->pos += n;
    return (ssize_t)n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mem_t m = {data, size, 0};
    kn_tar_t t;
    kn_tar_init(&t, (kn_tar_src_t){mem_read, NULL, &m});
    kn_error_t err = {0};
    const kn_tar_entry_t *e;
    char buf[4096], clean[4096];
    while (kn_tar_next(&t, &e, &err) == 1) {
        if (kn_tar_path_clean(e->path, clean, sizeof clean, &err) == 0 && e->type == '2')
            kn_tar_symlink_check(clean, e->link, &err);
        kn_tar_path_clean(e->link, clean, sizeof clean, &err);
        while (kn_tar_read(&t, buf, sizeof buf, &err) > 0)
            ;
    }
    kn_tar_free(&t);
    return 0;
}
