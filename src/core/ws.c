/* ws.c - see ws.h. */
#include "ws.h"

#include <string.h>
#include <strings.h>

void
kn_ws_parser_init(kn_ws_parser_t *p, uint64_t max_payload)
{
    memset(p, 0, sizeof *p);
    p->max_payload = max_payload;
}

/* Header bytes a frame needs, given its first two (0 until both are in). */
static size_t
head_size(const kn_ws_parser_t *p)
{
    if (p->have < 2)
        return 2;
    size_t n = 2;
    uint8_t l7 = p->head[1] & 0x7f;
    if (l7 == 126)
        n += 2;
    else if (l7 == 127)
        n += 8;
    if (p->head[1] & 0x80)
        n += 4;
    return n;
}

static int
fail(kn_ws_parser_t *p, const char *why)
{
    p->error = why;
    return -1;
}

/* Decodes a complete header into p->f. */
static int
decode_head(kn_ws_parser_t *p)
{
    const uint8_t *h = p->head;
    if (h[0] & 0x70)
        return fail(p, "reserved bits set");
    int op = h[0] & 0x0f;
    if (op != KN_WS_CONT && op != KN_WS_TEXT && op != KN_WS_BINARY && op != KN_WS_CLOSE &&
        op != KN_WS_PING && op != KN_WS_PONG)
        return fail(p, "unknown opcode");
    p->f.opcode = op;
    p->f.fin = (h[0] & 0x80) != 0;
    p->f.masked = (h[1] & 0x80) != 0;
    uint8_t l7 = h[1] & 0x7f;
    size_t at = 2;
    uint64_t len = l7;
    if (l7 == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
        at = 4;
    } else if (l7 == 127) {
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | h[2 + i];
        at = 10;
        if (len >> 63)
            return fail(p, "frame length out of range");
    }
    if (op >= KN_WS_CLOSE && (!p->f.fin || len > KN_WS_MAX_CONTROL))
        return fail(p, "fragmented or oversized control frame");
    if (p->max_payload && len > p->max_payload)
        return fail(p, "frame too large");
    p->f.len = len;
    if (p->f.masked)
        memcpy(p->mask, h + at, 4);
    p->got = 0;
    return 0;
}

int
kn_ws_parse(kn_ws_parser_t *p, const void *data, size_t len, kn_ws_piece_fn piece, void *ctx)
{
    const uint8_t *in = data;
    if (p->error)
        return -1;
    while (len > 0 || (p->in_payload && p->f.len == 0)) {
        if (!p->in_payload) {
            size_t need = head_size(p);
            while (p->have < need && len > 0) {
                p->head[p->have++] = *in++;
                len--;
                need = head_size(p);
            }
            if (p->have < need)
                return 0;
            if (decode_head(p) < 0)
                return -1;
            p->in_payload = true;
        }
        uint64_t left = p->f.len - p->got;
        size_t n = left < len ? (size_t)left : len;
        /* Unmask into a small buffer, piece by piece. */
        uint8_t tmp[4096];
        if (n == 0 && p->f.len > 0)
            return 0; /* the header ended the input */
        do {
            size_t k = n < sizeof tmp ? n : sizeof tmp;
            for (size_t i = 0; i < k; i++)
                tmp[i] = p->f.masked ? in[i] ^ p->mask[(p->got + i) & 3] : in[i];
            bool last = p->got + k == p->f.len;
            if (piece && piece(ctx, &p->f, p->got, tmp, k, last) < 0)
                return fail(p, "stopped");
            p->got += k;
            in += k;
            len -= k;
            n -= k;
        } while (n > 0);
        if (p->got == p->f.len) {
            p->in_payload = false;
            p->have = 0;
        }
    }
    return 0;
}

size_t
kn_ws_header(uint8_t out[KN_WS_MAX_HEADER], int opcode, uint64_t len)
{
    out[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

bool
kn_ws_has_token(const char *v, const char *t)
{
    size_t tl = strlen(t);
    while (v && *v) {
        v += strspn(v, " \t,");
        size_t n = strcspn(v, ",");
        size_t m = n;
        while (m > 0 && (v[m - 1] == ' ' || v[m - 1] == '\t'))
            m--;
        if (m == tl && !strncasecmp(v, t, tl))
            return true;
        v += n;
    }
    return false;
}
