/* test_receipt.c - signing and verification against the cross-SDK vectors:
 * every signed vector reproduced byte for byte (hash and proofValue) from
 * the vector's key, every valid one accepted, every malformed one rejected
 * for the reason it was built to exercise. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "trust/jcs.h"
#include "trust/receipt.h"
#include "vectors.h"

static const char *
proof_member(const json_t *r, const char *key)
{
    return json_string_value(json_object_get(json_object_get(r, "proof"), key));
}

/* Re-signs a copy of receipt with key, keeping its proof's created and
 * verificationMethod, and checks the proofValue comes out identical. */
static void
assert_resign(const char *name, const json_t *receipt, const kn_receipt_key_t *key)
{
    kn_error_t err = {0};
    json_t *copy = json_deep_copy(receipt);
    json_object_del(copy, "proof");
    if (kn_receipt_sign(copy, key, proof_member(receipt, "verificationMethod"),
                        proof_member(receipt, "created"), &err) < 0)
        fail_msg("%s: sign: %s", name, err.msg);
    const char *got = proof_member(copy, "proofValue"), *want = proof_member(receipt, "proofValue");
    if (strcmp(got, want))
        fail_msg("%s: proofValue\n  got:  %s\n  want: %s", name, got, want);
    /* The whole proof object matches, not only the value. */
    size_t l1, l2;
    char *c1 = kn_jcs_canonicalize(json_object_get(copy, "proof"), &l1, &err);
    char *c2 = kn_jcs_canonicalize(json_object_get(receipt, "proof"), &l2, &err);
    assert_non_null(c1);
    assert_non_null(c2);
    assert_string_equal(c1, c2);
    free(c1);
    free(c2);
    json_decref(copy);
}

static void
assert_valid(const char *name, const json_t *receipt, const unsigned char *pk)
{
    kn_error_t err = {0};
    kn_receipt_verdict_t v;
    if (kn_receipt_verify(receipt, pk, &v, &err) < 0)
        fail_msg("%s: rejected: %s", name, err.msg);
    assert_int_equal(v.check, KN_RECEIPT_VALID);
}

/* Every member of a vector file that holds a signed "receipt" with an
 * "expectedReceiptHash": the hash, the proofValue re-created from the
 * vector key, and acceptance. Returns how many were checked. */
static size_t
check_signed_receipts(const char *relpath)
{
    json_t *file = test_vectors_load(relpath);
    kn_receipt_key_t key;
    unsigned char pk[KN_RECEIPT_PUBLIC_KEY_SIZE];
    test_vectors_key(file, &key);
    test_vectors_public_key(file, pk);
    assert_memory_equal(key.public_key, pk, sizeof pk);
    const char *key_name;
    json_t *vec;
    size_t checked = 0;
    json_object_foreach(file, key_name, vec)
    {
        json_t *receipt = json_object_get(vec, "receipt");
        const char *want = json_string_value(json_object_get(vec, "expectedReceiptHash"));
        if (!receipt || !want)
            continue;
        char hash[KN_RECEIPT_HASH_SIZE];
        kn_error_t err = {0};
        assert_int_equal(kn_receipt_hash(receipt, hash, &err), 0);
        if (strcmp(hash, want))
            fail_msg("%s %s: receipt hash %s, want %s", relpath, key_name, hash, want);
        assert_resign(key_name, receipt, &key);
        assert_true(json_is_true(json_object_get(vec, "expectedValid")));
        assert_valid(key_name, receipt, pk);
        checked++;
    }
    kn_receipt_key_wipe(&key);
    json_decref(file);
    return checked;
}

/* v050_vectors.json: three signed v0.5.0 receipts. */
static void
test_v050_vectors(void **state)
{
    (void)state;
    assert_int_equal(check_signed_receipts("vectors/v050_vectors.json"), 3);
}

/* go_vectors.json: signing.unsigned signed with the vector key gives
 * signing.signed exactly. */
static void
check_signing_section(const char *relpath)
{
    json_t *file = test_vectors_load(relpath);
    json_t *sec = json_object_get(file, "signing");
    json_t *signed_r = json_object_get(sec, "signed");
    kn_receipt_key_t key;
    unsigned char pk[KN_RECEIPT_PUBLIC_KEY_SIZE];
    test_vectors_key(file, &key);
    test_vectors_public_key(file, pk);

    kn_error_t err = {0};
    json_t *r = json_deep_copy(json_object_get(sec, "unsigned"));
    assert_int_equal(kn_receipt_sign(r, &key,
                                     json_string_value(json_object_get(sec, "verificationMethod")),
                                     proof_member(signed_r, "created"), &err),
                     0);
    assert_true(json_equal(r, signed_r));
    assert_string_equal(proof_member(r, "proofValue"), proof_member(signed_r, "proofValue"));
    assert_valid(relpath, signed_r, pk);
    assert_resign(relpath, signed_r, &key);
    json_decref(r);
    kn_receipt_key_wipe(&key);
    json_decref(file);
}

static void
test_go_vectors_signing(void **state)
{
    (void)state;
    check_signing_section("vectors/go_vectors.json");
    check_signing_section("vectors-older/py_vectors.json");
}

/* The check each malformed vector was built to trip. */
static kn_receipt_check_t
expected_check(const char *name)
{
    static const struct {
        const char *name;
        kn_receipt_check_t check;
    } table[] = {
        {"wrong_proof_type", KN_RECEIPT_BAD_PROOF_TYPE},
        {"mutated_action_type", KN_RECEIPT_BAD_SIGNATURE},
        {"mutated_principal_id", KN_RECEIPT_BAD_SIGNATURE},
        {"truncated_proof_value", KN_RECEIPT_BAD_PROOF_VALUE},
        {"wrong_multibase_prefix", KN_RECEIPT_BAD_PROOF_VALUE},
        {"flipped_proof_byte", KN_RECEIPT_BAD_SIGNATURE},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i].name, name))
            return table[i].check;
    return KN_RECEIPT_VALID; /* a vector added later: any rejection will do */
}

static void
test_malformed_receipts(void **state)
{
    (void)state;
    json_t *file = test_vectors_load("vectors/malformed_vectors.json");
    unsigned char pk[KN_RECEIPT_PUBLIC_KEY_SIZE];
    test_vectors_public_key(file, pk);
    size_t i;
    json_t *vec;
    json_t *cases = json_object_get(file, "receipts");
    assert_true(json_array_size(cases) > 0);
    json_array_foreach(cases, i, vec)
    {
        const char *name = json_string_value(json_object_get(vec, "name"));
        kn_error_t err = {0};
        kn_receipt_verdict_t v;
        if (kn_receipt_verify(json_object_get(vec, "receipt"), pk, &v, &err) == 0)
            fail_msg("malformed vector %s accepted", name);
        kn_receipt_check_t want = expected_check(name);
        if (want != KN_RECEIPT_VALID && v.check != want)
            fail_msg("%s: rejected as %s (%s), expected %s", name, kn_receipt_check_name(v.check),
                     v.reason, kn_receipt_check_name(want));
        assert_true(strlen(err.msg) > 0);
    }
    json_t *chains = json_object_get(file, "chains");
    assert_true(json_array_size(chains) > 0);
    json_array_foreach(chains, i, vec)
    {
        const char *name = json_string_value(json_object_get(vec, "name"));
        kn_error_t err = {0};
        kn_receipt_verdict_t v;
        if (kn_receipt_verify_chain(json_object_get(vec, "receipts"), pk, NULL, &v, &err) == 0)
            fail_msg("malformed chain %s accepted", name);
        if (!strcmp(name, "missing_previous_receipt_hash_mid_chain")) {
            assert_int_equal(v.check, KN_RECEIPT_BAD_LINK);
            assert_int_equal(v.index, 1);
        }
    }
    print_message("      %zu malformed receipts, %zu malformed chains rejected\n",
                  json_array_size(cases), json_array_size(chains));
    json_decref(file);
}

/* In the malformed chain only the middle receipt was altered after signing:
 * its neighbours verify on their own, it does not, and the chain verifier
 * names the broken link at index 1 first. */
static void
test_malformed_chain_members(void **state)
{
    (void)state;
    json_t *file = test_vectors_load("vectors/malformed_vectors.json");
    unsigned char pk[KN_RECEIPT_PUBLIC_KEY_SIZE];
    test_vectors_public_key(file, pk);
    json_t *chain = json_object_get(json_array_get(json_object_get(file, "chains"), 0), "receipts");
    assert_int_equal(json_array_size(chain), 3);
    assert_valid("chain member 0", json_array_get(chain, 0), pk);
    assert_valid("chain member 2", json_array_get(chain, 2), pk);
    kn_error_t err = {0};
    kn_receipt_verdict_t v;
    assert_int_equal(kn_receipt_verify(json_array_get(chain, 1), pk, &v, &err), -1);
    assert_int_equal(v.check, KN_RECEIPT_BAD_SIGNATURE);
    json_decref(file);
}

/* 0.5.0 receipts are held to the whole JSON schema (schema.c): members it
 * does not allow, formats, patterns. The signature is not even reached. */
static void
test_schema_v050(void **state)
{
    (void)state;
    json_t *file = test_vectors_load("vectors/v050_vectors.json");
    unsigned char pk[KN_RECEIPT_PUBLIC_KEY_SIZE];
    test_vectors_public_key(file, pk);
    json_t *good = json_object_get(json_object_get(file, "runtimeReceipt"), "receipt");
    kn_error_t err = {0};
    kn_receipt_verdict_t v;
    assert_int_equal(kn_receipt_verify(good, pk, &v, &err), 0);
    struct {
        const char *object; /* "" top, or a credentialSubject member, or issuer/proof */
        const char *key;
        json_t *value;
        const char *why;
    } cases[] = {
        {"action", "tool_name", json_string("x"), "does not allow"},
        {"outcome", "status_code", json_integer(1), "does not allow"},
        {"", "issuanceDate", json_string("yesterday"), "issuanceDate"},
        {"", "id", json_string("urn:receipt:NOT-A-UUID"), "urn:receipt"},
        {"action", "id", json_string("act_1"), "act_"},
        {"action", "parameters_hash", json_string("sha256:ABC"), "parameters_hash"},
        {"action", "idempotency_key", json_string(""), "idempotency_key"},
        {"chain", "sequence", json_real(1.5), "sequence"},
        {"proof", "proofValue", json_string("uabc"), "proofValue"},
        {"principal", "type", json_string("Robot"), "principal.type"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *r = json_deep_copy(good);
        json_t *o = !*cases[i].object ? r
                    : !strcmp(cases[i].object, "proof")
                        ? json_object_get(r, "proof")
                        : json_object_get(json_object_get(r, "credentialSubject"), cases[i].object);
        json_object_set_new(o, cases[i].key, cases[i].value);
        assert_int_equal(kn_receipt_verify(r, pk, &v, &err), -1);
        assert_int_equal(v.check, KN_RECEIPT_MALFORMED);
        if (!strstr(v.reason, cases[i].why))
            fail_msg("case %zu: %s", i, v.reason);
        json_decref(r);
    }
    json_decref(file);
}

/* Single-field tampering of a valid receipt is caught. */
static void
test_tampering(void **state)
{
    (void)state;
    json_t *file = test_vectors_load("vectors/v050_vectors.json");
    unsigned char pk[KN_RECEIPT_PUBLIC_KEY_SIZE], other[KN_RECEIPT_PUBLIC_KEY_SIZE];
    test_vectors_public_key(file, pk);
    json_t *good = json_object_get(json_object_get(file, "runtimeReceipt"), "receipt");
    kn_error_t err = {0};
    kn_receipt_verdict_t v;

    json_t *r = json_deep_copy(good);
    json_object_set_new(json_object_get(json_object_get(r, "issuer"), "runtime"), "agent_id",
                        json_string("someone-else"));
    assert_int_equal(kn_receipt_verify(r, pk, &v, &err), -1);
    assert_int_equal(v.check, KN_RECEIPT_BAD_SIGNATURE);
    json_decref(r);

    /* An optional member set to null is dropped before hashing: same bytes. */
    r = json_deep_copy(good);
    json_object_set_new(json_object_get(json_object_get(r, "credentialSubject"), "outcome"),
                        "error", json_null());
    assert_int_equal(kn_receipt_verify(r, pk, &v, &err), 0);
    json_decref(r);

    r = json_deep_copy(good);
    json_object_set_new(json_object_get(r, "proof"), "proofPurpose", json_string("authentication"));
    assert_int_equal(kn_receipt_verify(r, pk, &v, &err), -1);
    assert_int_equal(v.check, KN_RECEIPT_BAD_PROOF_PURPOSE);
    json_decref(r);

    r = json_deep_copy(good);
    json_object_del(json_object_get(json_object_get(r, "credentialSubject"), "chain"),
                    "previous_receipt_hash");
    assert_int_equal(kn_receipt_verify(r, pk, &v, &err), -1);
    assert_int_equal(v.check, KN_RECEIPT_MALFORMED);
    json_decref(r);

    r = json_deep_copy(good);
    json_object_del(r, "proof");
    assert_int_equal(kn_receipt_verify(r, pk, &v, &err), -1);
    assert_int_equal(v.check, KN_RECEIPT_MALFORMED);
    json_decref(r);

    /* The context is pinned to the version. */
    r = json_deep_copy(good);
    json_array_set_new(json_object_get(r, "@context"), 1,
                       json_string("https://agentreceipts.ai/context/v1"));
    assert_int_equal(kn_receipt_verify(r, pk, &v, &err), -1);
    assert_int_equal(v.check, KN_RECEIPT_MALFORMED);
    json_decref(r);

    /* issuer.runtime is an opaque container: a null inside it is kept and
     * so changes the hash, while a null optional member elsewhere does not. */
    char h0[KN_RECEIPT_HASH_SIZE], h1[KN_RECEIPT_HASH_SIZE];
    assert_int_equal(kn_receipt_hash(good, h0, &err), 0);
    r = json_deep_copy(good);
    json_object_set_new(json_object_get(json_object_get(r, "issuer"), "runtime"), "parent",
                        json_null());
    assert_int_equal(kn_receipt_hash(r, h1, &err), 0);
    assert_string_not_equal(h0, h1);
    json_decref(r);
    r = json_deep_copy(good);
    json_object_set_new(json_object_get(r, "issuer"), "model", json_null());
    assert_int_equal(kn_receipt_hash(r, h1, &err), 0);
    assert_string_equal(h0, h1);
    json_decref(r);

    memcpy(other, pk, sizeof other);
    other[0] ^= 1;
    assert_int_equal(kn_receipt_verify(good, other, &v, &err), -1);
    assert_int_equal(v.check, KN_RECEIPT_BAD_SIGNATURE);
    json_decref(file);
}

/* Older protocol versions still verify (the schema says verifiers MUST
 * accept them): the v0.2.0 terminal chain that
 * receipt_signature_preservation_legacy_0_2_0 refers to, the v0.4.0
 * duplicate idempotency key chain (valid, one warning) and the key
 * rotation example (RFC 8032 TEST 2 key handing over to TEST 3). */
static void
test_older_vectors(void **state)
{
    (void)state;
    kn_error_t err = {0};
    kn_receipt_verdict_t v;
    unsigned char pk[KN_RECEIPT_PUBLIC_KEY_SIZE];

    assert_int_equal(check_signed_receipts("vectors-older/v020_vectors.json"), 1);
    assert_int_equal(check_signed_receipts("vectors-older/v030_vectors.json"), 3);
    assert_int_equal(check_signed_receipts("vectors-older/v040_vectors.json"), 1);

    json_t *v020 = test_vectors_load("vectors-older/v020_vectors.json");
    test_vectors_public_key(v020, pk);
    /* response_hash is over the redacted response. */
    json_t *rh = json_object_get(v020, "responseHash");
    char got[KN_RECEIPT_HASH_SIZE];
    assert_int_equal(kn_receipt_hash_json(json_object_get(rh, "redactedResponse"), got, &err), 0);
    assert_string_equal(got, json_string_value(json_object_get(rh, "expectedHash")));
    json_t *chain = json_object_get(json_object_get(v020, "terminalChain"), "receipts");
    if (kn_receipt_verify_chain(chain, pk, NULL, &v, &err) < 0)
        fail_msg("v020 terminal chain: %s", err.msg);
    assert_string_equal(v.termination, "complete");
    assert_int_equal(v.count, json_array_size(chain));
    kn_receipt_chain_expect_t x = {.require_terminal = true};
    assert_int_equal(kn_receipt_verify_chain(chain, pk, &x, &v, &err), 0);
    kn_receipt_key_t key;
    test_vectors_key(v020, &key);
    size_t i;
    json_t *r;
    json_array_foreach(chain, i, r)
    {
        assert_resign("v020 terminal chain", r, &key);
    }
    json_decref(v020);

    json_t *v040 = test_vectors_load("vectors-older/v040_vectors.json");
    json_t *dup = json_object_get(json_object_get(v040, "duplicateIdempotencyChain"), "receipts");
    if (kn_receipt_verify_chain(dup, pk, NULL, &v, &err) < 0)
        fail_msg("v040 duplicate chain: %s", err.msg);
    assert_int_equal(v.duplicate_keys, 1);
    assert_string_equal(v.termination, "unknown");
    json_t *idem = json_object_get(json_object_get(v040, "idempotencyKeyReceipt"), "receipt");
    assert_valid("v040 idempotency", idem, pk);
    assert_resign("v040 idempotency", idem, &key);
    json_decref(v040);
    kn_receipt_key_wipe(&key);

    /* RFC 8032 section 7.1 TEST 2 public key. */
    static const unsigned char test2[32] = {0x3d, 0x40, 0x17, 0xc3, 0xe8, 0x43, 0x89, 0x5a,
                                            0x92, 0xb7, 0x0a, 0xa7, 0x4d, 0x1b, 0x7e, 0xbc,
                                            0x9c, 0x98, 0x2c, 0xcf, 0x2e, 0xc4, 0x96, 0x8c,
                                            0xc0, 0xcd, 0x55, 0xf1, 0x2a, 0xf4, 0x66, 0x0c};
    json_t *rot = test_vectors_load("vectors-older/rotation_event_example.json");
    json_t *arr = json_pack("[O]", rot);
    if (kn_receipt_verify_chain(arr, test2, NULL, &v, &err) < 0)
        fail_msg("rotation example: %s", err.msg);
    /* The same receipt claiming a different outgoing key is refused. */
    json_t *kr = json_object_get(json_object_get(rot, "credentialSubject"), "keyRotation");
    json_object_set_new(kr, "old_key_fingerprint",
                        json_string("sha256:00000000000000000000000000000000000000000000000000000"
                                    "00000000000"));
    assert_int_equal(kn_receipt_verify_chain(arr, test2, NULL, &v, &err), -1);
    assert_int_not_equal(v.check, KN_RECEIPT_VALID);
    json_decref(arr);
    json_decref(rot);
}

static void
test_keys_pem_and_multibase(void **state)
{
    (void)state;
    json_t *file = test_vectors_load("vectors/go_vectors.json");
    kn_receipt_key_t key;
    test_vectors_key(file, &key);
    char mb[KN_RECEIPT_MULTIBASE_KEY_SIZE];
    unsigned char back[KN_RECEIPT_PUBLIC_KEY_SIZE];
    kn_error_t err = {0};
    kn_receipt_public_key_encode(key.public_key, mb);
    assert_int_equal(mb[0], 'u');
    assert_int_equal(strlen(mb), 44);
    assert_int_equal(kn_receipt_public_key_decode(mb, back, &err), 0);
    assert_memory_equal(back, key.public_key, sizeof back);
    assert_int_equal(kn_receipt_public_key_decode("zabc", back, &err), -1);
    assert_int_equal(kn_receipt_key_from_pem(&key,
                                             "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END "
                                             "PRIVATE KEY-----\n",
                                             &err),
                     -1);
    unsigned char pk[KN_RECEIPT_PUBLIC_KEY_SIZE];
    const char *priv =
        json_string_value(json_object_get(json_object_get(file, "keys"), "privateKey"));
    assert_int_equal(kn_receipt_public_key_from_pem(pk, priv, &err), -1);
    /* Kennel writes the protocol's PEM forms byte for byte. */
    const char *pub =
        json_string_value(json_object_get(json_object_get(file, "keys"), "publicKey"));
    char pem[KN_RECEIPT_PEM_SIZE];
    kn_receipt_key_to_pem(&key, pem);
    assert_string_equal(pem, priv);
    kn_receipt_public_key_to_pem(key.public_key, pem);
    assert_string_equal(pem, pub);
    /* Keyrings: several PEM blocks, or one multibase key. */
    char ring[4 * KN_RECEIPT_PEM_SIZE];
    unsigned char keys[4][KN_RECEIPT_PUBLIC_KEY_SIZE];
    size_t n = 0;
    snprintf(ring, sizeof ring, "# host keys\n%s\nsecond:\n%s", pub, pub);
    assert_int_equal(kn_receipt_public_keys_from_text(ring, keys, 4, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(keys[1], key.public_key, KN_RECEIPT_PUBLIC_KEY_SIZE);
    assert_int_equal(kn_receipt_public_keys_from_text(ring, keys, 1, &n, &err), -1);
    snprintf(ring, sizeof ring, "  %s\n", mb);
    assert_int_equal(kn_receipt_public_keys_from_text(ring, keys, 4, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_memory_equal(keys[0], key.public_key, KN_RECEIPT_PUBLIC_KEY_SIZE);
    assert_int_equal(kn_receipt_public_keys_from_text("nothing", keys, 4, &n, &err), -1);
    kn_receipt_key_wipe(&key);
    json_decref(file);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v050_vectors),
        cmocka_unit_test(test_go_vectors_signing),
        cmocka_unit_test(test_malformed_receipts),
        cmocka_unit_test(test_malformed_chain_members),
        cmocka_unit_test(test_tampering),
        cmocka_unit_test(test_older_vectors),
        cmocka_unit_test(test_keys_pem_and_multibase),
        cmocka_unit_test(test_schema_v050),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
