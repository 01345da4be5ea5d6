/* internal.h - helpers shared by the files of src/trust; not installed, not
 * part of the receipt API. */
#ifndef KN_TRUST_INTERNAL_H
#define KN_TRUST_INTERNAL_H

#include <stddef.h>

#include "core/error.h"

/* Size of an ISO 8601 UTC time "YYYY-MM-DDTHH:MM:SSZ" plus NUL (with room). */
#define KN_TRUST_TIME_SIZE 32

/* Writes the current UTC time, whole seconds, as "YYYY-MM-DDTHH:MM:SSZ". */
int kn_trust_now(char *out, size_t size, kn_error_t *err);

/* Makes sure libsodium is initialised (idempotent, thread-safe). */
int kn_trust_sodium_init(kn_error_t *err);

#endif
