/* ws.h - RFC 6455 WebSocket framing: a streaming frame parser and the
 * header of an outgoing frame, and the header-token test of the handshake.
 *
 * Shared by execd (which serves the PTY WebSocket) and the server, whose
 * proxy reads the frames it relays to a PTY so that the PTY's receipts can
 * commit to what passed (docs/receipts.md). The parser never buffers a
 * payload: it hands each frame's payload over in pieces, unmasked, as the
 * bytes arrive, so memory stays bounded whatever a peer sends. The opening
 * handshake is not here (execd's pty.c does it). No global state. */
#ifndef KN_WS_H
#define KN_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    KN_WS_CONT = 0x0,
    KN_WS_TEXT = 0x1,
    KN_WS_BINARY = 0x2,
    KN_WS_CLOSE = 0x8,
    KN_WS_PING = 0x9,
    KN_WS_PONG = 0xA,
};

/* Control frames carry at most this much (RFC 6455 5.5). */
#define KN_WS_MAX_CONTROL 125
/* Largest outgoing frame header (2 + 8 bytes of length; server frames are
 * never masked). */
#define KN_WS_MAX_HEADER 10

typedef struct kn_ws_frame {
    int opcode;
    bool fin;
    bool masked;
    uint64_t len; /* payload length */
} kn_ws_frame_t;

/* Called for each piece of a frame's payload (unmasked), in order: at least
 * once per frame (with n == 0 for an empty payload); last is true on the
 * frame's final piece. off is the piece's offset in the payload. Returns 0
 * to go on, -1 to stop parsing (kn_ws_parse then returns -1). */
typedef int (*kn_ws_piece_fn)(void *ctx, const kn_ws_frame_t *f, uint64_t off, const uint8_t *data,
                              size_t n, bool last);

typedef struct kn_ws_parser {
    uint8_t head[14];
    size_t have; /* header bytes gathered */
    bool in_payload;
    kn_ws_frame_t f;
    uint8_t mask[4];
    uint64_t got;         /* payload bytes passed on */
    uint64_t max_payload; /* larger frames are a protocol error; 0 = no limit */
    const char *error;    /* why parsing failed (static), NULL while it has not */
} kn_ws_parser_t;

/* A parser that refuses frames longer than max_payload (0: none). */
void kn_ws_parser_init(kn_ws_parser_t *p, uint64_t max_payload);
/* Feeds bytes; calls piece for every payload piece. -1 on a protocol error
 * (p->error says which; reserved bits, an unknown opcode, a fragmented or
 * oversized control frame, a 64-bit length with its top bit set, a frame
 * over max_payload) or when piece stopped it. Once failed, it stays failed. */
int kn_ws_parse(kn_ws_parser_t *p, const void *data, size_t len, kn_ws_piece_fn piece, void *ctx);

/* Does the comma-separated header value v (Connection: keep-alive, Upgrade)
 * hold token t, compared without case? For the opening handshake. */
bool kn_ws_has_token(const char *v, const char *t);

/* Writes the header of an unmasked frame with FIN set into out; returns its
 * length. */
size_t kn_ws_header(uint8_t out[KN_WS_MAX_HEADER], int opcode, uint64_t len);

#endif
