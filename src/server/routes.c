/* routes.c - the lifecycle routes of specs/sandbox-lifecycle.yml, served
 * both under /v1 and at the root as the reference server does. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "image.h"
#include "receipts.h"
#include "util.h"

#define MAX_SEGS 8

const double kn_http_latency_bounds[KN_HTTP_LATENCY_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1,
                                                                0.25,  0.5,  1,     2.5,  5};

static int
split(const char *url, char segs[MAX_SEGS][128])
{
    int n = 0;
    const char *p = url;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, "/");
        if (n == MAX_SEGS || len >= 128)
            return -1;
        memcpy(segs[n], p, len);
        segs[n++][len] = '\0';
        p += len;
    }
    return n;
}

static json_t *
parse_body(kn_req_t *r, bool required, kn_error_t *err)
{
    if (r->len == 0) {
        if (required)
            kn_error_set(err, EINVAL, "a JSON body is required");
        else
            return json_object();
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        kn_error_set(err, EINVAL, "invalid JSON at line %d column %d: %s", je.line, je.column,
                     je.text);
    return j;
}

static int
parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    if (!s || !*s || !isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes one form-urlencoded component (len bytes of s). */
static char *
form_decode(const char *s, size_t len)
{
    char *out = malloc(len + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            *o++ = ' ';
        } else if (s[i] == '%') {
            int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < len ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(out);
                return NULL;
            }
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

typedef struct list_args {
    kn_sbx_filter_t *f;
    const char *bad;
} list_args_t;

static int
parse_metadata_filter(const char *q, kn_sbx_filter_t *f, kn_error_t *err)
{
    const char *p = q;
    while (*p) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        if (len == 0 || !eq || eq == p)
            return kn_error_set(err, EINVAL, "metadata filter must be k=v pairs joined by &");
        if (f->n_meta == KN_SBX_MAX_META)
            return kn_error_set(err, EINVAL, "at most %d metadata filters", KN_SBX_MAX_META);
        char *k = form_decode(p, (size_t)(eq - p));
        char *v = form_decode(eq + 1, len - (size_t)(eq - p) - 1);
        if (!k || !v) {
            free(k);
            free(v);
            return kn_error_set(err, EINVAL, "metadata filter has a bad %%-escape");
        }
        f->meta_key[f->n_meta] = k;
        f->meta_val[f->n_meta++] = v;
        p += len;
        if (*p == '&' && !*++p)
            return kn_error_set(err, EINVAL, "metadata filter ends with &");
    }
    return 0;
}

static enum MHD_Result
collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    list_args_t *a = cls;
    if (!strcmp(key, "state") && value && value[0]) {
        if (a->f->n_states == KN_SBX_MAX_STATES) {
            a->bad = "too many state filters";
            return MHD_NO;
        }
        a->f->states[a->f->n_states++] = value;
    }
    return MHD_YES;
}

static enum MHD_Result
list(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r)
{
    kn_sbx_filter_t f = {.page = 1, .page_size = 20};
    list_args_t a = {.f = &f};
    kn_error_t err = {0};
    json_t *out = NULL;
    enum MHD_Result ret;
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &a);
    const char *page = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "page");
    const char *size = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "pageSize");
    const char *meta = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "metadata");
    if (a.bad) {
        ret = kn_http_error(c, r, 400, "SANDBOX::INVALID_PARAMETER", a.bad);
    } else if (page && parse_long(page, 1, 1000000000, &f.page) < 0) {
        ret = kn_http_error(c, r, 400, "SANDBOX::INVALID_PARAMETER",
                            "page must be an integer of at least 1");
    } else if (size && parse_long(size, 1, 1000, &f.page_size) < 0) {
        ret = kn_http_error(c, r, 400, "SANDBOX::INVALID_PARAMETER",
                            "pageSize must be an integer from 1 to 1000");
    } else if (meta && parse_metadata_filter(meta, &f, &err) < 0) {
        ret = kn_http_error(c, r, 400, "INVALID_METADATA_FORMAT", err.msg);
    } else if (kn_sbx_list(s->mgr, &f, &out, &err) < 0) {
        ret = kn_http_fail(c, r, &err);
    } else {
        ret = kn_http_json(c, r, 200, out);
    }
    for (int i = 0; i < f.n_meta; i++) {
        free(f.meta_key[i]);
        free(f.meta_val[i]);
    }
    return ret;
}

static enum MHD_Result
create(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r)
{
    kn_error_t err = {0};
    json_t *body = parse_body(r, true, &err), *out = NULL;
    if (!body)
        return kn_http_fail(c, r, &err);
    uint64_t t0 = kn_now_us();
    int rc;
    json_t *sid = json_object_get(body, "snapshotId");
    json_t *image = json_object_get(body, "image");
    /* Both given is the spec's 400, which the parser says. */
    if (json_is_string(sid) && (!image || json_is_null(image))) {
        char digest[KN_DIGEST_MAX];
        rc = kn_snaps_resolve(s->snaps, json_string_value(sid), digest, sizeof digest, &err);
        kn_spec_snapshot_t snap = {json_string_value(sid), digest};
        if (rc == 0)
            rc = kn_sbx_create_from(s->mgr, body, &snap, &out, &err);
        else if (err.code == ENOENT || err.code == EBUSY) {
            json_decref(body);
            return kn_http_error(c, r, err.code == ENOENT ? 404 : 409,
                                 err.code == ENOENT ? "SNAPSHOT::NOT_FOUND" : "SNAPSHOT::NOT_READY",
                                 err.msg);
        }
    } else {
        rc = kn_sbx_create(s->mgr, body, &out, &err);
    }
    json_decref(body);
    if (rc < 0) {
        if (err.code != EINVAL)
            s->create_errors++;
        return kn_http_fail(c, r, &err);
    }
    uint64_t us = kn_now_us() - t0;
    s->creates++;
    s->create_us_sum += (long long)us;
    int b = 0;
    while (b < KN_HTTP_LATENCY_BUCKETS && us / 1e6 > kn_http_latency_bounds[b])
        b++;
    s->create_bucket[b]++;
    struct MHD_Response *resp = NULL;
    char *text = json_dumps(out, JSON_COMPACT);
    char loc[128];
    snprintf(loc, sizeof loc, "/v1/sandboxes/%s", json_string_value(json_object_get(out, "id")));
    snprintf(r->sandbox_id, sizeof r->sandbox_id, "%s",
             json_string_value(json_object_get(out, "id")));
    json_decref(out);
    if (text)
        resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        kn_error_set(&err, ENOMEM, "response");
        return kn_http_fail(c, r, &err);
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Location", loc);
    return kn_http_queue(c, r, 202, resp);
}

static bool
host_ok(const char *h)
{
    size_t n = h ? strlen(h) : 0;
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)h[i]) && !strchr(".-:[]_", h[i]))
            return false;
    return true;
}

static enum MHD_Result
endpoint(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r, const char *id, const char *port)
{
    long p;
    kn_error_t err = {0};
    const char *proxy = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "use_server_proxy");
    const char *expires = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "expires");
    if (parse_long(port, 1, 65535, &p) < 0)
        return kn_http_error(c, r, 400, "SANDBOX::INVALID_PARAMETER",
                             "port must be an integer from 1 to 65535");
    if (proxy && strcmp(proxy, "true") && strcmp(proxy, "false") && strcmp(proxy, "1") &&
        strcmp(proxy, "0"))
        return kn_http_error(c, r, 400, "SANDBOX::INVALID_PARAMETER",
                             "use_server_proxy must be true or false");
    if (kn_sbx_exists(s->mgr, id, &err) < 0)
        return kn_http_fail(c, r, &err);
    if (expires)
        return kn_http_error(c, r, 400, "SANDBOX::INVALID_PARAMETER",
                             "signed endpoints (expires) are not supported: every endpoint is "
                             "reached through the server proxy with the API key");
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    char fallback[96], ep[512];
    if (s->cfg->public_host)
        host = s->cfg->public_host;
    else if (!host_ok(host)) {
        snprintf(fallback, sizeof fallback, "%s:%d", s->cfg->listen_host, s->cfg->listen_port);
        host = fallback;
    }
    snprintf(ep, sizeof ep, "%s/sandboxes/%s/proxy/%ld", host, id, p);
    return kn_http_json(c, r, 200, json_pack("{s:s}", "endpoint", ep));
}

static void
metric_state(const char *state, long n, void *ctx)
{
    char line[128];
    snprintf(line, sizeof line, "kennel_sandboxes{state=\"%s\"} %ld\n", state, n);
    strncat(ctx, line, 4096 - strlen(ctx) - 1);
}

static enum MHD_Result
metrics(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r)
{
    char *text = calloc(1, 8192);
    if (!text)
        return MHD_NO;
    char states[4096] = "";
    kn_sbx_count_states(s->mgr, metric_state, states);
    size_t n = (size_t)snprintf(text, 8192,
                                "# HELP kennel_sandboxes Sandboxes by state.\n"
                                "# TYPE kennel_sandboxes gauge\n%s"
                                "# TYPE kennel_requests_total counter\nkennel_requests_total %ld\n"
                                "# TYPE kennel_proxy_requests_total counter\n"
                                "kennel_proxy_requests_total %ld\n"
                                "# TYPE kennel_creates_total counter\nkennel_creates_total %ld\n"
                                "# TYPE kennel_create_errors_total counter\n"
                                "kennel_create_errors_total %ld\n"
                                "# HELP kennel_create_seconds Create until execd answers.\n"
                                "# TYPE kennel_create_seconds histogram\n",
                                states, (long)s->requests, (long)s->proxied, (long)s->creates,
                                (long)s->create_errors);
    long cum = 0;
    for (int b = 0; b <= KN_HTTP_LATENCY_BUCKETS && n < 8000; b++) {
        cum += s->create_bucket[b];
        char le[16];
        if (b < KN_HTTP_LATENCY_BUCKETS)
            snprintf(le, sizeof le, "%g", kn_http_latency_bounds[b]);
        else
            snprintf(le, sizeof le, "+Inf");
        n += (size_t)snprintf(text + n, 8192 - n, "kennel_create_seconds_bucket{le=\"%s\"} %ld\n",
                              le, cum);
    }
    n += (size_t)snprintf(text + n, 8192 - n,
                          "kennel_create_seconds_sum %.6f\nkennel_create_seconds_count %ld\n",
                          (double)s->create_us_sum / 1e6, cum);
    if (n < 7000) {
        kn_rcpt_metrics(s->receipts, text + n, 8192 - n);
        n += strlen(text + n);
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4");
    return kn_http_queue(c, r, 200, resp);
}

static enum MHD_Result
not_allowed(struct MHD_Connection *c, kn_req_t *r, const char *method)
{
    char msg[96];
    snprintf(msg, sizeof msg, "method %.16s is not allowed here", method);
    return kn_http_error(c, r, 405, "METHOD_NOT_ALLOWED", msg);
}

/* A 202 with the new resource's Location (prefix + its id). */
static enum MHD_Result
json_created(struct MHD_Connection *c, kn_req_t *r, json_t *out, const char *prefix)
{
    char loc[160];
    snprintf(loc, sizeof loc, "%s%s", prefix, json_string_value(json_object_get(out, "id")));
    char *text = json_dumps(out, JSON_COMPACT);
    json_decref(out);
    struct MHD_Response *resp =
        text ? MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE) : NULL;
    if (!resp) {
        free(text);
        kn_error_t err = {0};
        kn_error_set(&err, ENOMEM, "response");
        return kn_http_fail(c, r, &err);
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Location", loc);
    return kn_http_queue(c, r, 202, resp);
}

/* Snapshot errors name snapshots: 404 SNAPSHOT::NOT_FOUND, 409 SNAPSHOT::INVALID_STATE. */
static enum MHD_Result
snap_fail(struct MHD_Connection *c, kn_req_t *r, const kn_error_t *err)
{
    if (err->code == ENOENT)
        return kn_http_error(c, r, 404, "SNAPSHOT::NOT_FOUND", err->msg);
    if (err->code == EBUSY)
        return kn_http_error(c, r, 409, "SNAPSHOT::INVALID_STATE", err->msg);
    return kn_http_fail(c, r, err);
}

typedef struct snap_args {
    kn_snap_filter_t *f;
    const char *bad;
} snap_args_t;

static enum MHD_Result
collect_snap_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    snap_args_t *a = cls;
    if (!strcmp(key, "state") && value && value[0]) {
        if (a->f->n_states == KN_SNAP_MAX_STATES) {
            a->bad = "too many state filters";
            return MHD_NO;
        }
        a->f->states[a->f->n_states++] = value;
    }
    return MHD_YES;
}

/* GET /snapshots, GET and DELETE /snapshots/{id}. */
static enum MHD_Result
snapshot_routes(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r, const char *m, const char *id)
{
    kn_error_t err = {0};
    json_t *out = NULL;
    if (id) {
        if (!strcmp(m, "GET"))
            return kn_snaps_get(s->snaps, id, &out, &err) < 0 ? snap_fail(c, r, &err)
                                                              : kn_http_json(c, r, 200, out);
        if (!strcmp(m, "DELETE"))
            return kn_snaps_delete(s->snaps, id, &err) < 0 ? snap_fail(c, r, &err)
                                                           : kn_http_empty(c, r, 204);
        return not_allowed(c, r, m);
    }
    if (strcmp(m, "GET") != 0)
        return not_allowed(c, r, m);
    kn_snap_filter_t f = {.page = 1, .page_size = 20};
    snap_args_t a = {.f = &f};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_snap_arg, &a);
    const char *page = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "page");
    const char *size = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "pageSize");
    f.sandbox_id = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "sandboxId");
    f.name = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "name");
    if (a.bad)
        return kn_http_error(c, r, 400, "SANDBOX::INVALID_PARAMETER", a.bad);
    if (page && parse_long(page, 1, 1000000000, &f.page) < 0)
        return kn_http_error(c, r, 400, "SANDBOX::INVALID_PARAMETER",
                             "page must be an integer of at least 1");
    if (size && parse_long(size, 1, 1000, &f.page_size) < 0)
        return kn_http_error(c, r, 400, "SANDBOX::INVALID_PARAMETER",
                             "pageSize must be an integer from 1 to 1000");
    if (f.sandbox_id && !f.sandbox_id[0])
        f.sandbox_id = NULL;
    return kn_snaps_list(s->snaps, &f, &out, &err) < 0 ? kn_http_fail(c, r, &err)
                                                       : kn_http_json(c, r, 200, out);
}

/* GET /v1/sandboxes/{id}/receipts[?after=SEQ&limit=N] (an extension,
 * docs/receipts.md): the sandbox's chain, page by page; it outlives the
 * sandbox. GET /v1/snapshots/{id}/receipts: a snapshot's chain. */
static enum MHD_Result
receipts_page(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r, const char *id, bool snapshot)
{
    long after = 0, limit = 1000;
    kn_error_t err = {0};
    json_t *out = NULL;
    const char *a = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "after");
    const char *l = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
    if ((a && parse_long(a, 0, 9007199254740991L, &after) < 0) ||
        (l && parse_long(l, 1, 10000, &limit) < 0))
        return kn_http_error(c, r, 400, "SANDBOX::INVALID_PARAMETER",
                             "after must be a sequence number (>= 0), limit 1 to 10000");
    if (!s->receipts)
        return kn_http_error(c, r, 404, "RECEIPTS::DISABLED", "this server issues no receipts");
    if ((snapshot ? kn_rcpt_snapshot_page : kn_rcpt_page)(s->receipts, id, (uint64_t)after,
                                                          (size_t)limit, &out, &err) < 0)
        return snapshot ? snap_fail(c, r, &err) : kn_http_fail(c, r, &err);
    return kn_http_json(c, r, 200, out);
}

/* /v1/receipts/keys (GET) and /v1/receipts/rotate (POST). */
static enum MHD_Result
receipts_routes(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r, const char *m, const char *op)
{
    kn_error_t err = {0};
    json_t *out = NULL;
    if (!s->receipts)
        return kn_http_error(c, r, 404, "RECEIPTS::DISABLED", "this server issues no receipts");
    if (!*op) {
        if (strcmp(m, "GET"))
            return not_allowed(c, r, m);
        return kn_rcpt_chains(s->receipts, &out, &err) < 0 ? kn_http_fail(c, r, &err)
                                                           : kn_http_json(c, r, 200, out);
    }
    if (!strcmp(op, "keys")) {
        if (strcmp(m, "GET"))
            return not_allowed(c, r, m);
        return kn_rcpt_keys(s->receipts, &out, &err) < 0 ? kn_http_fail(c, r, &err)
                                                         : kn_http_json(c, r, 200, out);
    }
    if (!strcmp(op, "rotate")) {
        if (strcmp(m, "POST"))
            return not_allowed(c, r, m);
        return kn_rcpt_rotate(s->receipts, &out, &err) < 0 ? kn_http_fail(c, r, &err)
                                                           : kn_http_json(c, r, 200, out);
    }
    return kn_http_error(c, r, 404, "NOT_FOUND", "no such route");
}

static enum MHD_Result
sandbox_routes(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r, const char *m,
               char segs[MAX_SEGS][128], int n)
{
    kn_error_t err = {0};
    json_t *out = NULL, *body = NULL;
    const char *id = segs[1];
    snprintf(r->sandbox_id, sizeof r->sandbox_id, "%s", id);
    if (n == 2) {
        if (!strcmp(m, "GET"))
            return kn_sbx_get(s->mgr, id, &out, &err) < 0 ? kn_http_fail(c, r, &err)
                                                          : kn_http_json(c, r, 200, out);
        if (!strcmp(m, "DELETE"))
            return kn_sbx_delete(s->mgr, id, "user_delete", &err) < 0 ? kn_http_fail(c, r, &err)
                                                                      : kn_http_empty(c, r, 204);
        return not_allowed(c, r, m);
    }
    const char *op = segs[2];
    if (n == 3 && !strcmp(op, "receipts"))
        return strcmp(m, "GET") ? not_allowed(c, r, m) : receipts_page(s, c, r, id, false);
    if (n == 3 && (!strcmp(op, "pause") || !strcmp(op, "resume"))) {
        if (strcmp(m, "POST") != 0)
            return not_allowed(c, r, m);
        return kn_sbx_pause(s->mgr, id, !strcmp(op, "pause"), &err) < 0 ? kn_http_fail(c, r, &err)
                                                                        : kn_http_empty(c, r, 202);
    }
    if (n == 3 && !strcmp(op, "renew-expiration")) {
        if (strcmp(m, "POST") != 0)
            return not_allowed(c, r, m);
        if (!(body = parse_body(r, true, &err)))
            return kn_http_fail(c, r, &err);
        int rc = kn_sbx_renew(s->mgr, id, body, &out, &err);
        json_decref(body);
        return rc < 0 ? kn_http_fail(c, r, &err) : kn_http_json(c, r, 200, out);
    }
    if (n == 3 && !strcmp(op, "metadata")) {
        if (strcmp(m, "PATCH") != 0)
            return not_allowed(c, r, m);
        if (!(body = parse_body(r, true, &err)))
            return kn_http_fail(c, r, &err);
        int rc = kn_sbx_patch_metadata(s->mgr, id, body, &out, &err);
        json_decref(body);
        return rc < 0 ? kn_http_fail(c, r, &err) : kn_http_json(c, r, 200, out);
    }
    if (n == 4 && !strcmp(op, "endpoints")) {
        if (strcmp(m, "GET") != 0)
            return not_allowed(c, r, m);
        return endpoint(s, c, r, id, segs[3]);
    }
    if (n == 4 && !strcmp(op, "diagnostics") &&
        (!strcmp(segs[3], "logs") || !strcmp(segs[3], "events"))) {
        if (strcmp(m, "GET") != 0)
            return not_allowed(c, r, m);
        const char *scope = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "scope");
        if (!scope || !scope[0])
            return kn_http_error(c, r, 400, "SANDBOX::INVALID_PARAMETER",
                                 "scope is required (container, runtime, lifecycle, all)");
        return kn_sbx_diagnostics(s->mgr, id, segs[3], scope, &out, &err) < 0
                   ? kn_http_fail(c, r, &err)
                   : kn_http_json(c, r, 200, out);
    }
    if (n == 3 && !strcmp(op, "snapshots")) {
        if (strcmp(m, "POST") != 0)
            return not_allowed(c, r, m);
        if (!(body = parse_body(r, false, &err)))
            return kn_http_fail(c, r, &err);
        int rc = kn_snaps_create(s->snaps, id, body, &out, &err);
        json_decref(body);
        if (rc < 0)
            return kn_http_fail(c, r, &err);
        return json_created(c, r, out, "/v1/snapshots/");
    }
    return kn_http_error(c, r, 404, "NOT_FOUND", "no such route");
}

/* Pool errors carry the pool family's codes (as the reference's). */
static enum MHD_Result
pool_fail(struct MHD_Connection *c, kn_req_t *r, const kn_error_t *err)
{
    if (err->code == ENOENT)
        return kn_http_error(c, r, 404, "POOL::NOT_FOUND", err->msg);
    if (err->code == EEXIST)
        return kn_http_error(c, r, 409, "POOL::ALREADY_EXISTS", err->msg);
    if (err->code == EBUSY)
        return kn_http_error(c, r, 409, "POOL::READ_ONLY", err->msg);
    if (err->code == ENOSPC)
        return kn_http_error(c, r, 409, "POOL::TOO_MANY_POOLS", err->msg);
    if (err->code == EINVAL)
        return kn_http_error(c, r, 400, "POOL::INVALID_PARAMETER", err->msg);
    return kn_http_fail(c, r, err);
}

/* GET/POST /pools, GET/PUT/DELETE /pools/{name}: a documented extension in
 * the shape of OpenSandbox's pool API (docs/server.md). */
static enum MHD_Result
pool_routes(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r, const char *m, const char *name)
{
    json_t *out = NULL, *body = NULL;
    kn_error_t err = {0};
    int rc;
    if (!strcmp(m, "GET")) {
        rc = kn_sbx_pools(s->mgr, name, &out, &err);
        return rc < 0 ? pool_fail(c, r, &err) : kn_http_json(c, r, 200, out);
    }
    if (!name && strcmp(m, "POST") != 0)
        return not_allowed(c, r, m);
    if (name && strcmp(m, "PUT") != 0 && strcmp(m, "DELETE") != 0)
        return not_allowed(c, r, m);
    if (!strcmp(m, "DELETE"))
        return kn_sbx_pool_delete(s->mgr, name, &err) < 0 ? pool_fail(c, r, &err)
                                                          : kn_http_empty(c, r, 204);
    if (!(body = parse_body(r, true, &err)))
        return kn_http_error(c, r, 400, "POOL::INVALID_PARAMETER", err.msg);
    rc = name ? kn_sbx_pool_update(s->mgr, name, body, &out, &err)
              : kn_sbx_pool_create(s->mgr, body, &out, &err);
    json_decref(body);
    if (rc < 0)
        return pool_fail(c, r, &err);
    return kn_http_json(c, r, name ? 200 : 201, out);
}

enum MHD_Result
kn_routes_dispatch(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r, const char *m,
                   const char *url)
{
    char segs[MAX_SEGS][128];
    if (!strncmp(url, "/v1/", 4) || !strcmp(url, "/v1"))
        url += 3;
    int n = split(url, segs);
    if (n <= 0)
        return kn_http_error(c, r, 404, "NOT_FOUND", "no such route");
    if (n == 1 && !strcmp(segs[0], "health"))
        return kn_http_json(c, r, 200, json_pack("{s:s}", "status", "healthy"));
    if (n == 1 && !strcmp(segs[0], "metrics"))
        return strcmp(m, "GET") ? not_allowed(c, r, m) : metrics(s, c, r);
    if (n == 2 && !strcmp(segs[0], "metrics") && !strcmp(segs[1], "events"))
        return strcmp(m, "POST") ? not_allowed(c, r, m) : kn_http_empty(c, r, 204);
    if (!strcmp(segs[0], "sandboxes")) {
        if (n == 1) {
            if (!strcmp(m, "GET"))
                return list(s, c, r);
            if (!strcmp(m, "POST"))
                return create(s, c, r);
            return not_allowed(c, r, m);
        }
        return sandbox_routes(s, c, r, m, segs, n);
    }
    if (!strcmp(segs[0], "receipts") && n == 2)
        return receipts_routes(s, c, r, m, segs[1]);
    if (!strcmp(segs[0], "receipts") && n == 1)
        return receipts_routes(s, c, r, m, "");
    if (!strcmp(segs[0], "pools") && n <= 2)
        return pool_routes(s, c, r, m, n == 2 ? segs[1] : NULL);
    if (!strcmp(segs[0], "snapshots") && n <= 2)
        return snapshot_routes(s, c, r, m, n == 2 ? segs[1] : NULL);
    if (!strcmp(segs[0], "snapshots") && n == 3 && !strcmp(segs[2], "receipts"))
        return strcmp(m, "GET") ? not_allowed(c, r, m) : receipts_page(s, c, r, segs[1], true);
    return kn_http_error(c, r, 404, "NOT_FOUND", "no such route");
}
