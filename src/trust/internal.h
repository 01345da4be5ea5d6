/* internal.h - helpers shared by the files of src/trust; not installed, not
 * part of the receipt API. */
#ifndef KN_TRUST_INTERNAL_H
#define KN_TRUST_INTERNAL_H

#include <stddef.h>

#include <jansson.h>

#include "core/error.h"
#include "receipt.h"

/* Size of an ISO 8601 UTC time "YYYY-MM-DDTHH:MM:SSZ" plus NUL (with room). */
#define KN_TRUST_TIME_SIZE 32

/* Writes the current UTC time, whole seconds, as "YYYY-MM-DDTHH:MM:SSZ". */
int kn_trust_now(char *out, size_t size, kn_error_t *err);

/* Makes sure libsodium is initialised (idempotent, thread-safe). */
int kn_trust_sodium_init(kn_error_t *err);

/* kn_receipt_sign(), also returning the receipt hash (hash not NULL) from
 * the one canonical serialization both cover. */
int kn_trust_sign_hash(json_t *receipt, const kn_receipt_key_t *key,
                       const char *verification_method, const char *created, char *hash,
                       kn_error_t *err);
/* The same, also giving (text not NULL) the canonical text of the signed
 * receipt, built from the bytes just signed (malloc'd; NULL when it could
 * not be: the caller serializes the receipt then). */
int kn_trust_sign_text(json_t *receipt, const kn_receipt_key_t *key,
                       const char *verification_method, const char *created, char *hash,
                       char **text, kn_error_t *err);

/* Checks a receipt against the whole v0.5.0 JSON schema (schema.c): 0, or
 * -1 with why set. */
int kn_trust_check_schema(const json_t *receipt, char *why, size_t size);

#endif
