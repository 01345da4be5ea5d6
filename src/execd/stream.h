/* stream.h - the execd streaming wire format: one JSON event object followed by a
 * blank line (no "data:" prefix), and the line splitter that turns process
 * output into stdout/stderr line events with per-run byte caps. */
#ifndef KN_EXECD_STREAM_H
#define KN_EXECD_STREAM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/* Appends {"type":type,"timestamp":now, ...fields} + "\n\n" to out. fields is
 * stolen (may be NULL). Returns -1 on allocation failure. */
int kn_stream_event(kn_buf_t *out, const char *type, json_t *fields);
/* Appends an event carrying "text" (bytes cleaned to valid UTF-8). */
int kn_stream_text(kn_buf_t *out, const char *type, const char *text, size_t n);
/* Appends an error event {ename, evalue, traceback:[tb]}. */
int kn_stream_error(kn_buf_t *out, const char *ename, const char *evalue, const char *tb);

/* Splits a byte stream into line events of one type. Lines end at \n, \r or
 * \r\n; the terminator is dropped and an empty line is sent as "\n". After
 * cap bytes (0 = no cap) further output is discarded and one marker line is
 * sent. A line longer than KN_STREAM_MAX_LINE is sent in pieces. */
#define KN_STREAM_MAX_LINE (64 * 1024)

typedef struct kn_lines {
    const char *type; /* "stdout" or "stderr" */
    size_t cap;
    size_t total;
    bool truncated;
    bool last_cr;
    bool skip_empty; /* drop empty lines (bash sessions) */
    bool raw;        /* no splitting: one event per chunk (code contexts) */
    kn_buf_t part;
} kn_lines_t;

void kn_lines_init(kn_lines_t *l, const char *type, size_t cap);
int kn_lines_feed(kn_lines_t *l, kn_buf_t *out, const char *data, size_t n);
/* Sends a pending partial line. */
int kn_lines_flush(kn_lines_t *l, kn_buf_t *out);
void kn_lines_free(kn_lines_t *l);

#endif
