/* proxy.h - the server proxy: one client request relayed to a sandbox,
 * the response streamed back unbuffered (SSE), upgrades (WebSocket) relayed
 * both ways until either side ends.
 *
 * Everything goes through execd's unix socket, which needs no network:
 * execd's own port is served by execd itself; any other port is reached
 * through execd's tunnel (GET /tunnel/{port}, Upgrade: kennel-tunnel), which
 * makes the TCP connection inside the sandbox's network namespace, to its
 * loopback only. The server itself never opens a TCP connection for the
 * proxy, so no request can make it reach a host service.
 *
 * The backend lives inside the sandbox and is untrusted: the peer of the
 * socket must be a process of the sandbox's pid namespace (so a sandbox
 * cannot plant a socket that leads elsewhere), and every answer is parsed
 * by http-parser with caps on the head. */
#ifndef KN_PROXY_H
#define KN_PROXY_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"

typedef struct kn_proxy kn_proxy_t;

typedef struct kn_proxy_target {
    const char *sock;   /* execd's socket */
    const char *pidns;  /* the sandbox's pid namespace ("pid:[N]"), for the peer check */
    int port;           /* 0: execd itself; else that port inside, through the tunnel */
    const char *method; /* the client's */
    const char *target; /* path and query, exactly as the client sent them */
    const char *prefix; /* the proxy prefix the client used, for X-Forwarded-Prefix */
} kn_proxy_target_t;

/* Connects, checks the peer, opens the tunnel for a port, sends the request
 * head (the client's end-to-end headers; an Upgrade is passed on). The body
 * is relayed as the client framed it: with its Content-Length, or
 * re-chunked. Errors: EPERM (the peer is not the sandbox's), ECONNREFUSED
 * (nothing there: execd down, or nothing listening on the port), EPROTO. */
int kn_proxy_begin(kn_proxy_t **out, const kn_proxy_target_t *t, struct MHD_Connection *conn,
                   kn_error_t *err);
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
/* After an upgrade: sees every byte relayed (from_client: client to
 * sandbox), as kn_bridge's tap. */
void kn_proxy_set_relay_tap(kn_proxy_t *p,
                            void (*fn)(void *ctx, bool from_client, const char *data, size_t len),
                            void *ctx);
/* Relays a piece of the request body. */
int kn_proxy_body(kn_proxy_t *p, const char *data, size_t len, kn_error_t *err);
/* Ends the body, reads the response head and returns a response that
 * streams the rest; the response owns p from then on. Except for 101
 * (an upgrade): then p stays the caller's, is used by the upgraded
 * connection until it ends, and is freed by the caller when MHD completes
 * the request. */
struct MHD_Response *kn_proxy_response(kn_proxy_t *p, unsigned *status, kn_error_t *err);
/* Ends every stream and upgraded connection in progress at its next
 * wake-up (within a second), so that a server shutdown does not wait for
 * silent commands or idle WebSockets. */
void kn_proxy_shutdown(void);
/* Frees p (closing its connection). NULL is fine. */
void kn_proxy_free(kn_proxy_t *p);

#endif
