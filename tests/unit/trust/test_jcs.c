/* test_jcs.c - RFC 8785 canonicalization: every vector of
 * canonicalization_vectors.json and go_vectors.json byte for byte, plus the
 * number, string and input-validation rules the vectors do not reach. */
#include <errno.h>
#include <math.h>
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

/* Canonical bytes of v; fails the test on error. Caller frees. */
static char *
canon(const json_t *v, size_t *len)
{
    kn_error_t err = {0};
    char *c = kn_jcs_canonicalize(v, len, &err);
    if (!c)
        fail_msg("canonicalize: %s", err.msg);
    return c;
}

static void
assert_bytes(const char *name, const char *got, size_t got_len, const char *want, size_t want_len)
{
    if (got_len != want_len || memcmp(got, want, got_len) != 0)
        fail_msg("%s: canonical form differs\n  got:  %.*s\n  want: %.*s", name, (int)got_len, got,
                 (int)want_len, want);
}

static void
test_canonicalization_vectors(void **state)
{
    (void)state;
    json_t *file = test_vectors_load("vectors/canonicalization_vectors.json");
    json_t *vectors = json_object_get(file, "canonicalization_vectors");
    size_t i, checked = 0, hashed = 0;
    json_t *v;
    assert_true(json_array_size(vectors) > 0);
    json_array_foreach(vectors, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name"));
        json_t *input = json_object_get(v, "input"), *want = json_object_get(v, "canonical");
        assert_non_null(input);
        assert_true(json_is_string(want));
        size_t len;
        char *c = canon(input, &len);
        assert_bytes(name, c, len, json_string_value(want), json_string_length(want));
        free(c);
        const char *hash = json_string_value(json_object_get(v, "expectedHash"));
        if (hash) {
            char got[KN_RECEIPT_HASH_SIZE];
            kn_error_t err = {0};
            assert_int_equal(kn_receipt_hash_json(input, got, &err), 0);
            if (strcmp(got, hash))
                fail_msg("%s: hash %s, want %s", name, got, hash);
            hashed++;
        }
        checked++;
    }
    assert_int_equal(checked, json_array_size(vectors));
    assert_true(hashed >= 3);
    print_message("      %zu canonicalization vectors, %zu hashes\n", checked, hashed);
    json_decref(file);
}

/* receipt_hash_vectors: the receipt hash (proof removed, optional nulls
 * dropped, previous_receipt_hash kept) byte for byte. */
static void
test_receipt_hash_vectors(void **state)
{
    (void)state;
    json_t *file = test_vectors_load("vectors/canonicalization_vectors.json");
    json_t *vectors = json_object_get(file, "receipt_hash_vectors");
    size_t i, checked = 0;
    json_t *v;
    json_array_foreach(vectors, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name"));
        json_t *receipt = json_object_get(v, "receipt");
        if (!receipt)
            continue; /* receipt_signature_preservation_legacy_0_2_0: see test_receipt.c */
        const char *want = json_string_value(json_object_get(v, "expectedHash"));
        assert_non_null(want);
        if (!strncmp(want, "SAME_AS_", 8)) {
            size_t j;
            json_t *w;
            const char *ref = want + 8;
            want = NULL;
            json_array_foreach(vectors, j, w)
            {
                if (!strcmp(json_string_value(json_object_get(w, "name")), ref))
                    want = json_string_value(json_object_get(w, "expectedHash"));
            }
            assert_non_null(want);
        }
        char got[KN_RECEIPT_HASH_SIZE];
        kn_error_t err = {0};
        if (kn_receipt_hash(receipt, got, &err) < 0)
            fail_msg("%s: %s", name, err.msg);
        if (strcmp(got, want))
            fail_msg("%s: receipt hash %s, want %s", name, got, want);
        const char *sub = json_string_value(json_object_get(v, "mustContainSubstring"));
        if (sub) {
            size_t len;
            char *c = kn_receipt_canonical(receipt, &len, &err);
            assert_non_null(c);
            if (!strstr(c, sub))
                fail_msg("%s: canonical form lacks %s", name, sub);
            free(c);
        }
        checked++;
    }
    assert_int_equal(checked, json_array_size(vectors) - 1);
    print_message("      %zu receipt hash vectors\n", checked);
    json_decref(file);
}

/* go_vectors.json: canonicalization and hashing sections. */
static void
test_go_vectors_canonical(void **state)
{
    (void)state;
    json_t *file = test_vectors_load("vectors/go_vectors.json");
    json_t *canon_sec = json_object_get(file, "canonicalization");
    json_t *hash_sec = json_object_get(file, "hashing");
    const char *pairs[][2] = {{"simpleInput", "simpleExpected"},
                              {"receiptInput", "receiptExpected"}};
    for (size_t i = 0; i < 2; i++) {
        json_t *want = json_object_get(canon_sec, pairs[i][1]);
        size_t len;
        char *c = canon(json_object_get(canon_sec, pairs[i][0]), &len);
        assert_bytes(pairs[i][0], c, len, json_string_value(want), json_string_length(want));
        free(c);
    }
    char got[KN_RECEIPT_HASH_SIZE];
    const char *hello = json_string_value(json_object_get(hash_sec, "simpleInput"));
    kn_receipt_hash_bytes(hello, strlen(hello), got);
    assert_string_equal(got, json_string_value(json_object_get(hash_sec, "simpleExpected")));
    kn_error_t err = {0};
    assert_int_equal(kn_receipt_hash(json_object_get(canon_sec, "receiptInput"), got, &err), 0);
    assert_string_equal(got, json_string_value(json_object_get(hash_sec, "receiptExpected")));
    json_decref(file);
}

static void
assert_number(double d, const char *want)
{
    char buf[KN_JCS_NUMBER_MAX];
    kn_error_t err = {0};
    int n = kn_jcs_format_number(d, buf, sizeof buf, &err);
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(want));
    assert_string_equal(buf, want);
}

/* ECMAScript Number::toString corner cases, checked against node. */
static void
test_numbers(void **state)
{
    (void)state;
    assert_number(0.0, "0");
    assert_number(-0.0, "0");
    assert_number(5e-324, "5e-324");
    assert_number(1.7976931348623157e308, "1.7976931348623157e+308");
    assert_number(-1e30, "-1e+30");
    assert_number(1e23, "1e+23");
    assert_number(123456789012345680000.0, "123456789012345680000");
    assert_number(1.5e-7, "1.5e-7");
    assert_number(0.000001234, "0.000001234");
    assert_number(4.35, "4.35");
    assert_number(-0.5, "-0.5");
    assert_number(333333333.33333329, "333333333.3333333");
    assert_number(1e-6, "0.000001");
    assert_number(1e21, "1e+21");
    assert_number(999999999999999900000.0, "999999999999999900000");
    assert_number(2.2250738585072014e-308, "2.2250738585072014e-308");
    /* Powers of two have lopsided rounding intervals. */
    assert_number(ldexp(1.0, -1014), "5.696189077778436e-306");

    char buf[KN_JCS_NUMBER_MAX];
    kn_error_t err = {0};
    assert_int_equal(kn_jcs_format_number(NAN, buf, sizeof buf, &err), -1);
    assert_int_equal(err.code, EDOM);
    assert_int_equal(kn_jcs_format_number(INFINITY, buf, sizeof buf, &err), -1);
    assert_int_equal(kn_jcs_format_number(1.5, buf, 3, &err), -1);
}

static void
assert_parse_canon(const char *text, const char *want)
{
    kn_error_t err = {0};
    json_t *v = kn_jcs_parse(text, strlen(text), &err);
    if (!v)
        fail_msg("parse %s: %s", text, err.msg);
    size_t len;
    char *c = canon(v, &len);
    assert_bytes(text, c, len, want, strlen(want));
    free(c);
    json_decref(v);
}

/* Integers beyond 2^53 become the nearest double, as in JavaScript. */
static void
test_big_integers(void **state)
{
    (void)state;
    assert_parse_canon("[9007199254740993,-9007199254740993]",
                       "[9007199254740992,-9007199254740992]");
    assert_parse_canon("[18446744073709551616]", "[18446744073709552000]");
    assert_parse_canon("[123456789012345678901234567890]", "[1.2345678901234568e+29]");
    assert_parse_canon("[1E2,1e-2,-0,-0.0,10.50]", "[100,0.01,0,0,10.5]");
    json_t *v = json_pack("[I,I]", (json_int_t)INT64_MAX, (json_int_t)42);
    size_t len;
    char *c = canon(v, &len);
    assert_string_equal(c, "[9223372036854776000,42]");
    free(c);
    json_decref(v);
}

static void
test_strings(void **state)
{
    (void)state;
    assert_parse_canon("\"\\u0000\\u001f\\u007f\\/\"", "\"\\u0000\\u001f\x7f/\"");
    assert_parse_canon(
        "{\"\\u20ac\":1,\"\\r\":2,\"1\":3,\"\\ud83d\\ude00\":4,\"\\u00e9\":5}",
        "{\"\\r\":2,\"1\":3,\"\xc3\xa9\":5,\"\xe2\x82\xac\":1,\"\xf0\x9f\x98\x80\":4}");
    /* A key that is a prefix of another sorts first. */
    assert_parse_canon("{\"ab\":1,\"a\":2,\"\":3}", "{\"\":3,\"a\":2,\"ab\":1}");
}

static void
test_rejects(void **state)
{
    (void)state;
    kn_error_t err = {0};
    const char *bad[] = {
        "{\"a\":1,\"a\":2}", /* duplicate member */
        "\"\xc3\x28\"",      /* invalid UTF-8 */
        "\"\xed\xa0\x80\"",  /* encoded surrogate */
        "\"\\ud800\"",       /* lone surrogate escape */
        "[1e400]",           /* not a finite double */
        "[NaN]",
        "{\"a\":1,}",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *v = kn_jcs_parse(bad[i], strlen(bad[i]), &err);
        if (v)
            fail_msg("accepted %s", bad[i]);
    }
    /* Values built in memory are checked too. */
    json_t *s = json_stringn_nocheck("\xff\xfe", 2);
    size_t len;
    assert_null(kn_jcs_canonicalize(s, &len, &err));
    assert_int_equal(err.code, EILSEQ);
    json_decref(s);
    json_t *o = json_object();
    json_object_set_new_nocheck(o, "\xc0\x80", json_true());
    assert_null(kn_jcs_canonicalize(o, &len, &err));
    json_decref(o);
    json_t *deep = json_array(), *cur = deep;
    for (int i = 0; i < 1100; i++) {
        json_t *next = json_array();
        json_array_append_new(cur, next);
        cur = next;
    }
    assert_null(kn_jcs_canonicalize(deep, &len, &err));
    assert_int_equal(err.code, ELOOP);
    json_decref(deep);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonicalization_vectors),
        cmocka_unit_test(test_receipt_hash_vectors),
        cmocka_unit_test(test_go_vectors_canonical),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_big_integers),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
