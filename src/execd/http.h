/* http.h - libmicrohttpd glue: listeners, per-request state, replies, streams.
 *
 * One MHD daemon per listener (unix socket, optional TCP), a thread per
 * connection so a streaming handler may block on its processes. Requests are
 * dispatched through routes.c once the body is complete; JSON bodies are
 * bounded (413), header blocks are bounded by the connection memory (431),
 * uploads stream through kn_upload_* without being buffered. Every error reply
 * is JSON {"code","message"}; every empty 2xx carries Content-Length: 0. */
#ifndef KN_EXECD_HTTP_H
#define KN_EXECD_HTTP_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>

#include "core/error.h"
#include "execd.h"
#include "util.h"

typedef struct kn_http kn_http_t;
typedef struct kn_req kn_req_t;
typedef enum MHD_Result (*kn_handler_fn)(kn_req_t *req);

struct kn_route;

struct kn_req {
    struct MHD_Connection *conn;
    kn_execd_t *ex;
    const char *method;
    const char *url;
    char param[512]; /* the {id} segment of the route, if any */
    const struct kn_route *route;
    kn_buf_t body;
    bool body_too_large;
    bool replied;
    void *upload;                 /* upload state for streamed multipart bodies */
    struct kn_tunnel *tunnel;     /* GET /tunnel/{port}: freed when the request completes */
    struct kn_pty_conn *pty_conn; /* GET /pty/{id}/ws: freed when the request completes */
};

/* Starts serving on a unix socket (path, required) and optionally TCP
 * (tcp "HOST:PORT" or NULL). Returns NULL with err set. */
kn_http_t *kn_http_start(kn_execd_t *ex, const char *unix_path, const char *tcp, kn_error_t *err);
/* Stops accepting, closes listeners, removes the socket file. */
void kn_http_stop(kn_http_t *h);

/* First value of a query argument, or NULL. */
const char *kn_http_query(kn_req_t *req, const char *key);
/* A request header, or NULL. */
const char *kn_http_header(kn_req_t *req, const char *key);
/* The connection's socket, for noticing a client that went away. */
int kn_http_conn_fd(kn_req_t *req);

/* Parses the body as JSON. On failure replies 400 INVALID_REQUEST_BODY and
 * returns NULL (the handler then returns *result). NULL body with allow_empty
 * yields an empty object. */
json_t *kn_http_json_body(kn_req_t *req, bool allow_empty, enum MHD_Result *result);

enum MHD_Result kn_http_reply_json(kn_req_t *req, unsigned status, json_t *body /* stolen */);
enum MHD_Result kn_http_reply_error(kn_req_t *req, unsigned status, const char *code,
                                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
enum MHD_Result kn_http_reply_empty(kn_req_t *req, unsigned status);
enum MHD_Result kn_http_reply_text(kn_req_t *req, unsigned status, const char *ctype,
                                   const char *data, size_t n);
/* Queues resp (adding the common headers) and destroys our reference. */
enum MHD_Result kn_http_queue(kn_req_t *req, unsigned status, struct MHD_Response *resp);

/* A streaming body. more() appends to out, blocking as needed; it returns 0 to
 * continue, 1 when the stream is complete (after out is sent), -1 to abort the
 * connection. destroy() runs exactly once when the response is released,
 * whether it finished or the client went away. */
typedef struct kn_producer {
    int (*more)(void *self, kn_buf_t *out);
    void (*destroy)(void *self);
    void *self;
} kn_producer_t;

/* Replies 200 with an event stream driven by p (execd SSE headers). */
enum MHD_Result kn_http_reply_stream(kn_req_t *req, const char *ctype, kn_producer_t p);

#endif
