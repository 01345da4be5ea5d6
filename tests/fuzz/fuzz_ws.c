/* fuzz_ws.c - the WebSocket frame parser reads what a sandbox's execd and a
 * client send (the server's PTY relay, execd's /pty). Whatever the bytes:
 * no crash, every frame's pieces add up to its length in order, and the
 * result does not depend on how the bytes were split into reads (all at
 * once, one byte at a time, or in pieces sized by the input itself). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct log {
    uint8_t out[1 << 16]; /* a digest of everything seen, as bytes */
    size_t n;
    uint64_t at;   /* the next offset expected in the current frame */
    bool in_frame; /* a frame's last piece has not come yet */
} log_t;

static void
put(log_t *l, const void *p, size_t n)
{
    if (l->n + n > sizeof l->out)
        n = sizeof l->out - l->n;
    memcpy(l->out + l->n, p, n);
    l->n += n;
}

static int
piece(void *ctx, const kn_ws_frame_t *f, uint64_t off, const uint8_t *d, size_t n, bool last)
{
    log_t *l = ctx;
    if (!l->in_frame) {
        if (off != 0)
            abort();
        uint8_t h[2] = {(uint8_t)f->opcode, (uint8_t)(f->fin | f->masked << 1)};
        put(l, h, 2);
        put(l, &f->len, sizeof f->len);
        l->in_frame = true;
        l->at = 0;
    }
    if (off != l->at || off + n > f->len || (last && off + n != f->len))
        abort();
    l->at += n;
    put(l, d, n);
    if (last)
        l->in_frame = false;
    return 0;
}

static void
run(const uint8_t *data, size_t size, int mode, uint64_t max, log_t *l, int *rc, const char **why)
{
    kn_ws_parser_t p;
    kn_ws_parser_init(&p, max);
    memset(l, 0, sizeof *l);
    *rc = 0;
    size_t i = 0;
    while (i < size && *rc == 0) {
        size_t step = mode == 0 ? size - i : mode == 1 ? 1 : (size_t)(data[i] % 17) + 1;
        if (step > size - i)
            step = size - i;
        *rc = kn_ws_parse(&p, data + i, step, piece, l);
        i += step;
    }
    *why = p.error;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static log_t a, b;
    uint64_t max = size && data[0] & 1 ? 300 : 0;
    int ra, rb;
    const char *wa, *wb;
    run(data, size, 0, max, &a, &ra, &wa);
    for (int mode = 1; mode <= 2; mode++) {
        run(data, size, mode, max, &b, &rb, &wb);
        if (ra != rb || a.n != b.n || memcmp(a.out, b.out, a.n) || (wa == NULL) != (wb == NULL) ||
            (wa && strcmp(wa, wb)))
            abort();
    }
    return 0;
}
