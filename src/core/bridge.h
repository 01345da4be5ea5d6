/* bridge.h - carries bytes both ways between two connected stream sockets
 * on the calling thread, until both directions have ended.
 *
 * Used where a connection stops being HTTP: execd's tunnel to a port inside
 * the sandbox, and the server's WebSocket (and any other upgrade) relay. An
 * end of stream on one side is passed on as shutdown(SHUT_WR) on the other,
 * so half-closed protocols keep working; a reset, an error, a peer that is
 * gone altogether, or the stop flag end the bridge at once. Neither socket
 * is closed: the caller owns both. No global state. */
#ifndef KN_BRIDGE_H
#define KN_BRIDGE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* The Upgrade token of execd's tunnel (GET /tunnel/{port}): execd carries
 * the upgraded connection to that port on the sandbox's loopback. Shared by
 * execd, which serves it, and the server proxy, which uses it. */
#define KN_TUNNEL_PROTOCOL "kennel-tunnel"

typedef struct kn_bridge_opts {
    const char *a_pre; /* bytes already read from a: sent to b first */
    size_t a_pre_len;
    const char *b_pre; /* bytes already read from b: sent to a first */
    size_t b_pre_len;
    const atomic_bool *stop; /* NULL for none; looked at about once a second */
    /* Once one direction has ended, the bridge ends when nothing has moved
     * for this long (a peer that never answers a half-close must not hold
     * the connection for ever). 0 waits for ever. */
    int linger_ms;
    /* Sees every byte as it is read, before it is passed on (from_a: it
     * came from a). NULL for none. It must not block. */
    void (*tap)(void *ctx, bool from_a, const char *data, size_t len);
    void *tap_ctx;
} kn_bridge_opts_t;

/* Returns 0 when both directions ended with an end of stream, -1 otherwise
 * (errno: the socket error, ECANCELED for stop, ETIMEDOUT for the linger).
 * The sockets may be blocking or not: every call is MSG_DONTWAIT. */
int kn_bridge(int a, int b, const kn_bridge_opts_t *o);

#endif
