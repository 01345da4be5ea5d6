/* files.c - the files and directories API: info, delete, permissions, mv,
 * search, replace, download, directories. Every path goes through fspath.c. */
#include "files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fspath.h"
#include "handlers.h"
#include "util.h"
#include "core/utf8.h"

#define KN_FILES_MAX_RESULTS 100000
#define KN_FILES_MAX_DEPTH 64
#define KN_FILES_MAX_REPLACE (256 * 1024 * 1024)

enum MHD_Result
kn_files_reply_err(kn_req_t *req, const kn_error_t *err)
{
    switch (err->code) {
    case ENOENT:
        return kn_http_reply_error(req, 404, "FILE_NOT_FOUND", "%s", err->msg);
    case EACCES:
    case EPERM:
        return kn_http_reply_error(req, 403, "PERMISSION_DENIED", "%s", err->msg);
    case EEXIST:
    case ENOTEMPTY:
        return kn_http_reply_error(req, 409, "FILE_EXISTS", "%s", err->msg);
    case EINVAL:
    case ENAMETOOLONG:
    case ENOTDIR:
    case EISDIR:
    case ELOOP:
    case EXDEV:
        return kn_http_reply_error(req, 400, "INVALID_FILE", "%s", err->msg);
    default:
        return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "%s", err->msg);
    }
}

int
kn_files_apply_perm(int fd, const kn_users_t *u, long long mode, const char *owner,
                    const char *group, kn_error_t *err)
{
    if (mode) {
        mode_t m;
        if (kn_util_mode_from_decimal(mode, &m) < 0)
            return kn_error_set(err, EINVAL, "mode %lld is not octal digits", mode);
        if (fchmod(fd, m) < 0)
            return kn_error_set(err, errno, "chmod");
    }
    long uid = -1, gid = -1;
    if (owner && *owner && (uid = kn_users_id(u, 0, owner)) < 0)
        return kn_error_set(err, EINVAL, "unknown owner %s", owner);
    if (group && *group && (gid = kn_users_id(u, 1, group)) < 0)
        return kn_error_set(err, EINVAL, "unknown group %s", group);
    if ((uid >= 0 || gid >= 0) && fchown(fd, (uid_t)uid, (gid_t)gid) < 0)
        return kn_error_set(err, errno, "chown");
    return 0;
}

static json_t *
file_info(const char *path, const struct statx *sx, const kn_users_t *u)
{
    const char *type = "other";
    if (S_ISREG(sx->stx_mode))
        type = "file";
    else if (S_ISDIR(sx->stx_mode))
        type = "directory";
    else if (S_ISLNK(sx->stx_mode))
        type = "symlink";
    char mt[48], ct[48], owner[64], group[64];
    kn_util_rfc3339(mt, sizeof mt, (time_t)sx->stx_mtime.tv_sec, (long)sx->stx_mtime.tv_nsec);
    const struct statx_timestamp *b =
        (sx->stx_mask & STATX_BTIME) ? &sx->stx_btime : &sx->stx_ctime;
    kn_util_rfc3339(ct, sizeof ct, (time_t)b->tv_sec, (long)b->tv_nsec);
    kn_users_name(u, 0, sx->stx_uid, owner, sizeof owner);
    kn_users_name(u, 1, sx->stx_gid, group, sizeof group);
    size_t len;
    char *p = kn_utf8_clean(path, strlen(path), &len);
    json_t *o =
        json_pack("{s:s%,s:s,s:I,s:s,s:s,s:s,s:s,s:i}", "path", p ? p : "", len, "type", type,
                  "size", (json_int_t)sx->stx_size, "modified_at", mt, "created_at", ct, "owner",
                  owner, "group", group, "mode", kn_util_mode_to_decimal(sx->stx_mode));
    free(p);
    return o;
}

/* lstat-like: the last component is not followed. */
static int
stat_path(const kn_execd_t *ex, const char *path, struct statx *sx, kn_error_t *err)
{
    char base[NAME_MAX + 1];
    int dir;
    if (strcmp(path, "/") == 0 || !*path) {
        dir = kn_fspath_open(ex, "/", O_PATH | O_DIRECTORY, 0, err);
        strcpy(base, "");
    } else {
        dir = kn_fspath_parent(ex, path, base, err);
    }
    if (dir < 0)
        return -1;
    int r = statx(dir, base, AT_SYMLINK_NOFOLLOW | (*base ? 0 : AT_EMPTY_PATH),
                  STATX_BASIC_STATS | STATX_BTIME, sx);
    int e = errno;
    close(dir);
    if (r < 0)
        return kn_error_set(err, e, "%s", path);
    return 0;
}

struct qpaths {
    const char *v[256];
    int n;
};

static enum MHD_Result
collect_path(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct qpaths *q = cls;
    if (strcmp(key, "path") == 0 && value && q->n < 256)
        q->v[q->n++] = value;
    return MHD_YES;
}

static void
query_paths(kn_req_t *req, struct qpaths *q)
{
    q->n = 0;
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, collect_path, q);
}

enum MHD_Result
kn_files_info(kn_req_t *req)
{
    struct qpaths q;
    query_paths(req, &q);
    kn_users_t *u = kn_users_load(req->ex);
    json_t *out = json_object();
    for (int i = 0; i < q.n; i++) {
        struct statx sx;
        kn_error_t err = {0};
        if (stat_path(req->ex, q.v[i], &sx, &err) < 0) {
            json_decref(out);
            kn_users_free(u);
            return kn_files_reply_err(req, &err);
        }
        json_object_set_new(out, q.v[i], file_info(q.v[i], &sx, u));
    }
    kn_users_free(u);
    return kn_http_reply_json(req, 200, out);
}

enum MHD_Result
kn_files_delete(kn_req_t *req)
{
    struct qpaths q;
    query_paths(req, &q);
    for (int i = 0; i < q.n; i++) {
        kn_error_t err = {0};
        char base[NAME_MAX + 1];
        int dir = kn_fspath_parent(req->ex, q.v[i], base, &err);
        if (dir < 0) {
            if (err.code == ENOENT)
                continue;
            return kn_files_reply_err(req, &err);
        }
        int r = unlinkat(dir, base, 0);
        int e = errno;
        close(dir);
        if (r < 0 && e != ENOENT) {
            if (e == EISDIR)
                return kn_http_reply_error(req, 500, "RUNTIME_ERROR",
                                           "%s is a directory (use DELETE /directories)", q.v[i]);
            kn_error_set(&err, e, "delete %s", q.v[i]);
            return kn_files_reply_err(req, &err);
        }
    }
    return kn_http_reply_empty(req, 200);
}

static int
perm_fields(json_t *spec, long long *mode, const char **owner, const char **group)
{
    json_t *m = json_object_get(spec, "mode"), *o = json_object_get(spec, "owner"),
           *g = json_object_get(spec, "group");
    if (!json_is_object(spec) || (m && !json_is_null(m) && !json_is_integer(m)) ||
        (o && !json_is_null(o) && !json_is_string(o)) ||
        (g && !json_is_null(g) && !json_is_string(g)))
        return -1;
    *mode = json_is_integer(m) ? json_integer_value(m) : 0;
    *owner = json_is_string(o) ? json_string_value(o) : NULL;
    *group = json_is_string(g) ? json_string_value(g) : NULL;
    mode_t tmp;
    return kn_util_mode_from_decimal(*mode, &tmp);
}

enum MHD_Result
kn_files_permissions(kn_req_t *req)
{
    enum MHD_Result r;
    json_t *body = kn_http_json_body(req, false, &r);
    if (!body)
        return r;
    const char *path;
    json_t *spec;
    if (!json_is_object(body)) {
        r = kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY", "body must be an object");
        goto out;
    }
    kn_users_t *u = kn_users_load(req->ex);
    json_object_foreach(body, path, spec)
    {
        long long mode;
        const char *owner, *group;
        kn_error_t err = {0};
        if (perm_fields(spec, &mode, &owner, &group) < 0) {
            r = kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                    "bad permission object for %s", path);
            kn_users_free(u);
            goto out;
        }
        int fd = kn_fspath_open(req->ex, path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, &err);
        if (fd < 0 || kn_files_apply_perm(fd, u, mode, owner, group, &err) < 0) {
            if (fd >= 0)
                close(fd);
            kn_users_free(u);
            r = kn_files_reply_err(req, &err);
            goto out;
        }
        close(fd);
    }
    kn_users_free(u);
    r = kn_http_reply_empty(req, 200);
out:
    json_decref(body);
    return r;
}

enum MHD_Result
kn_files_mv(kn_req_t *req)
{
    enum MHD_Result r;
    json_t *body = kn_http_json_body(req, false, &r);
    if (!body)
        return r;
    size_t i;
    json_t *item;
    if (!json_is_array(body)) {
        r = kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY", "body must be an array");
        goto out;
    }
    json_array_foreach(body, i, item)
    {
        const char *src = json_string_value(json_object_get(item, "src"));
        const char *dst = json_string_value(json_object_get(item, "dest"));
        if (!src || !dst) {
            r = kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                    "item %zu needs string \"src\" and \"dest\"", i);
            goto out;
        }
        kn_error_t err = {0};
        char sb[NAME_MAX + 1], db[NAME_MAX + 1], dparent[PATH_MAX];
        if (kn_fspath_normalize(dst, dparent, sizeof dparent, &err) < 0) {
            r = kn_files_reply_err(req, &err);
            goto out;
        }
        *strrchr(dparent, '/') = '\0';
        bool created;
        int pd = kn_fspath_mkdirs(req->ex, *dparent ? dparent : "/", 0755, &created, &err);
        if (pd >= 0)
            close(pd);
        int sd = pd < 0 ? -1 : kn_fspath_parent(req->ex, src, sb, &err);
        int dd = sd < 0 ? -1 : kn_fspath_parent(req->ex, dst, db, &err);
        int rc = dd < 0 ? -1 : renameat2(sd, sb, dd, db, RENAME_NOREPLACE);
        if (dd >= 0 && rc < 0)
            kn_error_set(&err, errno, "move %s to %s", src, dst);
        if (sd >= 0)
            close(sd);
        if (dd >= 0)
            close(dd);
        if (rc < 0) {
            r = kn_files_reply_err(req, &err);
            goto out;
        }
    }
    r = kn_http_reply_empty(req, 200);
out:
    json_decref(body);
    return r;
}

/* --- search and directory listing ---------------------------------------- */

struct walk {
    kn_execd_t *ex;
    const char *pattern; /* search: glob on the basename; NULL = list */
    int max_depth;
    const kn_users_t *u;
    json_t *out;
};

static int
name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Visits dirfd (which it closes) whose path is dpath. */
static void
walk_dir(struct walk *w, int dfd, const char *dpath, int depth)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn)
                break;
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name)))
            break;
        n++;
    }
    if (n > 1)
        qsort(names, n, sizeof *names, name_cmp);
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || json_array_size(w->out) >= KN_FILES_MAX_RESULTS)
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s%s%s", dpath, strcmp(dpath, "/") ? "/" : "", names[i]);
        struct statx sx;
        if (statx(dirfd(d), names[i], AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS | STATX_BTIME, &sx) <
            0)
            continue;
        if (!w->pattern)
            json_array_append_new(w->out, file_info(path, &sx, w->u));
        else if (S_ISREG(sx.stx_mode) && fnmatch(w->pattern, names[i], 0) == 0)
            json_array_append_new(w->out, file_info(path, &sx, w->u));
        if (S_ISDIR(sx.stx_mode) && depth + 1 < w->max_depth) {
            int sub = openat(dirfd(d), names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                walk_dir(w, sub, path, depth + 1);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
}

static enum MHD_Result
walk_reply(kn_req_t *req, const char *path, const char *pattern, int depth, bool refuse_link)
{
    kn_error_t err = {0};
    char norm[PATH_MAX];
    if (kn_fspath_normalize(path, norm, sizeof norm, &err) < 0)
        return kn_files_reply_err(req, &err);
    if (refuse_link) {
        struct statx sx;
        if (stat_path(req->ex, norm, &sx, &err) < 0)
            return kn_files_reply_err(req, &err);
        if (S_ISLNK(sx.stx_mode))
            return kn_http_reply_error(req, 400, "INVALID_FILE", "%s is a symlink", path);
    }
    int fd = kn_fspath_open(req->ex, norm, O_RDONLY | O_DIRECTORY, 0, &err);
    if (fd < 0)
        return kn_files_reply_err(req, &err);
    struct walk w = {req->ex, pattern, depth, kn_users_load(req->ex), json_array()};
    walk_dir(&w, fd, norm, 0);
    kn_users_free((kn_users_t *)w.u);
    return kn_http_reply_json(req, 200, w.out);
}

enum MHD_Result
kn_files_search(kn_req_t *req)
{
    const char *path = kn_http_query(req, "path");
    const char *pattern = kn_http_query(req, "pattern");
    if (!path || !*path)
        return kn_http_reply_error(req, 400, "MISSING_QUERY", "missing query parameter \"path\"");
    if (!pattern || !*pattern)
        pattern = "**";
    return walk_reply(req, path, pattern, KN_FILES_MAX_DEPTH, false);
}

enum MHD_Result
kn_dirs_list(kn_req_t *req)
{
    const char *path = kn_http_query(req, "path");
    const char *ds = kn_http_query(req, "depth");
    if (!path || !*path)
        return kn_http_reply_error(req, 400, "MISSING_QUERY", "missing query parameter \"path\"");
    int depth = 1;
    if (ds && *ds) {
        char *end;
        long v = strtol(ds, &end, 10);
        if (*end || v < 1)
            return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                       "depth must be a positive integer");
        depth = v > KN_FILES_MAX_DEPTH ? KN_FILES_MAX_DEPTH : (int)v;
    }
    return walk_reply(req, path, NULL, depth, true);
}

/* --- replace ------------------------------------------------------------- */

static int
read_all(int fd, kn_buf_t *b, size_t max)
{
    char tmp[65536];
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (b->len + (size_t)n > max) {
            errno = EFBIG;
            return -1;
        }
        if (kn_buf_append(b, tmp, (size_t)n) < 0)
            return -1;
    }
}

static int
replace_one(const kn_execd_t *ex, const char *path, const char *old, size_t ol, const char *nw,
            size_t nl, long *count, kn_error_t *err)
{
    int fd = kn_fspath_open(ex, path, O_RDWR | O_NOCTTY, 0, err);
    if (fd < 0)
        return -1;
    kn_buf_t in = {0}, out = {0};
    int rc = -1;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        kn_error_set(err, S_ISDIR(st.st_mode) ? EISDIR : EINVAL, "%s is not a regular file", path);
        goto out;
    }
    if (read_all(fd, &in, KN_FILES_MAX_REPLACE) < 0) {
        kn_error_set(err, errno, "read %s", path);
        goto out;
    }
    *count = 0;
    size_t i = 0;
    while (i < in.len) {
        char *hit = in.len - i >= ol ? memmem(in.data + i, in.len - i, old, ol) : NULL;
        if (!hit) {
            kn_buf_append(&out, in.data + i, in.len - i);
            break;
        }
        kn_buf_append(&out, in.data + i, (size_t)(hit - (in.data + i)));
        kn_buf_append(&out, nw, nl);
        i = (size_t)(hit - in.data) + ol;
        (*count)++;
    }
    if (*count > 0) {
        if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0 ||
            kn_util_write_all(fd, out.data ? out.data : "", out.len) < 0) {
            kn_error_set(err, errno, "write %s", path);
            goto out;
        }
    }
    rc = 0;
out:
    kn_buf_free(&in);
    kn_buf_free(&out);
    close(fd);
    return rc;
}

enum MHD_Result
kn_files_replace(kn_req_t *req)
{
    enum MHD_Result r;
    json_t *body = kn_http_json_body(req, false, &r);
    if (!body)
        return r;
    const char *vq = kn_http_query(req, "verbose");
    bool verbose = vq && (!strcmp(vq, "true") || !strcmp(vq, "1"));
    json_t *result = json_object();
    const char *path;
    json_t *spec;
    if (!json_is_object(body)) {
        r = kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY", "body must be an object");
        goto out;
    }
    json_object_foreach(body, path, spec)
    {
        json_t *o = json_object_get(spec, "old"), *n = json_object_get(spec, "new");
        if (!json_is_string(o) || json_string_length(o) == 0 || (n && !json_is_string(n))) {
            r = kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                    "%s: \"old\" must be a non-empty string, \"new\" a string",
                                    path);
            goto out;
        }
        long count = 0;
        kn_error_t err = {0};
        if (replace_one(req->ex, path, json_string_value(o), json_string_length(o),
                        n ? json_string_value(n) : "", n ? json_string_length(n) : 0, &count,
                        &err) < 0) {
            r = kn_files_reply_err(req, &err);
            goto out;
        }
        json_object_set_new(result, path, json_pack("{s:I}", "replacedCount", (json_int_t)count));
    }
    if (verbose) {
        r = kn_http_reply_json(req, 200, result);
        result = NULL;
    } else {
        r = kn_http_reply_empty(req, 200);
    }
out:
    json_decref(result);
    json_decref(body);
    return r;
}

/* --- download ----------------------------------------------------------- */

/* Parses "bytes=a-b" / "bytes=a-" / "bytes=-n" (first range only). 0 ok, -1
 * malformed, -2 unsatisfiable. */
static int
parse_range(const char *h, uint64_t size, uint64_t *start, uint64_t *end)
{
    if (strncmp(h, "bytes=", 6) != 0)
        return -1;
    const char *p = h + 6;
    char *e;
    if (*p == '-') {
        uint64_t n = strtoull(p + 1, &e, 10);
        if (e == p + 1 || (*e && *e != ','))
            return -1;
        if (n == 0 || size == 0)
            return -2;
        *start = n >= size ? 0 : size - n;
        *end = size - 1;
        return 0;
    }
    uint64_t a = strtoull(p, &e, 10);
    if (e == p || *e != '-')
        return -1;
    p = e + 1;
    uint64_t b = size ? size - 1 : 0;
    if (*p && *p != ',') {
        b = strtoull(p, &e, 10);
        if (e == p || (*e && *e != ','))
            return -1;
    }
    if (a >= size)
        return -2;
    if (b < a)
        return -1;
    if (b >= size)
        b = size - 1;
    *start = a;
    *end = b;
    return 0;
}

static enum MHD_Result
download_lines(kn_req_t *req, int fd, const char *os, const char *ls)
{
    char *e1 = NULL, *e2 = NULL;
    long long off = os ? strtoll(os, &e1, 10) : 1, lim = ls ? strtoll(ls, &e2, 10) : -1;
    if ((os && (*e1 || off < 1)) || (ls && (*e2 || lim < 1))) {
        close(fd);
        return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                   "offset and limit must be integers >= 1");
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "fdopen: %s", strerror(errno));
    }
    kn_buf_t out = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long long no = 0, taken = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        no++;
        if (no < off)
            continue;
        if (lim >= 0 && taken >= lim)
            break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        if (taken++)
            kn_buf_append(&out, "\n", 1);
        kn_buf_append(&out, line, (size_t)n);
    }
    free(line);
    fclose(f);
    enum MHD_Result r = kn_http_reply_text(req, 200, "text/plain; charset=utf-8",
                                           out.data ? out.data : "", out.len);
    kn_buf_free(&out);
    return r;
}

enum MHD_Result
kn_files_download(kn_req_t *req)
{
    const char *path = kn_http_query(req, "path");
    if (!path || !*path)
        return kn_http_reply_error(req, 400, "MISSING_QUERY", "missing query parameter \"path\"");
    const char *range = kn_http_header(req, "Range");
    const char *os = kn_http_query(req, "offset"), *ls = kn_http_query(req, "limit");
    if ((os || ls) && range)
        return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                   "offset/limit cannot be combined with Range");
    kn_error_t err = {0};
    int fd = kn_fspath_open(req->ex, path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, &err);
    if (fd < 0)
        return kn_files_reply_err(req, &err);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kn_http_reply_error(req, 400, "INVALID_FILE", "%s is not a regular file", path);
    }
    fcntl(fd, F_SETFL, 0);
    if (os || ls)
        return download_lines(req, fd, os, ls);
    uint64_t size = (uint64_t)st.st_size, start = 0, end = size ? size - 1 : 0;
    unsigned status = 200;
    if (range) {
        int pr = parse_range(range, size, &start, &end);
        if (pr == -2) {
            close(fd);
            return kn_http_reply_error(
                req, 416, "UNKNOWN", "range %s not satisfiable for %" PRIu64 " bytes", range, size);
        }
        if (pr == 0)
            status = 206;
    }
    uint64_t len = size ? end - start + 1 : 0;
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd, start);
    if (!resp) {
        close(fd);
        return MHD_NO;
    }
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    char cd[512];
    snprintf(cd, sizeof cd, "attachment; filename=\"%s\"", name);
    for (char *c = cd + 22; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
            *c = '_';
    cd[strlen(cd) - 1] = '"';
    MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
    MHD_add_response_header(resp, "Content-Disposition", cd);
    MHD_add_response_header(resp, "Accept-Ranges", "bytes");
    if (status == 206) {
        char cr[96];
        snprintf(cr, sizeof cr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start, end, size);
        MHD_add_response_header(resp, "Content-Range", cr);
    }
    return kn_http_queue(req, status, resp);
}

/* --- directories -------------------------------------------------------- */

enum MHD_Result
kn_dirs_create(kn_req_t *req)
{
    enum MHD_Result r;
    json_t *body = kn_http_json_body(req, false, &r);
    if (!body)
        return r;
    const char *path;
    json_t *spec;
    kn_users_t *u = NULL;
    if (!json_is_object(body)) {
        r = kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY", "body must be an object");
        goto out;
    }
    u = kn_users_load(req->ex);
    json_object_foreach(body, path, spec)
    {
        long long mode;
        const char *owner, *group;
        kn_error_t err = {0};
        if (json_is_null(spec))
            spec = NULL; /* no permissions given */
        if (spec && perm_fields(spec, &mode, &owner, &group) < 0) {
            r = kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                    "bad permission object for %s", path);
            goto out;
        }
        if (!spec) {
            mode = 0;
            owner = group = NULL;
        }
        bool created;
        int fd = kn_fspath_mkdirs(req->ex, path, 0755, &created, &err);
        if (fd < 0) {
            r = kn_files_reply_err(req, &err);
            goto out;
        }
        close(fd);
        if (created && (mode || owner || group)) {
            fd = kn_fspath_open(req->ex, path, O_RDONLY | O_DIRECTORY, 0, &err);
            int rc = fd < 0 ? -1 : kn_files_apply_perm(fd, u, mode, owner, group, &err);
            if (fd >= 0)
                close(fd);
            if (rc < 0) {
                r = kn_files_reply_err(req, &err);
                goto out;
            }
        }
    }
    r = kn_http_reply_empty(req, 200);
out:
    kn_users_free(u);
    json_decref(body);
    return r;
}

/* rm -rf of name inside dirfd, never following symlinks. */
static int
remove_tree(int parent, const char *name, int depth)
{
    if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -1;
    if (depth > 256) {
        errno = ELOOP;
        return -1;
    }
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (remove_tree(dirfd(d), de->d_name, depth + 1) < 0)
            rc = -1;
    }
    closedir(d);
    if (rc == 0 && unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
        /* Entries removed while reading can hide others from readdir: one more pass. */
        if (errno != ENOTEMPTY || depth < 0)
            return -1;
        return remove_tree(parent, name, -1000);
    }
    return rc;
}

enum MHD_Result
kn_dirs_delete(kn_req_t *req)
{
    struct qpaths q;
    query_paths(req, &q);
    if (q.n == 0)
        return kn_http_reply_error(req, 400, "MISSING_QUERY", "missing query parameter \"path\"");
    for (int i = 0; i < q.n; i++) {
        kn_error_t err = {0};
        char base[NAME_MAX + 1];
        int dir = kn_fspath_parent(req->ex, q.v[i], base, &err);
        if (dir < 0) {
            if (err.code == ENOENT)
                continue;
            return kn_files_reply_err(req, &err);
        }
        int rc = remove_tree(dir, base, 0);
        int e = errno;
        close(dir);
        if (rc < 0) {
            kn_error_set(&err, e, "remove %s", q.v[i]);
            return kn_files_reply_err(req, &err);
        }
    }
    return kn_http_reply_empty(req, 200);
}
