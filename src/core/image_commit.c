/* image_commit.c - a sandbox's writable layer becomes a new image (a
 * snapshot): the layer on top of the image the sandbox ran.
 *
 * The layer's upper directory (overlayfs form: whiteouts are 0/0 character
 * devices, opaque directories carry user.overlay.opaque=y) is written as an
 * OCI layer tar (whiteouts as .wh.NAME, opaque directories as
 * .wh..wh..opq) by a child process into a pipe, and the parent unpacks that
 * stream into the store exactly as an imported layer is unpacked: the same
 * tar reader and its rules (nothing leaves the layer, device nodes are
 * skipped, setuid and setgid bits cleared), hashed on the way (its diff_id),
 * staged in tmp/ and renamed into layers/ only when whole. A commit that
 * fails anywhere (a full disk included) leaves no layer, image or ref.
 *
 * Entries the layer format cannot hold are left out and counted: sockets,
 * device nodes other than whiteouts, names beginning ".wh." (the format's
 * own), and the top-level .kennel directory (kennel's mount points). A
 * relative symlink that climbs above the root is written as the absolute
 * path it resolves to (the tar reader refuses the former). */
#include "image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "image_internal.h"
#include "sandbox_internal.h"
#include "tar.h"
#include "util.h"

#define MAX_DEPTH 256
#define WBUF (1u << 16)

/* --- the tar writer (runs in the child) ----------------------------------- */

typedef struct hlink {
    dev_t dev;
    ino_t ino;
    char *path;
} hlink_t;

typedef struct writer {
    int out;
    unsigned char buf[WBUF];
    size_t n;
    uid_t uid_base;
    gid_t gid_base;
    bool mapped; /* ids are uid_base + id (a root launcher) */
    hlink_t *links;
    size_t n_links, cap_links;
    kn_image_commit_stats_t st;
    char *io; /* file data buffer */
    kn_error_t *err;
} writer_t;

static int
w_flush(writer_t *w)
{
    if (w->n && kn_write_all(w->out, w->buf, w->n) < 0)
        return kn_error_set(w->err, errno, "write the layer");
    w->n = 0;
    return 0;
}

static int
w_put(writer_t *w, const void *data, size_t len)
{
    const unsigned char *p = data;
    while (len) {
        size_t k = WBUF - w->n < len ? WBUF - w->n : len;
        memcpy(w->buf + w->n, p, k);
        w->n += k;
        p += k;
        len -= k;
        if (w->n == WBUF && w_flush(w) < 0)
            return -1;
    }
    return 0;
}

static int
w_pad(writer_t *w, uint64_t size)
{
    static const unsigned char zero[512];
    size_t pad = (size_t)((512 - size % 512) % 512);
    return pad ? w_put(w, zero, pad) : 0;
}

static void
octal(char *field, size_t width, uint64_t v)
{
    snprintf(field, width, "%0*llo", (int)width - 1, (unsigned long long)v);
}

/* One pax record "LEN key=value\n" (LEN counts itself). */
static size_t
pax_record(char *out, size_t cap, const char *key, const char *value)
{
    size_t body = strlen(key) + strlen(value) + 3; /* ' ', '=', '\n' */
    size_t len = body + 1;
    for (;;) {
        char digits[24];
        size_t d = (size_t)snprintf(digits, sizeof digits, "%zu", len);
        if (d + body == len)
            break;
        len = d + body;
    }
    return (size_t)snprintf(out, cap, "%zu %s=%s\n", len, key, value);
}

static int
w_header(writer_t *w, const char *name, char type, mode_t mode, uint64_t uid, uint64_t gid,
         uint64_t size, int64_t mtime, const char *link)
{
    char pax[2 * PATH_MAX + 256];
    size_t plen = 0;
    if (strlen(name) > 99)
        plen += pax_record(pax + plen, sizeof pax - plen, "path", name);
    if (link && strlen(link) > 99)
        plen += pax_record(pax + plen, sizeof pax - plen, "linkpath", link);
    if (size > 077777777777ull) {
        char v[24];
        snprintf(v, sizeof v, "%llu", (unsigned long long)size);
        plen += pax_record(pax + plen, sizeof pax - plen, "size", v);
    }
    if (plen) {
        if (plen >= sizeof pax)
            return kn_error_set(w->err, ENAMETOOLONG, "'%s' is too long for the layer", name);
        if (w_header(w, "././@PaxHeader", 'x', 0644, 0, 0, plen, mtime, NULL) < 0 ||
            w_put(w, pax, plen) < 0 || w_pad(w, plen) < 0)
            return -1;
    }
    unsigned char h[512] = {0};
    snprintf((char *)h, 100, "%.99s", name);
    octal((char *)h + 100, 8, mode & 07777);
    octal((char *)h + 108, 8, uid > 07777777 ? 07777777 : uid);
    octal((char *)h + 116, 8, gid > 07777777 ? 07777777 : gid);
    octal((char *)h + 124, 12, size > 077777777777ull ? 0 : size);
    octal((char *)h + 136, 12, mtime < 0 ? 0 : (uint64_t)mtime);
    h[156] = (unsigned char)type;
    if (link)
        snprintf((char *)h + 157, 100, "%.99s", link);
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
    return w_put(w, h, sizeof h);
}

/* Host ids of the layer's files as ids inside the image. */
static uint64_t
inside_id(const writer_t *w, uint64_t host, uint64_t base)
{
    if (w->mapped)
        return host >= base && host - base < KN_ROOTMAP_LEN ? host - base : 65534;
    return host == base ? 0 : 65534;
}

/* A relative target that climbs above the root, as the absolute path it
 * resolves to inside the sandbox (".." at "/" stays at "/"). */
static void
absolute_target(const char *path, const char *target, char *out, size_t cap)
{
    char joined[2 * PATH_MAX + 2];
    const char *slash = strrchr(path, '/');
    snprintf(joined, sizeof joined, "%.*s/%s", slash ? (int)(slash - path) : 0, path, target);
    char *parts[PATH_MAX / 2];
    size_t n = 0;
    for (char *save = NULL, *c = strtok_r(joined, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!strcmp(c, "."))
            continue;
        if (!strcmp(c, "..")) {
            if (n)
                n--;
            continue;
        }
        if (n < sizeof parts / sizeof parts[0])
            parts[n++] = c;
    }
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "/%s", parts[i]);
    if (!n)
        snprintf(out, cap, "/");
}

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of a directory, sorted (the layer is the same for the same tree). */
static char **
list_dir(int fd, size_t *count, kn_error_t *err)
{
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    DIR *d = dup >= 0 ? fdopendir(dup) : NULL;
    if (!d) {
        if (dup >= 0)
            close(dup);
        kn_error_set(err, errno, "read a directory of the layer");
        return NULL;
    }
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    bool oom = false;
    while (!oom && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (n + 1 >= cap) {
            char **g = realloc(v, (cap = cap ? cap * 2 : 32) * sizeof *g);
            if (!g) {
                oom = true;
                break;
            }
            v = g;
        }
        if (!(v[n] = strdup(e->d_name)))
            oom = true;
        else
            n++;
    }
    closedir(d);
    if (oom) {
        for (size_t i = 0; i < n; i++)
            free(v[i]);
        free(v);
        kn_error_set(err, ENOMEM, "list a directory of the layer");
        return NULL;
    }
    if (!v && !(v = calloc(1, sizeof *v))) {
        kn_error_set(err, ENOMEM, "list a directory of the layer");
        return NULL;
    }
    qsort(v, n, sizeof *v, cmp_names);
    v[n] = NULL;
    *count = n;
    return v;
}

static int
w_file(writer_t *w, int dfd, const char *name, const char *path, const struct stat *st)
{
    uint64_t uid = inside_id(w, st->st_uid, w->uid_base);
    uint64_t gid = inside_id(w, st->st_gid, w->gid_base);
    if (st->st_nlink > 1) {
        for (size_t i = 0; i < w->n_links; i++)
            if (w->links[i].dev == st->st_dev && w->links[i].ino == st->st_ino)
                return w_header(w, path, '1', st->st_mode, uid, gid, 0, st->st_mtime,
                                w->links[i].path);
        if (w->n_links == w->cap_links) {
            size_t nc = w->cap_links ? w->cap_links * 2 : 64;
            hlink_t *g = realloc(w->links, nc * sizeof *g);
            if (!g)
                return kn_error_set(w->err, ENOMEM, "hard links");
            w->links = g;
            w->cap_links = nc;
        }
        char *copy = strdup(path);
        if (!copy)
            return kn_error_set(w->err, ENOMEM, "hard links");
        w->links[w->n_links++] = (hlink_t){st->st_dev, st->st_ino, copy};
    }
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return kn_error_set(w->err, errno, "open '%s'", path);
    /* The size in the header is the size now; a file that changes while it
     * is read (the sandbox is frozen, so it should not) is cut or padded. */
    uint64_t size = (uint64_t)st->st_size, done = 0;
    int rc = w_header(w, path, '0', st->st_mode, uid, gid, size, st->st_mtime, NULL);
    while (rc == 0 && done < size) {
        size_t want = size - done < IOBUF ? (size_t)(size - done) : IOBUF;
        ssize_t r = read(fd, w->io, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = kn_error_set(w->err, errno, "read '%s'", path);
            break;
        }
        if (r == 0) {
            memset(w->io, 0, want);
            r = (ssize_t)want;
        }
        rc = w_put(w, w->io, (size_t)r);
        done += (uint64_t)r;
    }
    close(fd);
    w->st.files++;
    w->st.bytes += size;
    return rc < 0 ? -1 : w_pad(w, size);
}

static int w_dir(writer_t *w, int fd, char *path, size_t plen, int depth);

static int
w_entry(writer_t *w, int dfd, const char *name, char *path, size_t plen, int depth)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return kn_error_set(w->err, errno, "stat '%s%s'", path, name);
    if (depth == 0 && !strcmp(name, ".kennel"))
        return 0; /* kennel's own mount points (execd's binary) */
    if (!strncmp(name, ".wh.", 4)) {
        w->st.skipped++; /* the layer format's own names: it cannot hold them */
        return 0;
    }
    size_t nlen = strlen(name);
    if (plen + nlen + 2 >= PATH_MAX)
        return kn_error_set(w->err, ENAMETOOLONG, "a path of the layer is too long: %s%s", path,
                            name);
    char *full = path; /* path holds "dir/" (or ""); append the name */
    memcpy(full + plen, name, nlen + 1);
    uint64_t uid = inside_id(w, st.st_uid, w->uid_base);
    uint64_t gid = inside_id(w, st.st_gid, w->gid_base);
    int rc = 0;
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
        char wh[PATH_MAX + 8];
        snprintf(wh, sizeof wh, "%.*s.wh.%s", (int)plen, path, name);
        rc = w_header(w, wh, '0', 0644, 0, 0, 0, st.st_mtime, NULL);
        w->st.whiteouts++;
    } else if (S_ISDIR(st.st_mode)) {
        if (depth + 1 >= MAX_DEPTH) {
            rc = kn_error_set(w->err, ELOOP, "the layer's tree is deeper than %d levels at %s",
                              MAX_DEPTH, full);
        } else {
            int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                rc = kn_error_set(w->err, errno, "open '%s'", full);
            } else {
                memcpy(full + plen + nlen, "/", 2);
                rc = w_header(w, full, '5', st.st_mode, uid, gid, 0, st.st_mtime, NULL);
                char opq[4] = {0};
                if (rc == 0 && fgetxattr(sub, "user.overlay.opaque", opq, sizeof opq - 1) > 0 &&
                    opq[0] == 'y') {
                    char o[PATH_MAX + 16];
                    snprintf(o, sizeof o, "%s.wh..wh..opq", full);
                    rc = w_header(w, o, '0', 0644, 0, 0, 0, st.st_mtime, NULL);
                    w->st.opaque++;
                }
                if (rc == 0)
                    rc = w_dir(w, sub, full, plen + nlen + 1, depth + 1);
                close(sub);
            }
        }
    } else if (S_ISREG(st.st_mode)) {
        rc = w_file(w, dfd, name, full, &st);
    } else if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX], fixed[PATH_MAX];
        ssize_t n = readlinkat(dfd, name, target, sizeof target - 1);
        if (n < 0) {
            rc = kn_error_set(w->err, errno, "readlink '%s'", full);
        } else {
            target[n] = '\0';
            kn_error_t ignored = {0};
            const char *t = target;
            if (target[0] != '/' && kn_tar_symlink_check(full, target, &ignored) < 0) {
                absolute_target(full, target, fixed, sizeof fixed);
                t = fixed;
                w->st.symlinks_rewritten++;
            }
            rc = w_header(w, full, '2', st.st_mode, uid, gid, 0, st.st_mtime, t);
        }
    } else if (S_ISFIFO(st.st_mode)) {
        rc = w_header(w, full, '6', st.st_mode, uid, gid, 0, st.st_mtime, NULL);
    } else {
        w->st.skipped++; /* sockets, device nodes */
    }
    path[plen] = '\0';
    return rc;
}

static int
w_dir(writer_t *w, int fd, char *path, size_t plen, int depth)
{
    size_t n = 0;
    char **names = list_dir(fd, &n, w->err);
    if (!names)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = w_entry(w, fd, names[i], path, plen, depth);
        free(names[i]);
    }
    free(names);
    return rc;
}

/* The child: the whole tar of upper_fd into out. Its result (an error, the
 * counts) goes into report as one struct. */
typedef struct report {
    int ok;
    kn_error_t err;
    kn_image_commit_stats_t st;
} report_t;

static __attribute__((noreturn)) void
writer_main(int upper_fd, int out, int report_fd, uid_t uid_base, gid_t gid_base, bool mapped)
{
    signal(SIGPIPE, SIG_IGN);
    report_t rep = {0};
    writer_t *w = calloc(1, sizeof *w);
    char *path = malloc(PATH_MAX);
    int rc = -1;
    if (w && path && (w->io = malloc(IOBUF))) {
        w->out = out;
        w->uid_base = uid_base;
        w->gid_base = gid_base;
        w->mapped = mapped;
        w->err = &rep.err;
        path[0] = '\0';
        static const unsigned char end[1024];
        rc = w_dir(w, upper_fd, path, 0, 0);
        if (rc == 0)
            rc = w_put(w, end, sizeof end);
        if (rc == 0)
            rc = w_flush(w);
        rep.st = w->st;
    } else {
        kn_error_set(&rep.err, ENOMEM, "layer writer");
    }
    rep.ok = rc == 0;
    kn_write_all(report_fd, &rep, sizeof rep);
    _exit(rc == 0 ? 0 : 1);
}

/* --- the reading side ------------------------------------------------------ */

typedef struct pipe_src {
    int fd;
} pipe_src_t;

static ssize_t
pipe_read(void *ctx, void *buf, size_t n, kn_error_t *err)
{
    pipe_src_t *p = ctx;
    for (;;) {
        ssize_t r = read(p->fd, buf, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return kn_error_set(err, errno, "read the layer stream");
        return r;
    }
}

/* Writes the layer of upper_fd into the store: diff_hex, tar_bytes. */
static int
capture_layer(int storefd, int upper_fd, char *diff_hex, uint64_t *tar_bytes, kn_image_info_t *info,
              kn_image_commit_stats_t *st, kn_error_t *err)
{
    int data[2] = {-1, -1}, rep[2] = {-1, -1};
    if (pipe2(data, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0) {
        int e = errno;
        if (data[0] >= 0)
            close(data[0]), close(data[1]);
        return kn_error_set(err, e, "pipe");
    }
    bool mapped = geteuid() == 0;
    uid_t ub = mapped ? KN_ROOTMAP_BASE : geteuid();
    gid_t gb = mapped ? KN_ROOTMAP_BASE : getegid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(data[0]), close(data[1]), close(rep[0]), close(rep[1]);
        return kn_error_set(err, e, "fork the layer writer");
    }
    if (pid == 0) {
        close(data[0]);
        close(rep[0]);
        writer_main(upper_fd, data[1], rep[1], ub, gb, mapped);
    }
    close(data[1]);
    close(rep[1]);
    pipe_src_t ps = {data[0]};
    kn_error_t serr = {0};
    int rc = kn_image_store_layer(storefd, (kn_tar_src_t){pipe_read, NULL, &ps}, diff_hex,
                                  tar_bytes, info, &serr);
    close(data[0]); /* a writer still writing gets EPIPE and ends */
    report_t r = {0};
    ssize_t got = kn_read_all(rep[0], &r, sizeof r);
    close(rep[0]);
    int wst = 0;
    while (waitpid(pid, &wst, 0) < 0 && errno == EINTR)
        ;
    /* The writer's own error (it could not read the sandbox's tree) says
     * more than the reader's "truncated archive". */
    if (got == (ssize_t)sizeof r && !r.ok && (rc == 0 || r.err.code != EPIPE)) {
        *err = r.err;
        return kn_error_prefix(err, "read the writable layer");
    }
    if (rc < 0) {
        *err = serr;
        return -1;
    }
    if (got != (ssize_t)sizeof r || !WIFEXITED(wst) || WEXITSTATUS(wst) != 0)
        return kn_error_set(err, EIO, "the layer writer ended without a result");
    *st = r.st;
    return 0;
}

/* --- the new image ------------------------------------------------------------ */

static json_t *
layer_descriptor(const char *diff_hex, uint64_t tar_bytes)
{
    char d[80];
    snprintf(d, sizeof d, "sha256:%s", diff_hex);
    return json_pack("{s:s,s:s,s:I}", "mediaType", "application/vnd.oci.image.layer.v1.tar",
                     "digest", d, "size", (json_int_t)tar_bytes);
}

/* The config and manifest of the new image: the base's with one more layer,
 * or fresh ones for a host or directory base. */
static int
build_image(int storefd, const kn_image_t *base, const kn_image_commit_opts_t *o,
            const char *diff_hex, uint64_t tar_bytes, json_t **config, json_t **manifest,
            kn_error_t *err)
{
    char now[32], diff[80];
    kn_image_now(now, sizeof now);
    snprintf(diff, sizeof diff, "sha256:%s", diff_hex);
    json_t *c = NULL, *m = NULL;
    if (base) {
        json_t *bc = kn_image_blob_json(storefd, base->config_digest + 7, "config", err);
        json_t *bm = bc ? kn_image_blob_json(storefd, base->digest + 7, "manifest", err) : NULL;
        c = bc ? json_deep_copy(bc) : NULL;
        m = bm ? json_deep_copy(bm) : NULL;
        json_decref(bc);
        json_decref(bm);
        if (!c || !m) {
            json_decref(c);
            json_decref(m);
            return err->msg[0] ? -1 : kn_error_set(err, ENOMEM, "image config");
        }
    } else {
        c = json_pack("{s:s,s:s,s:{},s:{s:s,s:[]}}", "architecture", kn_image_host_arch(), "os",
                      "linux", "config", "rootfs", "type", "layers", "diff_ids");
        m = json_pack("{s:i,s:s,s:[]}", "schemaVersion", 2, "mediaType",
                      "application/vnd.oci.image.manifest.v1+json", "layers");
        if (c && m && o->base_root)
            json_object_set_new(
                c, "config", json_pack("{s:{s:s}}", "Labels", KN_IMAGE_LABEL_BASE, o->base_root));
    }
    if (!c || !m) {
        json_decref(c);
        json_decref(m);
        return kn_error_set(err, ENOMEM, "image config");
    }
    json_t *cc = json_object_get(c, "config");
    if (!json_is_object(cc)) {
        json_object_set_new(c, "config", json_object());
        cc = json_object_get(c, "config");
    }
    json_t *labels = json_object_get(cc, "Labels");
    if (!json_is_object(labels)) {
        json_object_set_new(cc, "Labels", json_object());
        labels = json_object_get(cc, "Labels");
    }
    for (const char *const *l = o->labels; l && *l; l++) {
        const char *eq = strchr(*l, '=');
        if (!eq)
            continue;
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(eq - *l), *l);
        json_object_set_new(labels, key, json_string(eq + 1));
    }
    json_t *rootfs = json_object_get(c, "rootfs");
    json_t *diffs = json_object_get(rootfs, "diff_ids");
    json_t *layers = json_object_get(m, "layers");
    if (!json_is_array(diffs) || !json_is_array(layers)) {
        json_decref(c);
        json_decref(m);
        return kn_error_set(err, EINVAL, "the base image has no layer list");
    }
    json_array_append_new(diffs, json_string(diff));
    json_array_append_new(layers, layer_descriptor(diff_hex, tar_bytes));
    json_t *hist = json_object_get(c, "history");
    if (!json_is_array(hist)) {
        json_object_set_new(c, "history", json_array());
        hist = json_object_get(c, "history");
    }
    json_array_append_new(hist, json_pack("{s:s,s:s}", "created", now, "created_by",
                                          o->comment ? o->comment : "kennel snapshot"));
    json_object_set_new(c, "created", json_string(now));
    *config = c;
    *manifest = m;
    return 0;
}

int
kn_image_commit(const char *store, int upper_fd, const kn_image_commit_opts_t *o,
                kn_image_info_t *info, kn_image_commit_stats_t *stats, kn_error_t *err)
{
    memset(info, 0, sizeof *info);
    kn_image_commit_stats_t st_local = {0};
    if (!stats)
        stats = &st_local;
    memset(stats, 0, sizeof *stats);
    if (!o->base && (!o->base_root || (strcmp(o->base_root, "host") && o->base_root[0] != '/')))
        return kn_error_set(err, EINVAL,
                            "a snapshot needs its base: an image, host or a rootfs "
                            "directory");
    if (o->name) {
        char norm[300];
        if (strchr(o->name, '@') || kn_image_ref_normalize(o->name, norm, sizeof norm, err) < 0)
            return strchr(o->name, '@') ? kn_error_set(err, EINVAL, "a name is NAME[:TAG]") : -1;
    }
    kn_image_t *base = NULL;
    json_t *config = NULL, *manifest = NULL;
    char *craw = NULL, *mraw = NULL;
    int lock = -1, rc = -1;
    /* The store is read by every sandbox's user: what is made here must be
     * as an import makes it, whatever the caller's mask (the server's shim
     * runs with 077). umask is the process's: callers are single-threaded. */
    mode_t mask = umask(022);
    int storefd = kn_image_store_open(store, true, err);
    if (storefd < 0) {
        umask(mask);
        return -1;
    }
    /* Shared, as an import: prune cannot take the new layer before the
     * image that uses it is written. */
    if ((lock = kn_image_store_lock(storefd, LOCK_SH, err)) < 0)
        goto out;
    if (o->base && kn_image_open_digest(store, o->base, false, &base, err) < 0) {
        kn_error_prefix(err, "the snapshot's base");
        goto out;
    }
    hex_t diff = "";
    uint64_t tar_bytes = 0;
    if (capture_layer(storefd, upper_fd, diff, &tar_bytes, info, stats, err) < 0)
        goto out;
    if (build_image(storefd, base, o, diff, tar_bytes, &config, &manifest, err) < 0)
        goto out;
    craw = json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS);
    if (!craw) {
        kn_error_set(err, ENOMEM, "image config");
        goto out;
    }
    kn_image_blobs_t b = {.config = config, .config_raw = craw, .config_len = strlen(craw)};
    kn_image_sha_hex(craw, b.config_len, b.config_hex);
    char cd[80];
    snprintf(cd, sizeof cd, "sha256:%s", b.config_hex);
    json_object_set_new(manifest, "config",
                        json_pack("{s:s,s:s,s:I}", "mediaType",
                                  "application/vnd.oci.image.config.v1+json", "digest", cd, "size",
                                  (json_int_t)b.config_len));
    mraw = json_dumps(manifest, JSON_COMPACT | JSON_SORT_KEYS);
    if (!mraw) {
        kn_error_set(err, ENOMEM, "manifest");
        goto out;
    }
    b.manifest_raw = mraw;
    b.manifest_len = strlen(mraw);
    kn_image_sha_hex(mraw, b.manifest_len, b.manifest_hex);
    json_t *extra = json_pack("{s:s}", "source", "snapshot");
    rc = kn_image_store_image(storefd, &b, o->name, extra, info, err);
    json_decref(extra);
out:
    free(craw);
    free(mraw);
    json_decref(config);
    json_decref(manifest);
    kn_image_close(base);
    if (lock >= 0)
        close(lock);
    close(storefd);
    umask(mask);
    if (rc < 0)
        kn_image_info_free(info);
    return rc;
}
