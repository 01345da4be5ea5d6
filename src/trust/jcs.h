/* jcs.h - RFC 8785 JSON Canonicalization Scheme over jansson values.
 *
 * Receipts are hashed and signed over these bytes, so they must match the
 * other Agent Receipts SDKs byte for byte:
 *   - object members sorted by the UTF-16 code units of their names;
 *   - numbers written as ECMAScript Number::toString writes an IEEE 754
 *     double (shortest round-trip digits, exponent form below 1e-6 and from
 *     1e21, "-0" as "0"); NaN and infinities are rejected;
 *   - strings written as UTF-8 with only '"', '\\' and U+0000..U+001F
 *     escaped (\b \t \n \f \r short forms, others \u00xx lowercase);
 *   - no whitespace.
 * Invalid UTF-8 anywhere (names or values) is an error, never repaired.
 *
 * Integers: JSON numbers are IEEE 754 doubles in RFC 8785. A json_integer
 * is written as the double nearest to it (exact up to 2^53; beyond that the
 * value is rounded exactly as JavaScript would round it). kn_jcs_parse()
 * reads every number as a double for the same reason, so integers of any
 * size in the input are accepted and rounded once, by strtod. */
#ifndef KN_JCS_H
#define KN_JCS_H

#include <stddef.h>

#include <jansson.h>

#include "core/error.h"

/* Longest output of kn_jcs_format_number() plus its NUL
 * ("-1.2345678901234567e-308" is 24 bytes). */
#define KN_JCS_NUMBER_MAX 32

/* Parses untrusted JSON text for canonicalization: any top-level value,
 * duplicate member names rejected, invalid UTF-8 rejected, "\u0000" allowed
 * in strings, every number decoded as a double. Returns a new reference
 * (caller json_decref()s) or NULL with err set. */
json_t *kn_jcs_parse(const char *text, size_t len, kn_error_t *err);

/* Canonical bytes of value. Returns a malloc'd, NUL-terminated buffer the
 * caller frees; *len (if not NULL) receives its length without the NUL
 * (the bytes may contain NUL only inside escaped form, so never raw).
 * NULL with err set on NaN/infinity, invalid UTF-8, nesting deeper than
 * 1000 levels or out of memory. */
char *kn_jcs_canonicalize(const json_t *value, size_t *len, kn_error_t *err);

/* Writes the ECMAScript Number::toString form of d into buf (size bytes,
 * KN_JCS_NUMBER_MAX is always enough). Returns the length, or -1 with err
 * set when d is not finite or buf is too small. */
/* Member names in RFC 8785 order (UTF-16 code units): <0, 0, >0. Names
 * must be valid UTF-8. */
int kn_jcs_compare_names(const char *a, const char *b);
int kn_jcs_compare_names_n(const char *a, size_t alen, const char *b, size_t blen);
int kn_jcs_format_number(double d, char *buf, size_t size, kn_error_t *err);

#endif
