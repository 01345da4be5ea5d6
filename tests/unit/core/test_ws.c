/* test_ws.c - the WebSocket frame parser and header writer (src/core/ws.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/ws.h"

typedef struct seen {
    int frames;
    int opcode[8];
    uint8_t data[200000];
    size_t len;
    int lasts;
} seen_t;

static int
piece(void *ctx, const kn_ws_frame_t *f, uint64_t off, const uint8_t *data, size_t n, bool last)
{
    seen_t *s = ctx;
    if (off == 0 && s->frames < 8)
        s->opcode[s->frames++] = f->opcode;
    memcpy(s->data + s->len, data, n);
    s->len += n;
    s->lasts += last;
    return 0;
}

/* A masked client frame of payload p. */
static size_t
client_frame(uint8_t *out, int op, const uint8_t *p, size_t n)
{
    size_t hl = kn_ws_header(out, op, n);
    out[1] |= 0x80;
    const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    memcpy(out + hl, mask, 4);
    for (size_t i = 0; i < n; i++)
        out[hl + 4 + i] = p[i] ^ mask[i & 3];
    return hl + 4 + n;
}

static void
test_header_lengths(void **state)
{
    (void)state;
    uint8_t h[KN_WS_MAX_HEADER];
    assert_int_equal(kn_ws_header(h, KN_WS_TEXT, 5), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 5);
    assert_int_equal(kn_ws_header(h, KN_WS_BINARY, 126), 4);
    assert_int_equal(h[1], 126);
    assert_int_equal(h[2] << 8 | h[3], 126);
    assert_int_equal(kn_ws_header(h, KN_WS_BINARY, 70000), 10);
    assert_int_equal(h[1], 127);
    assert_int_equal(h[7] << 16 | h[8] << 8 | h[9], 70000);
}

/* RFC 6455 5.7's masked "Hello", then three frames of growing length
 * header forms, fed whole and then one byte at a time. */
static void
test_parses_whole_and_byte_by_byte(void **state)
{
    (void)state;
    static uint8_t buf[200000], big[70000];
    const uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7);
    size_t n = 0;
    memcpy(buf, hello, sizeof hello);
    n += sizeof hello;
    n += client_frame(buf + n, KN_WS_BINARY, big, 300);
    n += client_frame(buf + n, KN_WS_PING, NULL, 0);
    n += client_frame(buf + n, KN_WS_BINARY, big, sizeof big);
    for (int pass = 0; pass < 2; pass++) {
        static seen_t s;
        memset(&s, 0, sizeof s);
        kn_ws_parser_t p;
        kn_ws_parser_init(&p, 0);
        if (pass == 0)
            assert_int_equal(kn_ws_parse(&p, buf, n, piece, &s), 0);
        else
            for (size_t i = 0; i < n; i++)
                assert_int_equal(kn_ws_parse(&p, buf + i, 1, piece, &s), 0);
        assert_int_equal(s.frames, 4);
        assert_int_equal(s.opcode[0], KN_WS_TEXT);
        assert_int_equal(s.opcode[2], KN_WS_PING);
        assert_int_equal(s.lasts, 4);
        assert_int_equal(s.len, 5 + 300 + sizeof big);
        assert_memory_equal(s.data, "Hello", 5);
        assert_memory_equal(s.data + 5, big, 300);
        assert_memory_equal(s.data + 305, big, sizeof big);
    }
}

static void
test_refuses_bad_frames(void **state)
{
    (void)state;
    const struct {
        uint8_t b[12];
        size_t n;
        const char *why;
    } bad[] = {
        {{0xc1, 0x00}, 2, "reserved bits set"},
        {{0x83, 0x00}, 2, "unknown opcode"},
        {{0x09, 0x00}, 2, "fragmented or oversized control frame"},
        {{0x89, 0x7e, 0x00, 0x80}, 4, "fragmented or oversized control frame"},
        {{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0}, 10, "frame length out of range"},
        {{0x82, 0x7e, 0x10, 0x00}, 4, "frame too large"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kn_ws_parser_t p;
        kn_ws_parser_init(&p, 1024);
        assert_int_equal(kn_ws_parse(&p, bad[i].b, bad[i].n, NULL, NULL), -1);
        assert_string_equal(p.error, bad[i].why);
        /* Once failed, it stays failed. */
        const uint8_t ok[] = {0x81, 0x00};
        assert_int_equal(kn_ws_parse(&p, ok, 2, NULL, NULL), -1);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_lengths),
        cmocka_unit_test(test_parses_whole_and_byte_by_byte),
        cmocka_unit_test(test_refuses_bad_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
