/* proxy.c - see proxy.h. Runs in MHD's thread for the connection, so it
 * may block on the backend; timeouts keep a stuck sandbox from holding a
 * thread for ever. */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bridge.h"
#include "ws.h"
#include "server.h"
#include "uclient.h"
#include "util.h"

#define MAX_HEADERS 64
#define MAX_FIELD 256
#define MAX_VALUE 8192
#define SEND_TIMEOUT_S 60
#define WAKE_MS 1000               /* how often a silent stream checks for shutdown */
#define TUNNEL_TIMEOUT_US 15000000 /* execd connects within 5 s or says why */
#define TUNNEL_ERROR_CAP 4096      /* what is read of execd's refusal */
#define LINGER_MS 10000       /* an upgraded connection half-closed and silent this long ends */
#define READ_BUF (256 * 1024) /* one read from the backend */
/* MHD's block size for a proxied body: MHD allocates and zeroes one block per
 * response, so a small call must not pay for a big one (the reader hands
 * MHD at most this much per call; a big body takes more calls). */
#define MHD_BLOCK (32 * 1024)

typedef struct buf {
    char *p;
    size_t len, cap;
    bool oom;
} buf_t;

/* Set once by kn_proxy_shutdown(): streams end at their next wake-up. */
static atomic_bool stopping;

/* ---- idle connections to execd ------------------------------------------
 *
 * A connection to execd that carried a whole request and answer (framed by
 * Content-Length or chunks, no Connection: close) is kept for the next
 * request to the same sandbox: that saves the connect, the peer check and
 * execd's start of a connection thread (about a tenth of a millisecond of a
 * command's round trip). The key is the socket path, the sandbox's pid
 * namespace and the socket file's identity (device and inode), so a
 * connection only ever serves the execd it was checked against, and not
 * after the file was replaced; the sandbox's state is still looked up for
 * every request. A
 * connection that is readable or hung up while idle is dropped. Tunnels and
 * upgraded connections are never kept. */
#define POOL_MAX 64
#define POOL_IDLE_US 5000000

typedef struct idle_conn {
    int fd;
    char *key;
    uint64_t since;
} idle_conn_t;

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static idle_conn_t pool[POOL_MAX];
static int pool_n;

static bool
idle_ok(int fd)
{
    struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
    return poll(&p, 1, 0) == 0;
}

/* Drops expired entries (under pool_mu); their fds go to out. */
static int
pool_sweep(uint64_t now, int *out, int max)
{
    int k = 0, n = 0;
    for (int i = 0; i < pool_n; i++) {
        if (now - pool[i].since > POOL_IDLE_US && k < max) {
            out[k++] = pool[i].fd;
            free(pool[i].key);
        } else {
            pool[n++] = pool[i];
        }
    }
    pool_n = n;
    return k;
}

/* An idle connection for key, or -1. */
static int
pool_take(const char *key)
{
    int drop[POOL_MAX], nd, fd = -1;
    uint64_t now = kn_now_us();
    for (;;) {
        pthread_mutex_lock(&pool_mu);
        nd = pool_sweep(now, drop, POOL_MAX);
        int at = -1;
        for (int i = pool_n - 1; i >= 0 && at < 0; i--) /* the newest first */
            if (!strcmp(pool[i].key, key))
                at = i;
        if (at >= 0) {
            fd = pool[at].fd;
            free(pool[at].key);
            pool[at] = pool[--pool_n];
        }
        pthread_mutex_unlock(&pool_mu);
        for (int i = 0; i < nd; i++)
            close(drop[i]);
        if (fd < 0 || idle_ok(fd))
            return fd;
        close(fd); /* execd went away or spoke out of turn: try the next */
        fd = -1;
    }
}

static void
pool_put(int fd, char *key)
{
    int drop[POOL_MAX + 1], nd;
    uint64_t now = kn_now_us();
    pthread_mutex_lock(&pool_mu);
    nd = pool_sweep(now, drop, POOL_MAX);
    if (pool_n == POOL_MAX) { /* the oldest makes room */
        drop[nd++] = pool[0].fd;
        free(pool[0].key);
        memmove(pool, pool + 1, sizeof pool[0] * (size_t)(POOL_MAX - 1));
        pool_n--;
    }
    pool[pool_n++] = (idle_conn_t){fd, key, now};
    pthread_mutex_unlock(&pool_mu);
    for (int i = 0; i < nd; i++)
        close(drop[i]);
}

struct kn_proxy {
    int fd;
    int client_fd; /* the client's socket, watched for hang-ups; -1 unknown */
    int port;      /* 0: execd; else the port inside, through the tunnel */
    int body_mode; /* 0 none, 1 Content-Length, 2 chunked */
    http_parser parser;
    bool head_done, complete, is_head, in_tunnel;
    bool is_upgrade;    /* the client asked for an upgrade, passed on */
    bool upgraded;      /* the backend switched protocols */
    bool informational; /* the message being parsed is a 1xx other than 101 */
    bool sized;         /* the backend sent Content-Length (not chunked) */
    uint64_t clen;      /* its value, kept: the parser counts it down */
    char *names[MAX_HEADERS];
    char *values[MAX_HEADERS];
    int n_headers;
    bool in_value;
    char *pending; /* body bytes not yet handed on (after an upgrade: the new protocol's) */
    size_t plen, poff, pcap;
    char *early; /* bytes read before the parser needed them (after the tunnel's 101) */
    size_t elen, eoff;
    char *rbuf; /* READ_BUF bytes, for reads from the backend */
    buf_t head; /* the request head; sent from kn_proxy_begin */
    size_t head_sent;
    char *pool_key; /* for a connection to execd itself: "sock\npidns\ndev:ino" */
    bool dirty;     /* the backend sent more than one answer: never reused */
    kn_proxy_tap_t tap;
    void (*relay_tap)(void *ctx, bool from_client, const char *data, size_t len);
    void *relay_ctx;
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

void
kn_proxy_set_relay_tap(kn_proxy_t *p,
                       void (*fn)(void *ctx, bool from_client, const char *data, size_t len),
                       void *ctx)
{
    p->relay_tap = fn;
    p->relay_ctx = ctx;
}

/* Never passed on, either way: hop-by-hop headers (an upgrade is passed on
 * explicitly), framing (re-done), and the client's credentials. */
static const char *const hop_by_hop[] = {"connection",
                                         "keep-alive",
                                         "proxy-authenticate",
                                         "proxy-authorization",
                                         "proxy-connection",
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

/* Set by the proxy itself on requests: a client's own are dropped. */
static const char *const forwarded[] = {"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
                                        "x-forwarded-prefix", NULL};

static bool
in_list(const char *name, const char *const *list)
{
    for (int i = 0; list[i]; i++)
        if (!strcasecmp(name, list[i]))
            return true;
    return false;
}

static bool
skipped(const char *name)
{
    return in_list(name, hop_by_hop);
}

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

static void
buf_header(buf_t *b, const char *name, const char *value)
{
    buf_str(b, name);
    buf_str(b, ": ");
    buf_str(b, value);
    buf_str(b, "\r\n");
}

static enum MHD_Result
add_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    buf_t *b = cls;
    if (!key || !value || skipped(key) || in_list(key, forwarded))
        return MHD_YES;
    buf_header(b, key, value);
    return MHD_YES;
}

static int
send_all(kn_proxy_t *p, const char *data, size_t len, kn_error_t *err)
{
    if (kn_write_all(p->fd, data, len) < 0)
        return kn_error_set(err, errno, "send to the sandbox");
    return 0;
}

/* Sends what is left of the request head, then the n pieces, in one
 * writev where the socket takes it (a chunk's size line, data and CRLF go
 * together). */
static int
send_parts(kn_proxy_t *p, struct iovec *iov, int n, kn_error_t *err)
{
    struct iovec v[5];
    int k = 0;
    if (p->head.len > p->head_sent)
        v[k++] = (struct iovec){p->head.p + p->head_sent, p->head.len - p->head_sent};
    for (int i = 0; i < n && k < 5; i++)
        if (iov[i].iov_len)
            v[k++] = iov[i];
    int i = 0;
    while (i < k) {
        ssize_t w = writev(p->fd, v + i, k - i);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) /* 502: the sandbox's end went away */
            return kn_server_error(err, ECONNREFUSED, "send to the sandbox: %s", strerror(errno));
        if (p->head.len > p->head_sent) {
            size_t h = p->head.len - p->head_sent;
            p->head_sent += (size_t)w < h ? (size_t)w : h;
        }
        while (i < k && (size_t)w >= v[i].iov_len)
            w -= (ssize_t)v[i++].iov_len;
        if (i < k) {
            v[i].iov_base = (char *)v[i].iov_base + w;
            v[i].iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* ---- the backend's answer ---------------------------------------------- */

static void
head_reset(kn_proxy_t *p)
{
    for (int i = 0; i < p->n_headers; i++) {
        free(p->names[i]);
        free(p->values[i]);
        p->names[i] = p->values[i] = NULL;
    }
    p->n_headers = 0;
    p->in_value = p->head_done = p->complete = p->upgraded = p->informational = false;
    p->plen = p->poff = 0;
    http_parser_init(&p->parser, HTTP_RESPONSE);
    p->parser.data = p;
}

static const char *
header(const kn_proxy_t *p, const char *name)
{
    for (int i = 0; i < p->n_headers; i++)
        if (p->names[i] && p->values[i] && !strcasecmp(p->names[i], name))
            return p->values[i];
    return NULL;
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
    if (hp->status_code >= 100 && hp->status_code < 200 && hp->status_code != 101) {
        /* 100 Continue, 103 Early Hints: the real answer follows. */
        for (int i = 0; i < p->n_headers; i++) {
            free(p->names[i]);
            free(p->values[i]);
            p->names[i] = p->values[i] = NULL;
        }
        p->n_headers = 0;
        p->in_value = false;
        p->informational = true;
        return 0;
    }
    p->head_done = true;
    p->sized = !(hp->flags & F_CHUNKED) && hp->content_length != ULLONG_MAX;
    p->clen = p->sized ? hp->content_length : 0;
    if (p->tap.head && !p->in_tunnel) {
        const char *ct = NULL;
        for (int i = 0; i < p->n_headers && !ct; i++)
            if (p->names[i] && p->values[i] && !strcasecmp(p->names[i], "content-type"))
                ct = p->values[i];
        p->tap.head(p->tap.ctx, hp->status_code, ct);
    }
    return p->is_head && !p->in_tunnel ? 1 : 0;
}

static int
append(kn_proxy_t *p, const char *at, size_t len)
{
    if (len == 0)
        return 0;
    if (p->poff == p->plen)
        p->poff = p->plen = 0;
    if (p->plen + len > p->pcap) {
        size_t nc = p->pcap ? p->pcap : READ_BUF;
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
    return 0;
}

static int
on_body(http_parser *hp, const char *at, size_t len)
{
    kn_proxy_t *p = hp->data;
    if (p->tap.body)
        p->tap.body(p->tap.ctx, at, len);
    return append(p, at, len);
}

static int
on_complete(http_parser *hp)
{
    kn_proxy_t *p = hp->data;
    if (p->informational) {
        p->informational = false;
        return 0;
    }
    p->complete = true;
    return p->parser.upgrade ? 0 : 1; /* one answer per request: stop here */
}

static const http_parser_settings settings = {
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

/* Waits for the backend. A stream may stay silent for as long as its
 * command runs (execd sends no keep-alive), so there is no timeout unless
 * deadline_us is set; but a client that hangs up ends it at once (execd
 * then sees its connection close and stops the command, or closes the
 * tunnel), and so does a server shutdown. */
static int
wait_backend(kn_proxy_t *p, uint64_t deadline_us)
{
    for (;;) {
        int ms = WAKE_MS;
        if (deadline_us) {
            uint64_t now = kn_now_us();
            if (now >= deadline_us) {
                errno = ETIMEDOUT;
                return -1;
            }
            if ((deadline_us - now) / 1000 < (uint64_t)ms)
                ms = (int)((deadline_us - now) / 1000) + 1;
        }
        struct pollfd pfd[2] = {{p->fd, POLLIN, 0}, {p->client_fd, POLLRDHUP, 0}};
        int n = poll(pfd, p->client_fd >= 0 ? 2 : 1, ms);
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

/* Reads once from the backend (or takes what was read ahead) and parses
 * it. -1 on error or early EOF. After an upgrade the rest belongs to the
 * new protocol and goes to pending, unparsed. */
static int
pump(kn_proxy_t *p, uint64_t deadline_us)
{
    char *buf = p->rbuf;
    ssize_t n;
    if (p->eoff < p->elen) {
        n = (ssize_t)(p->elen - p->eoff);
        if (n > READ_BUF)
            n = READ_BUF;
        memcpy(buf, p->early + p->eoff, (size_t)n);
        p->eoff += (size_t)n;
    } else {
        if (wait_backend(p, deadline_us) < 0)
            return -1;
        do
            n = read(p->fd, buf, READ_BUF);
        while (n < 0 && errno == EINTR);
        if (n < 0)
            return -1;
    }
    if (p->complete) { /* bytes past the answer */
        p->dirty = p->dirty || n > 0;
        return 0;
    }
    size_t used = http_parser_execute(&p->parser, &settings, buf, (size_t)n);
    enum http_errno e = HTTP_PARSER_ERRNO(&p->parser);
    if (p->complete && e == HPE_CB_message_complete) {
        /* on_complete stopped the parser at the end of the answer: anything
         * after it is out of turn, and the connection is not kept. */
        p->dirty = used < (size_t)n;
        return 0;
    }
    if (e != HPE_OK)
        return -1;
    if (p->parser.upgrade) {
        p->upgraded = true;
        return append(p, buf + used, (size_t)n - used) ? -1 : 0;
    }
    if (used != (size_t)n || (n == 0 && !p->complete))
        return -1;
    return 0;
}

static int
read_head(kn_proxy_t *p, uint64_t deadline_us)
{
    while (!p->head_done)
        if (pump(p, deadline_us) < 0)
            return -1;
    return 0;
}

/* The message of execd's refusal, kept short: it is shown to the client. */
static void
refusal(kn_proxy_t *p, char *msg, size_t n)
{
    json_t *j = p->pending ? json_loadb(p->pending + p->poff, p->plen - p->poff, 0, NULL) : NULL;
    const char *m = json_string_value(json_object_get(j, "message"));
    snprintf(msg, n, "%.300s", m ? m : "execd refused the tunnel");
    json_decref(j);
}

/* Asks execd for a byte stream to p->port on the sandbox's loopback. On
 * success what execd sent past its 101 is kept for the response parser. */
static int
open_tunnel(kn_proxy_t *p, kn_error_t *err)
{
    char req[160];
    int n = snprintf(req, sizeof req,
                     "GET /tunnel/%d HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
                     "Upgrade: " KN_TUNNEL_PROTOCOL "\r\n\r\n",
                     p->port);
    if (send_all(p, req, (size_t)n, err) < 0)
        return -1;
    uint64_t deadline = kn_now_us() + TUNNEL_TIMEOUT_US;
    p->in_tunnel = true;
    head_reset(p);
    if (read_head(p, deadline) < 0)
        return kn_server_error(err, ECONNREFUSED, "port %d: execd did not open a tunnel%s", p->port,
                               errno == ETIMEDOUT ? " in time" : "");
    if (p->parser.status_code != 101 || !p->upgraded) {
        while (!p->complete && !p->upgraded && p->plen - p->poff < TUNNEL_ERROR_CAP &&
               pump(p, deadline) == 0)
            ;
        char msg[320];
        refusal(p, msg, sizeof msg);
        /* execd's 502: it tried, and nothing accepts on that port. */
        return kn_server_error(err, p->parser.status_code == 502 ? EHOSTUNREACH : ECONNREFUSED,
                               "%s", msg);
    }
    /* Bytes the program sent at once (a banner) come before its answer. */
    free(p->early);
    p->early = p->pending;
    p->elen = p->plen;
    p->eoff = p->poff;
    p->pending = NULL;
    p->pcap = 0;
    p->in_tunnel = false;
    head_reset(p);
    return 0;
}

/* ---- the request ------------------------------------------------------- */

static void
forwarded_for(struct MHD_Connection *conn, buf_t *b)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char a[INET6_ADDRSTRLEN] = "";
    if (!ci || !ci->client_addr)
        return;
    if (ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, a, sizeof a);
    else if (ci->client_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, a,
                  sizeof a);
    if (a[0])
        buf_header(b, "X-Forwarded-For", a);
}

static int
request_head(kn_proxy_t *p, const kn_proxy_target_t *t, struct MHD_Connection *conn, buf_t *b)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
    const char *up = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Upgrade");
    const char *co = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Connection");
    /* Transfer-Encoding wins over Content-Length (RFC 9112 6.3): libmicrohttpd
     * hands over the decoded body either way. */
    p->body_mode = te ? 2 : cl ? 1 : 0;
    p->is_upgrade = up && up[0] && co && kn_ws_has_token(co, "upgrade");
    buf_str(b, t->method);
    buf_str(b, " ");
    buf_str(b, t->target);
    buf_str(b, " HTTP/1.1\r\n");
    char host[32];
    if (p->port)
        snprintf(host, sizeof host, "localhost:%d", p->port);
    else
        snprintf(host, sizeof host, "localhost");
    buf_header(b, "Host", host);
    if (p->is_upgrade) {
        buf_header(b, "Connection", "Upgrade");
        buf_header(b, "Upgrade", up);
    } else if (p->port) {
        buf_header(b, "Connection", "close"); /* a tunnel is used once */
    }
    MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header, b);
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    if (h)
        buf_header(b, "X-Forwarded-Host", h);
    buf_header(b, "X-Forwarded-Proto", "http");
    if (t->prefix && t->prefix[0])
        buf_header(b, "X-Forwarded-Prefix", t->prefix);
    forwarded_for(conn, b);
    if (p->body_mode == 1)
        buf_header(b, "Content-Length", cl);
    else if (p->body_mode == 2)
        buf_header(b, "Transfer-Encoding", "chunked");
    buf_str(b, "\r\n");
    return b->oom ? -1 : 0;
}

int
kn_proxy_begin(kn_proxy_t **out, const kn_proxy_target_t *t, struct MHD_Connection *conn,
               kn_error_t *err)
{
    kn_proxy_t *p = calloc(1, sizeof *p);
    if (!p || !(p->rbuf = malloc(READ_BUF))) {
        free(p);
        return kn_error_set(err, ENOMEM, "proxy");
    }
    p->fd = -1;
    p->port = t->port;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    p->client_fd = ci ? ci->connect_fd : -1;
    p->is_head = !strcmp(t->method, "HEAD");
    struct stat sst;
    if (!t->port && stat(t->sock, &sst) == 0) {
        /* The socket file is part of the key: a sandbox that replaces it
         * gets a fresh connection and the peer check, never an old one. */
        size_t kl = strlen(t->sock) + strlen(t->pidns) + 64;
        if (!(p->pool_key = malloc(kl))) {
            kn_error_set(err, ENOMEM, "proxy");
            goto fail;
        }
        snprintf(p->pool_key, kl, "%s\n%s\n%ju:%ju", t->sock, t->pidns, (uintmax_t)sst.st_dev,
                 (uintmax_t)sst.st_ino);
        p->fd = pool_take(p->pool_key);
    }
    if (p->fd < 0) {
        if ((p->fd = kn_uclient_connect(t->sock, err)) < 0 ||
            kn_uclient_check_peer(p->fd, t->pidns, err) < 0)
            goto fail;
        struct timeval st = {SEND_TIMEOUT_S, 0};
        setsockopt(p->fd, SOL_SOCKET, SO_SNDTIMEO, &st, sizeof st);
    }
    if (p->port && open_tunnel(p, err) < 0)
        goto fail;
    if (!p->port)
        head_reset(p);
    if (request_head(p, t, conn, &p->head) < 0) {
        kn_error_set(err, ENOMEM, "proxy");
        goto fail;
    }
    /* The head goes at once: execd parses it while the body is read. */
    if (send_parts(p, NULL, 0, err) < 0)
        goto fail;
    *out = p;
    return 0;
fail:
    kn_proxy_free(p);
    return -1;
}

int
kn_proxy_body(kn_proxy_t *p, const char *data, size_t len, kn_error_t *err)
{
    if (p->body_mode == 2) {
        char head[32];
        int n = snprintf(head, sizeof head, "%zx\r\n", len);
        struct iovec v[3] = {{head, (size_t)n}, {(char *)data, len}, {"\r\n", 2}};
        return send_parts(p, v, 3, err);
    }
    struct iovec v = {(char *)data, len};
    return send_parts(p, &v, 1, err);
}

/* ---- the response ------------------------------------------------------ */

static ssize_t
reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    kn_proxy_t *p = cls;
    while (p->poff == p->plen) {
        if (p->complete)
            return finish(p) < 0 ? MHD_CONTENT_READER_END_WITH_ERROR
                                 : MHD_CONTENT_READER_END_OF_STREAM;
        if (pump(p, 0) < 0)
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

/* The upgraded connection: bytes both ways until either side ends. Runs on
 * the connection's own thread (thread-per-connection mode may block here). */
static void
upgraded(void *cls, struct MHD_Connection *conn, void *req_cls, const char *extra_in,
         size_t extra_len, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    (void)conn;
    (void)req_cls;
    kn_proxy_t *p = cls;
    /* libmicrohttpd turns Nagle back on for an upgraded socket: small
     * WebSocket frames would wait for the client's delayed ACK. */
    int one = 1;
    (void)setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    kn_bridge_opts_t o = {.a_pre = extra_in,
                          .a_pre_len = extra_len,
                          .b_pre = p->pending ? p->pending + p->poff : NULL,
                          .b_pre_len = p->plen - p->poff,
                          .stop = &stopping,
                          .linger_ms = LINGER_MS,
                          .tap = p->relay_tap,
                          .tap_ctx = p->relay_ctx};
    (void)kn_bridge(sock, p->fd, &o);
    close(p->fd);
    p->fd = -1;
    /* Last: the request (and p with it) may be completed once this runs. */
    MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

static struct MHD_Response *
upgrade_response(kn_proxy_t *p, kn_error_t *err)
{
    const char *proto = header(p, "Upgrade");
    if (!p->is_upgrade || !p->upgraded || !proto) {
        kn_server_error(err, EPROTO, "the sandbox switched protocols without a valid upgrade");
        return NULL;
    }
    /* The answer is the head: the call is finished before it is passed on. */
    if (finish(p) < 0) {
        kn_error_set(err, ECONNABORTED, "the outcome of this request could not be recorded");
        return NULL;
    }
    struct MHD_Response *r = MHD_create_response_for_upgrade(upgraded, p);
    if (!r) {
        kn_error_set(err, ENOMEM, "response");
        return NULL;
    }
    for (int i = 0; i < p->n_headers; i++)
        if (p->names[i] && p->values[i] && !skipped(p->names[i]))
            MHD_add_response_header(r, p->names[i], p->values[i]);
    MHD_add_response_header(r, "Upgrade", proto);
    MHD_add_response_header(r, "Connection", "Upgrade");
    return r;
}

struct MHD_Response *
kn_proxy_response(kn_proxy_t *p, unsigned *status, kn_error_t *err)
{
    struct iovec end = {"0\r\n\r\n", p->body_mode == 2 ? 5 : 0};
    if (send_parts(p, &end, 1, err) < 0)
        return NULL;
    if (read_head(p, 0) < 0) {
        if (p->port)
            kn_server_error(err, EPROTO,
                            "the program on port %d closed the connection or answered badly",
                            p->port);
        else
            kn_server_error(err, EPROTO, "execd closed the connection or answered badly");
        return NULL;
    }
    *status = p->parser.status_code;
    if (*status == 101)
        return upgrade_response(p, err);
    struct MHD_Response *r;
    bool sized = p->sized;
    bool empty =
        *status == 204 || *status == 304 || (sized && p->clen == 0) || (p->is_head && !sized);
    if (empty)
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    else /* a HEAD keeps the length GET would have; MHD then reads nothing */
        r = MHD_create_response_from_callback(sized ? p->clen : MHD_SIZE_UNKNOWN, MHD_BLOCK, reader,
                                              p, reader_free);
    if (!r) {
        kn_error_set(err, ENOMEM, "response");
        return NULL;
    }
    for (int i = 0; i < p->n_headers; i++)
        if (p->names[i] && p->values[i] && !skipped(p->names[i]))
            MHD_add_response_header(r, p->names[i], p->values[i]);
    if (empty || p->is_head) {
        /* Nothing more will come through the reader: the call is finished
         * now (a HEAD's reader is never called). */
        int rc = finish(p);
        if (empty)
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
    pthread_mutex_lock(&pool_mu);
    for (int i = 0; i < pool_n; i++) {
        close(pool[i].fd);
        free(pool[i].key);
    }
    pool_n = 0;
    pthread_mutex_unlock(&pool_mu);
}

void
kn_proxy_free(kn_proxy_t *p)
{
    if (!p)
        return;
    /* Kept only after a whole exchange that leaves the connection open. */
    bool keep = p->fd >= 0 && p->pool_key && p->complete && !p->dirty && !p->is_upgrade &&
                !p->upgraded && p->head_sent == p->head.len && !atomic_load(&stopping) &&
                http_should_keep_alive(&p->parser);
    if (keep) {
        pool_put(p->fd, p->pool_key);
        p->pool_key = NULL;
    } else if (p->fd >= 0) {
        close(p->fd);
    }
    free(p->pool_key);
    for (int i = 0; i < p->n_headers; i++) {
        free(p->names[i]);
        free(p->values[i]);
    }
    free(p->pending);
    free(p->early);
    free(p->rbuf);
    free(p->head.p);
    free(p);
}
