/* stream.c - execd stream events and output line splitting. See stream.h. */
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"

int
kn_stream_event(kn_buf_t *out, const char *type, json_t *fields)
{
    json_t *ev = json_object();
    int rc = -1;
    if (!ev)
        goto out;
    json_object_set_new(ev, "type", json_string(type));
    if (fields)
        json_object_update(ev, fields);
    json_object_set_new(ev, "timestamp", json_integer(kn_util_now_ms()));
    char *s = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!s)
        goto out;
    rc = kn_buf_append(out, s, strlen(s));
    if (rc == 0)
        rc = kn_buf_append(out, "\n\n", 2);
    free(s);
out:
    json_decref(fields);
    json_decref(ev);
    return rc;
}

int
kn_stream_text(kn_buf_t *out, const char *type, const char *text, size_t n)
{
    size_t len;
    char *clean = kn_utf8_clean(text, n, &len);
    if (!clean)
        return -1;
    json_t *f = json_object();
    json_object_set_new(f, "text", json_stringn(clean, len));
    free(clean);
    return kn_stream_event(out, type, f);
}

int
kn_stream_error(kn_buf_t *out, const char *ename, const char *evalue, const char *tb)
{
    size_t len;
    char *clean = kn_utf8_clean(evalue, strlen(evalue), &len);
    if (!clean)
        return -1;
    json_t *tbs = json_array();
    if (tb) {
        /* One traceback entry per line. */
        const char *p = tb;
        while (*p) {
            const char *nl = strchr(p, '\n');
            size_t l = nl ? (size_t)(nl - p) : strlen(p);
            char *c = kn_utf8_clean(p, l, &l);
            if (c)
                json_array_append_new(tbs, json_stringn(c, l));
            free(c);
            if (!nl)
                break;
            p = nl + 1;
        }
    }
    json_t *e = json_pack("{s:s,s:s%,s:o}", "ename", ename, "evalue", clean, len, "traceback", tbs);
    free(clean);
    return kn_stream_event(out, "error", json_pack("{s:o}", "error", e));
}

void
kn_lines_init(kn_lines_t *l, const char *type, size_t cap)
{
    memset(l, 0, sizeof *l);
    l->type = type;
    l->cap = cap;
}

static int
emit_line(kn_lines_t *l, kn_buf_t *out)
{
    int rc;
    if (l->part.len == 0) {
        if (l->skip_empty)
            return 0;
        rc = kn_stream_text(out, l->type, "\n", 1);
    } else {
        rc = kn_stream_text(out, l->type, l->part.data, l->part.len);
    }
    l->part.len = 0;
    return rc;
}

/* How many bytes at the end of s start a UTF-8 sequence that is not complete
 * yet (0..3). */
static size_t
utf8_incomplete_tail(const char *s, size_t n)
{
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = (unsigned char)s[n - k];
        if ((c & 0xc0) == 0x80)
            continue; /* continuation byte: look further back */
        size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        return need > k ? k : 0;
    }
    return 0;
}

int
kn_lines_feed(kn_lines_t *l, kn_buf_t *out, const char *data, size_t n)
{
    if (l->truncated)
        return 0;
    bool over = false;
    if (l->cap && l->total + n > l->cap) {
        n = l->cap - l->total;
        over = true;
    }
    l->total += n;
    if (l->raw) {
        /* Chunks are sent as they come, but a UTF-8 character split between
         * two reads is held back and completed by the next one. */
        if (kn_buf_append(&l->part, data, n) < 0)
            return -1;
        size_t keep = over ? 0 : utf8_incomplete_tail(l->part.data, l->part.len);
        size_t send = l->part.len - keep;
        if (send && kn_stream_text(out, l->type, l->part.data, send) < 0)
            return -1;
        kn_buf_consume(&l->part, send);
    } else {
        size_t i = 0;
        while (i < n) {
            char c = data[i];
            if (c == '\n' && l->last_cr) {
                l->last_cr = false;
                i++;
                continue;
            }
            l->last_cr = false;
            if (c == '\n' || c == '\r') {
                l->last_cr = c == '\r';
                if (emit_line(l, out) < 0)
                    return -1;
                i++;
                continue;
            }
            /* Copy the run of ordinary bytes up to the next terminator at once. */
            size_t j = i;
            while (j < n && data[j] != '\n' && data[j] != '\r' &&
                   l->part.len + (j - i) < KN_STREAM_MAX_LINE)
                j++;
            if (kn_buf_append(&l->part, data + i, j - i) < 0)
                return -1;
            i = j;
            if (l->part.len >= KN_STREAM_MAX_LINE && emit_line(l, out) < 0)
                return -1;
        }
    }
    if (over) {
        if (kn_lines_flush(l, out) < 0)
            return -1;
        char marker[128];
        snprintf(marker, sizeof marker, "[kennel: %s truncated after %zu bytes]", l->type, l->cap);
        l->truncated = true;
        return kn_stream_text(out, l->type, marker, strlen(marker));
    }
    return 0;
}

int
kn_lines_flush(kn_lines_t *l, kn_buf_t *out)
{
    if (l->part.len == 0)
        return 0;
    return emit_line(l, out);
}

void
kn_lines_free(kn_lines_t *l)
{
    kn_buf_free(&l->part);
}
