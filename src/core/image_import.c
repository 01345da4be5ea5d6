/* image_import.c - import OCI image layouts (directories or tars), docker
 * save tarballs and root file system tarballs into the store.
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

#include "image_internal.h"
#include "sandbox_internal.h"
#include "tar.h"
#include "util.h"

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
    /* Layer blobs report their progress. */
    const kn_image_import_opts_t *opts;
    size_t layer, n_layers;
    uint64_t reported;
} range_t;

#define PROGRESS_STEP (4u << 20)

static ssize_t
range_read(void *ctx, void *buf, size_t n, kn_error_t *err)
{
    range_t *r = ctx;
    if (n > r->len - r->pos)
        n = (size_t)(r->len - r->pos);
    if (n == 0)
        return 0;
    ssize_t got = kn_image_pread_full(r->fd, buf, n, r->off + r->pos);
    if (got < 0)
        return kn_error_set(err, errno, "read");
    if ((size_t)got < n)
        return kn_error_set(err, EIO, "file is shorter than expected");
    if (r->h)
        kn_image_sha_update(r->h, buf, (size_t)got);
    r->pos += (uint64_t)got;
    if (r->opts && r->opts->progress &&
        (r->pos - r->reported >= PROGRESS_STEP || r->pos == r->len)) {
        r->reported = r->pos;
        r->opts->progress(r->opts->arg, r->layer, r->n_layers, r->pos, r->len);
    }
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
    if (kn_image_pread_full(fd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
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
        int fd =
            kn_image_openat2(s->dirfd, name, O_RDONLY, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
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
    kn_image_sha_hex(buf, len, got);
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
            kn_image_sha_update(&L->hu, buf, (size_t)r);
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
            kn_image_sha_update(&L->hu, buf, produced);
            return (ssize_t)produced;
        }
    }
}

/* Reads the rest of the compressed blob (hashing it) and checks the blob's
 * digest. Returns 0 when it matches, 1 when it does not (err says so), -1
 * when the blob could not be read. */
static int
check_blob(layer_in_t *L, const char *blob_hex, kn_error_t *err)
{
    char *buf = malloc(IOBUF);
    ssize_t r = buf ? 1 : kn_error_set(err, ENOMEM, "layer");
    while (r > 0)
        r = range_read(&L->raw, buf, IOBUF, err);
    free(buf);
    if (r < 0)
        return -1;
    hex_t got;
    kn_image_sha_final_hex(&L->hz, got);
    if (!strcmp(got, blob_hex))
        return 0;
    kn_error_set(err, EBADMSG,
                 "blob sha256:%s (layer) does not match its digest: its content hashes to "
                 "sha256:%s",
                 blob_hex, got);
    return 1;
}

typedef struct importer {
    int store;
    const source_t *src;
    kn_tar_opts_t opts;
    kn_image_info_t *info;
    const kn_image_import_opts_t *iopts;
    size_t layer, n_layers; /* the layer being imported, for progress */
} importer_t;

static void importer_ids(importer_t *im);

/* Opens the source range of a layer and sniffs its compression. */
static int
layer_open(importer_t *im, const char *path, uint64_t want_size, const char *blob_hex,
           layer_in_t *L, int *owned, kn_error_t *err)
{
    if (source_range(im->src, path, &L->raw, owned, err) < 0)
        return kn_error_prefix(err, "layer");
    L->raw.opts = im->iopts;
    L->raw.layer = im->layer;
    L->raw.n_layers = im->n_layers;
    L->raw.h = &L->hz;
    if (want_size && L->raw.len != want_size)
        return kn_error_set(err, EBADMSG, "blob sha256:%s is %llu bytes, the manifest says %llu",
                            blob_hex, (unsigned long long)L->raw.len,
                            (unsigned long long)want_size);
    unsigned char magic[4] = {0};
    kn_image_pread_full(L->raw.fd, magic, sizeof magic, L->raw.off);
    if (L->raw.len >= 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f &&
        magic[3] == 0xfd)
        return kn_error_set(err, ENOTSUP, "layer %s is zstd-compressed: not supported yet", path);
    if (L->raw.len >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
        if (!(L->zbuf = malloc(IOBUF)) || inflateInit2(&L->z, 16 + MAX_WBITS) != Z_OK) {
            free(L->zbuf);
            L->zbuf = NULL;
            return kn_error_set(err, ENOMEM, "gzip");
        }
        L->gz = true;
    }
    return 0;
}

/* A fresh tmp/layer-RANDOM/fs owned by the mapped root; *stage names it. */
static int
stage_open(importer_t *im, char *stage, size_t cap, int *stagefd, int *fsfd, kn_error_t *err)
{
    kn_image_random_name("tmp/layer-", stage, cap);
    if (mkdirat(im->store, stage, 0755) < 0) {
        kn_error_set(err, errno, "staging %s", stage);
        stage[0] = '\0';
        return -1;
    }
    *stagefd = openat(im->store, stage, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (*stagefd < 0 || mkdirat(*stagefd, "fs", 0755) < 0 ||
        (*fsfd = openat(*stagefd, "fs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return kn_error_set(err, errno, "staging %s", stage);
    if (im->opts.chown && fchown(*fsfd, im->opts.uid_base, im->opts.gid_base) < 0)
        return kn_error_set(err, errno, "chown layer root");
    return 0;
}

/* After the tar's end: the rest of the stream, then both digests. */
static int
check_digests(layer_in_t *L, const char *blob_hex, char *diff_hex, kn_error_t *err)
{
    char drain[4096];
    ssize_t r;
    while ((r = layer_read(L, drain, sizeof drain, err)) > 0)
        ;
    if (r < 0)
        return -1;
    hex_t gotz, gotu;
    kn_image_sha_final_hex(&L->hz, gotz);
    kn_image_sha_final_hex(&L->hu, gotu);
    if (blob_hex && strcmp(gotz, blob_hex))
        return kn_error_set(err, EBADMSG,
                            "blob sha256:%s (layer) does not match its digest: its content "
                            "hashes to sha256:%s",
                            blob_hex, gotz);
    if (diff_hex[0] && strcmp(gotu, diff_hex))
        return kn_error_set(err, EBADMSG,
                            "layer sha256:%s: its uncompressed content hashes to sha256:%s, the "
                            "image config's diff_id is sha256:%s",
                            blob_hex ? blob_hex : gotz, gotu, diff_hex);
    if (!diff_hex[0])
        memcpy(diff_hex, gotu, HEXLEN + 1);
    return 0;
}

/* Writes the tree digest and renames the staged layer into layers/.
 * Returns 1 when it was stored, 0 when a concurrent import was first. */
static int
stage_commit(importer_t *im, const char *stage, int stagefd, int fsfd, const char *diff_hex,
             kn_error_t *err)
{
    hex_t tree;
    uint64_t size;
    if (kn_image_tree_digest(fsfd, tree, &size, err) < 0)
        return -1;
    char body[128], layer[128];
    int bl = snprintf(body, sizeof body, "sha256:%s\n%llu\n", tree, (unsigned long long)size);
    int tf = openat(stagefd, "tree", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (tf < 0 || kn_write_all(tf, body, (size_t)bl) < 0) {
        kn_error_set(err, errno, "write tree digest");
        if (tf >= 0)
            close(tf);
        return -1;
    }
    close(tf);
    snprintf(layer, sizeof layer, "layers/sha256/%s", diff_hex);
    if (renameat(im->store, stage, im->store, layer) == 0)
        return 1;
    if (errno == EEXIST || errno == ENOTEMPTY)
        return 0;
    return kn_error_set(err, errno, "store layer %s", diff_hex);
}

/* Unpacks one layer blob whose compressed digest is blob_hex (NULL: not
 * known, a rootfs tarball) and whose uncompressed digest must be diff_hex
 * ("": learn it; written back). Returns 0 and the layer is in layers/. */
static int
import_layer(importer_t *im, const char *path, const char *blob_hex, char *diff_hex,
             uint64_t want_size, kn_error_t *err)
{
    layer_in_t L = {0};
    char stage[64] = "", tree[128];
    int owned = -1, stagefd = -1, fsfd = -1, rc = -1;
    kn_image_sha_init(&L.hz);
    kn_image_sha_init(&L.hu);
    if (layer_open(im, path, want_size, blob_hex, &L, &owned, err) < 0)
        goto out;
    snprintf(tree, sizeof tree, "layers/sha256/%s/tree", diff_hex);
    if (diff_hex[0] && blob_hex && faccessat(im->store, tree, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        /* Unpacked before: only check that this blob is what it claims. */
        rc = check_blob(&L, blob_hex, err) == 0 ? 0 : -1;
        goto out;
    }
    if (stage_open(im, stage, sizeof stage, &stagefd, &fsfd, err) < 0)
        goto out;
    kn_tar_t t;
    kn_tar_init(&t, (kn_tar_src_t){layer_read, NULL, &L});
    kn_tar_stats_t st = {0};
    int xr = kn_tar_extract(&t, fsfd, &im->opts, &st, err);
    kn_tar_free(&t);
    if (xr < 0) {
        /* A blob that is not what its digest says is the clearer error. */
        kn_error_t ignored = {0};
        if (!blob_hex || check_blob(&L, blob_hex, &ignored) != 1)
            kn_error_prefix(err, "layer %s", blob_hex ? blob_hex : path);
        else
            *err = ignored;
        goto out;
    }
    if (check_digests(&L, blob_hex, diff_hex, err) < 0)
        goto out;
    int stored = stage_commit(im, stage, stagefd, fsfd, diff_hex, err);
    if (stored < 0)
        goto out;
    if (stored) {
        stage[0] = '\0';
        im->info->layers_new++;
    }
    im->info->devices_skipped += st.devices_skipped;
    im->info->setid_cleared += st.setid_cleared;
    rc = 0;
out:
    if (fsfd >= 0)
        close(fsfd);
    if (stagefd >= 0)
        close(stagefd);
    if (stage[0])
        kn_image_rm_tree_at(im->store, stage);
    if (L.zbuf) {
        inflateEnd(&L.z);
        free(L.zbuf);
    }
    kn_image_sha_free(&L.hz);
    kn_image_sha_free(&L.hu);
    if (owned >= 0)
        close(owned);
    return rc;
}

/* An uncompressed layer tar from any source, hashed as it is read. */
typedef struct hashed_src {
    kn_tar_src_t src;
    sha_t h;
    uint64_t bytes;
} hashed_src_t;

static ssize_t
hashed_read(void *ctx, void *buf, size_t n, kn_error_t *err)
{
    hashed_src_t *hs = ctx;
    ssize_t r = hs->src.read(hs->src.ctx, buf, n, err);
    if (r > 0) {
        kn_image_sha_update(&hs->h, buf, (size_t)r);
        hs->bytes += (uint64_t)r;
    }
    return r;
}

int
kn_image_store_layer(int storefd, kn_tar_src_t src, char *diff_hex, uint64_t *tar_bytes,
                     kn_image_info_t *info, kn_error_t *err)
{
    importer_t im = {.store = storefd, .info = info, .n_layers = 1};
    importer_ids(&im);
    hashed_src_t hs = {.src = src};
    kn_image_sha_init(&hs.h);
    char stage[64] = "";
    int stagefd = -1, fsfd = -1, rc = -1;
    if (stage_open(&im, stage, sizeof stage, &stagefd, &fsfd, err) < 0)
        goto out;
    kn_tar_t t;
    kn_tar_init(&t, (kn_tar_src_t){hashed_read, NULL, &hs});
    kn_tar_stats_t st = {0};
    int xr = kn_tar_extract(&t, fsfd, &im.opts, &st, err);
    kn_tar_free(&t);
    if (xr < 0)
        goto out;
    char drain[4096];
    ssize_t r;
    while ((r = hashed_read(&hs, drain, sizeof drain, err)) > 0)
        ;
    if (r < 0)
        goto out;
    kn_image_sha_final_hex(&hs.h, diff_hex);
    if (!diff_hex[0]) {
        kn_error_set(err, ENOMEM, "hash the layer");
        goto out;
    }
    int stored = stage_commit(&im, stage, stagefd, fsfd, diff_hex, err);
    if (stored < 0)
        goto out;
    if (stored) {
        stage[0] = '\0';
        info->layers_new++;
    }
    info->devices_skipped += st.devices_skipped;
    info->setid_cleared += st.setid_cleared;
    *tar_bytes = hs.bytes;
    rc = 0;
out:
    if (fsfd >= 0)
        close(fsfd);
    if (stagefd >= 0)
        close(stagefd);
    if (stage[0])
        kn_image_rm_tree_at(storefd, stage);
    kn_image_sha_free(&hs.h);
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
    return kn_image_write_atomic(storefd, "blobs/sha256", hex, data, len, err);
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
        if (kn_image_digest_hex(json_string_value(json_array_get(diffs, i)), diff, err) < 0)
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
            if (kn_image_digest_hex(json_string_value(json_object_get(l, "digest")), blob, err) < 0)
                return kn_error_prefix(err, "layer %zu", i);
            json_int_t sz = json_integer_value(json_object_get(l, "size"));
            size = sz > 0 ? (uint64_t)sz : 0;
            snprintf(path, sizeof path, "blobs/sha256/%s", blob);
        }
        im->layer = i;
        im->n_layers = n;
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
        if (kn_image_digest_hex(json_string_value(json_object_get(desc, "digest")), p->manifest_hex,
                                err) < 0)
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
        if (kn_image_digest_hex(json_string_value(json_object_get(cd, "digest")), p->config_hex,
                                err) < 0)
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
    if (!kn_image_is_hex64(p->config_hex) || (base[HEXLEN] && strcmp(base + HEXLEN, ".json"))) {
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
    kn_image_sha_hex(p->manifest_raw, p->manifest_len, p->manifest_hex);
    rc = 0;
out:
    json_decref(man);
    return rc;
}

static uint64_t
record_size(json_t *config, int storefd)
{
    uint64_t total = 0;
    json_t *diffs = json_object_get(json_object_get(config, "rootfs"), "diff_ids");
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
        char *body = kn_image_slurp_at(storefd, path, 256, &len, &ignored);
        const char *nl = body ? strchr(body, '\n') : NULL;
        if (nl)
            total += strtoull(nl + 1, NULL, 10);
        free(body);
    }
    return total;
}

int
kn_image_store_image(int storefd, const kn_image_blobs_t *b, const char *name, json_t *extra,
                     kn_image_info_t *info, kn_error_t *err)
{
    if (store_blob(storefd, b->config_hex, b->config_raw, b->config_len, err) < 0 ||
        store_blob(storefd, b->manifest_hex, b->manifest_raw, b->manifest_len, err) < 0)
        return -1;
    snprintf(info->digest, sizeof info->digest, "sha256:%s", b->manifest_hex);
    snprintf(info->config_digest, sizeof info->config_digest, "sha256:%s", b->config_hex);
    now_rfc3339(info->imported, sizeof info->imported);
    info->n_layers =
        json_array_size(json_object_get(json_object_get(b->config, "rootfs"), "diff_ids"));
    info->size = record_size(b->config, storefd);
    json_t *rec = json_pack("{s:s,s:s,s:s,s:I,s:I}", "digest", info->digest, "config",
                            info->config_digest, "imported", info->imported, "layers",
                            (json_int_t)info->n_layers, "size", (json_int_t)info->size);
    if (rec && extra)
        json_object_update(rec, extra);
    char *body = rec ? json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(rec);
    if (!body)
        return kn_error_set(err, ENOMEM, "image record");
    int rc = kn_image_write_atomic(storefd, "images", b->manifest_hex, body, strlen(body), err);
    free(body);
    if (rc < 0)
        return -1;
    if (name) {
        char norm[300];
        if (kn_image_ref_normalize(name, norm, sizeof norm, err) < 0 ||
            kn_image_ref_write(storefd, name, b->manifest_hex, err) < 0)
            return -1;
        kn_image_strv_free(info->names);
        info->names = calloc(2, sizeof *info->names);
        if (info->names)
            info->names[0] = strdup(norm);
    }
    return 0;
}

static int
finish_import(importer_t *im, parsed_t *p, const char *name, kn_error_t *err)
{
    kn_image_blobs_t b = {.config = p->config,
                          .config_raw = p->config_raw,
                          .config_len = p->config_len,
                          .manifest_raw = p->manifest_raw,
                          .manifest_len = p->manifest_len};
    memcpy(b.config_hex, p->config_hex, sizeof b.config_hex);
    memcpy(b.manifest_hex, p->manifest_hex, sizeof b.manifest_hex);
    const char *ref = name ? name : (p->name[0] ? p->name : NULL);
    return kn_image_store_image(im->store, &b, ref, NULL, im->info, err);
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

/* A root file system tarball as a one-layer image: its layer, and a config
 * and manifest written for it. */
static int
parse_rootfs(importer_t *im, source_t *src, const char *path, parsed_t *p, kn_error_t *err)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return kn_error_set(err, errno, "%s", path);
    if (S_ISDIR(st.st_mode))
        return kn_error_set(err, ENOTSUP,
                            "--rootfs takes a tarball; a root directory runs as it is with "
                            "--image %s",
                            path);
    src->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (src->fd < 0 || !(src->m = calloc(1, sizeof *src->m)))
        return kn_error_set(err, errno, "%s", path);
    src->m[0] = (member_t){
        .name = strdup("rootfs"), .link = strdup(""), .type = '0', .size = (uint64_t)st.st_size};
    src->n = 1;
    hex_t diff = "";
    if (import_layer(im, "rootfs", NULL, diff, 0, err) < 0)
        return -1;
    char dd[80], cd[80];
    snprintf(dd, sizeof dd, "sha256:%s", diff);
    p->config = json_pack("{s:s,s:s,s:{s:[s]},s:{s:s,s:[s]}}", "architecture", host_arch(), "os",
                          "linux", "config", "Env",
                          "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                          "rootfs", "type", "layers", "diff_ids", dd);
    p->config_raw = p->config ? json_dumps(p->config, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (!p->config_raw)
        return kn_error_set(err, ENOMEM, "config");
    p->config_len = strlen(p->config_raw);
    kn_image_sha_hex(p->config_raw, p->config_len, p->config_hex);
    snprintf(cd, sizeof cd, "sha256:%s", p->config_hex);
    p->manifest = json_pack("{s:i,s:s,s:{s:s,s:s,s:I},s:[{s:s,s:s,s:I}]}", "schemaVersion", 2,
                            "mediaType", "application/vnd.oci.image.manifest.v1+json", "config",
                            "mediaType", "application/vnd.oci.image.config.v1+json", "digest", cd,
                            "size", (json_int_t)p->config_len, "layers", "mediaType",
                            "application/vnd.oci.image.layer.v1.tar", "digest", dd, "size",
                            (json_int_t)st.st_size);
    p->manifest_raw = p->manifest ? json_dumps(p->manifest, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (!p->manifest_raw)
        return kn_error_set(err, ENOMEM, "manifest");
    p->manifest_len = strlen(p->manifest_raw);
    kn_image_sha_hex(p->manifest_raw, p->manifest_len, p->manifest_hex);
    return 0;
}

static int
do_import(const char *store, const char *path, const char *name, const kn_image_import_opts_t *o,
          kn_image_info_t *info, kn_error_t *err)
{
    kn_image_info_t local = {0};
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    if (name) {
        char norm[300];
        if (strchr(name, '@') || kn_image_ref_normalize(name, norm, sizeof norm, err) < 0)
            return name && strchr(name, '@')
                       ? kn_error_set(err, EINVAL, "--name takes NAME:TAG, not a digest")
                       : -1;
    }
    source_t src = {.dirfd = -1, .fd = -1};
    parsed_t p = {0};
    int lock = -1, rc = -1;
    int storefd = kn_image_store_open(store, true, err);
    if (storefd < 0)
        return -1;
    if ((lock = kn_image_store_lock(storefd, LOCK_SH, err)) < 0)
        goto out;
    importer_t im = {.store = storefd, .src = &src, .info = info, .iopts = o, .n_layers = 1};
    bool rootfs = o && o->rootfs;
    importer_ids(&im);
    if (rootfs) {
        if (parse_rootfs(&im, &src, path, &p, err) < 0)
            goto out;
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
    return do_import(store, path, name, NULL, info, err);
}

int
kn_image_import_rootfs(const char *store, const char *path, const char *name, kn_image_info_t *info,
                       kn_error_t *err)
{
    kn_image_import_opts_t o = {.rootfs = true};
    return do_import(store, path, name, &o, info, err);
}

int
kn_image_import_with(const char *store, const char *path, const char *name,
                     const kn_image_import_opts_t *opts, kn_image_info_t *info, kn_error_t *err)
{
    return do_import(store, path, name, opts, info, err);
}

void
kn_image_now(char *out, size_t cap)
{
    now_rfc3339(out, cap);
}

const char *
kn_image_host_arch(void)
{
    return host_arch();
}
