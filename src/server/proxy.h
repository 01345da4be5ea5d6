/* proxy.h - the server proxy: one client request relayed to a sandbox's
 * execd over its unix socket, the response streamed back unbuffered (SSE).
 *
 * The backend lives inside the sandbox and is untrusted: the peer of the
 * socket must be a process of the sandbox's pid namespace (so a sandbox
 * cannot plant a socket that leads elsewhere), and its response is parsed
 * by http-parser with caps on the head. */
#ifndef KN_PROXY_H
#define KN_PROXY_H

#include <microhttpd.h>
#include <stddef.h>

#include "error.h"

typedef struct kn_proxy kn_proxy_t;

/* Connects, checks the peer, sends the request head (method, target with
 * query, the client's end-to-end headers). The body is relayed as the
 * client framed it: with its Content-Length, or re-chunked. */
int kn_proxy_begin(kn_proxy_t **out, const char *sock, const char *pidns, const char *method,
                   const char *target, struct MHD_Connection *conn, kn_error_t *err);
/* Sees the response as it passes (the receipts module hashes it): head
 * once, when execd's head is parsed, then every body byte read from execd;
 * finish once execd's response is complete and before its last bytes go to
 * the client (so that nothing the client saw whole lacks its receipt); -1
 * from finish cuts the response instead. */
typedef struct kn_proxy_tap {
    void (*head)(void *ctx, unsigned status, const char *content_type);
    void (*body)(void *ctx, const char *data, size_t len);
    int (*finish)(void *ctx);
    void *ctx;
} kn_proxy_tap_t;
void kn_proxy_set_tap(kn_proxy_t *p, const kn_proxy_tap_t *tap);
/* Relays a piece of the request body. */
int kn_proxy_body(kn_proxy_t *p, const char *data, size_t len, kn_error_t *err);
/* Ends the body, reads the response head and returns a response that
 * streams the rest; the response owns p from then on. */
struct MHD_Response *kn_proxy_response(kn_proxy_t *p, unsigned *status, kn_error_t *err);
/* Ends every stream in progress at its next wake-up (within a second), so
 * that a server shutdown does not wait for silent commands. */
void kn_proxy_shutdown(void);
/* Frees p when no response was made. */
void kn_proxy_free(kn_proxy_t *p);

#endif
