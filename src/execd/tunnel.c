/* tunnel.c - GET /tunnel/{port} (Upgrade: kennel-tunnel): a byte stream to
 * a port on the sandbox's own loopback. See handlers.h.
 *
 * This is how the server reaches a program listening inside a sandbox: it
 * talks to execd over the unix socket (no network needed), execd makes the
 * TCP connection here, in the sandbox's network namespace, and then only
 * carries bytes. The address is fixed to the loopback (127.0.0.1, then
 * ::1), never taken from the request, so a tunnel leads nowhere the
 * sandbox's own programs could not already go. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/bridge.h"
#include "handlers.h"

#define TUNNEL_CONNECT_MS 5000

struct kn_tunnel {
    int fd; /* the TCP connection inside; -1 once closed */
};

static int
parse_port(const char *s)
{
    long v = 0;
    int n = 0;
    for (; s[n] >= '0' && s[n] <= '9' && n < 6; n++)
        v = v * 10 + (s[n] - '0');
    return n > 0 && s[n] == '\0' && s[0] != '0' && v <= 65535 ? (int)v : -1;
}

/* Connects to addr, waiting at most TUNNEL_CONNECT_MS (a full accept queue
 * drops SYNs rather than refusing them). Returns the fd or -1 (errno). */
static int
connect_to(const struct sockaddr *addr, socklen_t len)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int e = 0;
    if (connect(fd, addr, len) < 0) {
        e = errno;
        if (e == EINPROGRESS) {
            struct pollfd p = {fd, POLLOUT, 0};
            int n;
            do
                n = poll(&p, 1, TUNNEL_CONNECT_MS);
            while (n < 0 && errno == EINTR);
            socklen_t el = sizeof e;
            if (n == 0)
                e = ETIMEDOUT;
            else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
                e = errno;
        }
    }
    if (e) {
        close(fd);
        errno = e;
        return -1;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int
connect_loopback(int port)
{
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = connect_to((struct sockaddr *)&a4, sizeof a4);
    if (fd >= 0 || errno == ETIMEDOUT)
        return fd;
    int e = errno;
    /* A program that listens on ::1 only. */
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    a6.sin6_addr = in6addr_loopback;
    fd = connect_to((struct sockaddr *)&a6, sizeof a6);
    if (fd < 0)
        errno = e; /* the IPv4 answer is the one to report */
    return fd;
}

static void
run(void *cls, struct MHD_Connection *conn, void *req_cls, const char *extra_in, size_t extra_len,
    MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    (void)conn;
    kn_req_t *req = req_cls;
    struct kn_tunnel *t = cls;
    kn_bridge_opts_t o = {.a_pre = extra_in, .a_pre_len = extra_len, .stop = &req->ex->stopping};
    (void)kn_bridge(sock, t->fd, &o);
    close(t->fd);
    t->fd = -1;
    /* Last: MHD may clean the request up as soon as this returns. */
    MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

enum MHD_Result
kn_tunnel_open(kn_req_t *req)
{
    int port = parse_port(req->param);
    if (port < 0)
        return kn_http_reply_error(req, 400, "INVALID_PORT",
                                   "port must be an integer from 1 to "
                                   "65535");
    const char *up = kn_http_header(req, "Upgrade");
    if (!up || strcasecmp(up, KN_TUNNEL_PROTOCOL) != 0)
        return kn_http_reply_error(req, 426, "UPGRADE_REQUIRED",
                                   "a tunnel needs the headers Connection: Upgrade and "
                                   "Upgrade: " KN_TUNNEL_PROTOCOL);
    struct kn_tunnel *t = calloc(1, sizeof *t);
    if (!t)
        return MHD_NO;
    t->fd = connect_loopback(port);
    if (t->fd < 0) {
        int e = errno;
        free(t);
        return kn_http_reply_error(req, 502, "PORT_UNREACHABLE",
                                   "nothing accepts connections on port %d inside the sandbox: %s",
                                   port, strerror(e));
    }
    req->tunnel = t;
    struct MHD_Response *resp = MHD_create_response_for_upgrade(run, t);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Upgrade", KN_TUNNEL_PROTOCOL);
    MHD_add_response_header(resp, "Connection", "Upgrade");
    return kn_http_queue(req, 101, resp);
}

void
kn_tunnel_free(struct kn_tunnel *t)
{
    if (!t)
        return;
    if (t->fd >= 0)
        close(t->fd);
    free(t);
}
