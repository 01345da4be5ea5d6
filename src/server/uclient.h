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
void kn_uresp_free(kn_uresp_t *r);

#endif
