/* tar.c - a tar reader and a confined extractor. See tar.h.
 *
 * The archive is untrusted: every number is range-checked, every name is
 * cleaned before use, and extraction never resolves a path through the
 * file system by name. It walks from the root descriptor one component at
 * a time with O_NOFOLLOW | O_DIRECTORY, so a symlink planted by an earlier
 * entry cannot redirect a later one, and creates with O_EXCL / *at() calls
 * relative to the parent's descriptor. */
#include "tar.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util.h"

#define BLOCK 512
#define MAX_META (1u << 20) /* pax and GNU long-name records */
#define NOBODY 65534u

struct ustar {
    char name[100], mode[8], uid[8], gid[8], size[12], mtime[12], chksum[8];
    char type, linkname[100], magic[6], version[2], uname[32], gname[32];
    char devmajor[8], devminor[8], prefix[155], pad[12];
};

_Static_assert(sizeof(struct ustar) == BLOCK, "ustar header is one block");

void
kn_tar_init(kn_tar_t *t, kn_tar_src_t src)
{
    memset(t, 0, sizeof *t);
    t->src = src;
}

void
kn_tar_free(kn_tar_t *t)
{
    free(t->cur.path);
    free(t->cur.link);
    t->cur.path = t->cur.link = NULL;
}

/* Reads exactly n bytes; returns n, fewer only at the end of the source. */
static ssize_t
src_read_full(kn_tar_t *t, void *buf, size_t n, kn_error_t *err)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = t->src.read(t->src.ctx, (char *)buf + got, n - got, err);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    t->offset += got;
    return (ssize_t)got;
}

static int
src_skip(kn_tar_t *t, uint64_t n, kn_error_t *err)
{
    if (t->src.skip && n) {
        if (t->src.skip(t->src.ctx, n, err) < 0)
            return -1;
        t->offset += n;
        return 0;
    }
    char buf[16384];
    while (n) {
        size_t chunk = n < sizeof buf ? (size_t)n : sizeof buf;
        ssize_t r = src_read_full(t, buf, chunk, err);
        if (r < 0)
            return -1;
        if ((size_t)r < chunk)
            return kn_error_set(err, EIO, "tar: archive is truncated");
        n -= chunk;
    }
    return 0;
}

/* Octal (NUL/space terminated) or GNU base-256 numbers. */
static int
parse_num(const char *f, size_t len, uint64_t *out)
{
    const unsigned char *u = (const unsigned char *)f;
    uint64_t v = 0;
    if (u[0] & 0x80) {
        if (u[0] != 0x80)
            return -1; /* negative or oversized */
        for (size_t i = 1; i < len; i++) {
            if (v >> 56)
                return -1;
            v = (v << 8) | u[i];
        }
        *out = v;
        return 0;
    }
    size_t i = 0;
    while (i < len && f[i] == ' ')
        i++;
    bool any = false;
    for (; i < len && f[i] >= '0' && f[i] <= '7'; i++) {
        if (v >> 60)
            return -1;
        v = v * 8 + (uint64_t)(f[i] - '0');
        any = true;
    }
    if (i < len && f[i] != '\0' && f[i] != ' ')
        return -1;
    *out = any ? v : 0;
    return 0;
}

static bool
checksum_ok(const struct ustar *h)
{
    const unsigned char *b = (const unsigned char *)h;
    uint64_t want;
    if (parse_num(h->chksum, sizeof h->chksum, &want) < 0)
        return false;
    long usum = 0, ssum = 0;
    for (size_t i = 0; i < BLOCK; i++) {
        bool in_field = i >= offsetof(struct ustar, chksum) &&
                        i < offsetof(struct ustar, chksum) + sizeof h->chksum;
        usum += in_field ? ' ' : b[i];
        ssum += in_field ? ' ' : (signed char)b[i];
    }
    return (uint64_t)usum == want || (uint64_t)ssum == want;
}

static char *
field_dup(const char *f, size_t len)
{
    return strndup(f, len);
}

/* Reads a pax or GNU meta record of `size` bytes (plus padding). */
static char *
read_meta(kn_tar_t *t, uint64_t size, kn_error_t *err)
{
    if (size > MAX_META) {
        kn_error_set(err, EFBIG, "tar: a header record of %llu bytes is too large",
                     (unsigned long long)size);
        return NULL;
    }
    char *buf = malloc((size_t)size + 1);
    if (!buf) {
        kn_error_set(err, ENOMEM, "tar");
        return NULL;
    }
    ssize_t r = src_read_full(t, buf, (size_t)size, err);
    if (r < 0 || (uint64_t)r < size) {
        if (r >= 0)
            kn_error_set(err, EIO, "tar: archive is truncated");
        free(buf);
        return NULL;
    }
    buf[size] = '\0';
    uint64_t pad = (BLOCK - size % BLOCK) % BLOCK;
    if (src_skip(t, pad, err) < 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

typedef struct pax {
    char *path, *link;
    bool have_size, have_uid, have_gid, have_mtime;
    uint64_t size, uid, gid;
    int64_t mtime;
} pax_t;

static void
pax_free(pax_t *p)
{
    free(p->path);
    free(p->link);
    memset(p, 0, sizeof *p);
}

static int
pax_num(const char *v, size_t len, uint64_t *out)
{
    uint64_t n = 0;
    size_t i = 0;
    for (; i < len && v[i] >= '0' && v[i] <= '9'; i++) {
        if (n > (UINT64_MAX - 9) / 10)
            return -1;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    if (i == 0 || (i < len && v[i] != '.'))
        return -1;
    *out = n;
    return 0;
}

/* "LEN KEY=VALUE\n" records; unknown keys (xattrs among them) are ignored. */
static int
pax_parse(const char *buf, size_t size, pax_t *p, kn_error_t *err)
{
    size_t off = 0;
    while (off < size) {
        size_t len = 0, i = off;
        while (i < size && buf[i] >= '0' && buf[i] <= '9' && len < size)
            len = len * 10 + (size_t)(buf[i++] - '0');
        if (i >= size || buf[i] != ' ' || len == 0 || len > size - off ||
            buf[off + len - 1] != '\n')
            return kn_error_set(err, EINVAL, "tar: malformed pax record");
        const char *key = buf + i + 1, *end = buf + off + len - 1;
        const char *eq = memchr(key, '=', (size_t)(end - key));
        if (!eq)
            return kn_error_set(err, EINVAL, "tar: malformed pax record");
        size_t klen = (size_t)(eq - key), vlen = (size_t)(end - eq - 1);
        const char *v = eq + 1;
        uint64_t n;
        if (klen == 4 && !memcmp(key, "path", 4)) {
            if (memchr(v, '\0', vlen))
                return kn_error_set(err, EINVAL, "tar: pax path holds a NUL byte");
            free(p->path);
            p->path = strndup(v, vlen);
        } else if (klen == 8 && !memcmp(key, "linkpath", 8)) {
            if (memchr(v, '\0', vlen))
                return kn_error_set(err, EINVAL, "tar: pax linkpath holds a NUL byte");
            free(p->link);
            p->link = strndup(v, vlen);
        } else if ((klen == 4 && !memcmp(key, "size", 4)) ||
                   (klen == 3 && !memcmp(key, "uid", 3)) || (klen == 3 && !memcmp(key, "gid", 3)) ||
                   (klen == 5 && !memcmp(key, "mtime", 5))) {
            if (pax_num(v, vlen, &n) < 0)
                return kn_error_set(err, EINVAL, "tar: bad pax number for %.*s", (int)klen, key);
            if (key[0] == 's')
                p->size = n, p->have_size = true;
            else if (key[0] == 'u')
                p->uid = n, p->have_uid = true;
            else if (key[0] == 'g')
                p->gid = n, p->have_gid = true;
            else
                p->mtime = (int64_t)(n & INT64_MAX), p->have_mtime = true;
        }
        off += len;
    }
    return 0;
}

/* The entry's name and link target: pax records win over GNU long names,
 * which win over the header (with its ustar prefix). Ownership of the
 * chosen strings moves to e. */
static void
entry_names(kn_tar_entry_t *e, const struct ustar *h, pax_t *pax, char **gnu_name, char **gnu_link)
{
    if (pax->path) {
        e->path = pax->path;
        pax->path = NULL;
    } else if (*gnu_name) {
        e->path = *gnu_name;
        *gnu_name = NULL;
    } else if (!memcmp(h->magic, "ustar", 5) && h->prefix[0]) {
        char *pre = field_dup(h->prefix, sizeof h->prefix),
             *nm = field_dup(h->name, sizeof h->name);
        if (pre && nm && asprintf(&e->path, "%s/%s", pre, nm) < 0)
            e->path = NULL;
        free(pre);
        free(nm);
    } else {
        e->path = field_dup(h->name, sizeof h->name);
    }
    if (pax->link) {
        e->link = pax->link;
        pax->link = NULL;
    } else if (*gnu_link) {
        e->link = *gnu_link;
        *gnu_link = NULL;
    } else {
        e->link = field_dup(h->linkname, sizeof h->linkname);
    }
}

int
kn_tar_next(kn_tar_t *t, const kn_tar_entry_t **out, kn_error_t *err)
{
    pax_t pax = {0};
    char *gnu_name = NULL, *gnu_link = NULL;
    int rc = -1;
    kn_tar_free(t);
    if (t->done)
        return 0;
    if (src_skip(t, t->left + t->pad, err) < 0)
        return -1;
    t->left = t->pad = 0;
    for (;;) {
        struct ustar h;
        ssize_t r = src_read_full(t, &h, BLOCK, err);
        if (r < 0)
            goto out;
        if (r == 0) { /* no end blocks: accepted, as GNU tar does */
            t->done = true;
            rc = 0;
            goto out;
        }
        if (r < BLOCK) {
            kn_error_set(err, EIO, "tar: archive is truncated");
            goto out;
        }
        static const char zero[BLOCK];
        if (!memcmp(&h, zero, BLOCK)) {
            t->done = true;
            rc = 0;
            goto out;
        }
        if (!checksum_ok(&h)) {
            kn_error_set(err, EINVAL, "tar: bad header checksum at offset %llu",
                         (unsigned long long)(t->offset - BLOCK));
            goto out;
        }
        uint64_t size, mode, uid, gid, mtime;
        if (parse_num(h.size, sizeof h.size, &size) < 0 ||
            parse_num(h.mode, sizeof h.mode, &mode) < 0 ||
            parse_num(h.uid, sizeof h.uid, &uid) < 0 || parse_num(h.gid, sizeof h.gid, &gid) < 0 ||
            parse_num(h.mtime, sizeof h.mtime, &mtime) < 0) {
            kn_error_set(err, EINVAL, "tar: bad number in header at offset %llu",
                         (unsigned long long)(t->offset - BLOCK));
            goto out;
        }
        if (h.type == 'x' || h.type == 'g' || h.type == 'L' || h.type == 'K') {
            char *meta = read_meta(t, size, err);
            if (!meta)
                goto out;
            int mrc = 0;
            if (h.type == 'x')
                mrc = pax_parse(meta, (size_t)size, &pax, err);
            if (h.type == 'L') {
                free(gnu_name);
                gnu_name = meta;
            } else if (h.type == 'K') {
                free(gnu_link);
                gnu_link = meta;
            } else {
                free(meta);
            }
            if (mrc < 0)
                goto out;
            continue;
        }
        kn_tar_entry_t *e = &t->cur;
        e->type = h.type ? h.type : '0';
        if (e->type == '7')
            e->type = '0';
        if (!strchr("0123456", e->type)) {
            kn_error_set(err, ENOTSUP, "tar: entry type '%c' is not supported", e->type);
            goto out;
        }
        entry_names(e, &h, &pax, &gnu_name, &gnu_link);
        if (!e->path || !e->link) {
            kn_error_set(err, ENOMEM, "tar");
            goto out;
        }
        e->mode = (uint32_t)(mode & 07777);
        e->uid = pax.have_uid ? pax.uid : uid;
        e->gid = pax.have_gid ? pax.gid : gid;
        e->size = pax.have_size ? pax.size : size;
        e->mtime = pax.have_mtime ? pax.mtime : (int64_t)(mtime & INT64_MAX);
        /* Links, directories and devices carry no data, whatever size says. */
        if (e->type != '0')
            e->size = 0;
        if (e->size > (UINT64_MAX >> 2)) {
            kn_error_set(err, EFBIG, "tar: entry '%s' is too large", e->path);
            goto out;
        }
        t->left = e->size;
        t->pad = (BLOCK - e->size % BLOCK) % BLOCK;
        *out = e;
        rc = 1;
        goto out;
    }
out:
    pax_free(&pax);
    free(gnu_name);
    free(gnu_link);
    return rc;
}

ssize_t
kn_tar_read(kn_tar_t *t, void *buf, size_t n, kn_error_t *err)
{
    if (n > t->left)
        n = (size_t)t->left;
    if (n == 0)
        return 0;
    ssize_t r = src_read_full(t, buf, n, err);
    if (r < 0)
        return -1;
    if ((size_t)r < n)
        return kn_error_set(err, EIO, "tar: archive is truncated in '%s'", t->cur.path);
    t->left -= (uint64_t)r;
    return r;
}

int
kn_tar_path_clean(const char *name, char *out, size_t cap, kn_error_t *err)
{
    if (!name[0])
        return kn_error_set(err, EINVAL, "an entry has an empty name");
    if (name[0] == '/')
        return kn_error_set(err, EPERM, "'%s' is an absolute path", name);
    size_t n = 0;
    const char *p = name;
    while (*p) {
        while (*p == '/')
            p++;
        const char *c = p;
        while (*p && *p != '/')
            p++;
        size_t len = (size_t)(p - c);
        if (len == 0 || (len == 1 && c[0] == '.'))
            continue;
        if (len == 2 && c[0] == '.' && c[1] == '.')
            return kn_error_set(err, EPERM, "'%s' contains '..'", name);
        if (len > NAME_MAX)
            return kn_error_set(err, ENAMETOOLONG, "'%s' has a component that is too long", name);
        if (n + len + 2 > cap)
            return kn_error_set(err, ENAMETOOLONG, "'%s' is too long", name);
        if (n)
            out[n++] = '/';
        memcpy(out + n, c, len);
        n += len;
    }
    out[n] = '\0';
    return 0;
}

int
kn_tar_symlink_check(const char *path, const char *target, kn_error_t *err)
{
    if (!target[0])
        return kn_error_set(err, EINVAL, "symlink '%s' has an empty target", path);
    if (target[0] == '/')
        return 0;
    /* Depth of the link's directory below the root. */
    long depth = 0;
    for (const char *c = path; *c; c++)
        if (*c == '/')
            depth++;
    const char *p = target;
    while (*p) {
        while (*p == '/')
            p++;
        const char *c = p;
        while (*p && *p != '/')
            p++;
        size_t len = (size_t)(p - c);
        if (len == 0 || (len == 1 && c[0] == '.'))
            continue;
        if (len == 2 && c[0] == '.' && c[1] == '.') {
            if (--depth < 0)
                return kn_error_set(err, EPERM, "symlink '%s' -> '%s' points outside the layer",
                                    path, target);
        } else {
            depth++;
        }
    }
    return 0;
}

/* --- extraction ---------------------------------------------------------- */

typedef struct ex {
    int root;
    const kn_tar_opts_t *o;
    kn_tar_stats_t *st;
    char cached[PATH_MAX]; /* directory that cached_fd is open on ("" = root) */
    int cached_fd;
    char *buf; /* file data passes through here */
} ex_t;

#define EX_BUF (1 << 17)

static uid_t
map_uid(const ex_t *x, uint64_t id)
{
    return x->o->uid_base + (uid_t)(id > 65535 ? NOBODY : id);
}

static gid_t
map_gid(const ex_t *x, uint64_t id)
{
    return x->o->gid_base + (gid_t)(id > 65535 ? NOBODY : id);
}

static int
set_owner(const ex_t *x, int dfd, const char *name, uint64_t uid, uint64_t gid, kn_error_t *err)
{
    if (!x->o->chown)
        return 0;
    if (fchownat(dfd, name, map_uid(x, uid), map_gid(x, gid), AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) <
        0)
        return kn_error_set(err, errno, "chown");
    return 0;
}

/* Opens the directory `dir` (a clean relative path) beneath the root, one
 * component at a time, never following a symlink. With create, missing
 * directories are made (0755, owned by the mapped root). Returns a new fd. */
static int
walk_dir(const ex_t *x, const char *dir, bool create, kn_error_t *err)
{
    int fd = fcntl(x->root, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return kn_error_set(err, errno, "dup");
    const char *p = dir;
    char comp[NAME_MAX + 1];
    while (*p) {
        const char *c = p;
        while (*p && *p != '/')
            p++;
        size_t len = (size_t)(p - c);
        if (*p == '/')
            p++;
        memcpy(comp, c, len);
        comp[len] = '\0';
        int next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST) {
                kn_error_set(err, errno, "mkdir '%.*s'", (int)(p - dir), dir);
                close(fd);
                return -1;
            }
            if (set_owner(x, fd, comp, 0, 0, err) < 0) {
                close(fd);
                return -1;
            }
            next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0) {
            int e = errno;
            struct stat st;
            if ((e == ELOOP || e == ENOTDIR) && fstatat(fd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISLNK(st.st_mode))
                kn_error_set(err, ELOOP, "'%s' passes through the symlink '%.*s'", dir,
                             (int)(c - dir + (ptrdiff_t)len), dir);
            else
                kn_error_set(err, e, "open directory '%.*s'", (int)(c - dir + (ptrdiff_t)len), dir);
            close(fd);
            return -1;
        }
        close(fd);
        fd = next;
    }
    return fd;
}

/* The parent directory of a clean path, cached across consecutive entries. */
static int
parent_of(ex_t *x, const char *path, const char **leaf, kn_error_t *err)
{
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    memcpy(dir, path, dlen);
    dir[dlen] = '\0';
    *leaf = slash ? slash + 1 : path;
    if (x->cached_fd >= 0 && !strcmp(dir, x->cached))
        return x->cached_fd;
    if (x->cached_fd >= 0)
        close(x->cached_fd);
    x->cached_fd = -1;
    int fd = walk_dir(x, dir, true, err);
    if (fd < 0)
        return -1;
    x->cached_fd = fd;
    snprintf(x->cached, sizeof x->cached, "%s", dir);
    return fd;
}

/* An entry replaces what an earlier entry of the same layer put there;
 * directories merge. Returns 1 when a directory may stay. */
static int
make_room(int pfd, const char *leaf, char type, kn_error_t *err)
{
    struct stat st;
    if (fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : kn_error_set(err, errno, "stat");
    if (S_ISDIR(st.st_mode) && type == '5')
        return 1;
    /* pfd is the cached parent, so the cache never holds what goes here.
     * A directory is only replaced when empty. */
    if (unlinkat(pfd, leaf, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) < 0)
        return kn_error_set(err, errno, "replace");
    return 0;
}

static int
write_file(kn_tar_t *t, ex_t *x, int pfd, const char *leaf, const kn_tar_entry_t *e,
           kn_error_t *err)
{
    int fd = openat(pfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return kn_error_set(err, errno, "create");
    int rc = 0;
    for (;;) {
        ssize_t n = kn_tar_read(t, x->buf, EX_BUF, err);
        if (n < 0) {
            rc = -1;
            break;
        }
        if (n == 0)
            break;
        if (kn_write_all(fd, x->buf, (size_t)n) < 0) {
            rc = kn_error_set(err, errno, "write");
            break;
        }
        x->st->bytes += (uint64_t)n;
    }
    if (rc == 0 && set_owner(x, fd, "", e->uid, e->gid, err) < 0)
        rc = -1;
    if (rc == 0 && fchmod(fd, e->mode & ~(mode_t)(S_ISUID | S_ISGID)) < 0)
        rc = kn_error_set(err, errno, "chmod");
    struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = (time_t)e->mtime}};
    if (rc == 0)
        futimens(fd, ts);
    close(fd);
    return rc;
}

static int
whiteout(ex_t *x, int pfd, const char *leaf, kn_error_t *err)
{
    x->st->whiteouts++;
    if (!strcmp(leaf, ".wh..wh..opq")) {
        if (fsetxattr(pfd, "user.overlay.opaque", "y", 1, 0) < 0)
            return kn_error_set(err, errno, "mark opaque");
        return 0;
    }
    const char *name = leaf + 4;
    if (!name[0] || !strcmp(name, ".") || !strcmp(name, ".."))
        return kn_error_set(err, EINVAL, "bad whiteout");
    if (make_room(pfd, name, '3', err) < 0)
        return -1;
    if (mknodat(pfd, name, S_IFCHR | 0000, makedev(0, 0)) < 0)
        return kn_error_set(err, errno, "whiteout");
    return set_owner(x, pfd, name, 0, 0, err);
}

static int
extract_one(kn_tar_t *t, ex_t *x, const kn_tar_entry_t *e, kn_error_t *err)
{
    char path[PATH_MAX];
    if (kn_tar_path_clean(e->path, path, sizeof path, err) < 0)
        return -1;
    if (e->type == '3' || e->type == '4') {
        x->st->devices_skipped++;
        return 0;
    }
    if (!path[0]) /* the layer root itself: its mode is the store's */
        return 0;
    /* Other ".wh..wh." names are the writer's own bookkeeping (aufs hard
     * link directories) and everything below them: not part of the tree. */
    for (const char *c = path; c;) {
        const char *next = strchr(c, '/');
        if (!strncmp(c, ".wh..wh.", 8) && (next || strcmp(c, ".wh..wh..opq") != 0))
            return 0;
        c = next ? next + 1 : NULL;
    }
    const char *leaf;
    int pfd = parent_of(x, path, &leaf, err);
    if (pfd < 0)
        return -1;
    if (!strncmp(leaf, ".wh.", 4))
        return whiteout(x, pfd, leaf, err);
    if (e->mode & (S_ISUID | S_ISGID))
        x->st->setid_cleared++;
    mode_t mode = e->mode & ~(mode_t)(S_ISUID | S_ISGID);
    int keep = make_room(pfd, leaf, e->type, err);
    if (keep < 0)
        return -1;
    switch (e->type) {
    case '0':
        return write_file(t, x, pfd, leaf, e, err);
    case '5':
        if (!keep && mkdirat(pfd, leaf, 0700) < 0)
            return kn_error_set(err, errno, "mkdir");
        if (set_owner(x, pfd, leaf, e->uid, e->gid, err) < 0)
            return -1;
        /* Unprivileged extraction must still be able to fill it. */
        if (fchmodat(pfd, leaf, x->o->chown ? mode : (mode | 0700), 0) < 0)
            return kn_error_set(err, errno, "chmod");
        return 0;
    case '6':
        if (mknodat(pfd, leaf, S_IFIFO | mode, 0) < 0)
            return kn_error_set(err, errno, "mkfifo");
        if (fchmodat(pfd, leaf, mode, 0) < 0)
            return kn_error_set(err, errno, "chmod");
        return set_owner(x, pfd, leaf, e->uid, e->gid, err);
    case '2': {
        if (kn_tar_symlink_check(path, e->link, err) < 0)
            return -1;
        if (symlinkat(e->link, pfd, leaf) < 0)
            return kn_error_set(err, errno, "symlink");
        struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = (time_t)e->mtime}};
        utimensat(pfd, leaf, ts, AT_SYMLINK_NOFOLLOW);
        return set_owner(x, pfd, leaf, e->uid, e->gid, err);
    }
    case '1': {
        char target[PATH_MAX];
        if (e->link[0] == '/')
            return kn_error_set(err, EPERM, "hard link to '%s' points outside the layer", e->link);
        if (kn_tar_path_clean(e->link, target, sizeof target, err) < 0)
            return kn_error_prefix(err, "hard link target");
        if (!target[0])
            return kn_error_set(err, EPERM, "hard link to the layer root");
        const char *tslash = strrchr(target, '/');
        char tdir[PATH_MAX];
        size_t tlen = tslash ? (size_t)(tslash - target) : 0;
        memcpy(tdir, target, tlen);
        tdir[tlen] = '\0';
        int tfd = walk_dir(x, tdir, false, err);
        if (tfd < 0)
            return kn_error_prefix(err, "hard link target '%s'", e->link);
        int rc = 0;
        if (linkat(tfd, tslash ? tslash + 1 : target, pfd, leaf, 0) < 0)
            rc = kn_error_set(err, errno, "hard link to '%s'", e->link);
        close(tfd);
        return rc;
    }
    }
    return kn_error_set(err, ENOTSUP, "unsupported entry type");
}

int
kn_tar_extract(kn_tar_t *t, int rootfd, const kn_tar_opts_t *o, kn_tar_stats_t *st, kn_error_t *err)
{
    ex_t x = {.root = rootfd, .o = o, .st = st, .cached_fd = -1, .buf = malloc(EX_BUF)};
    if (!x.buf)
        return kn_error_set(err, ENOMEM, "extract");
    int rc = 0;
    for (;;) {
        const kn_tar_entry_t *e;
        int r = kn_tar_next(t, &e, err);
        if (r <= 0) {
            rc = r;
            break;
        }
        st->entries++;
        if (extract_one(t, &x, e, err) < 0) {
            kn_error_prefix(err, "layer entry '%s'", e->path);
            rc = -1;
            break;
        }
    }
    if (x.cached_fd >= 0)
        close(x.cached_fd);
    free(x.buf);
    return rc;
}
