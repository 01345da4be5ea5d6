/* uclient.c - see uclient.h. */
#include "uclient.h"

#include <errno.h>
#include <http_parser.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

int
kn_uclient_connect(const char *path, kn_error_t *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return kn_error_set(err, ENAMETOOLONG, "socket path %s", path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return kn_error_set(err, errno, "socket");
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno == EINTR)
            continue;
        int e = errno;
        close(fd);
        return kn_error_set(err, e, "connect %s", path);
    }
    return fd;
}

int
kn_uclient_check_peer(int fd, const char *pidns, kn_error_t *err)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return kn_error_set(err, errno, "peer credentials");
    char link[64], ns[64];
    snprintf(link, sizeof link, "/proc/%d/ns/pid", (int)cred.pid);
    ssize_t n = readlink(link, ns, sizeof ns - 1);
    if (n <= 0)
        return kn_error_set(err, EPERM, "execd's peer is gone");
    ns[n] = '\0';
    if (strcmp(ns, pidns) != 0)
        return kn_error_set(err, EPERM, "the socket's peer is not inside the sandbox");
    return 0;
}

int
kn_uclient_connect_tcp(const char *host, int port, kn_error_t *err)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (!strcmp(host, "localhost"))
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        len = sizeof *a4;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        len = sizeof *a6;
    } else {
        return kn_error_set(err, EINVAL, "'%s' is not a numeric address (or localhost)", host);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return kn_error_set(err, errno, "socket");
    while (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        if (errno == EINTR)
            continue;
        int e = errno;
        close(fd);
        return kn_error_set(err, e, "connect to %s:%d", host, port);
    }
    return fd;
}

struct collect {
    kn_uresp_t *r;
    size_t cap;
    bool done, over, stopped;
    kn_uclient_body_fn fn;
    void *ctx;
};

static int
on_body(http_parser *p, const char *at, size_t len)
{
    struct collect *c = p->data;
    if (c->fn) {
        if (c->fn(at, len, c->ctx) < 0) {
            c->stopped = true;
            return 1;
        }
        return 0;
    }
    if (c->r->len + len > c->cap) {
        c->over = true;
        return 1;
    }
    char *g = realloc(c->r->body, c->r->len + len + 1);
    if (!g)
        return 1;
    c->r->body = g;
    memcpy(g + c->r->len, at, len);
    c->r->len += len;
    g[c->r->len] = '\0';
    return 0;
}

static int
on_complete(http_parser *p)
{
    ((struct collect *)p->data)->done = true;
    return 0;
}

static int64_t
mono_ms(void)
{
    return (int64_t)(kn_now_us() / 1000);
}

int
kn_uclient_exchange(int fd, const char *method, const char *target, const char *headers,
                    const char *ctype, const char *body, size_t blen, int timeout_ms, size_t cap,
                    kn_uclient_body_fn fn, void *ctx, kn_uresp_t *out, kn_error_t *err)
{
    kn_uresp_t r = {0};
    char head[2048];
    int hl = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                      "Content-Length: %zu\r\n%s%s%s%s\r\n",
                      method, target, body ? blen : 0, ctype ? "Content-Type: " : "",
                      ctype ? ctype : "", ctype ? "\r\n" : "", headers ? headers : "");
    if (hl < 0 || (size_t)hl >= sizeof head)
        return kn_error_set(err, E2BIG, "request head too long");
    if (kn_write_all(fd, head, (size_t)hl) < 0 || (body && kn_write_all(fd, body, blen) < 0))
        return kn_error_set(err, errno, "send %s %s", method, target);
    http_parser_settings set = {0};
    set.on_body = on_body;
    set.on_message_complete = on_complete;
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    struct collect c = {.r = &r, .cap = cap, .fn = fn, .ctx = ctx};
    p.data = &c;
    int64_t deadline = mono_ms() + timeout_ms;
    while (!c.done) {
        int64_t left = timeout_ms < 0 ? -1 : deadline - mono_ms();
        if (timeout_ms >= 0 && left <= 0) {
            kn_error_set(err, ETIMEDOUT, "%s %s: no answer", method, target);
            goto fail;
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, (int)left);
        if (pr <= 0)
            continue;
        char buf[16384];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            kn_error_set(err, errno, "read %s %s", method, target);
            goto fail;
        }
        r.status = (int)p.status_code;
        size_t used = http_parser_execute(&p, &set, buf, (size_t)n);
        r.status = (int)p.status_code;
        if (c.stopped)
            break;
        if (c.over) {
            kn_error_set(err, E2BIG, "%s %s: answer larger than %zu bytes", method, target, cap);
            goto fail;
        }
        if (HTTP_PARSER_ERRNO(&p) != HPE_OK || used != (size_t)n) {
            kn_error_set(err, EPROTO, "%s %s: bad answer: %s", method, target,
                         http_errno_description(HTTP_PARSER_ERRNO(&p)));
            goto fail;
        }
        if (n == 0 && !c.done) {
            kn_error_set(err, ECONNRESET, "%s %s: connection closed early", method, target);
            goto fail;
        }
    }
    r.status = (int)p.status_code;
    if (!r.body && !(r.body = calloc(1, 1)))
        return kn_error_set(err, ENOMEM, "response");
    *out = r;
    return 0;
fail:
    free(r.body);
    return -1;
}

int
kn_uclient_request(const char *path, const char *pidns, const char *method, const char *target,
                   const char *ctype, const char *body, size_t blen, int timeout_ms, size_t cap,
                   kn_uresp_t *out, kn_error_t *err)
{
    int fd = kn_uclient_connect(path, err);
    if (fd < 0)
        return -1;
    int rc = -1;
    if (!pidns || kn_uclient_check_peer(fd, pidns, err) == 0)
        rc = kn_uclient_exchange(fd, method, target, NULL, ctype, body, blen, timeout_ms, cap, NULL,
                                 NULL, out, err);
    close(fd);
    return rc;
}

void
kn_uresp_free(kn_uresp_t *r)
{
    if (r) {
        free(r->body);
        r->body = NULL;
    }
}
