/* uclient.h - a small HTTP/1.1 client over unix sockets, for the server and
 * the shim to talk to execd. Responses come from inside a sandbox and are
 * untrusted: they are parsed by http-parser, with caps on every part. */
#ifndef KN_UCLIENT_H
#define KN_UCLIENT_H

#include <stddef.h>

#include "error.h"

typedef struct kn_uresp {
    int status;
    char *body; /* NUL-terminated; owned, freed by kn_uresp_free() */
    size_t len;
} kn_uresp_t;

/* Connects to the unix socket at path (O_CLOEXEC). Returns the fd or -1. */
int kn_uclient_connect(const char *path, kn_error_t *err);
/* Fails (EPERM) unless the peer of the connected socket fd lives in the pid
 * namespace pidns ("pid:[N]" as readlink shows it). A sandbox owns the
 * directory of its execd socket and could put a symlink there to any host
 * socket; this is what keeps a request meant for execd from going there. */
int kn_uclient_check_peer(int fd, const char *pidns, kn_error_t *err);
/* Sends one request (Connection: close) and reads the whole response, body
 * capped at cap bytes, within timeout_ms. body may be NULL. With pidns, the
 * peer is checked (kn_uclient_check_peer) before anything is sent. */
int kn_uclient_request(const char *path, const char *pidns, const char *method, const char *target,
                       const char *ctype, const char *body, size_t blen, int timeout_ms, size_t cap,
                       kn_uresp_t *out, kn_error_t *err);
/* A TCP connection to a numeric address (or "localhost"). */
int kn_uclient_connect_tcp(const char *host, int port, kn_error_t *err);
/* Called with each piece of a response body as it arrives; -1 stops. */
typedef int (*kn_uclient_body_fn)(const char *data, size_t len, void *ctx);
/* One request on a connected fd (the caller closes it): headers are extra
 * "Name: value\r\n" lines or NULL; timeout_ms < 0 waits for ever. With fn,
 * the body goes to fn (out->body stays empty) and out->status is set as
 * soon as the head has arrived. */
int kn_uclient_exchange(int fd, const char *method, const char *target, const char *headers,
                        const char *ctype, const char *body, size_t blen, int timeout_ms,
                        size_t cap, kn_uclient_body_fn fn, void *ctx, kn_uresp_t *out,
                        kn_error_t *err);
void kn_uresp_free(kn_uresp_t *r);

#endif
