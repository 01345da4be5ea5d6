/* dnsproxy.c - Kennel's DNS proxy: the only resolver a sandbox with a
 * network policy can reach.
 *
 * It listens on the host end of the sandbox's veth and is served from the
 * launcher's poll loop (no threads). Queries come from the sandbox and are
 * untrusted: the parser below bounds-checks every read and is a function of
 * its own so that a fuzzer can drive it. Names the policy does not allow are
 * answered REFUSED without going anywhere. Allowed names are forwarded to the
 * upstream resolver under a fresh random query id; the answer's A records are
 * handed to the owner (netpolicy.c), which opens them in the sandbox's nft
 * set for their TTL, before the answer is relayed, so that the sandbox's
 * first connect already passes. Queries come over UDP or TCP (a few
 * connections, one query at a time each); the upstream is always asked over
 * UDP (the sandbox's resolv.conf asks for EDNS0, so answers fit). */
#include "netpolicy_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

#define DNS_HDR 12
#define MAX_PENDING 64
#define PENDING_TIMEOUT_US (5u * 1000000u)
#define MAX_OPEN 64
#define RCODE_SERVFAIL 2
#define RCODE_REFUSED 5
#define MAX_TCP 4
#define TCP_IDLE_US (10u * 1000000u)

static uint16_t
get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t
get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Reads the name at *off and moves *off past its bytes in place. With
 * out, writes it dotted and in lower case; labels holding dots, spaces or
 * control bytes are refused so that what the policy matches is what was
 * asked. Compression pointers (when allowed: never in the question, which
 * nothing precedes) must point strictly backwards, past the header, so
 * they cannot loop; at most 32 are followed. */
static int
read_name(const uint8_t *msg, size_t len, size_t *off, char *out, size_t cap, bool ptrs)
{
    size_t pos = *off, n = 0, wire = 0;
    bool jumped = false;
    int hops = 0;
    for (;;) {
        if (pos >= len)
            return -1;
        uint8_t l = msg[pos];
        if ((l & 0xC0) == 0xC0) {
            if (!ptrs || pos + 1 >= len || ++hops > 32)
                return -1;
            size_t target = ((size_t)(l & 0x3F) << 8) | msg[pos + 1];
            if (!jumped)
                *off = pos + 2;
            jumped = true;
            if (target >= pos || target < DNS_HDR)
                return -1;
            pos = target;
            continue;
        }
        if (l & 0xC0)
            return -1;
        if (l == 0) {
            if (!jumped)
                *off = pos + 1;
            break;
        }
        if (l > len - pos - 1)
            return -1;
        wire += (size_t)l + 1;
        if (wire > 254)
            return -1;
        if (out) {
            if (n + l + 2 > cap)
                return -1;
            if (n)
                out[n++] = '.';
            for (size_t i = 0; i < l; i++) {
                uint8_t c = msg[pos + 1 + i];
                if (c <= 0x20 || c >= 0x7f || c == '.')
                    return -1;
                out[n++] = (char)tolower(c);
            }
        }
        pos += (size_t)l + 1;
    }
    if (out) {
        if (n >= cap)
            return -1;
        out[n] = '\0';
    }
    return 0;
}

int
kn_dns_parse_question(const uint8_t *msg, size_t len, kn_dns_question_t *q)
{
    if (!msg || len < DNS_HDR || len > KN_DNS_MAX_MSG)
        return -1;
    if (get16(msg + 4) != 1) /* QDCOUNT */
        return -1;
    size_t off = DNS_HDR;
    if (read_name(msg, len, &off, q->name, sizeof q->name, false) < 0)
        return -1;
    if (len - off < 4)
        return -1;
    q->qtype = get16(msg + off);
    q->qclass = get16(msg + off + 2);
    q->end = off + 4;
    return 0;
}

int
kn_dns_parse_answers(const uint8_t *msg, size_t len, const kn_dns_question_t *q, kn_dns_addr_fn fn,
                     void *ctx)
{
    if (!msg || len < DNS_HDR || len > KN_DNS_MAX_MSG || q->end > len)
        return -1;
    unsigned ancount = get16(msg + 6);
    size_t off = q->end;
    int found = 0;
    for (unsigned i = 0; i < ancount; i++) {
        if (read_name(msg, len, &off, NULL, 0, true) < 0)
            return -1;
        if (len - off < 10)
            return -1;
        uint16_t type = get16(msg + off), klass = get16(msg + off + 2);
        uint32_t ttl = get32(msg + off + 4);
        size_t rdlen = get16(msg + off + 8);
        off += 10;
        if (rdlen > len - off)
            return -1;
        if (type == 1 && klass == 1 && rdlen == 4) {
            if (fn)
                fn(ctx, get32(msg + off), ttl > 0x7fffffffu ? 0 : ttl);
            found++;
        }
        off += rdlen;
    }
    return found;
}

static size_t
answer_rcode(const uint8_t *query, const kn_dns_question_t *q, int rcode, uint8_t *out, size_t cap)
{
    if (q->end > cap || q->end < DNS_HDR)
        return 0;
    memcpy(out, query, q->end);
    out[2] = (uint8_t)(0x80 | (query[2] & 0x79)); /* QR, the opcode and RD kept */
    out[3] = (uint8_t)(0x80 | rcode);             /* RA */
    memset(out + 6, 0, 6);                        /* no answer, authority, additional */
    return q->end;
}

size_t
kn_dns_refused(const uint8_t *query, const kn_dns_question_t *q, uint8_t *out, size_t cap)
{
    return answer_rcode(query, q, RCODE_REFUSED, out, cap);
}

int
kn_dns_upstream_parse(const char *spec, struct sockaddr_in *out, kn_error_t *err)
{
    char host[64] = "";
    unsigned port = 53;
    if (spec && spec[0]) {
        const char *colon = strchr(spec, ':');
        size_t hl = colon ? (size_t)(colon - spec) : strlen(spec);
        if (hl == 0 || hl >= sizeof host)
            return kn_error_set(err, EINVAL, "DNS upstream '%s' is not ADDR[:PORT]", spec);
        memcpy(host, spec, hl);
        host[hl] = '\0';
        if (colon) {
            char *end;
            unsigned long p = strtoul(colon + 1, &end, 10);
            if (!colon[1] || *end || p == 0 || p > 65535)
                return kn_error_set(err, EINVAL, "DNS upstream '%s': bad port", spec);
            port = (unsigned)p;
        }
    } else {
        char buf[8192];
        kn_error_t e2;
        if (kn_read_file("/etc/resolv.conf", buf, sizeof buf, &e2) < 0)
            return kn_error_set(err, e2.code,
                                "no DNS upstream given and /etc/resolv.conf "
                                "cannot be read");
        char *save = NULL;
        for (char *line = strtok_r(buf, "\n", &save); line && !host[0];
             line = strtok_r(NULL, "\n", &save)) {
            char a[64];
            struct in_addr tmp;
            if (sscanf(line, " nameserver %63s", a) == 1 && inet_pton(AF_INET, a, &tmp) == 1)
                snprintf(host, sizeof host, "%s", a);
        }
        if (!host[0])
            return kn_error_set(err, ENOENT,
                                "no IPv4 nameserver in /etc/resolv.conf (use "
                                "--dns-upstream)");
    }
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &out->sin_addr) != 1)
        return kn_error_set(err, EINVAL, "DNS upstream '%s' is not an IPv4 address", host);
    return 0;
}

/* Where an answer goes: a UDP address, or a TCP client (index and the
 * generation it had, so that a reused slot never gets another's answer). */
typedef struct target {
    struct sockaddr_in addr;
    int tcp;
    uint32_t gen;
} target_t;

typedef struct pending {
    bool used;
    bool open; /* the answer's addresses are to be opened */
    uint16_t client_id;
    uint16_t up_id;
    target_t client;
    uint64_t deadline_us;
    uint16_t qtype;
    char name[256];
} pending_t;

typedef struct tcp_client {
    int fd;
    uint32_t gen;
    bool busy; /* a query is out: its answer goes before the next is read */
    uint64_t last_us;
    size_t in_len, out_len, out_off;
    uint8_t in[2 + KN_DNS_MAX_MSG];
    uint8_t out[2 + KN_DNS_MAX_MSG];
} tcp_client_t;

struct kn_dnsproxy {
    int udp; /* the sandbox's side */
    int up;  /* connected to the upstream */
    int tcp_listen;
    uint32_t tcp_gen;
    tcp_client_t tcp[MAX_TCP];
    uint32_t client_addr;
    const kn_net_policy_t *pol;
    kn_dns_open_fn open_fn;
    void *ctx;
    pending_t pend[MAX_PENDING];
};

kn_dnsproxy_t *
kn_dnsproxy_new(uint32_t listen_addr, uint32_t client_addr, const struct sockaddr_in *upstream,
                kn_dns_open_fn fn, void *ctx, kn_error_t *err)
{
    kn_dnsproxy_t *d = calloc(1, sizeof *d);
    if (!d) {
        kn_error_set(err, ENOMEM, "DNS proxy");
        return NULL;
    }
    d->up = d->tcp_listen = -1;
    for (int i = 0; i < MAX_TCP; i++)
        d->tcp[i].fd = -1;
    d->client_addr = client_addr;
    d->open_fn = fn;
    d->ctx = ctx;
    d->udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (d->udp < 0) {
        kn_error_set(err, errno, "DNS proxy socket");
        goto fail;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(53)};
    sa.sin_addr.s_addr = htonl(listen_addr);
    if (bind(d->udp, (struct sockaddr *)&sa, sizeof sa) < 0) {
        kn_error_set(err, errno, "DNS proxy: bind %s:53", inet_ntoa(sa.sin_addr));
        goto fail;
    }
    int one = 1;
    d->tcp_listen = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (d->tcp_listen < 0 ||
        setsockopt(d->tcp_listen, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(d->tcp_listen, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(d->tcp_listen, 8) < 0) {
        kn_error_set(err, errno, "DNS proxy: TCP %s:53", inet_ntoa(sa.sin_addr));
        goto fail;
    }
    if (upstream->sin_family != AF_INET)
        return d; /* no upstream: allowed names get SERVFAIL */
    d->up = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (d->up < 0) {
        kn_error_set(err, errno, "DNS proxy upstream socket");
        goto fail;
    }
    if (connect(d->up, (const struct sockaddr *)upstream, sizeof *upstream) < 0) {
        kn_error_set(err, errno, "DNS proxy: upstream %s:%u", inet_ntoa(upstream->sin_addr),
                     ntohs(upstream->sin_port));
        goto fail;
    }
    return d;
fail:
    kn_dnsproxy_free(d);
    return NULL;
}

void
kn_dnsproxy_set_policy(kn_dnsproxy_t *d, const kn_net_policy_t *p)
{
    d->pol = p;
}

void
kn_dnsproxy_free(kn_dnsproxy_t *d)
{
    if (!d)
        return;
    if (d->udp >= 0)
        close(d->udp);
    if (d->up >= 0)
        close(d->up);
    if (d->tcp_listen >= 0)
        close(d->tcp_listen);
    for (int i = 0; i < MAX_TCP; i++)
        if (d->tcp[i].fd >= 0)
            close(d->tcp[i].fd);
    free(d);
}

static void
tcp_close(tcp_client_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->busy = false;
    c->in_len = c->out_len = c->out_off = 0;
}

/* Sends what is queued; the connection is free for its next query once
 * all of the answer is out. */
static void
tcp_flush(tcp_client_t *c)
{
    while (c->fd >= 0 && c->out_off < c->out_len) {
        ssize_t n =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            tcp_close(c);
            return;
        }
        c->out_off += (size_t)n;
    }
    c->out_len = c->out_off = 0;
    c->busy = false;
}

int
kn_dnsproxy_pollfds(kn_dnsproxy_t *d, struct pollfd *fds, int max)
{
    int n = 0;
    uint64_t now = kn_now_us();
    if (n < max)
        fds[n++] = (struct pollfd){d->udp, POLLIN, 0};
    if (n < max && d->up >= 0)
        fds[n++] = (struct pollfd){d->up, POLLIN, 0};
    if (n < max)
        fds[n++] = (struct pollfd){d->tcp_listen, POLLIN, 0};
    for (int i = 0; i < MAX_TCP; i++) {
        tcp_client_t *c = &d->tcp[i];
        if (c->fd >= 0 && now - c->last_us > TCP_IDLE_US)
            tcp_close(c);
        if (c->fd >= 0 && n < max)
            fds[n++] = (struct pollfd){
                c->fd, (short)((c->busy ? 0 : POLLIN) | (c->out_len ? POLLOUT : 0)), 0};
    }
    return n;
}

static void
reply(kn_dnsproxy_t *d, const uint8_t *buf, size_t len, const target_t *to)
{
    if (!len)
        return;
    if (to->tcp < 0) {
        (void)sendto(d->udp, buf, len, MSG_DONTWAIT, (const struct sockaddr *)&to->addr,
                     sizeof to->addr);
        return;
    }
    tcp_client_t *c = &d->tcp[to->tcp];
    if (c->fd < 0 || c->gen != to->gen || len > KN_DNS_MAX_MSG)
        return;
    c->out[0] = (uint8_t)(len >> 8);
    c->out[1] = (uint8_t)len;
    memcpy(c->out + 2, buf, len);
    c->out_len = len + 2;
    c->out_off = 0;
    tcp_flush(c);
}

static pending_t *
pending_slot(kn_dnsproxy_t *d, uint64_t now)
{
    for (int i = 0; i < MAX_PENDING; i++)
        if (d->pend[i].used && d->pend[i].deadline_us < now)
            d->pend[i].used = false;
    for (int i = 0; i < MAX_PENDING; i++)
        if (!d->pend[i].used)
            return &d->pend[i];
    return NULL;
}

static uint16_t
fresh_id(const kn_dnsproxy_t *d)
{
    for (;;) {
        uint16_t id = 0;
        if (getrandom(&id, sizeof id, 0) != sizeof id)
            id = (uint16_t)kn_now_us();
        bool taken = false;
        for (int i = 0; i < MAX_PENDING; i++)
            taken |= d->pend[i].used && d->pend[i].up_id == id;
        if (!taken)
            return id;
    }
}

/* Returns -1 when the query was dropped (not the sandbox's, or not a
 * well-formed query), 0 when it was answered or forwarded. */
static int
on_query(kn_dnsproxy_t *d, uint8_t *buf, size_t len, const target_t *from)
{
    uint8_t out[KN_DNS_MAX_MSG];
    kn_dns_question_t q;
    /* Only the sandbox asks, and only queries (QR clear, opcode QUERY). */
    if (from->addr.sin_addr.s_addr != htonl(d->client_addr))
        return -1;
    if (kn_dns_parse_question(buf, len, &q) < 0 || (buf[2] & 0xF8) != 0)
        return -1;
    kn_name_verdict_t v = d->pol ? kn_net_name_verdict(d->pol, q.name) : KN_NAME_REFUSE;
    if (v == KN_NAME_REFUSE) {
        reply(d, out, kn_dns_refused(buf, &q, out, sizeof out), from);
        return 0;
    }
    uint64_t now = kn_now_us();
    pending_t *p = pending_slot(d, now);
    if (!p) {
        reply(d, out, answer_rcode(buf, &q, RCODE_SERVFAIL, out, sizeof out), from);
        return 0;
    }
    *p = (pending_t){.used = true,
                     .open = v == KN_NAME_OPEN,
                     .client_id = get16(buf),
                     .up_id = fresh_id(d),
                     .client = *from,
                     .deadline_us = now + PENDING_TIMEOUT_US,
                     .qtype = q.qtype};
    memcpy(p->name, q.name, sizeof p->name);
    buf[0] = (uint8_t)(p->up_id >> 8);
    buf[1] = (uint8_t)p->up_id;
    if (d->up < 0 || send(d->up, buf, len, MSG_DONTWAIT) < 0) {
        p->used = false;
        buf[0] = (uint8_t)(p->client_id >> 8);
        buf[1] = (uint8_t)p->client_id;
        reply(d, out, answer_rcode(buf, &q, RCODE_SERVFAIL, out, sizeof out), from);
    }
    return 0;
}

typedef struct collect {
    uint32_t addrs[MAX_OPEN];
    uint32_t ttls[MAX_OPEN];
    size_t n;
} collect_t;

static void
collect_addr(void *ctx, uint32_t addr, uint32_t ttl)
{
    collect_t *c = ctx;
    if (c->n < MAX_OPEN) {
        c->addrs[c->n] = addr;
        c->ttls[c->n++] = ttl;
    }
}

static void
on_answer(kn_dnsproxy_t *d, uint8_t *buf, size_t len)
{
    uint8_t out[KN_DNS_MAX_MSG];
    kn_dns_question_t q;
    if (len < DNS_HDR || !(buf[2] & 0x80))
        return;
    uint16_t id = get16(buf);
    pending_t *p = NULL;
    for (int i = 0; i < MAX_PENDING && !p; i++)
        if (d->pend[i].used && d->pend[i].up_id == id)
            p = &d->pend[i];
    if (!p)
        return;
    /* The answer must be to the question that was asked. */
    if (kn_dns_parse_question(buf, len, &q) < 0 || q.qtype != p->qtype ||
        strcmp(q.name, p->name) != 0)
        return;
    p->used = false;
    buf[0] = (uint8_t)(p->client_id >> 8);
    buf[1] = (uint8_t)p->client_id;
    /* The policy may have changed while the query was out. */
    kn_name_verdict_t v = d->pol ? kn_net_name_verdict(d->pol, q.name) : KN_NAME_REFUSE;
    if (v == KN_NAME_REFUSE) {
        reply(d, out, kn_dns_refused(buf, &q, out, sizeof out), &p->client);
        return;
    }
    if (v == KN_NAME_OPEN && p->open) {
        collect_t c = {.n = 0};
        if (kn_dns_parse_answers(buf, len, &q, collect_addr, &c) < 0) {
            reply(d, out, answer_rcode(buf, &q, RCODE_SERVFAIL, out, sizeof out), &p->client);
            return;
        }
        if (c.n && d->open_fn(d->ctx, q.name, c.addrs, c.ttls, c.n) < 0) {
            reply(d, out, answer_rcode(buf, &q, RCODE_SERVFAIL, out, sizeof out), &p->client);
            return;
        }
    }
    reply(d, buf, len, &p->client);
}

/* Serves the complete queries buffered on client i, one at a time. */
static void
tcp_process(kn_dnsproxy_t *d, int i)
{
    tcp_client_t *c = &d->tcp[i];
    uint8_t msg[KN_DNS_MAX_MSG];
    while (c->fd >= 0 && !c->busy && c->in_len >= 2) {
        size_t len = get16(c->in);
        if (len < DNS_HDR || len > KN_DNS_MAX_MSG) {
            tcp_close(c);
            return;
        }
        if (c->in_len < len + 2)
            return;
        memcpy(msg, c->in + 2, len);
        memmove(c->in, c->in + 2 + len, c->in_len - 2 - len);
        c->in_len -= 2 + len;
        c->busy = true;
        target_t from = {.tcp = i, .gen = c->gen};
        socklen_t sl = sizeof from.addr;
        if (getpeername(c->fd, (struct sockaddr *)&from.addr, &sl) < 0 ||
            on_query(d, msg, len, &from) < 0)
            tcp_close(c);
    }
}

static void
tcp_accept(kn_dnsproxy_t *d)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int fd = accept4(d->tcp_listen, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (sl != sizeof sa || sa.sin_addr.s_addr != htonl(d->client_addr)) {
        close(fd);
        return;
    }
    tcp_client_t *c = NULL;
    for (int i = 0; i < MAX_TCP; i++)
        if (!c || d->tcp[i].fd < 0 || (c->fd >= 0 && d->tcp[i].last_us < c->last_us))
            c = &d->tcp[i]; /* a free slot, else the longest idle */
    tcp_close(c);
    c->fd = fd;
    c->gen = ++d->tcp_gen;
    c->last_us = kn_now_us();
}

static bool
tcp_handle(kn_dnsproxy_t *d, int fd, short revents)
{
    if (fd == d->tcp_listen) {
        if (revents & POLLIN)
            tcp_accept(d);
        return true;
    }
    for (int i = 0; i < MAX_TCP; i++) {
        tcp_client_t *c = &d->tcp[i];
        if (c->fd < 0 || c->fd != fd)
            continue;
        c->last_us = kn_now_us();
        if (revents & POLLOUT)
            tcp_flush(c);
        if (c->fd >= 0 && (revents & (POLLIN | POLLHUP | POLLERR)) && !c->busy) {
            ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                tcp_close(c);
            else if (n > 0)
                c->in_len += (size_t)n;
        }
        tcp_process(d, i);
        return true;
    }
    return false;
}

void
kn_dnsproxy_handle(kn_dnsproxy_t *d, int fd, short revents)
{
    uint8_t buf[KN_DNS_MAX_MSG];
    if (tcp_handle(d, fd, revents))
        return;
    if (fd < 0 || (fd != d->udp && fd != d->up) || !(revents & (POLLIN | POLLERR | POLLHUP)))
        return;
    /* A bounded batch per wakeup, so that a flood cannot starve the loop. */
    for (int i = 0; i < 64; i++) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t r =
            recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&from, &fl);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break; /* EAGAIN, or an ICMP error from the upstream */
        }
        if ((size_t)r > sizeof buf)
            continue; /* larger than any message we relay: dropped, never cut */
        if (fd == d->udp && fl == sizeof from && from.sin_family == AF_INET) {
            target_t to = {.addr = from, .tcp = -1};
            (void)on_query(d, buf, (size_t)r, &to);
        } else if (fd == d->up) {
            on_answer(d, buf, (size_t)r);
        }
    }
    /* Answers may have freed TCP clients with more queries buffered. */
    for (int i = 0; fd == d->up && i < MAX_TCP; i++)
        tcp_process(d, i);
}
