/* relay.c - exposed ports: a listener on host 127.0.0.1:EXTERNAL whose
 * connections are carried to 127.0.0.1:INTERNAL inside the sandbox.
 *
 * The inner socket is created in the sandbox's network namespace (see
 * kn_netns_socket) and connects to the sandbox's own loopback, so this needs
 * neither the veth nor any egress rule. Everything is non-blocking and driven
 * from the launcher's poll loop; each connection has one bounded buffer per
 * direction, and a side that is full is simply not read until it drains. */
#include "netpolicy_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

#define RELAY_MAX_CONNS 8
#define RELAY_BUF 65536

typedef struct pipe_buf {
    char *data;
    size_t len;
    bool eof;  /* the reading side ended */
    bool shut; /* the end was passed on (shutdown SHUT_WR) */
} pipe_buf_t;

typedef struct conn {
    int out; /* accepted on the host */
    int in;  /* inside the sandbox */
    bool connecting;
    pipe_buf_t to_in, to_out;
} conn_t;

struct kn_relay {
    int netns_fd;
    int listener;
    uint16_t inside;
    uint16_t port;
    conn_t conns[RELAY_MAX_CONNS];
};

kn_relay_t *
kn_relay_new(int netns_fd, uint16_t inside, uint16_t outside, kn_error_t *err)
{
    kn_relay_t *r = calloc(1, sizeof *r);
    if (!r) {
        kn_error_set(err, ENOMEM, "relay");
        return NULL;
    }
    r->netns_fd = netns_fd;
    r->inside = inside;
    for (int i = 0; i < RELAY_MAX_CONNS; i++)
        r->conns[i].out = r->conns[i].in = -1;
    r->listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (r->listener < 0) {
        kn_error_set(err, errno, "expose %u: socket", inside);
        goto fail;
    }
    int one = 1;
    (void)setsockopt(r->listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(outside)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (bind(r->listener, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(r->listener, 16) < 0 ||
        getsockname(r->listener, (struct sockaddr *)&sa, &sl) < 0) {
        kn_error_set(err, errno, "expose %u: listen on 127.0.0.1:%u", inside, outside);
        goto fail;
    }
    r->port = ntohs(sa.sin_port);
    return r;
fail:
    kn_relay_free(r);
    return NULL;
}

uint16_t
kn_relay_port(const kn_relay_t *r)
{
    return r ? r->port : 0;
}

static void
conn_close(conn_t *c)
{
    if (c->out >= 0)
        close(c->out);
    if (c->in >= 0)
        close(c->in);
    free(c->to_in.data);
    free(c->to_out.data);
    *c = (conn_t){.out = -1, .in = -1};
}

void
kn_relay_free(kn_relay_t *r)
{
    if (!r)
        return;
    for (int i = 0; i < RELAY_MAX_CONNS; i++)
        conn_close(&r->conns[i]);
    if (r->listener >= 0)
        close(r->listener);
    free(r);
}

static void
accept_one(kn_relay_t *r)
{
    int fd = accept4(r->listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    conn_t *c = NULL;
    for (int i = 0; i < RELAY_MAX_CONNS && !c; i++)
        if (r->conns[i].out < 0)
            c = &r->conns[i];
    kn_error_t err;
    int in = c ? kn_netns_socket(r->netns_fd, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, &err) : -1;
    char *a = in >= 0 ? malloc(RELAY_BUF) : NULL, *b = a ? malloc(RELAY_BUF) : NULL;
    if (!b) {
        free(a);
        if (in >= 0)
            close(in);
        close(fd);
        return;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(r->inside)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *c = (conn_t){.out = fd, .in = in, .to_in = {.data = a}, .to_out = {.data = b}};
    if (connect(in, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno != EINPROGRESS) {
            conn_close(c);
            return;
        }
        c->connecting = true;
    }
}

/* Moves what it can from src into b and from b to dst. Returns -1 when the
 * connection is broken. */
static int
pump(int src, int dst, pipe_buf_t *b)
{
    while (!b->eof && b->len < RELAY_BUF) {
        ssize_t n = recv(src, b->data + b->len, RELAY_BUF - b->len, MSG_DONTWAIT);
        if (n > 0) {
            b->len += (size_t)n;
        } else if (n == 0) {
            b->eof = true;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else {
            return -1;
        }
    }
    while (b->len) {
        ssize_t n = send(dst, b->data, b->len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            memmove(b->data, b->data + n, b->len - (size_t)n);
            b->len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            return -1;
        }
    }
    if (b->eof && !b->len && !b->shut) {
        shutdown(dst, SHUT_WR);
        b->shut = true;
    }
    return 0;
}

static void
conn_step(conn_t *c)
{
    if (c->connecting) {
        int e = 0;
        socklen_t el = sizeof e;
        if (getsockopt(c->in, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e) {
            conn_close(c);
            return;
        }
        struct sockaddr_in peer;
        socklen_t pl = sizeof peer;
        if (getpeername(c->in, (struct sockaddr *)&peer, &pl) < 0)
            return; /* still connecting */
        c->connecting = false;
    }
    if (pump(c->out, c->in, &c->to_in) < 0 || pump(c->in, c->out, &c->to_out) < 0 ||
        (c->to_in.shut && c->to_out.shut))
        conn_close(c);
}

/* Passes on what the sandbox already sent towards the caller, until that
 * side ends, the caller stops taking it, or deadline_us. The launcher stops
 * polling a sandbox's descriptors when its program ends, and a program
 * that answers and exits must not have its answer cut short. */
static void
conn_drain(conn_t *c, uint64_t deadline_us)
{
    while (c->out >= 0 && !c->connecting && !c->to_out.shut) {
        if (pump(c->in, c->out, &c->to_out) < 0)
            return;
        if (c->to_out.shut)
            return;
        uint64_t now = kn_now_us();
        if (now >= deadline_us)
            return;
        struct pollfd p[2] = {{c->out, c->to_out.len ? POLLOUT : 0, 0},
                              {c->in, c->to_out.eof ? 0 : POLLIN, 0}};
        int ms = (int)((deadline_us - now) / 1000) + 1;
        if (poll(p, 2, ms) <= 0 && errno != EINTR)
            return;
        if ((p[0].revents & (POLLERR | POLLHUP)) && !(p[0].revents & POLLOUT))
            return;
    }
}

void
kn_relay_drain(kn_relay_t *r, uint64_t deadline_us)
{
    for (int i = 0; r && i < RELAY_MAX_CONNS; i++)
        if (r->conns[i].out >= 0)
            conn_drain(&r->conns[i], deadline_us);
}

int
kn_relay_pollfds(kn_relay_t *r, struct pollfd *fds, int max)
{
    int n = 0;
    bool room = false;
    for (int i = 0; i < RELAY_MAX_CONNS; i++) {
        conn_t *c = &r->conns[i];
        if (c->out < 0) {
            room = true;
            continue;
        }
        if (n + 2 > max)
            break;
        short ev_out = 0, ev_in = 0;
        if (c->connecting) {
            ev_in = POLLOUT;
        } else {
            if (!c->to_in.eof && c->to_in.len < RELAY_BUF)
                ev_out |= POLLIN;
            if (c->to_out.len)
                ev_out |= POLLOUT;
            if (!c->to_out.eof && c->to_out.len < RELAY_BUF)
                ev_in |= POLLIN;
            if (c->to_in.len)
                ev_in |= POLLOUT;
        }
        fds[n++] = (struct pollfd){c->out, ev_out, 0};
        fds[n++] = (struct pollfd){c->in, ev_in, 0};
    }
    if (room && n < max)
        fds[n++] = (struct pollfd){r->listener, POLLIN, 0};
    return n;
}

bool
kn_relay_handle(kn_relay_t *r, int fd, short revents)
{
    if (fd == r->listener) {
        if (revents & POLLIN)
            accept_one(r);
        return true;
    }
    for (int i = 0; i < RELAY_MAX_CONNS; i++) {
        conn_t *c = &r->conns[i];
        if (c->out >= 0 && (fd == c->out || fd == c->in)) {
            conn_step(c);
            return true;
        }
    }
    return false;
}
