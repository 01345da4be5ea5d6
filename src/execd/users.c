/* users.c - /etc/passwd and /etc/group of the served root. See users.h. */
#include "users.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fspath.h"
#include "util.h"

#define KN_USERS_MAX_FILE (4 * 1024 * 1024)

struct kn_users {
    char *files[2]; /* passwd, group: name:x:id:... lines */
};

static char *
slurp(const kn_execd_t *ex, const char *path)
{
    kn_error_t err;
    int fd = kn_fspath_open(ex, path, O_RDONLY | O_NONBLOCK, 0, &err);
    if (fd < 0)
        return NULL;
    kn_buf_t b = {0};
    char tmp[8192];
    ssize_t n;
    while ((n = read(fd, tmp, sizeof tmp)) > 0 && b.len < KN_USERS_MAX_FILE)
        kn_buf_append(&b, tmp, (size_t)n);
    close(fd);
    return b.data;
}

kn_users_t *
kn_users_load(const kn_execd_t *ex)
{
    kn_users_t *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->files[0] = slurp(ex, "/etc/passwd");
    u->files[1] = slurp(ex, "/etc/group");
    return u;
}

void
kn_users_free(kn_users_t *u)
{
    if (!u)
        return;
    free(u->files[0]);
    free(u->files[1]);
    free(u);
}

/* Walks name:pw:id lines; calls match with each; stops when it returns 1. */
static int
scan(const char *file, const char *want_name, long want_id, char *out, size_t n, long *id_out)
{
    if (!file)
        return 0;
    const char *line = file;
    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        const char *c1 = memchr(line, ':', len);
        const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - line)) : NULL;
        if (c1 && c2 && line[0] != '#') {
            size_t nl = (size_t)(c1 - line);
            long id = strtol(c2 + 1, NULL, 10);
            if (want_name && strlen(want_name) == nl && memcmp(line, want_name, nl) == 0) {
                *id_out = id;
                return 1;
            }
            if (!want_name && id == want_id && nl < n) {
                memcpy(out, line, nl);
                out[nl] = '\0';
                return 1;
            }
        }
        if (!eol)
            break;
        line = eol + 1;
    }
    return 0;
}

void
kn_users_name(const kn_users_t *u, int group, unsigned id, char *out, size_t n)
{
    long dummy;
    if (u && scan(u->files[group ? 1 : 0], NULL, (long)id, out, n, &dummy))
        return;
    snprintf(out, n, "%u", id);
}

long
kn_users_id(const kn_users_t *u, int group, const char *name)
{
    long id = -1;
    if (!name || !*name)
        return -1;
    if (u && scan(u->files[group ? 1 : 0], name, -1, NULL, 0, &id))
        return id;
    char *end;
    long v = strtol(name, &end, 10);
    if (*end || v < 0)
        return -1;
    return v;
}
