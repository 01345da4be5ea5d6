/* util.h - small helpers shared by the execd modules: time, ids, UTF-8, buffers. */
#ifndef KN_EXECD_UTIL_H
#define KN_EXECD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Growable byte buffer. Zero-initialise; free with kn_buf_free(). */
typedef struct kn_buf {
    char *data;
    size_t len;
    size_t cap;
} kn_buf_t;

/* Appends n bytes; returns -1 (errno ENOMEM) on allocation failure. */
int kn_buf_append(kn_buf_t *b, const void *p, size_t n);
/* Drops the first n bytes. */
void kn_buf_consume(kn_buf_t *b, size_t n);
void kn_buf_free(kn_buf_t *b);

/* Wall clock in Unix milliseconds. */
int64_t kn_util_now_ms(void);
/* Monotonic clock in milliseconds. */
int64_t kn_util_mono_ms(void);
/* Formats a Unix time (seconds + nanoseconds) as RFC 3339 UTC into out (>= 40 bytes). */
void kn_util_rfc3339(char *out, size_t n, time_t sec, long nsec);
/* Fills out with 2*nbytes lowercase hex characters of randomness and a NUL. */
void kn_util_random_hex(char *out, size_t nbytes);
/* Fills out (>= 37 bytes) with a random UUID v4. */
void kn_util_uuid(char *out);
/* Writes all of buf, retrying EINTR and short writes. -1 on error. */
int kn_util_write_all(int fd, const void *buf, size_t n);
/* Converts an "octal digits written in decimal" mode (755) to a mode_t; -1 if invalid. */
int kn_util_mode_from_decimal(long long v, mode_t *out);
/* The inverse: 0755 -> 755. */
int kn_util_mode_to_decimal(mode_t m);
/* Looks name up in PATH; true if an executable regular file exists. */
bool kn_util_in_path(const char *name);
/* The same, with the file found copied to out (when it fits). */
bool kn_util_which(const char *name, char *out, size_t size);

#endif
