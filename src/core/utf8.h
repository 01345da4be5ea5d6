/* utf8.h - UTF-8 checks shared by the server and execd: text that goes
 * into JSON (jansson refuses invalid UTF-8) is checked or cleaned first. */
#ifndef KN_UTF8_H
#define KN_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decodes the UTF-8 sequence at p (at most n bytes): its length (1..4) and,
 * if cp is not NULL, its code point; 0 if the bytes are not well-formed
 * UTF-8 (overlong forms, surrogates and values above U+10FFFF included). */
size_t kn_utf8_decode(const void *p, size_t n, uint32_t *cp);

/* Whether s[0..n) is well-formed UTF-8 (no overlong forms, surrogates or
 * values above U+10FFFF). */
bool kn_utf8_valid(const char *s, size_t n);
/* A malloc'd copy of s[0..n) where each invalid byte is replaced by U+FFFD,
 * NUL-terminated, its length in *out_len (if not NULL). Who frees: the
 * caller. NULL on allocation failure. */
char *kn_utf8_clean(const char *s, size_t n, size_t *out_len);

#endif
