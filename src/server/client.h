/* client.h - a client of the lifecycle API, for the kennel CLI's commands
 * (create, ls, inspect, rm, pause, resume, renew, exec, logs).
 *
 * The server comes from --server or KENNEL_SERVER (default
 * http://127.0.0.1:8080; numeric addresses or localhost, plain HTTP), the
 * key from OPEN_SANDBOX_API_KEY (as the SDKs read it) or KENNEL_API_KEY. */
#ifndef KN_CLIENT_H
#define KN_CLIENT_H

#include <jansson.h>

#include "error.h"
#include "uclient.h"

typedef struct kn_client {
    char host[128];
    int port;
    char headers[640]; /* the API key header line, if any */
} kn_client_t;

/* server: a URL, or NULL for KENNEL_SERVER or the default. */
int kn_client_init(kn_client_t *c, const char *server, kn_error_t *err);
/* One JSON call. body may be NULL. On a 2xx, *out is the parsed answer (NULL
 * when empty); otherwise -1 with the server's message and err->code = the
 * HTTP status. */
int kn_client_call(kn_client_t *c, const char *method, const char *path, const json_t *body,
                   json_t **out, kn_error_t *err);
/* A call with a raw body of the given content type; -1 unless 2xx. */
int kn_client_raw(kn_client_t *c, const char *method, const char *path, const char *ctype,
                  const char *body, size_t len, kn_error_t *err);
/* A call whose answer streams to fn (no timeout). *status is the HTTP status. */
int kn_client_stream(kn_client_t *c, const char *method, const char *path, const json_t *body,
                     kn_uclient_body_fn fn, void *ctx, int *status, kn_error_t *err);
/* Reads -s/--server URL out of argv (removing it) for the commands. */
const char *kn_client_server_arg(int *argc, char **argv);

#endif
