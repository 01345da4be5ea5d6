/* fspath.c - confined path resolution. See fspath.h. */
#include "fspath.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"
#include "core/utf8.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

int
kn_fspath_normalize(const char *path, char *out, size_t n, kn_error_t *err)
{
    if (!path || !*path)
        return kn_error_set(err, EINVAL, "empty path");
    size_t plen = strlen(path);
    if (plen >= PATH_MAX || n < 2)
        return kn_error_set(err, ENAMETOOLONG, "path too long");
    size_t clen;
    char *clean = kn_utf8_clean(path, plen, &clen);
    if (!clean)
        return kn_error_set(err, ENOMEM, "path");
    bool bad = clen != plen || memcmp(clean, path, plen) != 0;
    free(clean);
    if (bad)
        return kn_error_set(err, EINVAL, "path is not valid UTF-8");
    size_t o = 0;
    out[o++] = '/';
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0)
            break;
        if (len == 1 && p[0] == '.') {
            /* skip */
        } else if (len == 2 && p[0] == '.' && p[1] == '.') {
            if (o > 1) {
                o--;
                while (o > 1 && out[o - 1] != '/')
                    o--;
            }
        } else {
            if (len > NAME_MAX)
                return kn_error_set(err, ENAMETOOLONG, "path component too long");
            if (o + len + 2 > n)
                return kn_error_set(err, ENAMETOOLONG, "path too long");
            if (out[o - 1] != '/')
                out[o++] = '/';
            memcpy(out + o, p, len);
            o += len;
        }
        p += len;
    }
    if (o > 1 && out[o - 1] == '/')
        o--;
    out[o] = '\0';
    return 0;
}

/* The fallback walk: every intermediate component must be a real directory;
 * the last is opened with O_NOFOLLOW. */
static int
walk_open(int root_fd, const char *norm, int flags, mode_t mode)
{
    int dir = fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
    if (dir < 0)
        return -1;
    const char *p = norm + 1;
    if (!*p) {
        int fd = openat(dir, ".", flags | O_CLOEXEC, mode);
        close(dir);
        return fd;
    }
    for (;;) {
        const char *slash = strchr(p, '/');
        char comp[NAME_MAX + 1];
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        memcpy(comp, p, len);
        comp[len] = '\0';
        int next;
        if (slash)
            next = openat(dir, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        else
            next = openat(dir, comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
        int e = errno;
        close(dir);
        if (next < 0) {
            errno = e;
            return -1;
        }
        if (!slash)
            return next;
        dir = next;
        p = slash + 1;
    }
}

static int
open_norm(const kn_execd_t *ex, const char *norm, int flags, mode_t mode)
{
    if (!ex->no_openat2) {
        struct open_how how = {
            .flags = (unsigned long long)(flags | O_CLOEXEC),
            .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
            .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        };
        const char *rel = norm[1] ? norm + 1 : ".";
        long fd = syscall(SYS_openat2, ex->root_fd, rel, &how, sizeof how);
        if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
            return (int)fd;
    }
    return walk_open(ex->root_fd, norm, flags, mode);
}

int
kn_fspath_open(const kn_execd_t *ex, const char *path, int flags, mode_t mode, kn_error_t *err)
{
    char norm[PATH_MAX];
    if (kn_fspath_normalize(path, norm, sizeof norm, err) < 0)
        return -1;
    int fd = open_norm(ex, norm, flags, mode);
    if (fd < 0)
        return kn_error_set(err, errno, "%s", path);
    return fd;
}

int
kn_fspath_parent(const kn_execd_t *ex, const char *path, char *base, kn_error_t *err)
{
    char norm[PATH_MAX];
    if (kn_fspath_normalize(path, norm, sizeof norm, err) < 0)
        return -1;
    if (strcmp(norm, "/") == 0)
        return kn_error_set(err, EINVAL, "%s: refusing to operate on the root itself", path);
    char *slash = strrchr(norm, '/');
    strcpy(base, slash + 1);
    if (slash == norm)
        slash[1] = '\0';
    else
        *slash = '\0';
    int fd = open_norm(ex, norm, O_PATH | O_DIRECTORY, 0);
    if (fd < 0)
        return kn_error_set(err, errno, "%s", path);
    return fd;
}

int
kn_fspath_mkdirs(const kn_execd_t *ex, const char *path, mode_t mode, bool *created,
                 kn_error_t *err)
{
    char norm[PATH_MAX];
    if (kn_fspath_normalize(path, norm, sizeof norm, err) < 0)
        return -1;
    *created = false;
    int fd = open_norm(ex, norm, O_PATH | O_DIRECTORY, 0);
    if (fd >= 0)
        return fd;
    if (errno != ENOENT)
        return kn_error_set(err, errno, "%s", path);
    /* Create each missing component, one confined open at a time. */
    char partial[PATH_MAX];
    size_t len = strlen(norm);
    for (size_t i = 1; i <= len; i++) {
        if (norm[i] != '/' && norm[i] != '\0')
            continue;
        memcpy(partial, norm, i);
        partial[i] = '\0';
        int d = open_norm(ex, partial, O_PATH | O_DIRECTORY, 0);
        if (d >= 0) {
            close(d);
            continue;
        }
        if (errno != ENOENT)
            return kn_error_set(err, errno, "%s", partial);
        char base[NAME_MAX + 1];
        int parent = kn_fspath_parent(ex, partial, base, err);
        if (parent < 0)
            return -1;
        int r = mkdirat(parent, base, mode);
        int e = errno;
        close(parent);
        if (r < 0 && e != EEXIST)
            return kn_error_set(err, e, "mkdir %s", partial);
        if (i == len)
            *created = r == 0;
    }
    fd = open_norm(ex, norm, O_PATH | O_DIRECTORY, 0);
    if (fd < 0)
        return kn_error_set(err, errno, "%s", path);
    return fd;
}
