/* http.c - see http.h: responses, errors, the request lifecycle, auth and
 * the hand-off to routes or the proxy. */
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "egress_api.h"
#include "receipts.h"
#include "core/utf8.h"
#include "util.h"

#define KN_HTTP_EXECD_PORT 44772

enum MHD_Result
kn_http_queue(struct MHD_Connection *c, kn_req_t *r, unsigned status, struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "X-Request-ID", r->rid);
    r->status = status;
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result
kn_http_json(struct MHD_Connection *c, kn_req_t *r, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        /* Out of memory, or a value jansson refused: still an answer. */
        static const char fallback[] =
            "{\"code\":\"INTERNAL_ERROR\",\"message\":\"the response could not be built\"}";
        struct MHD_Response *f = MHD_create_response_from_buffer(
            sizeof fallback - 1, (void *)fallback, MHD_RESPMEM_PERSISTENT);
        if (!f)
            return MHD_NO;
        MHD_add_response_header(f, "Content-Type", "application/json");
        return kn_http_queue(c, r, 500, f);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    return kn_http_queue(c, r, status, resp);
}

enum MHD_Result
kn_http_error(struct MHD_Connection *c, kn_req_t *r, unsigned status, const char *code,
              const char *message)
{
    /* Messages quote what the client sent (an id from the path, a name):
     * bytes that are not UTF-8 are shown as U+FFFD, never the reason the
     * answer cannot be made. */
    char *clean = NULL;
    if (message && !kn_utf8_valid(message, strlen(message)))
        message = clean = kn_utf8_clean(message, strlen(message), NULL);
    json_t *body = json_pack("{s:s, s:s}", "code", code, "message",
                             message ? message : "(message unavailable)");
    free(clean);
    return kn_http_json(c, r, status, body);
}

enum MHD_Result
kn_http_empty(struct MHD_Connection *c, kn_req_t *r, unsigned status)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    return kn_http_queue(c, r, status, resp);
}

enum MHD_Result
kn_http_fail(struct MHD_Connection *c, kn_req_t *r, const kn_error_t *err)
{
    static const struct {
        int code;
        unsigned status;
        const char *name;
    } map[] = {
        {EINVAL, 400, "SANDBOX::INVALID_PARAMETER"},
        {ENOENT, 404, "SANDBOX::SANDBOX_NOT_FOUND"},
        {EBUSY, 409, "SANDBOX::INVALID_STATE"},
        {EBADMSG, 409, "IMAGE::DIGEST_MISMATCH"},
        {E2BIG, 413, "REQUEST_TOO_LARGE"},
        {ENOTSUP, 501, "NOT_IMPLEMENTED"},
        {EPERM, 502, "PROXY::BACKEND_REFUSED"},
        {ECONNREFUSED, 502, "PROXY::BACKEND_UNAVAILABLE"},
        {EHOSTUNREACH, 502, "PROXY::PORT_UNREACHABLE"},
        {EPROTO, 502, "PROXY::BAD_BACKEND_RESPONSE"},
        {ECONNABORTED, 503, "RECEIPTS::UNAVAILABLE"},
        {ETIMEDOUT, 504, "SANDBOX::PROVISION_TIMEOUT"},
        {KN_RCPT_ERRNO, 503, "RECEIPTS::UNAVAILABLE"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i].code == err->code)
            return kn_http_error(c, r, map[i].status, map[i].name, err->msg);
    return kn_http_error(c, r, 500, "GENERAL::UNKNOWN_ERROR", err->msg[0] ? err->msg : "error");
}

/* The client's X-Request-ID when it is a sane token, else a new one. */
static void
request_id(struct MHD_Connection *c, kn_req_t *r)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-ID");
    size_t n = v ? strlen(v) : 0;
    bool ok = n > 0 && n < sizeof r->rid;
    for (size_t i = 0; ok && i < n; i++)
        ok = v[i] > 0x20 && v[i] < 0x7f;
    if (ok) {
        memcpy(r->rid, v, n + 1);
        return;
    }
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        memset(b, 0, sizeof b);
    for (int i = 0; i < 16; i++)
        snprintf(r->rid + 2 * i, 3, "%02x", b[i]);
}

static bool
same(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

static bool
authorized(kn_srv_t *s, struct MHD_Connection *c, const char **why)
{
    if (s->cfg->n_keys == 0)
        return true;
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "OPEN-SANDBOX-API-KEY");
    if (!key || !key[0]) {
        *why = "MISSING_API_KEY";
        return false;
    }
    bool ok = false;
    for (int i = 0; i < s->cfg->n_keys; i++)
        ok |= same(key, s->cfg->api_keys[i]);
    *why = "INVALID_API_KEY";
    return ok;
}

/* /sandboxes/{id}/proxy/{port}[/rest][?query], also under /v1, matched
 * on the raw URI so that the rest goes to execd exactly as sent. */
static bool
proxy_target(const char *raw, char *id, size_t idlen, long *port, const char **rest)
{
    const char *p = raw;
    if (!strncmp(p, "/v1/", 4))
        p += 3;
    if (strncmp(p, "/sandboxes/", 11) != 0)
        return false;
    p += 11;
    size_t n = strcspn(p, "/?");
    if (n == 0 || n >= idlen || strncmp(p + n, "/proxy/", 7) != 0)
        return false;
    /* The id is percent-decoded as the /v1 routes' are (libmicrohttpd
     * decodes those); an escaped '/' or NUL names no sandbox. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '%' && i + 2 < n && isxdigit((unsigned char)p[i + 1]) &&
            isxdigit((unsigned char)p[i + 2])) {
            char hex[3] = {p[i + 1], p[i + 2], 0};
            ch = (char)strtol(hex, NULL, 16);
            i += 2;
            if (ch == '/' || ch == '\0')
                return false;
        }
        id[k++] = ch;
    }
    id[k] = '\0';
    p += n + 7;
    long v = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 6; p++, digits++)
        v = v * 10 + (*p - '0');
    if (digits == 0 || (*p && *p != '/' && *p != '?'))
        return false;
    *port = v;
    *rest = p;
    return true;
}

static void
log_request(kn_req_t *r)
{
    if (!r->srv->cfg->log_requests)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char when[40];
    kn_sbx_format_time((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, when, sizeof when);
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:s}", "ts", when, "level", "info", "method",
                  r->method, "path", r->raw_uri ? r->raw_uri : "", "status", (int)r->status, "us",
                  (json_int_t)(kn_now_us() - r->t0), "requestId", r->rid);
    if (j && r->sandbox_id[0])
        json_object_set_new(j, "sandboxId", json_string(r->sandbox_id));
    char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (line)
        fprintf(stderr, "%s\n", line);
    free(line);
    json_decref(j);
}

void *kn_http_uri_log(void *cls, const char *uri, struct MHD_Connection *c);
void kn_http_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                       enum MHD_RequestTerminationCode toe);
enum MHD_Result kn_http_access(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **req_cls);

void *
kn_http_uri_log(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)c;
    kn_req_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->srv = cls;
    r->t0 = kn_now_us();
    r->raw_uri = strdup(uri ? uri : "");
    return r;
}

void
kn_http_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                  enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    kn_req_t *r = *req_cls;
    if (!r)
        return;
    (void)c;
    log_request(r);
    if (r->srv->observe && r->started) {
        kn_http_action_t a = {.request_id = r->rid,
                              .method = r->method,
                              .path = r->raw_uri ? r->raw_uri : "",
                              .sandbox_id = r->sandbox_id,
                              .status = r->status,
                              .proxied = r->is_proxy,
                              .completed = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK,
                              .duration_us = kn_now_us() - r->t0};
        r->srv->observe(&a, r->srv->observe_ctx);
    }
    kn_rcpt_call_done(r->call); /* unless the finish tap ended it */
    kn_rcpt_pty_watch_free(r->pty_watch);
    free(r->sock);
    free(r->pidns);
    free(r->target);
    free(r->prefix);
    kn_proxy_free(r->proxy);
    free(r->egress_rest);
    free(r->body);
    free(r->raw_uri);
    free(r);
    *req_cls = NULL;
}

/* Where a proxied port goes (with the egress port, which start_proxy
 * hands to the server's own egress API first): execd's own port is served
 * by execd; every other port is reached through execd's tunnel, which
 * connects inside the sandbox's network namespace (see proxy.h). Returns
 * the tunnel port, 0 for execd itself. */
static int
backend_port(long port)
{
    return port == KN_HTTP_EXECD_PORT ? 0 : (int)port;
}

/* execd's /_kennel/ routes are the shim's (a claimed pool member's env and
 * entrypoint), never a client's: the proxy refuses them however the path is
 * spelled (percent-escapes, doubled slashes), as execd's HTTP library would
 * decode it. */
static bool
supervisor_path(const char *target)
{
    char path[256];
    size_t n = 0;
    for (const char *p = target; *p && *p != '?' && n + 1 < sizeof path; p++) {
        char ch = *p;
        if (ch == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
            char hex[3] = {p[1], p[2], 0};
            ch = (char)strtol(hex, NULL, 16);
            p += 2;
        }
        if (ch == '/' && n && path[n - 1] == '/')
            continue;
        path[n++] = ch;
    }
    path[n] = '\0';
    return !strncmp(path, "/_kennel/", 9) || !strcmp(path, "/_kennel");
}

static bool
has_body(struct MHD_Connection *c)
{
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding") ||
           (cl && strtoull(cl, NULL, 10) > 0);
}

/* Writes the call's pending receipt (when it is an action) and sends the
 * request into the sandbox. r->is_proxy is set; on failure an error is
 * queued. */
static enum MHD_Result
forward(struct MHD_Connection *c, kn_req_t *r, const kn_proxy_target_t *t)
{
    kn_error_t err = {0};
    if (r->call && kn_rcpt_call_begin(r->call, &err) < 0) {
        r->is_proxy = false;
        return kn_http_fail(c, r, &err);
    }
    if (kn_proxy_begin(&r->proxy, t, c, &err) < 0) {
        if (err.code != EPERM && err.code != EHOSTUNREACH)
            err.code = ECONNREFUSED;
        r->is_proxy = false;
        return kn_http_fail(c, r, &err);
    }
    if (r->call) {
        kn_proxy_tap_t tap = {kn_rcpt_call_response_head, kn_rcpt_call_response_body,
                              kn_rcpt_call_finish, r->call};
        kn_proxy_set_tap(r->proxy, &tap);
    }
    if (r->pty_watch)
        kn_proxy_set_relay_tap(r->proxy, kn_rcpt_pty_tap, r->pty_watch);
    return MHD_YES;
}

static enum MHD_Result
start_proxy(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r, const char *method, const char *id,
            long port, const char *rest)
{
    kn_error_t err = {0};
    char sock[4096], pidns[64], target[8192], prefix[256];
    s->proxied++;
    snprintf(r->sandbox_id, sizeof r->sandbox_id, "%s", id);
    if (port < 1 || port > 65535)
        return kn_http_error(c, r, 400, "SANDBOX::INVALID_PARAMETER",
                             "port must be an integer from 1 to 65535");
    /* Port dispatch: the egress port is the server's own API; the rest go
     * into the sandbox (backend_port). */
    if (port == KN_EGRESS_PORT) {
        /* Answered by the server itself once the body is in (egress_api.c). */
        if (kn_sbx_exists(s->mgr, id, &err) < 0)
            return kn_http_fail(c, r, &err);
        if (!(r->egress_rest = strdup(rest)))
            return MHD_NO;
        return MHD_YES;
    }
    if (kn_sbx_execd(s->mgr, id, sock, sizeof sock, pidns, sizeof pidns, &err) < 0)
        return kn_http_fail(c, r, &err);
    if (snprintf(target, sizeof target, "%s%s", rest[0] == '/' ? "" : "/", rest) >=
        (int)sizeof target)
        return kn_http_error(c, r, 414, "URI_TOO_LONG", "the proxied path is too long");
    if (!backend_port(port) && supervisor_path(target))
        return kn_http_error(c, r, 404, "NOT_FOUND", "no such route");
    size_t plen = (size_t)(rest - r->raw_uri);
    snprintf(prefix, sizeof prefix, "%.*s", (int)(plen < sizeof prefix ? plen : 0), r->raw_uri);
    kn_proxy_target_t t = {.sock = sock,
                           .pidns = pidns,
                           .port = backend_port(port),
                           .method = method,
                           .target = target,
                           .prefix = prefix};
    /* Receipts: an execd action is recorded before it is forwarded; one
     * whose parameters are in its body is forwarded once the body is read.
     * A program's own port is not execd's API: it gets no call receipt. */
    bool not_action = true;
    const char *ctype = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    if (!t.port)
        r->call = kn_rcpt_call_new(s->receipts, id, r->principal, method, target, ctype,
                                   &not_action, &err);
    if (!r->call && !not_action)
        return kn_http_fail(c, r, &err);
    if (!t.port && !r->call && !strcmp(method, "GET"))
        r->pty_watch = kn_rcpt_pty_watch(s->receipts, id, target);
    r->is_proxy = true;
    if (r->call && kn_rcpt_call_reads_body(r->call) && has_body(c)) {
        r->deferred = true;
        r->sock = strdup(sock);
        r->pidns = strdup(pidns);
        r->target = strdup(target);
        r->prefix = strdup(prefix);
        if (!r->sock || !r->pidns || !r->target || !r->prefix) {
            kn_error_set(&err, ENOMEM, "proxy");
            return kn_http_fail(c, r, &err);
        }
        return MHD_YES;
    }
    return forward(c, r, &t);
}

static enum MHD_Result
first_call(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r, const char *url, const char *method)
{
    r->started = true;
    s->requests++;
    snprintf(r->method, sizeof r->method, "%s", method);
    request_id(c, r);
    const char *why = NULL;
    const char *path = url;
    if (!strncmp(path, "/v1/", 4))
        path += 3;
    bool open_route = !strcmp(path, "/health");
    kn_rcpt_principal(s->cfg->n_keys
                          ? MHD_lookup_connection_value(c, MHD_HEADER_KIND, "OPEN-SANDBOX-API-KEY")
                          : NULL,
                      r->principal, sizeof r->principal);
    if (!open_route && !authorized(s, c, &why))
        return kn_http_error(c, r, 401, why,
                             !strcmp(why, "MISSING_API_KEY")
                                 ? "Authentication credentials are missing: send the "
                                   "OPEN-SANDBOX-API-KEY header"
                                 : "The API key in OPEN-SANDBOX-API-KEY is not valid");
    char id[128];
    long port;
    const char *rest;
    if (proxy_target(r->raw_uri, id, sizeof id, &port, &rest))
        return start_proxy(s, c, r, method, id, port, rest);
    /* A lifecycle body announced larger than the cap is refused before it
     * is read; a chunked one is cut when it passes the cap. */
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > s->cfg->max_body) {
        char msg[96];
        snprintf(msg, sizeof msg, "the body is larger than %zu bytes", s->cfg->max_body);
        return kn_http_error(c, r, 413, "REQUEST_TOO_LARGE", msg);
    }
    return MHD_YES;
}

enum MHD_Result
kn_http_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
               const char *version, const char *upload, size_t *upload_size, void **req_cls)
{
    (void)version;
    kn_srv_t *s = cls;
    kn_req_t *r = *req_cls;
    if (!r)
        return MHD_NO;
    if (!r->started)
        return first_call(s, c, r, url, method);
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->is_proxy && !r->deferred) {
            kn_error_t err = {0};
            if (r->call)
                kn_rcpt_call_request_body(r->call, upload, n);
            if (kn_proxy_body(r->proxy, upload, n, &err) < 0)
                return MHD_NO;
            return MHD_YES;
        }
        size_t cap = r->deferred ? KN_RCPT_MAX_BODY : s->cfg->max_body;
        if (r->too_big || r->len + n > cap) {
            r->too_big = true;
            return MHD_YES;
        }
        char *g = realloc(r->body, r->len + n + 1);
        if (!g)
            return MHD_NO;
        memcpy(g + r->len, upload, n);
        r->body = g;
        r->len += n;
        r->body[r->len] = '\0';
        return MHD_YES;
    }
    if (r->is_proxy && r->deferred) {
        r->deferred = false;
        if (r->too_big) {
            r->is_proxy = false;
            return kn_http_error(c, r, 413, "REQUEST_TOO_LARGE",
                                 "the body is larger than execd accepts (8 MiB)");
        }
        kn_rcpt_call_request_body(r->call, r->body ? r->body : "", r->len);
        kn_proxy_target_t t = {.sock = r->sock,
                               .pidns = r->pidns,
                               .port = 0, /* only execd's actions are deferred */
                               .method = method,
                               .target = r->target,
                               .prefix = r->prefix};
        enum MHD_Result fw = forward(c, r, &t);
        if (!r->is_proxy)
            return fw;
        kn_error_t err = {0};
        if (r->len && kn_proxy_body(r->proxy, r->body, r->len, &err) < 0) {
            err.code = ECONNREFUSED;
            return kn_http_fail(c, r, &err);
        }
    }
    if (r->is_proxy) {
        kn_error_t err = {0};
        unsigned status = 502;
        struct MHD_Response *resp = kn_proxy_response(r->proxy, &status, &err);
        if (!resp)
            return kn_http_fail(c, r, &err);
        if (status != 101)
            r->proxy = NULL; /* the response owns it now; an upgrade uses it until completion */
        return kn_http_queue(c, r, status, resp);
    }
    if (r->too_big) {
        char msg[96];
        snprintf(msg, sizeof msg, "the body is larger than %zu bytes", s->cfg->max_body);
        return kn_http_error(c, r, 413, "REQUEST_TOO_LARGE", msg);
    }
    kn_rcpt_request_begin(s->receipts, r->principal);
    /* The egress API's policy changes get their receipts in egress_api.c's
     * change(), within this request. */
    enum MHD_Result ret = r->egress_rest ? kn_egress_route(s, c, r, method, r->egress_rest)
                                         : kn_routes_dispatch(s, c, r, method, url);
    kn_rcpt_request_end(s->receipts, r->status);
    return ret;
}
