/* utf8.c - see utf8.h. */
#include "utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t
kn_utf8_decode(const void *p, size_t n, uint32_t *cp)
{
    const unsigned char *s = p;
    if (n == 0)
        return 0;
    unsigned char c = s[0];
    if (c < 0x80) {
        if (cp)
            *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        v = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && v < 0x800) || (len == 4 && (v < 0x10000 || v > 0x10ffff)) ||
        (v >= 0xd800 && v <= 0xdfff))
        return 0;
    if (cp)
        *cp = v;
    return len;
}

char *
kn_utf8_clean(const char *s, size_t n, size_t *out_len)
{
    char *out = malloc(n * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = kn_utf8_decode(u + i, n - i, NULL);
        if (l == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, u + i, l);
            o += l;
            i += l;
        }
    }
    out[o] = '\0';
    if (out_len)
        *out_len = o;
    return out;
}

bool
kn_utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = kn_utf8_decode(u + i, n - i, NULL);
        if (l == 0)
            return false;
        i += l;
    }
    return true;
}
