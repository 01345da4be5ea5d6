/* client.c - see client.h. */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server.h"

int
kn_client_init(kn_client_t *c, const char *server, kn_error_t *err)
{
    memset(c, 0, sizeof *c);
    if (!server)
        server = getenv("KENNEL_SERVER");
    if (!server || !server[0])
        server = "http://127.0.0.1:8080";
    const char *p = server;
    if (!strncmp(p, "http://", 7))
        p += 7;
    else if (strstr(p, "://"))
        return kn_server_error(err, EINVAL, "server %s: only http:// is supported", server);
    const char *colon = p[0] == '[' ? strstr(p, "]:") : strrchr(p, ':');
    const char *host = p[0] == '[' ? p + 1 : p;
    size_t hl = colon ? (size_t)(colon - host) : strcspn(host, "/");
    if (hl == 0 || hl >= sizeof c->host)
        return kn_server_error(err, EINVAL, "server %s: bad host", server);
    memcpy(c->host, host, hl);
    c->port = 8080;
    if (colon) {
        char *end = NULL;
        long v = strtol(colon + (p[0] == '[' ? 2 : 1), &end, 10);
        if (v < 1 || v > 65535 || (*end && *end != '/'))
            return kn_server_error(err, EINVAL, "server %s: bad port", server);
        c->port = (int)v;
    }
    const char *key = getenv("OPEN_SANDBOX_API_KEY");
    if (!key || !key[0])
        key = getenv("KENNEL_API_KEY");
    if (key && key[0]) {
        if (strpbrk(key, "\r\n") || strlen(key) > 512)
            return kn_server_error(err, EINVAL, "the API key is not a valid header value");
        snprintf(c->headers, sizeof c->headers, "OPEN-SANDBOX-API-KEY: %s\r\n", key);
    }
    return 0;
}

static int
exchange(kn_client_t *c, const char *method, const char *path, const json_t *body,
         kn_uclient_body_fn fn, void *ctx, int timeout_ms, kn_uresp_t *r, kn_error_t *err)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body && !text)
        return kn_error_set(err, ENOMEM, "request");
    int fd = kn_uclient_connect_tcp(c->host, c->port, err);
    int rc = -1;
    if (fd >= 0) {
        rc = kn_uclient_exchange(fd, method, path, c->headers, text ? "application/json" : NULL,
                                 text, text ? strlen(text) : 0, timeout_ms, 64 << 20, fn, ctx, r,
                                 err);
        close(fd);
    }
    free(text);
    return rc;
}

int
kn_client_call(kn_client_t *c, const char *method, const char *path, const json_t *body,
               json_t **out, kn_error_t *err)
{
    kn_uresp_t r;
    *out = NULL;
    if (exchange(c, method, path, body, NULL, NULL, 120000, &r, err) < 0)
        return -1;
    json_t *j = r.len ? json_loadb(r.body, r.len, 0, NULL) : NULL;
    int ret = 0;
    if (r.status < 200 || r.status > 299) {
        const char *msg = json_string_value(json_object_get(j, "message"));
        kn_server_error(err, r.status, "%s (HTTP %d)", msg ? msg : r.body, r.status);
        json_decref(j);
        ret = -1;
    } else {
        *out = j;
    }
    kn_uresp_free(&r);
    return ret;
}

int
kn_client_raw(kn_client_t *c, const char *method, const char *path, const char *ctype,
              const char *body, size_t len, kn_error_t *err)
{
    kn_uresp_t r;
    int fd = kn_uclient_connect_tcp(c->host, c->port, err);
    if (fd < 0)
        return -1;
    int rc = kn_uclient_exchange(fd, method, path, c->headers, ctype, body, len, 600000, 1 << 20,
                                 NULL, NULL, &r, err);
    close(fd);
    if (rc < 0)
        return -1;
    if (r.status < 200 || r.status > 299) {
        json_t *j = json_loadb(r.body, r.len, 0, NULL);
        const char *msg = json_string_value(json_object_get(j, "message"));
        kn_server_error(err, r.status, "%s (HTTP %d)", msg ? msg : r.body, r.status);
        json_decref(j);
        rc = -1;
    }
    kn_uresp_free(&r);
    return rc;
}

int
kn_client_stream(kn_client_t *c, const char *method, const char *path, const json_t *body,
                 kn_uclient_body_fn fn, void *ctx, int *status, kn_error_t *err)
{
    kn_uresp_t r;
    if (exchange(c, method, path, body, fn, ctx, -1, &r, err) < 0)
        return -1;
    *status = r.status;
    kn_uresp_free(&r);
    return 0;
}

const char *
kn_client_server_arg(int *argc, char **argv)
{
    const char *server = NULL;
    for (int i = 1; i < *argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        int take = 0;
        if ((!strcmp(argv[i], "-s") || !strcmp(argv[i], "--server")) && i + 1 < *argc) {
            server = argv[i + 1];
            take = 2;
        } else if (!strncmp(argv[i], "--server=", 9)) {
            server = argv[i] + 9;
            take = 1;
        }
        if (take) {
            memmove(&argv[i], &argv[i + take], (size_t)(*argc - i - take + 1) * sizeof *argv);
            *argc -= take;
            i--;
        }
    }
    return server;
}
