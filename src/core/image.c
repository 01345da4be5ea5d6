/* image.c - import OCI and docker images into a content-addressed store,
 * and open them for a sandbox. See image.h for the store's layout and
 * docs/images.md for what is verified when.
 *
 * Every blob is hashed while it is read, and nothing read from the source
 * is trusted before its digest matched: a layer is unpacked into tmp/ and
 * only renamed into layers/ when its compressed bytes match the manifest's
 * digest and its uncompressed bytes match the config's diff_id. Paths in
 * the store are reached through the store's directory descriptor. */
#include "image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "sandbox_internal.h"
#include "tar.h"
#include "util.h"

#define MAX_JSON (4u << 20) /* manifests, configs, index.json */
#define MAX_LAYERS 120      /* overlayfs stacks at most 128 lower layers */
#define IOBUF (1u << 17)
#define HEXLEN 64

typedef char hex_t[HEXLEN + 1];

/* --- small helpers ------------------------------------------------------- */

static void
to_hex(const unsigned char *d, char *out)
{
    static const char x[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = x[d[i] >> 4];
        out[2 * i + 1] = x[d[i] & 15];
    }
    out[HEXLEN] = '\0';
}

/* sha256 through OpenSSL's EVP (it uses the CPU's SHA extensions where
 * they exist: hashing is most of an import's work). A context that could
 * not be allocated yields an empty digest, which never matches. */
typedef struct sha {
    EVP_MD_CTX *c;
} sha_t;

static void
sha_init(sha_t *h)
{
    h->c = EVP_MD_CTX_new();
    if (h->c && EVP_DigestInit_ex(h->c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h->c);
        h->c = NULL;
    }
}

static void
sha_update(sha_t *h, const void *d, size_t n)
{
    if (h->c && EVP_DigestUpdate(h->c, d, n) != 1) {
        EVP_MD_CTX_free(h->c);
        h->c = NULL;
    }
}

static void
sha_free(sha_t *h)
{
    EVP_MD_CTX_free(h->c);
    h->c = NULL;
}

static void
hash_final_hex(sha_t *h, char *out)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (h->c && EVP_DigestFinal_ex(h->c, d, &len) == 1 && len == 32)
        to_hex(d, out);
    else
        out[0] = '\0';
    sha_free(h);
}

/* One-shot sha256 of a buffer, as hex. */
static void
sha_hex(const void *data, size_t len, char *out)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    if (EVP_Digest(data, len, d, &dl, EVP_sha256(), NULL) == 1 && dl == 32)
        to_hex(d, out);
    else
        out[0] = '\0';
}

static bool
is_hex64(const char *s)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == HEXLEN;
}

/* "sha256:HEX" -> HEX; other algorithms are refused by name. */
static int
digest_hex(const char *digest, char *hex, kn_error_t *err)
{
    if (!digest || strncmp(digest, "sha256:", 7) != 0)
        return kn_error_set(err, ENOTSUP, "digest '%s' is not sha256:HEX", digest ? digest : "");
    if (!is_hex64(digest + 7))
        return kn_error_set(err, EINVAL, "digest '%s' is malformed", digest);
    memcpy(hex, digest + 7, HEXLEN + 1);
    return 0;
}

static int
sys_openat2(int dfd, const char *path, int flags, uint64_t resolve)
{
    struct open_how how = {.flags = (uint64_t)flags | O_CLOEXEC, .resolve = resolve};
    int fd = (int)syscall(SYS_openat2, dfd, path, &how, sizeof how);
    if (fd < 0 && errno == ENOSYS) /* pre-5.6 kernels: one name, no symlink */
        fd = strchr(path, '/') ? (errno = ENOTSUP, -1)
                               : openat(dfd, path, flags | O_NOFOLLOW | O_CLOEXEC);
    return fd;
}

/* Opens a name beneath dfd: no symlinks, no escapes. */
static int
open_beneath(int dfd, const char *path, int flags)
{
    return sys_openat2(dfd, path, flags,
                       RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
}

static ssize_t
pread_full(int fd, void *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* Reads all of fd (at most cap bytes) into a NUL-terminated buffer. */
static char *
slurp_fd(int fd, size_t cap, size_t *len, kn_error_t *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        kn_error_set(err, errno ? errno : EINVAL, "not a regular file");
        return NULL;
    }
    if ((uint64_t)st.st_size > cap) {
        kn_error_set(err, EFBIG, "%llu bytes is too large", (unsigned long long)st.st_size);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        kn_error_set(err, ENOMEM, "read");
        return NULL;
    }
    ssize_t n = pread_full(fd, buf, (size_t)st.st_size, 0);
    if (n < 0) {
        kn_error_set(err, errno, "read");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

static char *
slurp_at(int dfd, const char *path, size_t cap, size_t *len, kn_error_t *err)
{
    int fd = open_beneath(dfd, path, O_RDONLY);
    if (fd < 0) {
        kn_error_set(err, errno, "open %s", path);
        return NULL;
    }
    char *buf = slurp_fd(fd, cap, len, err);
    close(fd);
    if (!buf)
        kn_error_prefix(err, "%s", path);
    return buf;
}

static void
random_name(const char *prefix, char *out, size_t cap)
{
    unsigned char r[8] = {0};
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        uint64_t t = kn_now_us() ^ (uint64_t)getpid();
        memcpy(r, &t, sizeof r);
    }
    snprintf(out, cap, "%s%02x%02x%02x%02x%02x%02x%02x%02x", prefix, r[0], r[1], r[2], r[3], r[4],
             r[5], r[6], r[7]);
}

/* Writes data to dir/name atomically (through tmp/ and rename). */
static int
write_atomic(int storefd, const char *dir, const char *name, const void *data, size_t len,
             kn_error_t *err)
{
    char tmp[64], dst[PATH_MAX];
    random_name("tmp/f-", tmp, sizeof tmp);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    int fd = openat(storefd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return kn_error_set(err, errno, "create %s", tmp);
    int rc = kn_write_all(fd, data, len) < 0 ? kn_error_set(err, errno, "write %s", dst) : 0;
    close(fd);
    if (rc == 0 && renameat(storefd, tmp, storefd, dst) < 0)
        rc = kn_error_set(err, errno, "rename into %s", dst);
    if (rc < 0)
        unlinkat(storefd, tmp, 0);
    return rc;
}

/* Removes dfd/name and everything below it, never following a symlink. */
static int
rm_tree_at(int dfd, const char *name)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(dfd, name, 0);
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && rm_tree_at(fd, e->d_name) < 0)
            rc = -1;
    closedir(d);
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0)
        rc = -1;
    return rc;
}

static void
strv_free(char **v)
{
    if (v)
        for (char **p = v; *p; p++)
            free(*p);
    free(v);
}

/* A JSON array of strings as a NULL-terminated vector; NULL if absent. */
static int
strv_from_json(json_t *a, char ***out, kn_error_t *err)
{
    *out = NULL;
    if (!a || json_is_null(a))
        return 0;
    if (!json_is_array(a))
        return kn_error_set(err, EINVAL, "image config: expected a list of strings");
    char **v = calloc(json_array_size(a) + 1, sizeof *v);
    if (!v)
        return kn_error_set(err, ENOMEM, "image config");
    for (size_t i = 0; i < json_array_size(a); i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (!s || !(v[i] = strdup(s))) {
            strv_free(v);
            return kn_error_set(err, EINVAL, "image config: expected a list of strings");
        }
    }
    *out = v;
    return 0;
}

/* --- the store ----------------------------------------------------------- */

const char *
kn_image_store_path(const char *store)
{
    if (store && store[0])
        return store;
    const char *env = getenv("KENNEL_STORE");
    return env && env[0] ? env : KN_IMAGE_STORE_DEFAULT;
}

/* Opens (creating) the store; its path must be usable as an overlayfs
 * option, so no ',', ':' or newline, and it must not be the root. */
static int
store_open(const char *store, bool create, kn_error_t *err)
{
    const char *path = kn_image_store_path(store);
    if (path[0] != '/')
        return kn_error_set(err, EINVAL, "image store '%s' must be an absolute path", path);
    if (strpbrk(path, ",:\n\\") || strlen(path) > PATH_MAX / 4)
        return kn_error_set(err, EINVAL, "image store '%s': the path may not hold ',', ':' or '\\'",
                            path);
    if (!strcmp(path, "/") || !strcmp(path, "//"))
        return kn_error_set(err, EINVAL, "image store may not be /");
    if (create && kn_mkdir_p(path, 0755, err) < 0)
        return kn_error_prefix(err, "image store");
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return kn_error_set(err, errno, "image store %s", path);
    static const char *const sub[] = {"blobs",  "blobs/sha256", "layers", "layers/sha256",
                                      "images", "refs",         "tmp",    NULL};
    for (const char *const *s = sub; create && *s; s++) {
        if (mkdirat(fd, *s, 0755) < 0 && errno != EEXIST) {
            kn_error_set(err, errno, "image store %s/%s", path, *s);
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* Imports take the store's lock shared, prune takes it exclusively, so a
 * layer that an import has just unpacked is never pruned before its image
 * record is written. */
static int
store_lock(int storefd, int how, kn_error_t *err)
{
    int fd = openat(storefd, "lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return kn_error_set(err, errno, "image store lock");
    while (flock(fd, how) < 0) {
        if (errno != EINTR) {
            kn_error_set(err, errno, "lock the image store");
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* NAME[:TAG] -> NAME:TAG (":latest" added); refs/ keeps '/' as "%2F". */
static int
ref_normalize(const char *name, char *out, size_t cap, kn_error_t *err)
{
    size_t len = strlen(name);
    if (!len || len > 255)
        return kn_error_set(err, EINVAL, "image name '%s' is empty or too long", name);
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              strchr("._-/:", *c)))
            return kn_error_set(err, EINVAL, "image name '%s' has the character '%c'", name, *c);
    if (strstr(name, "..") || name[0] == '/' || name[0] == '.' || name[0] == ':')
        return kn_error_set(err, EINVAL, "image name '%s' is not NAME[:TAG]", name);
    const char *slash = strrchr(name, '/');
    bool tagged = strchr(slash ? slash : name, ':') != NULL;
    snprintf(out, cap, "%s%s", name, tagged ? "" : ":latest");
    return 0;
}

static void
ref_file(const char *norm, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *c = norm; *c && n + 4 < cap; c++) {
        if (*c == '/') {
            memcpy(out + n, "%2F", 3);
            n += 3;
        } else {
            out[n++] = *c;
        }
    }
    out[n] = '\0';
}

static void
ref_unfile(const char *file, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *c = file; *c && n + 1 < cap; c++) {
        if (!strncmp(c, "%2F", 3)) {
            out[n++] = '/';
            c += 2;
        } else {
            out[n++] = *c;
        }
    }
    out[n] = '\0';
}

static int
ref_write(int storefd, const char *name, const char *hex, kn_error_t *err)
{
    char norm[300], file[PATH_MAX], body[80];
    if (ref_normalize(name, norm, sizeof norm, err) < 0)
        return -1;
    ref_file(norm, file, sizeof file);
    int n = snprintf(body, sizeof body, "sha256:%s\n", hex);
    return write_atomic(storefd, "refs", file, body, (size_t)n, err);
}

/* Resolves a reference to the image's manifest hex; *pinned when it named a digest. */
static int
ref_resolve(int storefd, const char *ref, char *hex, bool *pinned, kn_error_t *err)
{
    const char *at = strchr(ref, '@');
    if (!strncmp(ref, "sha256:", 7) || at) {
        *pinned = true;
        if (at) {
            char name[300];
            snprintf(name, sizeof name, "%.*s", (int)(at - ref), ref);
            if (ref_normalize(name, name, sizeof name, err) < 0)
                return -1;
        }
        return digest_hex(at ? at + 1 : ref, hex, err);
    }
    *pinned = false;
    char norm[300], file[PATH_MAX], path[PATH_MAX + 8];
    if (ref_normalize(ref, norm, sizeof norm, err) < 0)
        return -1;
    ref_file(norm, file, sizeof file);
    snprintf(path, sizeof path, "refs/%s", file);
    char buf[128];
    int fd = open_beneath(storefd, path, O_RDONLY);
    if (fd < 0)
        return kn_error_set(err, errno, "image '%s' is not in the store (kennel image import)",
                            norm);
    ssize_t n = pread_full(fd, buf, sizeof buf - 1, 0);
    close(fd);
    if (n < 0)
        return kn_error_set(err, errno, "read ref %s", norm);
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    if (digest_hex(buf, hex, err) < 0)
        return kn_error_prefix(err, "ref %s", norm);
    return 0;
}

/* --- sources: an OCI layout directory, or a tar archive read in place ---- */

typedef struct member {
    char *name, *link;
    char type;
    uint64_t off, size;
} member_t;

typedef struct source {
    int dirfd; /* a directory, or -1 */
    int fd;    /* the archive, or -1 */
    member_t *m;
    size_t n;
} source_t;

typedef struct range {
    int fd;
    uint64_t off, len, pos;
    sha_t *h; /* hashes what is read, may be NULL */
} range_t;

static ssize_t
range_read(void *ctx, void *buf, size_t n, kn_error_t *err)
{
    range_t *r = ctx;
    if (n > r->len - r->pos)
        n = (size_t)(r->len - r->pos);
    if (n == 0)
        return 0;
    ssize_t got = pread_full(r->fd, buf, n, r->off + r->pos);
    if (got < 0)
        return kn_error_set(err, errno, "read");
    if ((size_t)got < n)
        return kn_error_set(err, EIO, "file is shorter than expected");
    if (r->h)
        sha_update(r->h, buf, (size_t)got);
    r->pos += (uint64_t)got;
    return got;
}

static int
range_skip(void *ctx, uint64_t n, kn_error_t *err)
{
    range_t *r = ctx;
    if (n > r->len - r->pos)
        return kn_error_set(err, EIO, "tar: archive is truncated");
    r->pos += n;
    return 0;
}

static void
source_close(source_t *s)
{
    if (s->dirfd >= 0)
        close(s->dirfd);
    if (s->fd >= 0)
        close(s->fd);
    for (size_t i = 0; i < s->n; i++) {
        free(s->m[i].name);
        free(s->m[i].link);
    }
    free(s->m);
    memset(s, 0, sizeof *s);
    s->dirfd = s->fd = -1;
}

/* Indexes the members of an (uncompressed) archive: name -> offset, size. */
static int
source_index(source_t *s, kn_error_t *err)
{
    struct stat st;
    if (fstat(s->fd, &st) < 0)
        return kn_error_set(err, errno, "stat");
    range_t r = {.fd = s->fd, .len = (uint64_t)st.st_size};
    kn_tar_t t;
    kn_tar_init(&t, (kn_tar_src_t){range_read, range_skip, &r});
    size_t cap = 0;
    int rc;
    for (;;) {
        const kn_tar_entry_t *e;
        rc = kn_tar_next(&t, &e, err);
        if (rc <= 0)
            break;
        char clean[PATH_MAX];
        if (kn_tar_path_clean(e->path, clean, sizeof clean, err) < 0) {
            rc = -1;
            break;
        }
        if (s->n == cap) {
            member_t *g = realloc(s->m, (cap = cap ? cap * 2 : 64) * sizeof *g);
            if (!g) {
                rc = kn_error_set(err, ENOMEM, "archive index");
                break;
            }
            s->m = g;
        }
        member_t *m = &s->m[s->n];
        *m = (member_t){.name = strdup(clean),
                        .link = strdup(e->link),
                        .type = e->type,
                        .off = t.offset,
                        .size = e->size};
        s->n++;
        if (!m->name || !m->link) {
            rc = kn_error_set(err, ENOMEM, "archive index");
            break;
        }
    }
    kn_tar_free(&t);
    return rc < 0 ? -1 : 0;
}

static int
source_open(source_t *s, const char *path, kn_error_t *err)
{
    memset(s, 0, sizeof *s);
    s->dirfd = s->fd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kn_error_set(err, errno, "open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return kn_error_set(err, errno, "stat %s", path);
    }
    if (S_ISDIR(st.st_mode)) {
        s->dirfd = fd;
        return 0;
    }
    s->fd = fd;
    unsigned char magic[2] = {0};
    if (pread_full(fd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
        source_close(s);
        return kn_error_set(err, ENOTSUP,
                            "%s is compressed: give the uncompressed archive (gunzip it first)",
                            path);
    }
    if (source_index(s, err) < 0) {
        source_close(s);
        return kn_error_prefix(err, "%s", path);
    }
    return 0;
}

/* Finds a member by clean name, following links inside the archive. */
static const member_t *
source_find(const source_t *s, const char *name, int depth)
{
    char clean[PATH_MAX];
    kn_error_t ignored = {0};
    if (depth > 8 || kn_tar_path_clean(name, clean, sizeof clean, &ignored) < 0)
        return NULL;
    for (size_t i = s->n; i-- > 0;) {
        const member_t *m = &s->m[i];
        if (strcmp(m->name, clean))
            continue;
        if (m->type == '1')
            return source_find(s, m->link, depth + 1);
        if (m->type == '2') {
            char target[PATH_MAX * 2];
            const char *slash = strrchr(clean, '/');
            if (m->link[0] == '/')
                return NULL;
            snprintf(target, sizeof target, "%.*s%s%s", slash ? (int)(slash - clean) : 0, clean,
                     slash ? "/" : "", m->link);
            /* Lexical ".." only one level: enough for docker save's links. */
            char *dd;
            while ((dd = strstr(target, "/../"))) {
                char *prev = dd;
                while (prev > target && prev[-1] != '/')
                    prev--;
                memmove(prev, dd + 4, strlen(dd + 4) + 1);
            }
            if (!strncmp(target, "../", 3))
                return NULL;
            return source_find(s, target, depth + 1);
        }
        return m->type == '0' ? m : NULL;
    }
    return NULL;
}

/* The byte range of a member (a regular file). */
static int
source_range(const source_t *s, const char *name, range_t *r, int *owned_fd, kn_error_t *err)
{
    *owned_fd = -1;
    if (s->dirfd >= 0) {
        int fd = sys_openat2(s->dirfd, name, O_RDONLY, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
        if (fd < 0)
            return kn_error_set(err, errno, "%s", name);
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return kn_error_set(err, EINVAL, "%s is not a regular file", name);
        }
        *r = (range_t){.fd = fd, .len = (uint64_t)st.st_size};
        *owned_fd = fd;
        return 0;
    }
    const member_t *m = source_find(s, name, 0);
    if (!m)
        return kn_error_set(err, ENOENT, "%s is not in the archive", name);
    *r = (range_t){.fd = s->fd, .off = m->off, .len = m->size};
    return 0;
}

static char *
source_slurp(const source_t *s, const char *name, size_t *len, kn_error_t *err)
{
    range_t r;
    int owned;
    if (source_range(s, name, &r, &owned, err) < 0)
        return NULL;
    char *buf = NULL;
    if (r.len > MAX_JSON) {
        kn_error_set(err, EFBIG, "%s is larger than %u bytes", name, MAX_JSON);
    } else if ((buf = malloc((size_t)r.len + 1))) {
        ssize_t n = range_read(&r, buf, (size_t)r.len, err);
        if (n < 0) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = '\0';
            *len = (size_t)n;
        }
    } else {
        kn_error_set(err, ENOMEM, "%s", name);
    }
    if (owned >= 0)
        close(owned);
    return buf;
}

/* A JSON blob of the source, checked against its digest. */
static json_t *
source_blob_json(const source_t *s, const char *path, const char *hex, const char *what, char **raw,
                 size_t *rawlen, kn_error_t *err)
{
    size_t len = 0;
    char *buf = source_slurp(s, path, &len, err);
    if (!buf) {
        kn_error_prefix(err, "%s sha256:%s", what, hex);
        return NULL;
    }
    hex_t got;
    sha_hex(buf, len, got);
    if (strcmp(got, hex)) {
        kn_error_set(err, EBADMSG,
                     "blob sha256:%s (%s) does not match its digest: its content hashes to "
                     "sha256:%s",
                     hex, what, got);
        free(buf);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(buf, len, 0, &je);
    if (!j) {
        kn_error_set(err, EINVAL, "%s sha256:%s is not JSON: %s", what, hex, je.text);
        free(buf);
        return NULL;
    }
    *raw = buf;
    *rawlen = len;
    return j;
}

/* --- layers -------------------------------------------------------------- */

typedef struct layer_in {
    range_t raw;
    sha_t hz, hu; /* compressed and uncompressed bytes */
    bool gz, zend;
    z_stream z;
    unsigned char *zbuf;
} layer_in_t;

static ssize_t
layer_read(void *ctx, void *buf, size_t n, kn_error_t *err)
{
    layer_in_t *L = ctx;
    if (!L->gz) {
        ssize_t r = range_read(&L->raw, buf, n, err);
        if (r > 0)
            sha_update(&L->hu, buf, (size_t)r);
        return r;
    }
    for (;;) {
        if (L->z.avail_in == 0) {
            ssize_t r = range_read(&L->raw, L->zbuf, IOBUF, err);
            if (r < 0)
                return -1;
            if (r == 0)
                return L->zend ? 0 : kn_error_set(err, EIO, "gzip stream is truncated");
            L->z.next_in = L->zbuf;
            L->z.avail_in = (uInt)r;
        }
        if (L->zend) { /* a further gzip member follows */
            if (inflateReset(&L->z) != Z_OK)
                return kn_error_set(err, EIO, "gzip");
            L->zend = false;
        }
        L->z.next_out = buf;
        L->z.avail_out = (uInt)(n > UINT_MAX ? UINT_MAX : n);
        uInt before = L->z.avail_out;
        int ret = inflate(&L->z, Z_NO_FLUSH);
        size_t produced = before - L->z.avail_out;
        if (ret == Z_STREAM_END)
            L->zend = true;
        else if (ret != Z_OK && ret != Z_BUF_ERROR)
            return kn_error_set(err, EBADMSG, "gzip: %s", L->z.msg ? L->z.msg : "corrupt data");
        if (produced) {
            sha_update(&L->hu, buf, produced);
            return (ssize_t)produced;
        }
    }
}

/* After a failed extraction: hashes the rest of the compressed blob and,
 * if it does not match blob_hex, replaces err with that. */
static bool
blob_mismatch(layer_in_t *L, const char *blob_hex, kn_error_t *err)
{
    char *buf = malloc(IOBUF);
    kn_error_t ignored = {0};
    ssize_t r = buf ? 1 : -1;
    while (r > 0)
        r = range_read(&L->raw, buf, IOBUF, &ignored);
    free(buf);
    if (r < 0)
        return false;
    hex_t got;
    hash_final_hex(&L->hz, got);
    if (!strcmp(got, blob_hex))
        return false;
    kn_error_set(err, EBADMSG,
                 "blob sha256:%s (layer) does not match its digest: its content hashes to "
                 "sha256:%s",
                 blob_hex, got);
    return true;
}

typedef struct importer {
    int store;
    const source_t *src;
    kn_tar_opts_t opts;
    kn_image_info_t *info;
} importer_t;

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Hashes the whole tree below fd in a fixed order: names, types, modes,
 * owners, sizes, contents, link targets, whiteouts and opaque markers. */
static int
tree_hash(int fd, const char *rel, sha_t *h, uint64_t *size, char *buf)
{
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    DIR *d = dup >= 0 ? fdopendir(dup) : NULL;
    if (!d) {
        if (dup >= 0)
            close(dup);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (n == cap) {
            char **g = realloc(names, (cap = cap ? cap * 2 : 32) * sizeof *g);
            if (!g) {
                rc = -1;
                break;
            }
            names = g;
        }
        if (!(names[n] = strdup(e->d_name))) {
            rc = -1;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == 0 && n > 1)
        qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct stat st;
        char rec[PATH_MAX + 160];
        if (fstatat(fd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = -1;
            break;
        }
        int len = snprintf(rec, sizeof rec, "%s/%s%c%o %u %u %llu %llu", rel, names[i], 0,
                           (unsigned)st.st_mode, (unsigned)st.st_uid, (unsigned)st.st_gid,
                           (unsigned long long)(S_ISREG(st.st_mode) ? st.st_size : 0),
                           (unsigned long long)(S_ISCHR(st.st_mode) ? st.st_rdev : 0));
        sha_update(h, rec, (size_t)len + 1);
        if (S_ISREG(st.st_mode)) {
            *size += (uint64_t)st.st_size;
            int f = openat(fd, names[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (f < 0) {
                rc = -1;
                break;
            }
            ssize_t r;
            while ((r = read(f, buf, IOBUF)) > 0)
                sha_update(h, buf, (size_t)r);
            close(f);
            if (r < 0)
                rc = -1;
        } else if (S_ISLNK(st.st_mode)) {
            ssize_t r = readlinkat(fd, names[i], buf, IOBUF);
            if (r < 0)
                rc = -1;
            else
                sha_update(h, buf, (size_t)r);
        } else if (S_ISDIR(st.st_mode)) {
            int sub = openat(fd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                rc = -1;
                break;
            }
            char opq[4] = {0};
            if (fgetxattr(sub, "user.overlay.opaque", opq, sizeof opq - 1) > 0)
                sha_update(h, "opaque", 6);
            char subrel[PATH_MAX];
            snprintf(subrel, sizeof subrel, "%s/%s", rel, names[i]);
            rc = tree_hash(sub, subrel, h, size, buf);
            close(sub);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static int
tree_digest(int fsfd, char *hex, uint64_t *size, kn_error_t *err)
{
    char *buf = malloc(IOBUF);
    if (!buf)
        return kn_error_set(err, ENOMEM, "tree digest");
    sha_t h;
    sha_init(&h);
    *size = 0;
    int rc = tree_hash(fsfd, "", &h, size, buf);
    free(buf);
    if (rc < 0)
        return kn_error_set(err, errno ? errno : EIO, "hash layer tree");
    hash_final_hex(&h, hex);
    return 0;
}

/* Unpacks one layer blob whose compressed digest is blob_hex (NULL: not
 * known, a rootfs tarball) and whose uncompressed digest must be diff_hex
 * (NULL: learn it; written back). Returns 0 and the layer is in layers/. */
static int
import_layer(importer_t *im, const char *path, const char *blob_hex, char *diff_hex,
             uint64_t want_size, kn_error_t *err)
{
    range_t raw;
    int owned;
    if (source_range(im->src, path, &raw, &owned, err) < 0)
        return kn_error_prefix(err, "layer");
    layer_in_t L = {.raw = raw};
    char stage[64] = "", layer[PATH_MAX];
    int stagefd = -1, fsfd = -1, rc = -1;
    sha_init(&L.hz);
    sha_init(&L.hu);
    L.raw.h = &L.hz;
    if (want_size && raw.len != want_size) {
        kn_error_set(err, EBADMSG, "blob sha256:%s is %llu bytes, the manifest says %llu", blob_hex,
                     (unsigned long long)raw.len, (unsigned long long)want_size);
        goto out;
    }
    unsigned char magic[4] = {0};
    pread_full(raw.fd, magic, sizeof magic, raw.off);
    if (raw.len >= 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f &&
        magic[3] == 0xfd) {
        kn_error_set(err, ENOTSUP, "layer %s is zstd-compressed: not supported yet", path);
        goto out;
    }
    L.gz = raw.len >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (diff_hex[0]) {
        snprintf(layer, sizeof layer, "layers/sha256/%s/tree", diff_hex);
        if (faccessat(im->store, layer, F_OK, AT_SYMLINK_NOFOLLOW) == 0 && blob_hex) {
            /* Unpacked before: only check that this blob is what it claims. */
            char *buf = malloc(IOBUF);
            ssize_t r = buf ? 1 : kn_error_set(err, ENOMEM, "layer");
            while (r > 0)
                r = range_read(&L.raw, buf, IOBUF, err);
            free(buf);
            if (r < 0)
                goto out;
            hex_t got;
            hash_final_hex(&L.hz, got);
            if (strcmp(got, blob_hex)) {
                kn_error_set(err, EBADMSG,
                             "blob sha256:%s (layer) does not match its digest: its content "
                             "hashes to sha256:%s",
                             blob_hex, got);
                goto out;
            }
            rc = 0;
            goto out;
        }
    }
    if (L.gz) {
        if (!(L.zbuf = malloc(IOBUF)) || inflateInit2(&L.z, 16 + MAX_WBITS) != Z_OK) {
            kn_error_set(err, ENOMEM, "gzip");
            free(L.zbuf);
            L.zbuf = NULL;
            L.gz = false;
            goto out;
        }
    }
    random_name("tmp/layer-", stage, sizeof stage);
    if (mkdirat(im->store, stage, 0755) < 0) {
        kn_error_set(err, errno, "staging %s", stage);
        stage[0] = '\0';
        goto out;
    }
    stagefd = openat(im->store, stage, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (stagefd < 0 || mkdirat(stagefd, "fs", 0755) < 0 ||
        (fsfd = openat(stagefd, "fs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        kn_error_set(err, errno, "staging %s", stage);
        goto out;
    }
    if (im->opts.chown && fchown(fsfd, im->opts.uid_base, im->opts.gid_base) < 0) {
        kn_error_set(err, errno, "chown layer root");
        goto out;
    }
    kn_tar_t t;
    kn_tar_init(&t, (kn_tar_src_t){layer_read, NULL, &L});
    kn_tar_stats_t st = {0};
    int xr = kn_tar_extract(&t, fsfd, &im->opts, &st, err);
    kn_tar_free(&t);
    if (xr < 0) {
        /* A blob that is not what its digest says is the clearer error. */
        if (blob_hex && blob_mismatch(&L, blob_hex, err))
            goto out;
        kn_error_prefix(err, "layer %s", blob_hex ? blob_hex : path);
        goto out;
    }
    /* Whatever follows the end blocks is part of the blob's digest. */
    char drain[4096];
    ssize_t r;
    while ((r = layer_read(&L, drain, sizeof drain, err)) > 0)
        ;
    if (r < 0)
        goto out;
    hex_t gotz, gotu;
    hash_final_hex(&L.hz, gotz);
    hash_final_hex(&L.hu, gotu);
    if (blob_hex && strcmp(gotz, blob_hex)) {
        kn_error_set(err, EBADMSG,
                     "blob sha256:%s (layer) does not match its digest: its content hashes to "
                     "sha256:%s",
                     blob_hex, gotz);
        goto out;
    }
    if (diff_hex[0] && strcmp(gotu, diff_hex)) {
        kn_error_set(err, EBADMSG,
                     "layer sha256:%s: its uncompressed content hashes to sha256:%s, the image "
                     "config's diff_id is sha256:%s",
                     blob_hex ? blob_hex : gotz, gotu, diff_hex);
        goto out;
    }
    if (!diff_hex[0])
        memcpy(diff_hex, gotu, HEXLEN + 1);
    hex_t tree;
    uint64_t size;
    if (tree_digest(fsfd, tree, &size, err) < 0)
        goto out;
    char body[80];
    int bl = snprintf(body, sizeof body, "sha256:%s\n%llu\n", tree, (unsigned long long)size);
    int tf = openat(stagefd, "tree", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (tf < 0 || kn_write_all(tf, body, (size_t)bl) < 0) {
        kn_error_set(err, errno, "write tree digest");
        if (tf >= 0)
            close(tf);
        goto out;
    }
    close(tf);
    snprintf(layer, sizeof layer, "layers/sha256/%s", diff_hex);
    if (renameat(im->store, stage, im->store, layer) < 0) {
        if (errno != EEXIST && errno != ENOTEMPTY) {
            kn_error_set(err, errno, "store layer %s", diff_hex);
            goto out;
        }
    } else {
        stage[0] = '\0';
    }
    im->info->layers_new++;
    im->info->devices_skipped += st.devices_skipped;
    im->info->setid_cleared += st.setid_cleared;
    rc = 0;
out:
    if (fsfd >= 0)
        close(fsfd);
    if (stagefd >= 0)
        close(stagefd);
    if (stage[0])
        rm_tree_at(im->store, stage);
    if (L.zbuf) {
        inflateEnd(&L.z);
        free(L.zbuf);
    }
    sha_free(&L.hz);
    sha_free(&L.hu);
    if (owned >= 0)
        close(owned);
    return rc;
}

/* --- image records --------------------------------------------------------- */

static void
now_rfc3339(char *out, size_t cap)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int
store_blob(int storefd, const char *hex, const char *data, size_t len, kn_error_t *err)
{
    char path[128];
    snprintf(path, sizeof path, "blobs/sha256/%s", hex);
    if (faccessat(storefd, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    return write_atomic(storefd, "blobs/sha256", hex, data, len, err);
}

/* The layers of a verified config, unpacked from manifest descriptors. */
static int
import_layers(importer_t *im, json_t *config, json_t *layers, bool docker, kn_error_t *err)
{
    json_t *diffs = json_object_get(json_object_get(config, "rootfs"), "diff_ids");
    if (!json_is_array(diffs) || !json_is_array(layers))
        return kn_error_set(err, EINVAL, "image config has no rootfs.diff_ids");
    size_t n = json_array_size(layers);
    if (n != json_array_size(diffs))
        return kn_error_set(err, EINVAL, "the manifest lists %zu layers, the config %zu", n,
                            json_array_size(diffs));
    if (n > MAX_LAYERS)
        return kn_error_set(err, E2BIG, "%zu layers: at most %d are supported", n, MAX_LAYERS);
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(layers, i);
        hex_t diff, blob;
        if (digest_hex(json_string_value(json_array_get(diffs, i)), diff, err) < 0)
            return kn_error_prefix(err, "diff_id %zu", i);
        char path[PATH_MAX];
        uint64_t size = 0;
        if (docker) {
            const char *p = json_string_value(l);
            if (!p)
                return kn_error_set(err, EINVAL, "manifest.json: Layers must be paths");
            snprintf(path, sizeof path, "%s", p);
            memcpy(blob, diff, sizeof blob);
        } else {
            const char *mt = json_string_value(json_object_get(l, "mediaType"));
            if (mt && strstr(mt, "zstd"))
                return kn_error_set(err, ENOTSUP, "layer %zu is %s: not supported yet", i, mt);
            if (digest_hex(json_string_value(json_object_get(l, "digest")), blob, err) < 0)
                return kn_error_prefix(err, "layer %zu", i);
            json_int_t sz = json_integer_value(json_object_get(l, "size"));
            size = sz > 0 ? (uint64_t)sz : 0;
            snprintf(path, sizeof path, "blobs/sha256/%s", blob);
        }
        if (import_layer(im, path, blob, diff, size, err) < 0)
            return -1;
    }
    return 0;
}

/* Host architecture in OCI's words. */
static const char *
host_arch(void)
{
    struct utsname u;
    if (uname(&u) < 0)
        return "amd64";
    if (!strcmp(u.machine, "x86_64"))
        return "amd64";
    if (!strcmp(u.machine, "aarch64"))
        return "arm64";
    return "unknown";
}

/* Picks the manifest of an index: the only one, or the one for this host. */
static json_t *
pick_manifest(json_t *index, kn_error_t *err)
{
    json_t *ms = json_object_get(index, "manifests");
    if (!json_is_array(ms) || json_array_size(ms) == 0) {
        kn_error_set(err, EINVAL, "index.json lists no manifests");
        return NULL;
    }
    if (json_array_size(ms) == 1)
        return json_array_get(ms, 0);
    size_t i;
    json_t *m;
    json_array_foreach(ms, i, m)
    {
        json_t *p = json_object_get(m, "platform");
        const char *os = json_string_value(json_object_get(p, "os"));
        const char *arch = json_string_value(json_object_get(p, "architecture"));
        if (os && arch && !strcmp(os, "linux") && !strcmp(arch, host_arch()))
            return m;
    }
    kn_error_set(err, ENOENT, "index.json has %zu manifests and none for linux/%s",
                 json_array_size(ms), host_arch());
    return NULL;
}

typedef struct parsed {
    json_t *manifest, *config;
    char *manifest_raw, *config_raw;
    size_t manifest_len, config_len;
    hex_t manifest_hex, config_hex;
    char name[300];
} parsed_t;

static void
parsed_free(parsed_t *p)
{
    json_decref(p->manifest);
    json_decref(p->config);
    free(p->manifest_raw);
    free(p->config_raw);
}

static int
parse_oci(importer_t *im, parsed_t *p, kn_error_t *err)
{
    size_t len;
    char *raw = source_slurp(im->src, "index.json", &len, err);
    if (!raw)
        return -1;
    json_error_t je;
    json_t *index = json_loadb(raw, len, 0, &je);
    free(raw);
    if (!index)
        return kn_error_set(err, EINVAL, "index.json: %s", je.text);
    int rc = -1;
    json_t *desc = pick_manifest(index, err);
    for (int depth = 0; desc && depth < 3; depth++) {
        const char *ann = json_string_value(
            json_object_get(json_object_get(desc, "annotations"), "io.containerd.image.name"));
        if (!ann)
            ann = json_string_value(json_object_get(json_object_get(desc, "annotations"),
                                                    "org.opencontainers.image.ref.name"));
        if (ann && !p->name[0] && (strchr(ann, ':') || strchr(ann, '/')))
            snprintf(p->name, sizeof p->name, "%s", ann);
        char path[128];
        if (digest_hex(json_string_value(json_object_get(desc, "digest")), p->manifest_hex, err) <
            0)
            break;
        snprintf(path, sizeof path, "blobs/sha256/%s", p->manifest_hex);
        json_decref(p->manifest);
        free(p->manifest_raw);
        p->manifest_raw = NULL;
        p->manifest = source_blob_json(im->src, path, p->manifest_hex, "manifest", &p->manifest_raw,
                                       &p->manifest_len, err);
        if (!p->manifest)
            break;
        if (json_is_array(json_object_get(p->manifest, "manifests"))) { /* a nested index */
            desc = pick_manifest(p->manifest, err);
            continue;
        }
        json_t *cd = json_object_get(p->manifest, "config");
        if (digest_hex(json_string_value(json_object_get(cd, "digest")), p->config_hex, err) < 0)
            break;
        snprintf(path, sizeof path, "blobs/sha256/%s", p->config_hex);
        p->config = source_blob_json(im->src, path, p->config_hex, "config", &p->config_raw,
                                     &p->config_len, err);
        if (!p->config)
            break;
        rc = import_layers(im, p->config, json_object_get(p->manifest, "layers"), false, err);
        break;
    }
    json_decref(index);
    return rc;
}

/* `docker save` before Docker 25: manifest.json, <id>.json configs and
 * <dir>/layer.tar layers, checked against the config's diff_ids. A manifest
 * in OCI form is written for it so that every image is used the same way. */
static int
parse_docker(importer_t *im, parsed_t *p, kn_error_t *err)
{
    size_t len;
    char *raw = source_slurp(im->src, "manifest.json", &len, err);
    if (!raw)
        return -1;
    json_error_t je;
    json_t *man = json_loadb(raw, len, 0, &je);
    free(raw);
    if (!man)
        return kn_error_set(err, EINVAL, "manifest.json: %s", je.text);
    int rc = -1;
    json_t *ent = json_array_get(man, 0), *layers = json_object_get(ent, "Layers");
    const char *cfgpath = json_string_value(json_object_get(ent, "Config"));
    const char *tag = json_string_value(json_array_get(json_object_get(ent, "RepoTags"), 0));
    if (json_array_size(man) != 1 || !cfgpath) {
        kn_error_set(err, EINVAL, "manifest.json must describe exactly one image");
        goto out;
    }
    if (tag)
        snprintf(p->name, sizeof p->name, "%s", tag);
    const char *base = strrchr(cfgpath, '/');
    base = base ? base + 1 : cfgpath;
    snprintf(p->config_hex, sizeof p->config_hex, "%.64s", base);
    if (!is_hex64(p->config_hex) || (base[HEXLEN] && strcmp(base + HEXLEN, ".json"))) {
        kn_error_set(err, EINVAL, "config %s is not named by its sha256", cfgpath);
        goto out;
    }
    p->config = source_blob_json(im->src, cfgpath, p->config_hex, "config", &p->config_raw,
                                 &p->config_len, err);
    if (!p->config || import_layers(im, p->config, layers, true, err) < 0)
        goto out;
    json_t *ls = json_array();
    json_t *diffs = json_object_get(json_object_get(p->config, "rootfs"), "diff_ids");
    size_t i;
    json_t *d;
    json_array_foreach(diffs, i, d)
    {
        range_t r;
        int owned;
        if (source_range(im->src, json_string_value(json_array_get(layers, i)), &r, &owned, err) <
            0) {
            json_decref(ls);
            goto out;
        }
        if (owned >= 0)
            close(owned);
        json_array_append_new(ls, json_pack("{s:s,s:O,s:I}", "mediaType",
                                            "application/vnd.docker.image.rootfs.diff.tar",
                                            "digest", d, "size", (json_int_t)r.len));
    }
    char cd[80];
    snprintf(cd, sizeof cd, "sha256:%s", p->config_hex);
    p->manifest = json_pack("{s:i,s:s,s:{s:s,s:s,s:I},s:o}", "schemaVersion", 2, "mediaType",
                            "application/vnd.oci.image.manifest.v1+json", "config", "mediaType",
                            "application/vnd.oci.image.config.v1+json", "digest", cd, "size",
                            (json_int_t)p->config_len, "layers", ls);
    p->manifest_raw = p->manifest ? json_dumps(p->manifest, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (!p->manifest_raw) {
        kn_error_set(err, ENOMEM, "manifest");
        goto out;
    }
    p->manifest_len = strlen(p->manifest_raw);
    sha_hex(p->manifest_raw, p->manifest_len, p->manifest_hex);
    rc = 0;
out:
    json_decref(man);
    return rc;
}

static uint64_t
record_size(const parsed_t *p, int storefd)
{
    uint64_t total = 0;
    json_t *diffs = json_object_get(json_object_get(p->config, "rootfs"), "diff_ids");
    size_t i;
    json_t *d;
    json_array_foreach(diffs, i, d)
    {
        const char *s = json_string_value(d);
        if (!s || strlen(s) != 7 + HEXLEN)
            continue;
        /* The tree file's second line: bytes of regular files in the layer. */
        char path[128];
        snprintf(path, sizeof path, "layers/sha256/%s/tree", s + 7);
        size_t len;
        kn_error_t ignored = {0};
        char *body = slurp_at(storefd, path, 256, &len, &ignored);
        const char *nl = body ? strchr(body, '\n') : NULL;
        if (nl)
            total += strtoull(nl + 1, NULL, 10);
        free(body);
    }
    return total;
}

static int
finish_import(importer_t *im, parsed_t *p, const char *name, kn_error_t *err)
{
    if (store_blob(im->store, p->config_hex, p->config_raw, p->config_len, err) < 0 ||
        store_blob(im->store, p->manifest_hex, p->manifest_raw, p->manifest_len, err) < 0)
        return -1;
    kn_image_info_t *info = im->info;
    snprintf(info->digest, sizeof info->digest, "sha256:%s", p->manifest_hex);
    snprintf(info->config_digest, sizeof info->config_digest, "sha256:%s", p->config_hex);
    now_rfc3339(info->imported, sizeof info->imported);
    info->n_layers =
        json_array_size(json_object_get(json_object_get(p->config, "rootfs"), "diff_ids"));
    info->size = record_size(p, im->store);
    json_t *rec = json_pack("{s:s,s:s,s:s,s:I,s:I}", "digest", info->digest, "config",
                            info->config_digest, "imported", info->imported, "layers",
                            (json_int_t)info->n_layers, "size", (json_int_t)info->size);
    char *body = rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(rec);
    if (!body)
        return kn_error_set(err, ENOMEM, "image record");
    int rc = write_atomic(im->store, "images", p->manifest_hex, body, strlen(body), err);
    free(body);
    if (rc < 0)
        return -1;
    const char *ref = name ? name : (p->name[0] ? p->name : NULL);
    if (ref) {
        char norm[300];
        if (ref_normalize(ref, norm, sizeof norm, err) < 0 ||
            ref_write(im->store, ref, p->manifest_hex, err) < 0)
            return -1;
        info->names = calloc(2, sizeof *info->names);
        if (info->names)
            info->names[0] = strdup(norm);
    }
    return 0;
}

static void
importer_ids(importer_t *im)
{
    /* Files belong to the ids that the sandbox's root maps to, so that
     * root inside owns them (see KN_ROOTMAP_BASE); an unprivileged caller
     * can only give its own ids, which its sandboxes map to root. */
    im->opts.chown = geteuid() == 0;
    im->opts.uid_base = im->opts.chown ? KN_ROOTMAP_BASE : geteuid();
    im->opts.gid_base = im->opts.chown ? KN_ROOTMAP_BASE : getegid();
}

static int
do_import(const char *store, const char *path, const char *name, bool rootfs, kn_image_info_t *info,
          kn_error_t *err)
{
    kn_image_info_t local = {0};
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    if (name) {
        char norm[300];
        if (strchr(name, '@') || ref_normalize(name, norm, sizeof norm, err) < 0)
            return name && strchr(name, '@')
                       ? kn_error_set(err, EINVAL, "--name takes NAME:TAG, not a digest")
                       : -1;
    }
    source_t src = {.dirfd = -1, .fd = -1};
    parsed_t p = {0};
    int lock = -1, rc = -1;
    int storefd = store_open(store, true, err);
    if (storefd < 0)
        return -1;
    if ((lock = store_lock(storefd, LOCK_SH, err)) < 0)
        goto out;
    importer_t im = {.store = storefd, .src = &src, .info = info};
    importer_ids(&im);
    if (rootfs) {
        struct stat st;
        if (stat(path, &st) < 0) {
            kn_error_set(err, errno, "%s", path);
            goto out;
        }
        if (S_ISDIR(st.st_mode)) {
            kn_error_set(err, ENOTSUP,
                         "--rootfs takes a tarball; a root directory runs as it is with "
                         "--image %s",
                         path);
            goto out;
        }
        src.fd = open(path, O_RDONLY | O_CLOEXEC);
        if (src.fd < 0 || !(src.m = calloc(1, sizeof *src.m))) {
            kn_error_set(err, errno, "%s", path);
            goto out;
        }
        src.m[0] = (member_t){.name = strdup("rootfs"),
                              .link = strdup(""),
                              .type = '0',
                              .size = (uint64_t)st.st_size};
        src.n = 1;
        hex_t diff = "";
        if (import_layer(&im, "rootfs", NULL, diff, 0, err) < 0)
            goto out;
        char dd[80];
        snprintf(dd, sizeof dd, "sha256:%s", diff);
        p.config = json_pack("{s:s,s:s,s:{s:[s]},s:{s:s,s:[s]}}", "architecture", host_arch(), "os",
                             "linux", "config", "Env",
                             "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                             "rootfs", "type", "layers", "diff_ids", dd);
        p.config_raw = p.config ? json_dumps(p.config, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (!p.config_raw) {
            kn_error_set(err, ENOMEM, "config");
            goto out;
        }
        p.config_len = strlen(p.config_raw);
        sha_hex(p.config_raw, p.config_len, p.config_hex);
        char cd[80];
        snprintf(cd, sizeof cd, "sha256:%s", p.config_hex);
        p.manifest = json_pack("{s:i,s:s,s:{s:s,s:s,s:I},s:[{s:s,s:s,s:I}]}", "schemaVersion", 2,
                               "mediaType", "application/vnd.oci.image.manifest.v1+json", "config",
                               "mediaType", "application/vnd.oci.image.config.v1+json", "digest",
                               cd, "size", (json_int_t)p.config_len, "layers", "mediaType",
                               "application/vnd.oci.image.layer.v1.tar", "digest", dd, "size",
                               (json_int_t)st.st_size);
        p.manifest_raw = p.manifest ? json_dumps(p.manifest, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (!p.manifest_raw) {
            kn_error_set(err, ENOMEM, "manifest");
            goto out;
        }
        p.manifest_len = strlen(p.manifest_raw);
        sha_hex(p.manifest_raw, p.manifest_len, p.manifest_hex);
    } else {
        if (source_open(&src, path, err) < 0)
            goto out;
        bool oci;
        if (src.dirfd >= 0) {
            oci = faccessat(src.dirfd, "index.json", F_OK, AT_SYMLINK_NOFOLLOW) == 0;
        } else {
            oci = source_find(&src, "index.json", 0) != NULL;
        }
        int pr = oci ? parse_oci(&im, &p, err) : parse_docker(&im, &p, err);
        if (pr < 0) {
            kn_error_prefix(err, "import %s", path);
            goto out;
        }
    }
    rc = finish_import(&im, &p, name, err);
out:
    parsed_free(&p);
    source_close(&src);
    if (lock >= 0)
        close(lock);
    close(storefd);
    if (info == &local || rc < 0)
        kn_image_info_free(info);
    return rc;
}

int
kn_image_import(const char *store, const char *path, const char *name, kn_image_info_t *info,
                kn_error_t *err)
{
    return do_import(store, path, name, false, info, err);
}

int
kn_image_import_rootfs(const char *store, const char *path, const char *name, kn_image_info_t *info,
                       kn_error_t *err)
{
    return do_import(store, path, name, true, info, err);
}

void
kn_image_info_free(kn_image_info_t *info)
{
    if (info) {
        strv_free(info->names);
        info->names = NULL;
    }
}

bool
kn_image_is_ref(const char *image)
{
    return image && image[0] && image[0] != '/' && strcmp(image, "host") != 0;
}

/* --- using an image ---------------------------------------------------------- */

/* A store blob, re-hashed: a blob changed on disk is refused. */
static json_t *
store_blob_json(int storefd, const char *hex, const char *what, kn_error_t *err)
{
    char path[128];
    snprintf(path, sizeof path, "blobs/sha256/%s", hex);
    size_t len;
    char *buf = slurp_at(storefd, path, MAX_JSON, &len, err);
    if (!buf)
        return NULL;
    hex_t got;
    sha_hex(buf, len, got);
    json_t *j = NULL;
    if (strcmp(got, hex)) {
        kn_error_set(err, EBADMSG, "the store's %s sha256:%s was modified (it hashes to sha256:%s)",
                     what, hex, got);
    } else {
        json_error_t je;
        if (!(j = json_loadb(buf, len, 0, &je)))
            kn_error_set(err, EINVAL, "%s sha256:%s: %s", what, hex, je.text);
    }
    free(buf);
    return j;
}

static int
verify_layer(int storefd, const char *hex, bool pinned, kn_error_t *err)
{
    char path[128];
    snprintf(path, sizeof path, "layers/sha256/%s/tree", hex);
    size_t len;
    char *want = slurp_at(storefd, path, 256, &len, err);
    if (!want)
        return kn_error_prefix(err, "layer sha256:%s is missing from the store", hex);
    want[strcspn(want, "\n")] = '\0';
    int rc = 0;
    if (pinned) {
        snprintf(path, sizeof path, "layers/sha256/%s/fs", hex);
        int fd = open_beneath(storefd, path, O_RDONLY | O_DIRECTORY);
        hex_t got;
        uint64_t size;
        if (fd < 0)
            rc = kn_error_set(err, errno, "layer sha256:%s", hex);
        else if (tree_digest(fd, got, &size, err) < 0)
            rc = -1;
        else if (strncmp(want, "sha256:", 7) || strcmp(want + 7, got))
            rc = kn_error_set(err, EBADMSG,
                              "layer sha256:%s was modified in the store (its files hash to "
                              "sha256:%s, it was unpacked as %s)",
                              hex, got, want);
        if (fd >= 0)
            close(fd);
    }
    free(want);
    return rc;
}

void
kn_image_close(kn_image_t *img)
{
    if (!img)
        return;
    if (img->lock >= 0)
        close(img->lock);
    free(img->layer_dir);
    strv_free(img->layers);
    strv_free(img->env);
    strv_free(img->entrypoint);
    strv_free(img->cmd);
    free(img->workdir);
    free(img->user);
    free(img);
}

static int
load_config(kn_image_t *img, json_t *config, kn_error_t *err)
{
    json_t *c = json_object_get(config, "config");
    if (strv_from_json(json_object_get(c, "Env"), &img->env, err) < 0 ||
        strv_from_json(json_object_get(c, "Entrypoint"), &img->entrypoint, err) < 0 ||
        strv_from_json(json_object_get(c, "Cmd"), &img->cmd, err) < 0)
        return -1;
    const char *wd = json_string_value(json_object_get(c, "WorkingDir"));
    const char *user = json_string_value(json_object_get(c, "User"));
    if ((wd && wd[0] && !(img->workdir = strdup(wd))) ||
        (user && user[0] && !(img->user = strdup(user))))
        return kn_error_set(err, ENOMEM, "image config");
    return 0;
}

static int
open_verified(int storefd, kn_image_t *img, const char *hex, kn_error_t *err)
{
    json_t *man = store_blob_json(storefd, hex, "manifest", err), *config = NULL;
    if (!man)
        return -1;
    int rc = -1;
    if (digest_hex(json_string_value(json_object_get(json_object_get(man, "config"), "digest")),
                   img->config_digest + 7, err) < 0)
        goto out;
    memcpy(img->config_digest, "sha256:", 7);
    if (!(config = store_blob_json(storefd, img->config_digest + 7, "config", err)))
        goto out;
    json_t *diffs = json_object_get(json_object_get(config, "rootfs"), "diff_ids");
    size_t n = json_array_size(diffs);
    if (n == 0 || n > MAX_LAYERS) {
        kn_error_set(err, EINVAL, "image has %zu layers", n);
        goto out;
    }
    if (!(img->layers = calloc(n + 1, sizeof *img->layers))) {
        kn_error_set(err, ENOMEM, "image");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        hex_t lh;
        if (digest_hex(json_string_value(json_array_get(diffs, i)), lh, err) < 0 ||
            verify_layer(storefd, lh, img->pinned, err) < 0)
            goto out;
        if (asprintf(&img->layers[i], "%s/fs", lh) < 0) {
            img->layers[i] = NULL;
            kn_error_set(err, ENOMEM, "image");
            goto out;
        }
        img->n_layers++;
    }
    rc = load_config(img, config, err);
out:
    json_decref(man);
    json_decref(config);
    return rc;
}

int
kn_image_open(const char *store, const char *ref, kn_image_t **out, kn_error_t *err)
{
    int storefd = store_open(store, false, err);
    if (storefd < 0)
        return errno == ENOENT ? kn_error_set(err, ENOENT,
                                              "image '%s' is not in the store (there is no "
                                              "store at %s yet: kennel image import)",
                                              ref, kn_image_store_path(store))
                               : -1;
    kn_image_t *img = calloc(1, sizeof *img);
    if (!img) {
        close(storefd);
        return kn_error_set(err, ENOMEM, "image");
    }
    img->lock = -1;
    hex_t hex;
    char rec[128];
    int rc = -1;
    if (ref_resolve(storefd, ref, hex, &img->pinned, err) < 0)
        goto out;
    snprintf(img->digest, sizeof img->digest, "sha256:%s", hex);
    snprintf(rec, sizeof rec, "images/%s", hex);
    img->lock = open_beneath(storefd, rec, O_RDONLY);
    if (img->lock < 0) {
        kn_error_set(err, errno, "image %s is not in the store", img->digest);
        goto out;
    }
    if (flock(img->lock, LOCK_SH) < 0) {
        kn_error_set(err, errno, "lock image");
        goto out;
    }
    size_t len;
    char *body = slurp_fd(img->lock, 4096, &len, err);
    if (body) {
        json_t *j = json_loads(body, 0, NULL);
        img->size = (uint64_t)json_integer_value(json_object_get(j, "size"));
        json_decref(j);
        free(body);
    }
    if (open_verified(storefd, img, hex, err) < 0) {
        kn_error_prefix(err, "image %s", ref);
        goto out;
    }
    if (asprintf(&img->layer_dir, "%s/layers/sha256", kn_image_store_path(store)) < 0) {
        img->layer_dir = NULL;
        kn_error_set(err, ENOMEM, "image");
        goto out;
    }
    *out = img;
    img = NULL;
    rc = 0;
out:
    kn_image_close(img);
    close(storefd);
    return rc;
}

/* The topmost copy of a file in the image's layers (NULL if none, or
 * whited out). Used for /etc/passwd and /etc/group. */
static char *
image_file(const kn_image_t *img, const char *path, kn_error_t *err)
{
    int dfd = open(img->layer_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        kn_error_set(err, errno, "%s", img->layer_dir);
        return NULL;
    }
    char *out = NULL;
    for (size_t i = img->n_layers; i-- > 0;) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", img->layers[i], path);
        int fd = open_beneath(dfd, p, O_RDONLY | O_NONBLOCK);
        if (fd < 0)
            continue;
        struct stat st;
        size_t len;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
            out = slurp_fd(fd, 1 << 20, &len, err);
        close(fd);
        break; /* found here, or a whiteout here: either way, lower layers are hidden */
    }
    close(dfd);
    return out;
}

/* name or number -> id through a passwd/group file; returns -1 if unknown. */
static long
lookup_id(const char *file, const char *name, long *gid_out)
{
    if (!file)
        return -1;
    size_t nlen = strlen(name);
    for (const char *line = file; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > nlen && !strncmp(line, name, nlen) && line[nlen] == ':') {
            const char *f = line + nlen + 1; /* password */
            f = memchr(f, ':', len - nlen - 1);
            if (!f)
                return -1;
            long id = strtol(f + 1, NULL, 10);
            const char *g = strchr(f + 1, ':');
            if (gid_out && g)
                *gid_out = strtol(g + 1, NULL, 10);
            return id;
        }
        line += len + (end ? 1 : 0);
    }
    return -1;
}

static int
parse_id(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!s[0] || *end || errno || v < 0)
        return -1;
    *out = v;
    return 0;
}

/* USER of the image config: uid, uid:gid, name or name:group. */
static int
apply_user(kn_config_t *cfg, const kn_image_t *img, kn_error_t *err)
{
    char user[256], *group = NULL;
    snprintf(user, sizeof user, "%s", img->user);
    if ((group = strchr(user, ':')))
        *group++ = '\0';
    char *passwd = image_file(img, "etc/passwd", err);
    long uid = -1, gid = -1;
    if (parse_id(user, &uid) < 0) {
        uid = lookup_id(passwd, user, &gid);
    } else {
        char num[32];
        snprintf(num, sizeof num, "%ld", uid);
        /* A numeric user takes its primary group from passwd when listed. */
        for (const char *l = passwd; l && *l;) {
            const char *c1 = strchr(l, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            const char *eol = strchr(l, '\n');
            if (c2 && (!eol || c2 < eol) && !strncmp(c2 + 1, num, strlen(num)) &&
                c2[1 + strlen(num)] == ':') {
                gid = strtol(c2 + 2 + strlen(num), NULL, 10);
                break;
            }
            l = eol ? eol + 1 : l + strlen(l);
        }
    }
    free(passwd);
    if (uid < 0)
        return kn_error_set(err, ENOENT, "user '%s' of the image is not in its /etc/passwd", user);
    if (group) {
        if (parse_id(group, &gid) < 0) {
            char *groups = image_file(img, "etc/group", err);
            gid = lookup_id(groups, group, NULL);
            free(groups);
            if (gid < 0)
                return kn_error_set(err, ENOENT, "group '%s' of the image is not in its /etc/group",
                                    group);
        }
    }
    if (gid < 0)
        gid = 0;
    if (uid > 65535 || gid > 65535)
        return kn_error_set(err, EINVAL, "user '%s' of the image is above 65535", img->user);
    cfg->uid = (uid_t)uid;
    cfg->gid = (gid_t)gid;
    return 0;
}

int
kn_image_apply_config(kn_config_t *cfg, const kn_image_t *img, kn_error_t *err)
{
    char **layers = calloc(img->n_layers + 1, sizeof *layers);
    if (!layers)
        return kn_error_set(err, ENOMEM, "image");
    for (size_t i = 0; i < img->n_layers; i++)
        if (!(layers[i] = strdup(img->layers[i]))) {
            strv_free(layers);
            return kn_error_set(err, ENOMEM, "image");
        }
    strv_free(cfg->image_layers);
    cfg->image_layers = layers;
    if (kn_config_set_str(&cfg->image_layer_dir, img->layer_dir, err) < 0)
        return -1;
    for (char **e = img->env; e && *e; e++)
        if (strchr(*e, '=') && **e != '=' && kn_config_setenv(cfg, *e, err) < 0)
            return kn_error_prefix(err, "image env");
    size_t n = 0;
    for (char **a = img->entrypoint; a && *a; a++)
        n++;
    for (char **a = img->cmd; a && *a; a++)
        n++;
    if (n) {
        char **argv = calloc(n + 1, sizeof *argv);
        if (!argv)
            return kn_error_set(err, ENOMEM, "image");
        n = 0;
        for (char **a = img->entrypoint; a && *a; a++)
            argv[n++] = *a;
        for (char **a = img->cmd; a && *a; a++)
            argv[n++] = *a;
        int rc = kn_config_set_argv(cfg, argv, err);
        free(argv);
        if (rc < 0)
            return -1;
    }
    if (img->workdir && kn_config_set_str(&cfg->cwd, img->workdir, err) < 0)
        return -1;
    /* A profile that names its own user (deny-by-default: 65532) keeps it. */
    if (img->user && cfg->uid == 0 && cfg->gid == 0 && apply_user(cfg, img, err) < 0)
        return -1;
    return 0;
}

/* --- listing and removal ------------------------------------------------------- */

static int
list_refs(int storefd, const char *hex, char ***names)
{
    int fd = openat(storefd, "refs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t n = 0;
    char **v = calloc(1, sizeof *v);
    struct dirent *e;
    while (v && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char buf[128];
        int f = openat(fd, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        ssize_t r = f >= 0 ? pread_full(f, buf, sizeof buf - 1, 0) : -1;
        if (f >= 0)
            close(f);
        if (r < 7 + HEXLEN || strncmp(buf + 7, hex, HEXLEN))
            continue;
        char name[300];
        ref_unfile(e->d_name, name, sizeof name);
        char **g = realloc(v, (n + 2) * sizeof *g);
        if (!g)
            break;
        v = g;
        v[n++] = strdup(name);
        v[n] = NULL;
    }
    closedir(d);
    *names = v;
    return v ? 0 : -1;
}

int
kn_image_list(const char *store, kn_image_info_t **out, size_t *count, kn_error_t *err)
{
    int storefd = store_open(store, true, err);
    if (storefd < 0)
        return -1;
    int fd = openat(storefd, "images", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        close(storefd);
        return kn_error_set(err, errno, "image store");
    }
    kn_image_info_t *v = NULL;
    size_t n = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (!is_hex64(e->d_name))
            continue;
        kn_image_info_t *g = realloc(v, (n + 1) * sizeof *g);
        if (!g) {
            rc = kn_error_set(err, ENOMEM, "image list");
            break;
        }
        v = g;
        kn_image_info_t *i = &v[n++];
        memset(i, 0, sizeof *i);
        snprintf(i->digest, sizeof i->digest, "sha256:%s", e->d_name);
        char path[128];
        snprintf(path, sizeof path, "images/%s", e->d_name);
        size_t len;
        kn_error_t ignored = {0};
        char *body = slurp_at(storefd, path, 4096, &len, &ignored);
        json_t *j = body ? json_loads(body, 0, NULL) : NULL;
        snprintf(i->config_digest, sizeof i->config_digest, "%s",
                 json_string_value(json_object_get(j, "config")) ?: "");
        snprintf(i->imported, sizeof i->imported, "%s",
                 json_string_value(json_object_get(j, "imported")) ?: "");
        i->size = (uint64_t)json_integer_value(json_object_get(j, "size"));
        i->n_layers = (size_t)json_integer_value(json_object_get(j, "layers"));
        json_decref(j);
        free(body);
        list_refs(storefd, e->d_name, &i->names);
    }
    closedir(d);
    close(storefd);
    if (rc < 0) {
        kn_image_list_free(v, n);
        return -1;
    }
    *out = v;
    *count = n;
    return 0;
}

void
kn_image_list_free(kn_image_info_t *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kn_image_info_free(&list[i]);
    free(list);
}

/* Removes the image record if nothing holds it open; refs first. */
static int
remove_image(int storefd, const char *hex, bool all_refs, const char *only_ref, kn_error_t *err)
{
    char rec[128];
    snprintf(rec, sizeof rec, "images/%s", hex);
    int fd = open_beneath(storefd, rec, O_RDONLY);
    if (fd < 0)
        return kn_error_set(err, errno, "image sha256:%s is not in the store", hex);
    int rc = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        rc = kn_error_set(err, errno == EWOULDBLOCK ? EBUSY : errno,
                          "image sha256:%s is in use by a running sandbox", hex);
        goto out;
    }
    char **names = NULL;
    list_refs(storefd, hex, &names);
    size_t left = 0;
    for (char **n = names; n && *n; n++) {
        char file[PATH_MAX], path[PATH_MAX + 8];
        if (all_refs || !strcmp(*n, only_ref)) {
            ref_file(*n, file, sizeof file);
            snprintf(path, sizeof path, "refs/%s", file);
            unlinkat(storefd, path, 0);
        } else {
            left++;
        }
    }
    strv_free(names);
    if (!left && unlinkat(storefd, rec, 0) < 0)
        rc = kn_error_set(err, errno, "remove %s", rec);
out:
    close(fd);
    return rc;
}

int
kn_image_remove(const char *store, const char *ref, kn_error_t *err)
{
    int storefd = store_open(store, false, err);
    if (storefd < 0)
        return -1;
    hex_t hex;
    bool pinned;
    int rc = ref_resolve(storefd, ref, hex, &pinned, err);
    if (rc == 0) {
        char norm[300] = "";
        if (!pinned)
            ref_normalize(ref, norm, sizeof norm, err);
        rc = remove_image(storefd, hex, pinned, norm, err);
    }
    close(storefd);
    return rc;
}

/* Adds the blobs and layers of image hex to the live set (a list of hexes). */
static int
mark_live(int storefd, const char *hex, char ***live, size_t *n)
{
    kn_error_t ignored = {0};
    json_t *man = store_blob_json(storefd, hex, "manifest", &ignored);
    hex_t ch;
    const char *cd = json_string_value(json_object_get(json_object_get(man, "config"), "digest"));
    json_t *config = NULL;
    if (cd && digest_hex(cd, ch, &ignored) == 0)
        config = store_blob_json(storefd, ch, "config", &ignored);
    json_t *diffs = json_object_get(json_object_get(config, "rootfs"), "diff_ids");
    size_t add = 2 + json_array_size(diffs);
    char **g = realloc(*live, (*n + add) * sizeof *g);
    if (!g) {
        json_decref(man);
        json_decref(config);
        return -1;
    }
    *live = g;
    g[(*n)++] = strdup(hex);
    if (config)
        g[(*n)++] = strdup(ch);
    size_t i;
    json_t *d;
    json_array_foreach(diffs, i, d)
    {
        const char *s = json_string_value(d);
        if (s && strlen(s) == 7 + HEXLEN)
            g[(*n)++] = strdup(s + 7);
    }
    json_decref(man);
    json_decref(config);
    return 0;
}

static bool
in_set(char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] && !strcmp(v[i], s))
            return true;
    return false;
}

/* Removes every entry of dir (beneath the store) that is not live. */
static size_t
sweep(int storefd, const char *dir, char **live, size_t n, bool any_name)
{
    int fd = openat(storefd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    size_t freed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (!any_name && (!is_hex64(e->d_name) || in_set(live, n, e->d_name)))
            continue;
        if (rm_tree_at(fd, e->d_name) == 0)
            freed++;
    }
    closedir(d);
    return freed;
}

int
kn_image_prune(const char *store, size_t *freed, kn_error_t *err)
{
    int storefd = store_open(store, true, err);
    if (storefd < 0)
        return -1;
    int lock = store_lock(storefd, LOCK_EX, err);
    if (lock < 0) {
        close(storefd);
        return -1;
    }
    *freed = 0;
    kn_image_info_t *list = NULL;
    size_t n = 0;
    char **live = NULL;
    size_t nlive = 0;
    int rc = kn_image_list(store, &list, &n, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *hex = list[i].digest + 7;
        if (!list[i].names || !list[i].names[0]) {
            kn_error_t busy = {0};
            if (remove_image(storefd, hex, true, "", &busy) == 0) {
                (*freed)++;
                continue;
            }
        }
        if (mark_live(storefd, hex, &live, &nlive) < 0)
            rc = kn_error_set(err, ENOMEM, "prune");
    }
    if (rc == 0) {
        *freed += sweep(storefd, "blobs/sha256", live, nlive, false);
        *freed += sweep(storefd, "layers/sha256", live, nlive, false);
        *freed += sweep(storefd, "tmp", NULL, 0, true);
    }
    for (size_t i = 0; i < nlive; i++)
        free(live[i]);
    free(live);
    kn_image_list_free(list, n);
    close(lock);
    close(storefd);
    return rc;
}
