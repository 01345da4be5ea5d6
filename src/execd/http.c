/* http.c - libmicrohttpd glue for execd. See http.h. */
#include "http.h"

#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/utf8.h"
#include "handlers.h"
#include "routes.h"
#include "upload.h"

struct kn_http {
    kn_execd_t *ex;
    struct MHD_Daemon *unix_d;
    struct MHD_Daemon *tcp_d;
    int unix_fd;
    int tcp_fd;
    char *unix_path;
};

static int
listen_unix(const char *path, kn_error_t *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return kn_error_set(err, ENAMETOOLONG, "socket path %s", path);
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return kn_error_set(err, errno, "socket");
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(path, 0660) < 0 ||
        listen(fd, 256) < 0) {
        int e = errno;
        close(fd);
        return kn_error_set(err, e, "listen on %s", path);
    }
    return fd;
}

static int
listen_tcp(const char *spec, kn_error_t *err)
{
    char host[256] = "127.0.0.1";
    long port = KN_EXECD_DEFAULT_PORT;
    const char *colon = strrchr(spec, ':');
    if (colon) {
        size_t hl = (size_t)(colon - spec);
        if (hl >= sizeof host)
            return kn_error_set(err, EINVAL, "bad --listen-tcp %s", spec);
        if (hl > 0) {
            memcpy(host, spec, hl);
            host[hl] = '\0';
        }
        char *end;
        port = strtol(colon + 1, &end, 10);
        if (*end || port <= 0 || port > 65535)
            return kn_error_set(err, EINVAL, "bad port in --listen-tcp %s", spec);
    } else if (*spec) {
        snprintf(host, sizeof host, "%s", spec);
    }
    /* Numeric addresses only: name resolution would need NSS, which a static
     * binary inside an arbitrary image cannot rely on. */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return kn_error_set(err, EINVAL, "--listen-tcp wants a numeric IPv4 address: %s", host);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return kn_error_set(err, errno, "socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 256) < 0) {
        int e = errno;
        close(fd);
        return kn_error_set(err, e, "listen on %s:%ld", host, port);
    }
    return fd;
}

const char *
kn_http_query(kn_req_t *req, const char *key)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *
kn_http_header(kn_req_t *req, const char *key)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, key);
}

int
kn_http_conn_fd(kn_req_t *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

enum MHD_Result
kn_http_queue(kn_req_t *req, unsigned status, struct MHD_Response *resp)
{
    if (!resp)
        return MHD_NO;
    const char *rid = kn_http_header(req, "X-Request-ID");
    if (rid)
        MHD_add_response_header(resp, "X-Request-ID", rid);
    req->replied = true;
    enum MHD_Result r = MHD_queue_response(req->conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

enum MHD_Result
kn_http_reply_text(kn_req_t *req, unsigned status, const char *ctype, const char *data, size_t n)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(n, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    if (ctype)
        MHD_add_response_header(resp, "Content-Type", ctype);
    return kn_http_queue(req, status, resp);
}

enum MHD_Result
kn_http_reply_json(kn_req_t *req, unsigned status, json_t *body)
{
    char *s = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(body);
    if (!s)
        return kn_http_reply_text(req, 500, "application/json",
                                  "{\"code\":\"UNKNOWN\",\"message\":\"out of memory\"}", 45);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    return kn_http_queue(req, status, resp);
}

enum MHD_Result
kn_http_reply_error(kn_req_t *req, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t len;
    char *clean = kn_utf8_clean(msg, strlen(msg), &len);
    json_t *b = json_pack("{s:s,s:s%}", "code", code, "message", clean ? clean : "", len);
    free(clean);
    return kn_http_reply_json(req, status, b);
}

enum MHD_Result
kn_http_reply_empty(kn_req_t *req, unsigned status)
{
    return kn_http_reply_text(req, status, NULL, "", 0);
}

json_t *
kn_http_json_body(kn_req_t *req, bool allow_empty, enum MHD_Result *result)
{
    if (req->body.len == 0) {
        if (allow_empty)
            return json_object();
        *result = kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY", "request body is empty");
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(req->body.data, req->body.len, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        *result =
            kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY", "malformed JSON: %s", je.text);
        return NULL;
    }
    return j;
}

/* --- streaming responses ----------------------------------------------- */

struct stream {
    kn_producer_t p;
    kn_buf_t out;
    size_t off;
    bool done;
};

static ssize_t
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *s = cls;
    while (s->off >= s->out.len) {
        s->out.len = 0;
        s->off = 0;
        if (s->done)
            return MHD_CONTENT_READER_END_OF_STREAM;
        int r = s->p.more(s->p.self, &s->out);
        if (r < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (r == 1)
            s->done = true;
    }
    size_t n = s->out.len - s->off;
    if (n > max)
        n = max;
    memcpy(buf, s->out.data + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void
stream_free(void *cls)
{
    struct stream *s = cls;
    s->p.destroy(s->p.self);
    kn_buf_free(&s->out);
    free(s);
}

enum MHD_Result
kn_http_reply_stream(kn_req_t *req, const char *ctype, kn_producer_t p)
{
    struct stream *s = calloc(1, sizeof *s);
    if (!s) {
        p.destroy(p.self);
        return MHD_NO;
    }
    s->p = p;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_free);
    if (!resp) {
        stream_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    return kn_http_queue(req, 200, resp);
}

/* --- request dispatch --------------------------------------------------- */

static enum MHD_Result
dispatch(kn_req_t *req)
{
    kn_execd_t *ex = req->ex;
    if (ex->token) {
        const char *t = kn_http_header(req, "X-EXECD-ACCESS-TOKEN");
        if (!t || strcmp(t, ex->token) != 0)
            return kn_http_reply_error(
                req, 401, "UNAUTHORIZED",
                "Unauthorized: invalid or missing header X-EXECD-ACCESS-TOKEN");
    }
    if (!req->route) {
        bool known = false;
        kn_routes_match(req->method, req->url, req->param, sizeof req->param, &known);
        if (known)
            return kn_http_reply_error(req, 405, "METHOD_NOT_ALLOWED", "%s not allowed on %s",
                                       req->method, req->url);
        return kn_http_reply_error(req, 404, "NOT_FOUND", "no route for %s %s", req->method,
                                   req->url);
    }
    if (req->body_too_large)
        return kn_http_reply_error(req, 413, "REQUEST_TOO_LARGE", "request body exceeds %d bytes",
                                   KN_EXECD_MAX_BODY);
    return req->route->handler(req);
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    kn_http_t *h = cls;
    kn_req_t *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        req->conn = conn;
        req->ex = h->ex;
        req->method = method;
        req->url = url;
        bool known;
        req->route = kn_routes_match(method, url, req->param, sizeof req->param, &known);
        *con_cls = req;
        const char *cl = kn_http_header(req, "Content-Length");
        if (req->route && !req->route->upload && cl && strtoull(cl, NULL, 10) > KN_EXECD_MAX_BODY)
            return kn_http_reply_error(req, 413, "REQUEST_TOO_LARGE",
                                       "request body exceeds %d bytes", KN_EXECD_MAX_BODY);
        if (req->route && req->route->upload)
            kn_upload_begin(req);
        return MHD_YES;
    }
    if (req->replied) {
        /* An early reply (413): swallow the rest. */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (req->route && req->route->upload) {
            kn_upload_feed(req, upload_data, *upload_data_size);
        } else if (!req->body_too_large) {
            if (req->body.len + *upload_data_size > KN_EXECD_MAX_BODY) {
                req->body_too_large = true;
                kn_buf_free(&req->body);
            } else if (kn_buf_append(&req->body, upload_data, *upload_data_size) < 0) {
                return MHD_NO;
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    return dispatch(req);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    kn_req_t *req = *con_cls;
    if (!req)
        return;
    kn_upload_free(req);
    kn_tunnel_free(req->tunnel);
    kn_pty_conn_free(req->pty_conn);
    kn_buf_free(&req->body);
    free(req);
    *con_cls = NULL;
}

static void
on_panic(void *cls, const char *file, unsigned int line, const char *reason)
{
    fprintf(stderr, "kennel-execd: libmicrohttpd panic at %s:%u: %s\n", file, line,
            reason ? reason : "");
    abort();
}

static struct MHD_Daemon *
start_daemon(kn_http_t *h, int fd)
{
    return MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE,
                            0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET, fd,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)KN_EXECD_HEADER_MEMORY,
                            MHD_OPTION_CONNECTION_LIMIT, 1024U, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)KN_EXECD_IDLE_TIMEOUT_S, MHD_OPTION_THREAD_STACK_SIZE,
                            (size_t)(512 * 1024), MHD_OPTION_END);
}

kn_http_t *
kn_http_start(kn_execd_t *ex, const char *unix_path, const char *tcp, kn_error_t *err)
{
    kn_http_t *h = calloc(1, sizeof *h);
    if (!h) {
        kn_error_set(err, ENOMEM, "http");
        return NULL;
    }
    h->ex = ex;
    h->unix_fd = h->tcp_fd = -1;
    MHD_set_panic_func(on_panic, NULL);
    h->unix_path = strdup(unix_path);
    h->unix_fd = listen_unix(unix_path, err);
    if (h->unix_fd < 0)
        goto fail;
    h->unix_d = start_daemon(h, h->unix_fd);
    if (!h->unix_d) {
        kn_error_set(err, errno, "start HTTP server on %s", unix_path);
        goto fail;
    }
    if (tcp) {
        h->tcp_fd = listen_tcp(tcp, err);
        if (h->tcp_fd < 0)
            goto fail;
        h->tcp_d = start_daemon(h, h->tcp_fd);
        if (!h->tcp_d) {
            kn_error_set(err, errno, "start HTTP server on %s", tcp);
            goto fail;
        }
    }
    return h;
fail:
    kn_http_stop(h);
    return NULL;
}

void
kn_http_stop(kn_http_t *h)
{
    if (!h)
        return;
    /* Tunnels end at their next wake-up, so that stopping does not wait. */
    atomic_store(&h->ex->stopping, true);
    /* MHD_stop_daemon closes the listen socket it was given. */
    if (h->unix_d)
        MHD_stop_daemon(h->unix_d);
    else if (h->unix_fd >= 0)
        close(h->unix_fd);
    if (h->tcp_d)
        MHD_stop_daemon(h->tcp_d);
    else if (h->tcp_fd >= 0)
        close(h->tcp_fd);
    if (h->unix_path)
        unlink(h->unix_path);
    free(h->unix_path);
    free(h);
}
