/* ptyc.h - the CLI's end of a PTY session through a kennel serve (`kennel
 * exec -t`): POST /pty through the proxy, its WebSocket (RFC 6455, frames
 * by src/core/ws.c; the handshake checked, every frame masked), the local
 * terminal in raw mode with its size passed on (and on SIGWINCH), and the
 * session deleted at the end whatever happened. */
#ifndef KN_CLI_PTYC_H
#define KN_CLI_PTYC_H

#include "client.h"

/* Runs command (NULL: execd's shell) in a terminal of sandbox id, in cwd
 * (NULL: execd's), with this process's stdin and stdout. Returns the
 * remote exit status (255 when the socket ended without one), or -1 with
 * err set. */
int kn_ptyc_run(kn_client_t *cl, const char *id, const char *command, const char *cwd,
                kn_error_t *err);

#endif
