/* proxy.c - see proxy.h. Runs in MHD's thread for the connection, so it
 * may block on the backend; timeouts keep a stuck sandbox from holding a
 * thread for ever. */
#include "proxy.h"

#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "uclient.h"
#include "util.h"

#define MAX_HEADERS 64
#define MAX_FIELD 256
#define MAX_VALUE 8192
#define SEND_TIMEOUT_S 60
#define WAKE_MS 1000 /* how often a silent stream checks for shutdown */

/* Set once by kn_proxy_shutdown(): streams end at their next wake-up. */
static atomic_bool stopping;

struct kn_proxy {
    int fd;
    int client_fd; /* the client's socket, watched for hang-ups; -1 unknown */
    int body_mode;
    http_parser parser;
    bool head_done, complete, failed, is_head;
    bool sized;    /* the backend sent Content-Length (not chunked) */
    uint64_t clen; /* its value, kept: the parser counts it down */
    char *names[MAX_HEADERS];
    char *values[MAX_HEADERS];
    int n_headers;
    bool in_value;
    char *pending; /* body bytes not yet handed to MHD */
    size_t plen, poff, pcap;
    kn_proxy_tap_t tap;
    bool finished;
};

/* The tap's finish, once: 0 to go on, -1 to cut the response. */
static int
finish(kn_proxy_t *p)
{
    if (p->finished || !p->tap.finish)
        return 0;
    p->finished = true;
    return p->tap.finish(p->tap.ctx);
}

void
kn_proxy_set_tap(kn_proxy_t *p, const kn_proxy_tap_t *tap)
{
    p->tap = *tap;
}

static const char *const hop_by_hop[] = {"connection",
                                         "keep-alive",
                                         "proxy-authenticate",
                                         "proxy-authorization",
                                         "te",
                                         "trailer",
                                         "transfer-encoding",
                                         "upgrade",
                                         "content-length",
                                         "host",
                                         "authorization",
                                         "cookie",
                                         "open-sandbox-api-key",
                                         "expect",
                                         NULL};

static bool
skipped(const char *name)
{
    for (int i = 0; hop_by_hop[i]; i++)
        if (!strcasecmp(name, hop_by_hop[i]))
            return true;
    return false;
}

typedef struct buf {
    char *p;
    size_t len, cap;
    bool oom;
} buf_t;

static void
buf_add(buf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1024;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *g = realloc(b->p, nc);
        if (!g) {
            b->oom = true;
            return;
        }
        b->p = g;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
buf_str(buf_t *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static enum MHD_Result
add_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    buf_t *b = cls;
    if (!key || !value || skipped(key))
        return MHD_YES;
    buf_str(b, key);
    buf_str(b, ": ");
    buf_str(b, value);
    buf_str(b, "\r\n");
    return MHD_YES;
}

static int
send_all(kn_proxy_t *p, const char *data, size_t len, kn_error_t *err)
{
    if (kn_write_all(p->fd, data, len) < 0)
        return kn_error_set(err, errno, "send to execd");
    return 0;
}

int
kn_proxy_begin(kn_proxy_t **out, const char *sock, const char *pidns, const char *method,
               const char *target, struct MHD_Connection *conn, kn_error_t *err)
{
    kn_proxy_t *p = calloc(1, sizeof *p);
    if (!p)
        return kn_error_set(err, ENOMEM, "proxy");
    p->fd = -1;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    p->client_fd = ci ? ci->connect_fd : -1;
    p->is_head = !strcmp(method, "HEAD");
    buf_t b = {0};
    if ((p->fd = kn_uclient_connect(sock, err)) < 0 || kn_uclient_check_peer(p->fd, pidns, err) < 0)
        goto fail;
    struct timeval st = {SEND_TIMEOUT_S, 0};
    setsockopt(p->fd, SOL_SOCKET, SO_SNDTIMEO, &st, sizeof st);
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
    /* Transfer-Encoding wins over Content-Length (RFC 9112 6.3): libmicrohttpd
     * hands over the decoded body either way. */
    p->body_mode = te ? 2 : cl ? 1 : 0;
    buf_str(&b, method);
    buf_str(&b, " ");
    buf_str(&b, target);
    buf_str(&b, " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header, &b);
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    if (host) {
        buf_str(&b, "X-Forwarded-Host: ");
        buf_str(&b, host);
        buf_str(&b, "\r\n");
    }
    buf_str(&b, "X-Forwarded-Proto: http\r\n");
    if (p->body_mode == 1) {
        buf_str(&b, "Content-Length: ");
        buf_str(&b, cl);
        buf_str(&b, "\r\n");
    } else if (p->body_mode == 2) {
        buf_str(&b, "Transfer-Encoding: chunked\r\n");
    }
    buf_str(&b, "\r\n");
    if (b.oom) {
        kn_error_set(err, ENOMEM, "proxy");
        goto fail;
    }
    if (send_all(p, b.p, b.len, err) < 0)
        goto fail;
    free(b.p);
    *out = p;
    return 0;
fail:
    free(b.p);
    kn_proxy_free(p);
    return -1;
}

int
kn_proxy_body(kn_proxy_t *p, const char *data, size_t len, kn_error_t *err)
{
    if (p->body_mode == 2) {
        char head[32];
        int n = snprintf(head, sizeof head, "%zx\r\n", len);
        if (send_all(p, head, (size_t)n, err) < 0 || send_all(p, data, len, err) < 0 ||
            send_all(p, "\r\n", 2, err) < 0)
            return -1;
        return 0;
    }
    return send_all(p, data, len, err);
}

static int
on_field(http_parser *hp, const char *at, size_t len)
{
    kn_proxy_t *p = hp->data;
    if (p->in_value || p->n_headers == 0) {
        if (p->n_headers == MAX_HEADERS)
            return 1;
        p->n_headers++;
        p->in_value = false;
    }
    int i = p->n_headers - 1;
    size_t old = p->names[i] ? strlen(p->names[i]) : 0;
    if (old + len > MAX_FIELD)
        return 1;
    char *g = realloc(p->names[i], old + len + 1);
    if (!g)
        return 1;
    memcpy(g + old, at, len);
    g[old + len] = '\0';
    p->names[i] = g;
    return 0;
}

static int
on_value(http_parser *hp, const char *at, size_t len)
{
    kn_proxy_t *p = hp->data;
    if (p->n_headers == 0)
        return 1;
    p->in_value = true;
    int i = p->n_headers - 1;
    size_t old = p->values[i] ? strlen(p->values[i]) : 0;
    if (old + len > MAX_VALUE)
        return 1;
    char *g = realloc(p->values[i], old + len + 1);
    if (!g)
        return 1;
    memcpy(g + old, at, len);
    g[old + len] = '\0';
    p->values[i] = g;
    return 0;
}

static int
on_headers_complete(http_parser *hp)
{
    kn_proxy_t *p = hp->data;
    p->head_done = true;
    p->sized = !(hp->flags & F_CHUNKED) && hp->content_length != ULLONG_MAX;
    p->clen = p->sized ? hp->content_length : 0;
    if (p->tap.head) {
        const char *ct = NULL;
        for (int i = 0; i < p->n_headers && !ct; i++)
            if (p->names[i] && p->values[i] && !strcasecmp(p->names[i], "content-type"))
                ct = p->values[i];
        p->tap.head(p->tap.ctx, hp->status_code, ct);
    }
    return p->is_head ? 1 : 0;
}

static int
on_body(http_parser *hp, const char *at, size_t len)
{
    kn_proxy_t *p = hp->data;
    if (p->poff == p->plen)
        p->poff = p->plen = 0;
    if (p->plen + len > p->pcap) {
        size_t nc = p->pcap ? p->pcap : 65536;
        while (nc < p->plen + len)
            nc *= 2;
        char *g = realloc(p->pending, nc);
        if (!g)
            return 1;
        p->pending = g;
        p->pcap = nc;
    }
    memcpy(p->pending + p->plen, at, len);
    p->plen += len;
    if (p->tap.body)
        p->tap.body(p->tap.ctx, at, len);
    return 0;
}

static int
on_complete(http_parser *hp)
{
    ((kn_proxy_t *)hp->data)->complete = true;
    return 0;
}

static const http_parser_settings settings = {
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

/* Waits for the backend. A stream may stay silent for as long as its
 * command runs (execd sends no keep-alive), so there is no timeout; but a
 * client that hangs up ends it at once (execd then sees its connection
 * close and stops the command), and so does a server shutdown. */
static int
wait_backend(kn_proxy_t *p)
{
    for (;;) {
        struct pollfd pfd[2] = {{p->fd, POLLIN, 0}, {p->client_fd, POLLRDHUP, 0}};
        int n = poll(pfd, p->client_fd >= 0 ? 2 : 1, WAKE_MS);
        if (n < 0 && errno != EINTR)
            return -1;
        if (atomic_load(&stopping))
            return -1;
        if (n > 0 && (pfd[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
            return -1;
        if (n > 0 && pfd[0].revents)
            return 0;
    }
}

/* Reads once from the backend and parses it. -1 on error or early EOF. */
static int
pump(kn_proxy_t *p)
{
    char buf[65536];
    ssize_t n;
    if (wait_backend(p) < 0)
        return -1;
    do
        n = read(p->fd, buf, sizeof buf);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    size_t used = http_parser_execute(&p->parser, &settings, buf, (size_t)n);
    if (HTTP_PARSER_ERRNO(&p->parser) != HPE_OK || used != (size_t)n)
        return -1;
    if (n == 0 && !p->complete)
        return -1;
    return 0;
}

static ssize_t
reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    kn_proxy_t *p = cls;
    while (p->poff == p->plen) {
        if (p->complete)
            return finish(p) < 0 ? MHD_CONTENT_READER_END_WITH_ERROR
                                 : MHD_CONTENT_READER_END_OF_STREAM;
        if (pump(p) < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = p->plen - p->poff;
    if (n > max)
        n = max;
    /* The last bytes of a sized body wait for the tap's finish. */
    if (p->complete && p->poff + n == p->plen && finish(p) < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    memcpy(out, p->pending + p->poff, n);
    p->poff += n;
    return (ssize_t)n;
}

static void
reader_free(void *cls)
{
    kn_proxy_free(cls);
}

struct MHD_Response *
kn_proxy_response(kn_proxy_t *p, unsigned *status, kn_error_t *err)
{
    if (p->body_mode == 2 && send_all(p, "0\r\n\r\n", 5, err) < 0)
        return NULL;
    http_parser_init(&p->parser, HTTP_RESPONSE);
    p->parser.data = p;
    while (!p->head_done) {
        if (pump(p) < 0) {
            kn_error_set(err, EPROTO, "execd closed the connection or answered badly");
            return NULL;
        }
    }
    *status = p->parser.status_code;
    struct MHD_Response *r;
    bool sized = p->sized;
    if (p->is_head || *status == 204 || *status == 304 || (sized && p->clen == 0))
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    else
        r = MHD_create_response_from_callback(sized ? p->clen : MHD_SIZE_UNKNOWN, 64 * 1024, reader,
                                              p, reader_free);
    if (!r) {
        kn_error_set(err, ENOMEM, "response");
        return NULL;
    }
    for (int i = 0; i < p->n_headers; i++)
        if (p->names[i] && p->values[i] && !skipped(p->names[i]))
            MHD_add_response_header(r, p->names[i], p->values[i]);
    if (p->is_head || *status == 204 || *status == 304 || (sized && p->clen == 0)) {
        int rc = finish(p);
        kn_proxy_free(p);
        if (rc < 0) {
            MHD_destroy_response(r);
            kn_error_set(err, ECONNABORTED, "the outcome of this request could not be recorded");
            return NULL;
        }
    }
    return r;
}

void
kn_proxy_shutdown(void)
{
    atomic_store(&stopping, true);
}

void
kn_proxy_free(kn_proxy_t *p)
{
    if (!p)
        return;
    if (p->fd >= 0)
        close(p->fd);
    for (int i = 0; i < p->n_headers; i++) {
        free(p->names[i]);
        free(p->values[i]);
    }
    free(p->pending);
    free(p);
}
