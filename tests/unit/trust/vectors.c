/* vectors.c - see vectors.h. */
#include "vectors.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "trust/jcs.h"

json_t *
test_vectors_load(const char *relpath)
{
    const char *src = getenv("KN_SOURCE_DIR");
    char path[4096];
    if (!src || !*src)
        fail_msg("KN_SOURCE_DIR is not set: run the trust tests through ctest");
    snprintf(path, sizeof path, "%s/../shared/receipts/%s", src, relpath);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("receipt test vectors missing: cannot open %s (the shared reference "
                 "directory must sit beside the repository)",
                 path);
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 131072;
            text = realloc(text, cap);
            assert_non_null(text);
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    fclose(f);
    kn_error_t err = {0};
    json_t *v = kn_jcs_parse(text, len, &err);
    free(text);
    if (!v)
        fail_msg("%s: %s", path, err.msg);
    return v;
}

void
test_vectors_key(const json_t *file, kn_receipt_key_t *key)
{
    kn_error_t err = {0};
    const char *pem =
        json_string_value(json_object_get(json_object_get(file, "keys"), "privateKey"));
    assert_non_null(pem);
    if (kn_receipt_key_from_pem(key, pem, &err) < 0)
        fail_msg("private key: %s", err.msg);
}

void
test_vectors_public_key(const json_t *file, unsigned char *out)
{
    kn_error_t err = {0};
    const char *pem =
        json_string_value(json_object_get(json_object_get(file, "keys"), "publicKey"));
    assert_non_null(pem);
    if (kn_receipt_public_key_from_pem(out, pem, &err) < 0)
        fail_msg("public key: %s", err.msg);
}
