/* bridge.c - see bridge.h. One bounded buffer per direction; a direction
 * whose buffer is full is not read until it drains, so a slow reader slows
 * the writer instead of growing memory. */
#include "bridge.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BRIDGE_BUF (256 * 1024)
#define BRIDGE_WAKE_MS 1000

typedef struct dir {
    int src, dst;
    char *buf;
    size_t cap, len, off;
    bool eof;  /* src ended */
    bool shut; /* the end was passed on to dst */
    bool from_a;
    const kn_bridge_opts_t *o;
} dir_t;

static uint64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int
dir_init(dir_t *d, int src, int dst, const char *pre, size_t pre_len, bool from_a,
         const kn_bridge_opts_t *o)
{
    *d = (dir_t){.src = src, .dst = dst, .from_a = from_a, .o = o};
    d->cap = pre_len > BRIDGE_BUF ? pre_len : BRIDGE_BUF;
    d->buf = malloc(d->cap);
    if (!d->buf)
        return -1;
    if (pre_len) {
        memcpy(d->buf, pre, pre_len);
        if (o->tap)
            o->tap(o->tap_ctx, from_a, pre, pre_len);
    }
    d->len = pre_len;
    return 0;
}

/* Moves what it can without blocking. Returns 1 if a byte moved, 0 if
 * not, -1 when the connection is broken (errno set). */
static int
dir_step(dir_t *d)
{
    int moved = 0;
    for (;;) {
        if (d->off < d->len) {
            ssize_t n = send(d->dst, d->buf + d->off, d->len - d->off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0) {
                d->off += (size_t)n;
                moved = 1;
                if (d->off == d->len)
                    d->off = d->len = 0;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            if (d->len == d->cap)
                break; /* full and dst cannot take more yet */
        }
        if (d->eof || d->len == d->cap)
            break;
        ssize_t n = recv(d->src, d->buf + d->len, d->cap - d->len, MSG_DONTWAIT);
        if (n > 0) {
            if (d->o->tap)
                d->o->tap(d->o->tap_ctx, d->from_a, d->buf + d->len, (size_t)n);
            d->len += (size_t)n;
            moved = 1;
            continue;
        }
        if (n == 0) {
            d->eof = true;
            moved = 1;
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        return -1;
    }
    if (d->eof && d->len == 0 && !d->shut) {
        /* ENOTCONN: dst is already gone; the other direction will see it. */
        if (shutdown(d->dst, SHUT_WR) < 0 && errno != ENOTCONN)
            return -1;
        d->shut = true;
    }
    return moved;
}

/* poll events d needs on fd. */
static short
dir_events(const dir_t *d, int fd)
{
    short ev = 0;
    if (fd == d->src && !d->eof && d->len < d->cap)
        ev |= POLLIN;
    if (fd == d->dst && d->off < d->len)
        ev |= POLLOUT;
    return ev;
}

int
kn_bridge(int a, int b, const kn_bridge_opts_t *o)
{
    dir_t ab, ba;
    int rc = -1, err = 0;
    ba.buf = NULL;
    if (dir_init(&ab, a, b, o->a_pre, o->a_pre_len, true, o) < 0 ||
        dir_init(&ba, b, a, o->b_pre, o->b_pre_len, false, o) < 0) {
        err = ENOMEM;
        goto out;
    }
    uint64_t last = now_ms();
    for (;;) {
        int m1 = dir_step(&ab);
        int m2 = m1 < 0 ? -1 : dir_step(&ba);
        if (m1 < 0 || m2 < 0) {
            err = errno;
            goto out;
        }
        if (ab.shut && ba.shut) {
            rc = 0;
            goto out;
        }
        uint64_t t = now_ms();
        if (m1 || m2)
            last = t;
        int wait = BRIDGE_WAKE_MS;
        if (o->linger_ms > 0 && (ab.shut || ba.shut)) {
            if (t - last >= (uint64_t)o->linger_ms) {
                err = ETIMEDOUT;
                goto out;
            }
            if (t - last + (uint64_t)wait > (uint64_t)o->linger_ms)
                wait = (int)((uint64_t)o->linger_ms - (t - last)) + 1;
        }
        struct pollfd p[2] = {{a, (short)(dir_events(&ab, a) | dir_events(&ba, a)), 0},
                              {b, (short)(dir_events(&ab, b) | dir_events(&ba, b)), 0}};
        int n = poll(p, 2, wait);
        if (n < 0 && errno != EINTR) {
            err = errno;
            goto out;
        }
        if (o->stop && atomic_load(o->stop)) {
            err = ECANCELED;
            goto out;
        }
        /* A socket that hangs up or fails while we read nothing more from
         * it: its peer is gone altogether (a unix socket reports that on
         * close), so nothing can be delivered to it any more. */
        for (int i = 0; n > 0 && i < 2; i++) {
            const dir_t *from = p[i].fd == a ? &ab : &ba;
            if ((p[i].revents & POLLERR) ||
                ((p[i].revents & POLLHUP) && !(p[i].revents & POLLIN) && from->eof)) {
                err = (p[i].revents & POLLERR) ? ECONNRESET : EPIPE;
                goto out;
            }
        }
    }
out:
    free(ab.buf);
    free(ba.buf);
    if (rc < 0)
        errno = err ? err : EIO;
    return rc;
}
