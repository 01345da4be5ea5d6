/* vectors.h - loading the Agent Receipts test vectors for the unit tests. */
#ifndef KN_TEST_TRUST_VECTORS_H
#define KN_TEST_TRUST_VECTORS_H

#include <jansson.h>

#include "trust/receipt.h"

/* Parses shared/receipts/<relpath> (found at $KN_SOURCE_DIR/../shared/receipts)
 * with kn_jcs_parse(). A missing file fails the calling test with a message
 * naming the path: the vectors are part of the project's environment. */
json_t *test_vectors_load(const char *relpath);

/* The signing key of the cross-SDK vectors (keys.privateKey of file). */
void test_vectors_key(const json_t *file, kn_receipt_key_t *key);

/* The raw public key of the vectors (keys.publicKey of file). */
void test_vectors_public_key(const json_t *file, unsigned char *out);

#endif
