/* image_store.c - the image store's building blocks: sha256 digests,
 * descriptor-relative file helpers, the store's directories and lock,
 * NAME:TAG refs, and the digest of an unpacked layer tree. See image.h for
 * the store's layout. */
#include "image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <linux/openat2.h>
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
#include <sodium.h>
#include <zlib.h>

#include "image_internal.h"
#include "util.h"

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

void
kn_image_sha_init(sha_t *h)
{
    h->c = EVP_MD_CTX_new();
    if (h->c && EVP_DigestInit_ex(h->c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h->c);
        h->c = NULL;
    }
}

void
kn_image_sha_update(sha_t *h, const void *d, size_t n)
{
    if (h->c && EVP_DigestUpdate(h->c, d, n) != 1) {
        EVP_MD_CTX_free(h->c);
        h->c = NULL;
    }
}

void
kn_image_sha_free(sha_t *h)
{
    EVP_MD_CTX_free(h->c);
    h->c = NULL;
}

void
kn_image_sha_final_hex(sha_t *h, char *out)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (h->c && EVP_DigestFinal_ex(h->c, d, &len) == 1 && len == 32)
        to_hex(d, out);
    else
        out[0] = '\0';
    kn_image_sha_free(h);
}

/* One-shot sha256 of a small buffer (manifests, configs), as hex. Through
 * libsodium: OpenSSL's first use costs about a millisecond of set-up, which
 * every `kennel run --image` would pay (see docs/benchmarks.md, Images). */
void
kn_image_sha_hex(const void *data, size_t len, char *out)
{
    unsigned char d[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(d, data, len);
    to_hex(d, out);
}

bool
kn_image_is_hex64(const char *s)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == HEXLEN;
}

/* "sha256:HEX" -> HEX; other algorithms are refused by name. */
int
kn_image_digest_hex(const char *digest, char *hex, kn_error_t *err)
{
    if (!digest || strncmp(digest, "sha256:", 7) != 0)
        return kn_error_set(err, ENOTSUP, "digest '%s' is not sha256:HEX", digest ? digest : "");
    if (!kn_image_is_hex64(digest + 7))
        return kn_error_set(err, EINVAL, "digest '%s' is malformed", digest);
    memcpy(hex, digest + 7, HEXLEN + 1);
    return 0;
}

int
kn_image_openat2(int dfd, const char *path, int flags, uint64_t resolve)
{
    struct open_how how = {.flags = (uint64_t)flags | O_CLOEXEC, .resolve = resolve};
    int fd = (int)syscall(SYS_openat2, dfd, path, &how, sizeof how);
    if (fd < 0 && errno == ENOSYS) /* pre-5.6 kernels: one name, no symlink */
        fd = strchr(path, '/') ? (errno = ENOTSUP, -1)
                               : openat(dfd, path, flags | O_NOFOLLOW | O_CLOEXEC);
    return fd;
}

/* Opens a name beneath dfd: no symlinks, no escapes. */
int
kn_image_open_beneath(int dfd, const char *path, int flags)
{
    return kn_image_openat2(dfd, path, flags,
                            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
}

ssize_t
kn_image_pread_full(int fd, void *buf, size_t n, uint64_t off)
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
char *
kn_image_slurp_fd(int fd, size_t cap, size_t *len, kn_error_t *err)
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
    ssize_t n = kn_image_pread_full(fd, buf, (size_t)st.st_size, 0);
    if (n < 0) {
        kn_error_set(err, errno, "read");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

char *
kn_image_slurp_at(int dfd, const char *path, size_t cap, size_t *len, kn_error_t *err)
{
    int fd = kn_image_open_beneath(dfd, path, O_RDONLY);
    if (fd < 0) {
        kn_error_set(err, errno, "open %s", path);
        return NULL;
    }
    char *buf = kn_image_slurp_fd(fd, cap, len, err);
    close(fd);
    if (!buf)
        kn_error_prefix(err, "%s", path);
    return buf;
}

void
kn_image_random_name(const char *prefix, char *out, size_t cap)
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
int
kn_image_write_atomic(int storefd, const char *dir, const char *name, const void *data, size_t len,
                      kn_error_t *err)
{
    char tmp[64], dst[PATH_MAX];
    kn_image_random_name("tmp/f-", tmp, sizeof tmp);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    int fd = openat(storefd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return kn_error_set(err, errno, "create %s", tmp);
    /* 0644 whatever the caller's umask: the store is read by anyone. */
    int rc = fchmod(fd, 0644) < 0 || kn_write_all(fd, data, len) < 0
                 ? kn_error_set(err, errno, "write %s", dst)
                 : 0;
    close(fd);
    if (rc == 0 && renameat(storefd, tmp, storefd, dst) < 0)
        rc = kn_error_set(err, errno, "rename into %s", dst);
    if (rc < 0)
        unlinkat(storefd, tmp, 0);
    return rc;
}

/* Removes dfd/name and everything below it, never following a symlink. */
int
kn_image_rm_tree_at(int dfd, const char *name)
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
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            kn_image_rm_tree_at(fd, e->d_name) < 0)
            rc = -1;
    closedir(d);
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0)
        rc = -1;
    return rc;
}

void
kn_image_strv_free(char **v)
{
    if (v)
        for (char **p = v; *p; p++)
            free(*p);
    free(v);
}

/* A JSON array of strings as a NULL-terminated vector; NULL if absent. */
int
kn_image_strv_from_json(json_t *a, char ***out, kn_error_t *err)
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
            kn_image_strv_free(v);
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
int
kn_image_store_open(const char *store, bool create, kn_error_t *err)
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
int
kn_image_store_lock(int storefd, int how, kn_error_t *err)
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
int
kn_image_ref_normalize(const char *name, char *out, size_t cap, kn_error_t *err)
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

void
kn_image_ref_file(const char *norm, char *out, size_t cap)
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

void
kn_image_ref_unfile(const char *file, char *out, size_t cap)
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

int
kn_image_ref_write(int storefd, const char *name, const char *hex, kn_error_t *err)
{
    char norm[300], file[PATH_MAX], body[80];
    if (kn_image_ref_normalize(name, norm, sizeof norm, err) < 0)
        return -1;
    kn_image_ref_file(norm, file, sizeof file);
    int n = snprintf(body, sizeof body, "sha256:%s\n", hex);
    return kn_image_write_atomic(storefd, "refs", file, body, (size_t)n, err);
}

/* Resolves a reference to the image's manifest hex; *pinned when it named a digest. */
int
kn_image_ref_resolve(int storefd, const char *ref, char *hex, bool *pinned, kn_error_t *err)
{
    const char *at = strchr(ref, '@');
    if (!strncmp(ref, "sha256:", 7) || at) {
        *pinned = true;
        if (at) {
            char name[300];
            snprintf(name, sizeof name, "%.*s", (int)(at - ref), ref);
            if (kn_image_ref_normalize(name, name, sizeof name, err) < 0)
                return -1;
        }
        return kn_image_digest_hex(at ? at + 1 : ref, hex, err);
    }
    *pinned = false;
    char norm[300], file[PATH_MAX], path[PATH_MAX + 8];
    if (kn_image_ref_normalize(ref, norm, sizeof norm, err) < 0)
        return -1;
    kn_image_ref_file(norm, file, sizeof file);
    snprintf(path, sizeof path, "refs/%s", file);
    char buf[128];
    int fd = kn_image_open_beneath(storefd, path, O_RDONLY);
    if (fd < 0)
        return kn_error_set(err, errno, "image '%s' is not in the store (kennel image import)",
                            norm);
    ssize_t n = kn_image_pread_full(fd, buf, sizeof buf - 1, 0);
    close(fd);
    if (n < 0)
        return kn_error_set(err, errno, "read ref %s", norm);
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    if (kn_image_digest_hex(buf, hex, err) < 0)
        return kn_error_prefix(err, "ref %s", norm);
    return 0;
}

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
        kn_image_sha_update(h, rec, (size_t)len + 1);
        if (S_ISREG(st.st_mode)) {
            *size += (uint64_t)st.st_size;
            int f = openat(fd, names[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (f < 0) {
                rc = -1;
                break;
            }
            ssize_t r;
            while ((r = read(f, buf, IOBUF)) > 0)
                kn_image_sha_update(h, buf, (size_t)r);
            close(f);
            if (r < 0)
                rc = -1;
        } else if (S_ISLNK(st.st_mode)) {
            ssize_t r = readlinkat(fd, names[i], buf, IOBUF);
            if (r < 0)
                rc = -1;
            else
                kn_image_sha_update(h, buf, (size_t)r);
        } else if (S_ISDIR(st.st_mode)) {
            int sub = openat(fd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                rc = -1;
                break;
            }
            char opq[4] = {0};
            if (fgetxattr(sub, "user.overlay.opaque", opq, sizeof opq - 1) > 0)
                kn_image_sha_update(h, "opaque", 6);
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

int
kn_image_tree_digest(int fsfd, char *hex, uint64_t *size, kn_error_t *err)
{
    char *buf = malloc(IOBUF);
    if (!buf)
        return kn_error_set(err, ENOMEM, "tree digest");
    sha_t h;
    kn_image_sha_init(&h);
    *size = 0;
    int rc = tree_hash(fsfd, "", &h, size, buf);
    free(buf);
    if (rc < 0)
        return kn_error_set(err, errno ? errno : EIO, "hash layer tree");
    kn_image_sha_final_hex(&h, hex);
    return 0;
}
