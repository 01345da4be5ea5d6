/* upload.c - POST /files/upload, streamed.
 *
 * libmicrohttpd's post processor parses the multipart body as it arrives and
 * hands us each part in pieces: a "metadata" part (JSON {path, mode?, owner?,
 * group?}) followed by its "file" part, repeated. File bytes go straight to
 * the target (opened inside the served root) and are never held in memory. */
#include "upload.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "files.h"
#include "fspath.h"
#include "users.h"
#include "util.h"

#define KN_UPLOAD_MAX_METADATA (64 * 1024)

struct upload {
    kn_req_t *req;
    struct MHD_PostProcessor *pp;
    kn_buf_t meta;
    bool meta_pending; /* metadata seen, its file not yet started */
    int fd;            /* file being written, -1 if none */
    char path[PATH_MAX];
    long long mode;
    char owner[128], group[128];
    int files;
    bool failed;
    unsigned status;
    const char *code;
    kn_error_t err;
    kn_users_t *users;
};

static int
fail(struct upload *u, unsigned status, const char *code, const kn_error_t *err)
{
    if (!u->failed) {
        u->failed = true;
        u->status = status;
        u->code = code;
        u->err = *err;
    }
    return -1;
}

static int
fail_errno(struct upload *u, const kn_error_t *err)
{
    unsigned st = 500;
    const char *code = "RUNTIME_ERROR";
    if (err->code == EINVAL || err->code == ENAMETOOLONG || err->code == ENOTDIR ||
        err->code == EISDIR || err->code == ELOOP) {
        st = 400;
        code = "INVALID_FILE";
    } else if (err->code == EACCES || err->code == EPERM) {
        st = 403;
        code = "PERMISSION_DENIED";
    } else if (err->code == ENOSPC || err->code == EDQUOT) {
        st = 507;
        code = "INSUFFICIENT_STORAGE";
    }
    return fail(u, st, code, err);
}

/* Parses the pending metadata and opens its target. */
static int
start_file(struct upload *u)
{
    kn_error_t err = {0};
    json_error_t je;
    u->meta_pending = false;
    json_t *m = json_loadb(u->meta.data ? u->meta.data : "", u->meta.len, 0, &je);
    u->meta.len = 0;
    const char *path = json_string_value(json_object_get(m, "path"));
    json_t *mode = json_object_get(m, "mode");
    json_t *owner = json_object_get(m, "owner"), *group = json_object_get(m, "group");
    if (!json_is_object(m) || !path || !*path || (mode && !json_is_integer(mode)) ||
        (owner && !json_is_string(owner)) || (group && !json_is_string(group))) {
        json_decref(m);
        kn_error_set(&err, EINVAL,
                     "metadata must be JSON {\"path\": non-empty string, "
                     "\"mode\"?: int, \"owner\"?: str, \"group\"?: str}");
        return fail(u, 400, "INVALID_FILE_METADATA", &err);
    }
    snprintf(u->path, sizeof u->path, "%s", path);
    u->mode = json_is_integer(mode) ? json_integer_value(mode) : 0;
    snprintf(u->owner, sizeof u->owner, "%s", owner ? json_string_value(owner) : "");
    snprintf(u->group, sizeof u->group, "%s", group ? json_string_value(group) : "");
    json_decref(m);
    mode_t tmp;
    if (kn_util_mode_from_decimal(u->mode, &tmp) < 0) {
        kn_error_set(&err, EINVAL, "mode %lld is not octal digits", u->mode);
        return fail(u, 400, "INVALID_FILE_METADATA", &err);
    }
    char parent[PATH_MAX];
    if (kn_fspath_normalize(u->path, parent, sizeof parent, &err) < 0)
        return fail_errno(u, &err);
    char *slash = strrchr(parent, '/');
    if (slash == parent)
        slash[1] = '\0';
    else
        *slash = '\0';
    bool created;
    int d = kn_fspath_mkdirs(u->req->ex, parent, 0755, &created, &err);
    if (d < 0)
        return fail_errno(u, &err);
    close(d);
    u->fd =
        kn_fspath_open(u->req->ex, u->path, O_WRONLY | O_CREAT | O_TRUNC | O_NOCTTY, 0644, &err);
    if (u->fd < 0)
        return fail_errno(u, &err);
    return 0;
}

static int
finish_file(struct upload *u)
{
    kn_error_t err = {0};
    if (u->fd < 0)
        return 0;
    if (!u->users)
        u->users = kn_users_load(u->req->ex);
    int rc = kn_files_apply_perm(u->fd, u->users, u->mode, u->owner, u->group, &err);
    if (close(u->fd) < 0 && rc == 0)
        rc = kn_error_set(&err, errno, "close %s", u->path);
    u->fd = -1;
    u->files++;
    if (rc < 0) {
        kn_error_prefix(&err, "%s", u->path);
        return fail_errno(u, &err);
    }
    return 0;
}

static enum MHD_Result
on_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
        const char *content_type, const char *transfer_encoding, const char *data, uint64_t off,
        size_t size)
{
    struct upload *u = cls;
    kn_error_t err = {0};
    if (u->failed)
        return MHD_YES;
    if (strcmp(key, "metadata") == 0) {
        if (off == 0) {
            if (finish_file(u) < 0)
                return MHD_YES;
            if (u->meta_pending && (start_file(u) < 0 || finish_file(u) < 0))
                return MHD_YES; /* previous metadata had an empty file part */
            u->meta.len = 0;
            u->meta_pending = true;
        }
        if (u->meta.len + size > KN_UPLOAD_MAX_METADATA) {
            kn_error_set(&err, EINVAL, "metadata part larger than %d bytes",
                         KN_UPLOAD_MAX_METADATA);
            fail(u, 400, "INVALID_FILE_METADATA", &err);
            return MHD_YES;
        }
        kn_buf_append(&u->meta, data, size);
    } else if (strcmp(key, "file") == 0) {
        if (off == 0) {
            if (finish_file(u) < 0)
                return MHD_YES;
            if (!u->meta_pending) {
                kn_error_set(&err, EINVAL, "a \"file\" part must follow its \"metadata\" part");
                fail(u, 400, "INVALID_FILE_METADATA", &err);
                return MHD_YES;
            }
            if (start_file(u) < 0)
                return MHD_YES;
        }
        if (u->fd >= 0 && size && kn_util_write_all(u->fd, data, size) < 0) {
            kn_error_set(&err, errno, "write %s", u->path);
            fail_errno(u, &err);
        }
    }
    return MHD_YES;
}

int
kn_upload_begin(kn_req_t *req)
{
    struct upload *u = calloc(1, sizeof *u);
    if (!u)
        return -1;
    u->req = req;
    u->fd = -1;
    req->upload = u;
    u->pp = MHD_create_post_processor(req->conn, 64 * 1024, on_part, u);
    return u->pp ? 0 : -1;
}

int
kn_upload_feed(kn_req_t *req, const char *data, size_t n)
{
    struct upload *u = req->upload;
    if (!u || !u->pp || u->failed)
        return -1;
    if (MHD_post_process(u->pp, data, n) != MHD_YES) {
        kn_error_t err;
        kn_error_set(&err, EINVAL, "malformed multipart body");
        return fail(u, 400, "INVALID_FILE", &err);
    }
    return u->failed ? -1 : 0;
}

enum MHD_Result
kn_upload_handle(kn_req_t *req)
{
    struct upload *u = req->upload;
    if (!u || !u->pp)
        return kn_http_reply_error(req, 400, "INVALID_FILE",
                                   "upload needs a multipart/form-data body");
    if (!u->failed) {
        finish_file(u);
        if (!u->failed && u->meta_pending && start_file(u) == 0)
            finish_file(u);
    }
    if (u->failed)
        return kn_http_reply_error(req, u->status, u->code, "%s", u->err.msg);
    if (u->files == 0)
        return kn_http_reply_error(req, 400, "INVALID_FILE",
                                   "no \"metadata\" + \"file\" part pairs in the body");
    return kn_http_reply_empty(req, 200);
}

void
kn_upload_free(kn_req_t *req)
{
    struct upload *u = req->upload;
    if (!u)
        return;
    if (u->pp)
        MHD_destroy_post_processor(u->pp);
    if (u->fd >= 0)
        close(u->fd);
    kn_buf_free(&u->meta);
    kn_users_free(u->users);
    free(u);
    req->upload = NULL;
}
