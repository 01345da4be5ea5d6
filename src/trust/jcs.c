/* jcs.c - RFC 8785 canonical JSON (see jcs.h for the contract). */
#include "jcs.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"

/* Deeper input is refused rather than risking the stack; receipts nest to
 * five or six levels. */
#define JCS_MAX_DEPTH 1000

typedef struct jcs_buf {
    char *data;
    size_t len;
    size_t cap;
} jcs_buf_t;

static int
buf_reserve(jcs_buf_t *b, size_t extra, kn_error_t *err)
{
    if (b->cap - b->len > extra)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len <= extra) {
        if (cap > SIZE_MAX / 2)
            return kn_error_set(err, ENOMEM, "canonical JSON too large");
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return kn_error_set(err, ENOMEM, "canonical JSON buffer");
    b->data = p;
    b->cap = cap;
    return 0;
}

static int
buf_append(jcs_buf_t *b, const char *s, size_t n, kn_error_t *err)
{
    if (buf_reserve(b, n, err) < 0)
        return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static int
buf_putc(jcs_buf_t *b, char c, kn_error_t *err)
{
    return buf_append(b, &c, 1, err);
}

/* Maps a code point to a number whose order equals the order of its first
 * UTF-16 code unit, with ties broken as UTF-16 would break them: BMP
 * characters from U+E000 sort after every supplementary character, whose
 * leading high surrogate (0xD800..0xDBFF) sorts after U+0000..U+D7FF. */
static uint32_t
utf16_rank(uint32_t cp)
{
    return (cp >= 0xE000 && cp <= 0xFFFF) ? cp + 0x200000 : cp;
}

typedef struct jcs_member {
    const char *key;
    size_t len;
    json_t *value;
} jcs_member_t;

/* qsort comparator: member names in UTF-16 code-unit order. Names were
 * validated as UTF-8 before sorting. */
static int
member_cmp(const void *a, const void *b)
{
    const jcs_member_t *x = a, *y = b;
    return kn_jcs_compare_names_n(x->key, x->len, y->key, y->len);
}

int
kn_jcs_compare_names(const char *a, const char *b)
{
    return kn_jcs_compare_names_n(a, strlen(a), b, strlen(b));
}

int
kn_jcs_compare_names_n(const char *a, size_t alen, const char *b, size_t blen)
{
    const unsigned char *p = (const unsigned char *)a;
    const unsigned char *q = (const unsigned char *)b;
    size_t i = 0, j = 0;
    while (i < alen && j < blen) {
        uint32_t cp = 0, cq = 0;
        size_t kp = kn_utf8_decode(p + i, alen - i, &cp);
        size_t kq = kn_utf8_decode(q + j, blen - j, &cq);
        if (kp == 0 || kq == 0)
            return 0;
        uint32_t rp = utf16_rank(cp), rq = utf16_rank(cq);
        if (rp != rq)
            return rp < rq ? -1 : 1;
        i += kp;
        j += kq;
    }
    if (i < alen)
        return 1;
    if (j < blen)
        return -1;
    return 0;
}

static int
write_string(jcs_buf_t *b, const char *s, size_t n, kn_error_t *err)
{
    if (!kn_utf8_valid(s, n))
        return kn_error_set(err, EILSEQ, "string is not valid UTF-8");
    if (buf_reserve(b, n + 2, err) < 0)
        return -1;
    if (buf_putc(b, '"', err) < 0)
        return -1;
    size_t run = 0; /* start of the pending run of literal bytes */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char hex[8];
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\r':
            esc = "\\r";
            break;
        default:
            if (c < 0x20) {
                snprintf(hex, sizeof hex, "\\u%04x", c);
                esc = hex;
            }
        }
        if (!esc)
            continue;
        if (buf_append(b, s + run, i - run, err) < 0 || buf_append(b, esc, strlen(esc), err) < 0)
            return -1;
        run = i + 1;
    }
    if (buf_append(b, s + run, n - run, err) < 0)
        return -1;
    return buf_putc(b, '"', err);
}

/* Splits a "%.*e" rendering ("d.ddde[+-]xx") into its significant digits (as
 * an integer) and decimal exponent. */
static void
split_exp(const char *s, uint64_t *digits, int *exp10, int *ndigits)
{
    uint64_t v = 0;
    int nd = 0;
    const char *p = s;
    for (; *p && *p != 'e'; p++) {
        if (*p >= '0' && *p <= '9') {
            v = v * 10 + (uint64_t)(*p - '0');
            nd++;
        }
    }
    *digits = v;
    *ndigits = nd;
    *exp10 = *p == 'e' ? atoi(p + 1) : 0;
}

static uint64_t
pow10_u64(int n)
{
    uint64_t v = 1;
    while (n-- > 0)
        v *= 10;
    return v;
}

/* True if digits x 10^(exp10 - ndigits + 1) reads back as exactly x. */
static bool
round_trips(uint64_t digits, int ndigits, int exp10, double x)
{
    char tmp[48];
    snprintf(tmp, sizeof tmp, "%" PRIu64 "e%d", digits, exp10 - ndigits + 1);
    return strtod(tmp, NULL) == x;
}

/* Shortest decimal significand that reads back as x (x > 0, finite), and
 * among those the closest to x (ECMAScript Number::toString, step 5).
 * printf rounds correctly, so "%.*e" with p digits is the closest p-digit
 * decimal; when it misses the rounding interval of x (possible only at a
 * power of two, where the interval is lopsided) the neighbour on the other
 * side may still hit it, so both neighbours are tried before moving to
 * p + 1 digits. */
static void
shortest_digits(double x, uint64_t *digits_out, int *ndigits_out, int *exp_out)
{
    char tmp[48];
    for (int p = 1; p <= 17; p++) {
        uint64_t d;
        int e, nd;
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, x);
        split_exp(tmp, &d, &e, &nd);
        if (strtod(tmp, NULL) == x) {
            *digits_out = d;
            *ndigits_out = nd;
            *exp_out = e;
            return;
        }
        uint64_t lo = pow10_u64(p - 1), hi = pow10_u64(p);
        uint64_t up = d + 1, down = d - 1;
        int eu = e, ed = e;
        if (up == hi) {
            up = lo;
            eu++;
        }
        if (d == lo) {
            down = hi - 1;
            ed--;
        }
        if (round_trips(up, p, eu, x)) {
            *digits_out = up;
            *ndigits_out = p;
            *exp_out = eu;
            return;
        }
        if (round_trips(down, p, ed, x)) {
            *digits_out = down;
            *ndigits_out = p;
            *exp_out = ed;
            return;
        }
    }
    /* Unreachable with a correctly rounding libc: 17 digits always round
     * trip. Fall back to them. */
    snprintf(tmp, sizeof tmp, "%.16e", x);
    split_exp(tmp, digits_out, exp_out, ndigits_out);
}

int
kn_jcs_format_number(double d, char *buf, size_t size, kn_error_t *err)
{
    if (!isfinite(d))
        return kn_error_set(err, EDOM, "number is not finite (NaN or infinity)");
    char out[KN_JCS_NUMBER_MAX];
    size_t o = 0;
    if (d == 0) {
        out[o++] = '0'; /* covers -0 too */
    } else {
        if (d < 0) {
            out[o++] = '-';
            d = -d;
        }
        uint64_t digits;
        int nd, e;
        shortest_digits(d, &digits, &nd, &e);
        while (nd > 1 && digits % 10 == 0) {
            digits /= 10;
            nd--;
        }
        char s[24];
        snprintf(s, sizeof s, "%0*" PRIu64, nd, digits);
        int k = nd, n = e + 1; /* value = 0.s x 10^n */
        if (k <= n && n <= 21) {
            memcpy(out + o, s, (size_t)k);
            o += (size_t)k;
            for (int i = 0; i < n - k; i++)
                out[o++] = '0';
        } else if (0 < n && n <= 21) {
            memcpy(out + o, s, (size_t)n);
            o += (size_t)n;
            out[o++] = '.';
            memcpy(out + o, s + n, (size_t)(k - n));
            o += (size_t)(k - n);
        } else if (-6 < n && n <= 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -n; i++)
                out[o++] = '0';
            memcpy(out + o, s, (size_t)k);
            o += (size_t)k;
        } else {
            out[o++] = s[0];
            if (k > 1) {
                out[o++] = '.';
                memcpy(out + o, s + 1, (size_t)(k - 1));
                o += (size_t)(k - 1);
            }
            int m = snprintf(out + o, sizeof out - o, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
            o += (size_t)m;
        }
    }
    if (o + 1 > size)
        return kn_error_set(err, ENOBUFS, "number buffer too small");
    memcpy(buf, out, o);
    buf[o] = '\0';
    return (int)o;
}

static int write_value(jcs_buf_t *b, const json_t *v, int depth, kn_error_t *err);

static int
write_object(jcs_buf_t *b, const json_t *obj, int depth, kn_error_t *err)
{
    size_t n = json_object_size(obj);
    if (n == 0)
        return buf_append(b, "{}", 2, err);
    jcs_member_t *m = calloc(n, sizeof *m);
    if (!m)
        return kn_error_set(err, ENOMEM, "sorting object members");
    size_t i = 0;
    const char *key;
    size_t klen;
    json_t *val;
    json_object_keylen_foreach((json_t *)obj, key, klen, val)
    {
        if (i == n)
            break;
        if (!kn_utf8_valid(key, klen)) {
            free(m);
            return kn_error_set(err, EILSEQ, "member name is not valid UTF-8");
        }
        m[i].key = key;
        m[i].len = klen;
        m[i].value = val;
        i++;
    }
    qsort(m, i, sizeof *m, member_cmp);
    int rc = buf_putc(b, '{', err);
    for (size_t j = 0; rc == 0 && j < i; j++) {
        if (j && (rc = buf_putc(b, ',', err)) < 0)
            break;
        if ((rc = write_string(b, m[j].key, m[j].len, err)) < 0)
            break;
        if ((rc = buf_putc(b, ':', err)) < 0)
            break;
        if ((rc = write_value(b, m[j].value, depth + 1, err)) < 0)
            kn_error_prefix(err, "member \"%.*s\"", (int)(m[j].len > 64 ? 64 : m[j].len), m[j].key);
    }
    free(m);
    if (rc < 0)
        return -1;
    return buf_putc(b, '}', err);
}

static int
write_array(jcs_buf_t *b, const json_t *arr, int depth, kn_error_t *err)
{
    if (buf_putc(b, '[', err) < 0)
        return -1;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        if (i && buf_putc(b, ',', err) < 0)
            return -1;
        if (write_value(b, json_array_get(arr, i), depth + 1, err) < 0)
            return kn_error_prefix(err, "element %zu", i);
    }
    return buf_putc(b, ']', err);
}

static int
write_value(jcs_buf_t *b, const json_t *v, int depth, kn_error_t *err)
{
    char num[KN_JCS_NUMBER_MAX];
    int n;
    if (depth > JCS_MAX_DEPTH)
        return kn_error_set(err, ELOOP, "JSON nested deeper than %d levels", JCS_MAX_DEPTH);
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return write_object(b, v, depth, err);
    case JSON_ARRAY:
        return write_array(b, v, depth, err);
    case JSON_STRING:
        return write_string(b, json_string_value(v), json_string_length(v), err);
    case JSON_INTEGER: {
        /* An integer of at most 2^53 in magnitude is a double exactly, and
         * ECMAScript prints such a number as its decimal digits: the
         * shortest-digits search (several snprintf/strtod rounds) is only
         * needed beyond, where the double rounds. */
        json_int_t iv = json_integer_value(v);
        if (iv >= -(INT64_C(1) << 53) && iv <= (INT64_C(1) << 53)) {
            n = snprintf(num, sizeof num, "%" PRId64, (int64_t)iv);
            return buf_append(b, num, (size_t)n, err);
        }
        n = kn_jcs_format_number((double)iv, num, sizeof num, err);
        return n < 0 ? -1 : buf_append(b, num, (size_t)n, err);
    }
    case JSON_REAL:
        n = kn_jcs_format_number(json_real_value(v), num, sizeof num, err);
        return n < 0 ? -1 : buf_append(b, num, (size_t)n, err);
    case JSON_TRUE:
        return buf_append(b, "true", 4, err);
    case JSON_FALSE:
        return buf_append(b, "false", 5, err);
    case JSON_NULL:
        return buf_append(b, "null", 4, err);
    }
    return kn_error_set(err, EINVAL, "unknown JSON value type");
}

char *
kn_jcs_canonicalize(const json_t *value, size_t *len, kn_error_t *err)
{
    if (!value) {
        kn_error_set(err, EINVAL, "canonicalize: no value");
        return NULL;
    }
    jcs_buf_t b = {0};
    if (buf_reserve(&b, 0, err) < 0)
        return NULL;
    b.data[0] = '\0';
    if (write_value(&b, value, 0, err) < 0) {
        free(b.data);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.data;
}

json_t *
kn_jcs_parse(const char *text, size_t len, kn_error_t *err)
{
    json_error_t jerr;
    json_t *v = json_loadb(
        text, len,
        JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &jerr);
    if (!v)
        kn_error_set(err, EINVAL, "JSON line %d column %d: %s", jerr.line, jerr.column, jerr.text);
    return v;
}
