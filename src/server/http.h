/* http.h - libmicrohttpd glue of the lifecycle server: one request's
 * context, the response helpers every route uses (JSON bodies, the error
 * shape of the spec, X-Request-ID on everything), and the one place that
 * maps errors to HTTP statuses. */
#ifndef KN_HTTP_H
#define KN_HTTP_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "proxy.h"
#include "sandboxes.h"
#include "server.h"
#include "snapshots.h"

#define KN_HTTP_LATENCY_BUCKETS 10

/* A finished request, as the receipts module will see it (DESIGN §6: the
 * server signs a receipt for every lifecycle action and every execd call it
 * proxies). Strings are valid during the call only. */
typedef struct kn_http_action {
    const char *request_id;
    const char *method;
    const char *path;       /* the raw URI, query included */
    const char *sandbox_id; /* "" when the request names no sandbox */
    unsigned status;        /* 0 when no response was sent */
    bool proxied;           /* relayed to execd */
    bool completed;         /* the response was sent in full */
    uint64_t duration_us;
} kn_http_action_t;

typedef void (*kn_http_observer_fn)(const kn_http_action_t *action, void *ctx);

/* The server: shared by every connection thread. */
typedef struct kn_srv {
    kn_server_cfg_t *cfg;
    kn_sbx_t *mgr;
    kn_snaps_t *snaps;
    struct MHD_Daemon *daemon;
    kn_http_observer_fn observe; /* an observer of finished requests; NULL for none */
    void *observe_ctx;
    struct kn_rcpt *receipts; /* receipts.h; NULL when receipts are off */
    atomic_long requests, creates, create_errors, proxied;
    atomic_long create_bucket[KN_HTTP_LATENCY_BUCKETS + 1]; /* +Inf last */
    atomic_llong create_us_sum;
} kn_srv_t;

extern const double kn_http_latency_bounds[KN_HTTP_LATENCY_BUCKETS];

/* One request. Made by the URI log callback, freed when MHD completes it. */
typedef struct kn_req {
    kn_srv_t *srv;
    char rid[80];
    char *raw_uri;
    uint64_t t0;
    bool started;
    bool is_proxy;
    char *body;
    size_t len;
    bool too_big;
    kn_proxy_t *proxy;
    unsigned status;
    char method[16];
    char sandbox_id[40];
    /* Receipts: the caller's principal, the proxied call's capture, and
     * for a call whose body is read before it is forwarded, where to. */
    char principal[96];
    struct kn_rcpt_call *call;
    struct kn_rcpt_pty_watch *pty_watch; /* a PTY's WebSocket: its traffic is hashed */
    bool deferred;
    char *sock, *pidns, *target, *prefix;
    char *egress_rest; /* a request to the egress port: the path after it (egress_api.c) */
} kn_req_t;

enum MHD_Result kn_http_json(struct MHD_Connection *c, kn_req_t *r, unsigned status, json_t *body);
enum MHD_Result kn_http_error(struct MHD_Connection *c, kn_req_t *r, unsigned status,
                              const char *code, const char *message);
/* Maps err->code: EINVAL 400, ENOENT 404, EBUSY 409, EBADMSG 409 (an image
 * that does not match its digest), E2BIG 413, ENOTSUP 501, EPERM,
 * ECONNREFUSED, EHOSTUNREACH (nothing listens on a proxied port) and EPROTO
 * 502, ECONNABORTED 503 (receipts), ETIMEDOUT 504, anything else 500. */
enum MHD_Result kn_http_fail(struct MHD_Connection *c, kn_req_t *r, const kn_error_t *err);
/* An empty body with Content-Length: 0 (or none for 204). */
enum MHD_Result kn_http_empty(struct MHD_Connection *c, kn_req_t *r, unsigned status);
enum MHD_Result kn_http_queue(struct MHD_Connection *c, kn_req_t *r, unsigned status,
                              struct MHD_Response *resp);

/* The lifecycle routes (routes.c): the body is complete. */
enum MHD_Result kn_routes_dispatch(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r,
                                   const char *method, const char *url);

#endif
