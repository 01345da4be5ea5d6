/* error.h - errors that carry errno and a message up to where they are reported.
 *
 * A function that can fail takes `kn_error_t *err` last, returns -1 (or NULL)
 * and fills err. Callers add context with kn_error_prefix() as the error rises.
 * The library never prints and never exits. */
#ifndef KN_ERROR_H
#define KN_ERROR_H

#include <stddef.h>

#define KN_ERROR_MSG_MAX 512

typedef struct kn_error {
    int code; /* errno value, 0 if none applies */
    char msg[KN_ERROR_MSG_MAX];
} kn_error_t;

/* Sets err to "<formatted>: strerror(code)" (or without the suffix when code is 0).
 * Returns -1 so callers can `return kn_error_set(...)`. Sets errno to code. */
int kn_error_set(kn_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends "<formatted>: " to err's message. Returns -1. */
int kn_error_prefix(kn_error_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kn_error_clear(kn_error_t *err);

#endif
