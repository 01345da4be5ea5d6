/* test_chain.c - issuing a chain with kn_receipt_chain_t, verifying it, and
 * naming the first break of a damaged one; key files. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "trust/jcs.h"
#include "trust/receipt.h"
#include "vectors.h"

#define WHEN "2026-11-23T12:00:00Z"

typedef struct fixture {
    kn_receipt_key_t key;
    kn_receipt_chain_t *chain;
    json_t *receipts; /* array of what was appended */
} fixture_t;

static const unsigned char seed[KN_RECEIPT_SEED_SIZE] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                                         12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                                         23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static int
setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    kn_error_t err = {0};
    assert_non_null(f);
    assert_int_equal(kn_receipt_key_from_seed(&f->key, seed, &err), 0);
    json_t *runtime = json_pack("{s:s}", "sandbox_id", "sbx-123");
    kn_receipt_chain_config_t cfg = {
        .issuer_id = "did:kennel:host-test",
        .issuer_name = "Kennel",
        .runtime = runtime,
        .principal_id = "did:user:test",
        .chain_id = "kennel/sandbox/sbx-123",
    };
    f->chain = kn_receipt_chain_new(&cfg, &f->key, &err);
    json_decref(runtime);
    assert_non_null(f->chain);
    f->receipts = json_array();
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fixture_t *f = *state;
    kn_receipt_chain_free(f->chain);
    kn_receipt_key_wipe(&f->key);
    json_decref(f->receipts);
    free(f);
    return 0;
}

/* Appends a command receipt with a fixed uuid derived from n to the chain
 * and to f->receipts; returns it borrowed from f->receipts. */
static json_t *
append_command(fixture_t *f, int n, const char *command, int exit_code, bool terminal)
{
    char uuid[40], hash[KN_RECEIPT_HASH_SIZE];
    snprintf(uuid, sizeof uuid, "00000000-0000-4000-8000-%012d", n);
    json_t *params = json_pack("{s:s}", "command", command);
    json_t *resp = json_pack("{s:i}", "exit_code", exit_code);
    kn_receipt_action_t a = {
        .type = "system.command.execute",
        .parameters = params,
        .response = resp,
        .target_system = "kennel:sbx-123",
        .target_resource = "/command",
        .status = exit_code ? "failure" : "success",
        .error = exit_code ? "exit status 1" : NULL,
        .terminal = terminal,
        .timestamp = WHEN,
        .uuid = uuid,
    };
    kn_error_t err = {0};
    char *text = NULL;
    json_t *r = kn_receipt_chain_append_text(f->chain, &a, hash, &text, &err);
    if (!r)
        fail_msg("append: %s", err.msg);
    /* The text made from the signed bytes is the receipt's canonical text. */
    char *canon = kn_jcs_canonicalize(r, NULL, &err);
    assert_non_null(text);
    assert_non_null(canon);
    assert_string_equal(text, canon);
    free(text);
    free(canon);
    char again[KN_RECEIPT_HASH_SIZE];
    assert_int_equal(kn_receipt_hash(r, again, &err), 0);
    assert_string_equal(hash, again);
    assert_string_equal(kn_receipt_chain_head(f->chain), hash);
    json_array_append_new(f->receipts, r); /* r stays valid: f->receipts holds it */
    json_decref(params);
    json_decref(resp);
    return r;
}

/* The signed text, for receipts whose strings need escapes and whose
 * opaque runtime holds nulls and names that sort around "proof". */
static void
test_signed_text(void **state)
{
    (void)state;
    kn_receipt_key_t key;
    kn_error_t err = {0};
    assert_int_equal(kn_receipt_key_from_seed(&key, seed, &err), 0);
    json_t *rt = json_pack("{s:n, s:s, s:[n], s:{s:n}}", "sandbox_id", "pr\"oof", "x\u00e9\n",
                           "proof", "z", "q");
    kn_receipt_chain_config_t cfg = {.issuer_id = "did:kennel:h\u00e9",
                                     .issuer_name = "K\"ennel",
                                     .runtime = rt,
                                     .principal_id = "did:user:\xf0\x9f\x98\x80",
                                     .chain_id = "kennel/sandbox/\u2028"};
    kn_receipt_chain_t *c = kn_receipt_chain_new(&cfg, &key, &err);
    assert_non_null(c);
    json_t *params = json_pack("{s:s}", "command", "echo \"a\\b\"\t\x01 ,\"type\":[");
    for (int i = 0; i < 3; i++) {
        kn_receipt_action_t a = {.type = "system.command.execute",
                                 .parameters = params,
                                 .target_system = "opensandbox:execd",
                                 .target_resource = ",\"type\":\"proof\"}",
                                 .status = i == 1 ? "failure" : "pending",
                                 .error = i == 1 ? "exit \"1\"" : NULL,
                                 .correlation_id = "c,\"version\":1",
                                 .terminal = i == 2};
        char hash[KN_RECEIPT_HASH_SIZE], *text = NULL;
        json_t *r = kn_receipt_chain_append_text(c, &a, hash, &text, &err);
        assert_non_null(r);
        char *canon = kn_jcs_canonicalize(r, NULL, &err);
        assert_non_null(text);
        assert_string_equal(text, canon);
        /* and it verifies as stored */
        json_t *back = kn_jcs_parse(text, strlen(text), &err);
        kn_receipt_verdict_t v;
        assert_int_equal(kn_receipt_verify(back, key.public_key, &v, &err), 0);
        assert_int_equal(v.check, KN_RECEIPT_VALID);
        json_decref(back);
        free(text);
        free(canon);
        json_decref(r);
    }
    json_decref(params);
    json_decref(rt);
    kn_receipt_chain_free(c);
    kn_receipt_key_wipe(&key);
}

static json_t *
member(const json_t *r, const char *a, const char *b)
{
    return json_object_get(json_object_get(json_object_get(r, "credentialSubject"), a), b);
}

static void
test_issue_and_verify(void **state)
{
    fixture_t *f = *state;
    kn_error_t err = {0};
    kn_receipt_verdict_t v;
    assert_null(kn_receipt_chain_head(f->chain));
    json_t *r1 = append_command(f, 1, "echo hi", 0, false);
    json_t *r2 = append_command(f, 2, "false", 1, false);
    json_t *r3 = append_command(f, 3, "exit", 0, true);
    assert_int_equal(kn_receipt_chain_sequence(f->chain), 3);

    /* Shape of what Kennel writes. */
    assert_string_equal(json_string_value(json_object_get(r1, "version")), "0.5.0");
    assert_string_equal(json_string_value(json_array_get(json_object_get(r1, "@context"), 1)),
                        KN_RECEIPT_CONTEXT_AR);
    assert_string_equal(json_string_value(json_object_get(r1, "id")),
                        "urn:receipt:00000000-0000-4000-8000-000000000001");
    assert_string_equal(json_string_value(member(r1, "action", "id")),
                        "act_00000000-0000-4000-8000-000000000001");
    assert_string_equal(json_string_value(member(r1, "action", "risk_level")), "high");
    assert_true(json_is_null(member(r1, "chain", "previous_receipt_hash")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r1, "proof"), "verificationMethod")),
        "did:kennel:host-test#key-1");
    assert_string_equal(json_string_value(member(r2, "outcome", "status")), "failure");
    assert_true(json_is_true(member(r3, "chain", "terminal")));

    /* parameters_hash / response_hash are sha256 of the canonical JSON. */
    json_t *params = json_pack("{s:s}", "command", "echo hi");
    char want[KN_RECEIPT_HASH_SIZE];
    assert_int_equal(kn_receipt_hash_json(params, want, &err), 0);
    assert_string_equal(json_string_value(member(r1, "action", "parameters_hash")), want);
    json_decref(params);
    json_t *resp = json_pack("{s:i}", "exit_code", 0);
    assert_int_equal(kn_receipt_verify_response(r1, resp, &v, &err), 0);
    json_t *wrong = json_pack("{s:i}", "exit_code", 2);
    assert_int_equal(kn_receipt_verify_response(r1, wrong, &v, &err), -1);
    assert_int_equal(v.check, KN_RECEIPT_BAD_RESPONSE_HASH);
    json_decref(resp);
    json_decref(wrong);

    if (kn_receipt_verify_chain(f->receipts, f->key.public_key, NULL, &v, &err) < 0)
        fail_msg("own chain rejected: %s", err.msg);
    assert_int_equal(v.count, 3);
    assert_string_equal(v.termination, "complete");
    assert_string_equal(v.head, kn_receipt_chain_head(f->chain));

    /* Round trip through text, as the server will store it. */
    size_t len;
    char *text = kn_jcs_canonicalize(f->receipts, &len, &err);
    assert_non_null(text);
    json_t *back = kn_jcs_parse(text, len, &err);
    free(text);
    assert_non_null(back);
    assert_int_equal(kn_receipt_verify_chain(back, f->key.public_key, NULL, &v, &err), 0);
    json_decref(back);

    char head[KN_RECEIPT_HASH_SIZE];
    memcpy(head, v.head, sizeof head);
    kn_receipt_chain_expect_t x = {.length = 3, .final_hash = head, .require_terminal = true};
    assert_int_equal(kn_receipt_verify_chain(f->receipts, f->key.public_key, &x, &v, &err), 0);
    x.length = 4;
    assert_int_equal(kn_receipt_verify_chain(f->receipts, f->key.public_key, &x, &v, &err), -1);
    assert_int_equal(v.check, KN_RECEIPT_LENGTH_MISMATCH);
    x.length = 0;
    x.final_hash = json_string_value(member(r3, "chain", "previous_receipt_hash"));
    assert_int_equal(kn_receipt_verify_chain(f->receipts, f->key.public_key, &x, &v, &err), -1);
    assert_int_equal(v.check, KN_RECEIPT_FINAL_HASH_MISMATCH);
    /* Tail truncation is only caught with a witness or require_terminal. */
    json_t *two = json_pack("[O,O]", r1, r2);
    assert_int_equal(kn_receipt_verify_chain(two, f->key.public_key, NULL, &v, &err), 0);
    x = (kn_receipt_chain_expect_t){.require_terminal = true};
    assert_int_equal(kn_receipt_verify_chain(two, f->key.public_key, &x, &v, &err), -1);
    assert_int_equal(v.check, KN_RECEIPT_NOT_TERMINAL);
    json_decref(two);

    /* The chain is closed. */
    kn_receipt_action_t a = {.type = "filesystem.file.read", .timestamp = WHEN};
    assert_null(kn_receipt_chain_append(f->chain, &a, NULL, &err));
    assert_int_equal(err.code, EPIPE);
}

/* Verifies a copy of the chain after mutate() and checks the first break. */
static void
assert_break(fixture_t *f, json_t *chain, kn_receipt_check_t check, size_t index)
{
    kn_error_t err = {0};
    kn_receipt_verdict_t v;
    if (kn_receipt_verify_chain(chain, f->key.public_key, NULL, &v, &err) == 0)
        fail_msg("broken chain accepted (expected %s at %zu)", kn_receipt_check_name(check), index);
    if (v.check != check || v.index != index)
        fail_msg("got %s at %zu (%s), expected %s at %zu", kn_receipt_check_name(v.check), v.index,
                 v.reason, kn_receipt_check_name(check), index);
    assert_non_null(strstr(err.msg, kn_receipt_check_name(check)));
}

static void
test_breaks(void **state)
{
    fixture_t *f = *state;
    for (int i = 1; i <= 4; i++)
        append_command(f, i, "true", 0, false);
    json_t *c;

    /* Dropped receipt: sequence gap at the receipt after it. */
    c = json_deep_copy(f->receipts);
    json_array_remove(c, 1);
    assert_break(f, c, KN_RECEIPT_BAD_SEQUENCE, 1);
    json_decref(c);

    /* Reordered. */
    c = json_deep_copy(f->receipts);
    json_t *tmp = json_incref(json_array_get(c, 2));
    json_array_remove(c, 2);
    json_array_insert_new(c, 1, tmp);
    assert_break(f, c, KN_RECEIPT_BAD_SEQUENCE, 1);
    json_decref(c);

    /* Edited after signing. */
    c = json_deep_copy(f->receipts);
    json_object_set_new(
        json_object_get(json_object_get(json_array_get(c, 2), "credentialSubject"), "action"),
        "risk_level", json_string("low"));
    assert_break(f, c, KN_RECEIPT_BAD_SIGNATURE, 2);
    json_decref(c);

    /* Truncated at the head: receipt 0 is no genesis. */
    c = json_deep_copy(f->receipts);
    json_array_remove(c, 0);
    assert_break(f, c, KN_RECEIPT_BAD_GENESIS, 0);
    json_decref(c);

    /* A receipt of another chain spliced in. */
    c = json_deep_copy(f->receipts);
    json_object_set_new(
        json_object_get(json_object_get(json_array_get(c, 3), "credentialSubject"), "chain"),
        "chain_id", json_string("other"));
    assert_break(f, c, KN_RECEIPT_CHAIN_ID_MISMATCH, 3);
    json_decref(c);

    /* Wrong key. */
    kn_receipt_key_t other;
    kn_error_t err = {0};
    kn_receipt_verdict_t v;
    assert_int_equal(kn_receipt_key_generate(&other, &err), 0);
    assert_int_equal(kn_receipt_verify_chain(f->receipts, other.public_key, NULL, &v, &err), -1);
    assert_int_equal(v.check, KN_RECEIPT_BAD_SIGNATURE);
    assert_int_equal(v.index, 0);
    kn_receipt_key_wipe(&other);

    /* Empty. */
    c = json_array();
    assert_break(f, c, KN_RECEIPT_CHAIN_EMPTY, 0);
    json_decref(c);
}

/* A receipt after a terminal one is refused even when correctly linked. */
static void
test_after_terminal(void **state)
{
    fixture_t *f = *state;
    append_command(f, 1, "a", 0, false);
    append_command(f, 2, "b", 0, true);
    /* Forge a third receipt, linked and signed with the issuer's own key. */
    kn_error_t err = {0};
    char hash[KN_RECEIPT_HASH_SIZE];
    json_t *r2 = json_array_get(f->receipts, 1);
    json_t *r3 = json_deep_copy(r2);
    json_t *ch = json_object_get(json_object_get(r3, "credentialSubject"), "chain");
    assert_int_equal(kn_receipt_hash(r2, hash, &err), 0);
    json_object_set_new(ch, "sequence", json_integer(3));
    json_object_set_new(ch, "previous_receipt_hash", json_string(hash));
    json_object_del(ch, "terminal");
    assert_int_equal(kn_receipt_sign(r3, &f->key, "did:kennel:host-test#key-1", WHEN, &err), 0);
    json_array_append_new(f->receipts, r3);
    assert_break(f, f->receipts, KN_RECEIPT_AFTER_TERMINAL, 2);

    /* Nor will a chain object continue after it. */
    kn_receipt_chain_config_t cfg = {.issuer_id = "did:kennel:host-test",
                                     .principal_id = "did:user:test",
                                     .chain_id = "kennel/sandbox/sbx-123"};
    kn_receipt_chain_t *c2 = kn_receipt_chain_new(&cfg, &f->key, &err);
    assert_non_null(c2);
    assert_int_equal(kn_receipt_chain_resume(c2, r2, &err), -1);
    assert_int_equal(err.code, EPIPE);
    kn_receipt_chain_free(c2);
}

static void
test_resume(void **state)
{
    fixture_t *f = *state;
    append_command(f, 1, "a", 0, false);
    json_t *last = append_command(f, 2, "b", 0, false);
    kn_error_t err = {0};
    json_t *rt = json_pack("{s:s}", "sandbox_id", "sbx-123");
    kn_receipt_chain_config_t cfg = {.issuer_id = "did:kennel:host-test",
                                     .issuer_name = "Kennel",
                                     .runtime = rt,
                                     .principal_id = "did:user:test",
                                     .chain_id = "kennel/sandbox/sbx-123"};
    kn_receipt_chain_t *c2 = kn_receipt_chain_new(&cfg, &f->key, &err);
    json_decref(rt);
    assert_non_null(c2);
    assert_int_equal(kn_receipt_chain_resume(c2, last, &err), 0);
    assert_int_equal(kn_receipt_chain_sequence(c2), 2);
    kn_receipt_action_t a = {
        .type = "filesystem.file.read", .target_resource = "/etc/hostname", .timestamp = WHEN};
    json_t *r3 = kn_receipt_chain_append(c2, &a, NULL, &err);
    assert_non_null(r3);
    json_array_append_new(f->receipts, r3);
    kn_receipt_verdict_t v;
    if (kn_receipt_verify_chain(f->receipts, f->key.public_key, NULL, &v, &err) < 0)
        fail_msg("resumed chain: %s", err.msg);
    assert_string_equal(v.termination, "unknown");
    kn_receipt_chain_free(c2);

    /* Resuming from a receipt of another chain is refused. */
    cfg.chain_id = "other";
    cfg.runtime = NULL;
    c2 = kn_receipt_chain_new(&cfg, &f->key, &err);
    assert_int_equal(kn_receipt_chain_resume(c2, last, &err), -1);
    kn_receipt_chain_free(c2);
}

static void
test_taxonomy_and_risk(void **state)
{
    fixture_t *f = *state;
    kn_error_t err = {0};
    assert_string_equal(kn_receipt_taxonomy_risk("system.pty.open"), "critical");
    assert_string_equal(kn_receipt_taxonomy_risk("filesystem.directory.list"), "low");
    assert_string_equal(kn_receipt_taxonomy_risk("unknown"), "medium");
    assert_null(kn_receipt_taxonomy_risk("system.nope"));

    kn_receipt_action_t a = {
        .type = "filesystem.file.delete", .risk_level = "low", .timestamp = WHEN};
    assert_null(kn_receipt_chain_append(f->chain, &a, NULL, &err)); /* downgrade */
    a.risk_level = "critical";
    json_t *r = kn_receipt_chain_append(f->chain, &a, NULL, &err); /* escalation */
    assert_non_null(r);
    assert_string_equal(json_string_value(member(r, "action", "risk_level")), "critical");
    json_decref(r);

    kn_receipt_action_t u = {.type = "unknown", .timestamp = WHEN};
    assert_null(kn_receipt_chain_append(f->chain, &u, NULL, &err));
    u.target_system = "execd:/mystery";
    r = kn_receipt_chain_append(f->chain, &u, NULL, &err);
    assert_non_null(r);
    json_decref(r);

    kn_receipt_action_t c = {.type = "io.kennel.sandbox.create", .timestamp = WHEN};
    assert_null(kn_receipt_chain_append(f->chain, &c, NULL, &err)); /* no risk given */
    c.risk_level = "medium";
    r = kn_receipt_chain_append(f->chain, &c, NULL, &err);
    assert_non_null(r);
    json_decref(r);
    kn_receipt_action_t t = {.type = "system.made.up", .risk_level = "low", .timestamp = WHEN};
    assert_null(kn_receipt_chain_append(f->chain, &t, NULL, &err));
    /* Strings must be UTF-8: a raw path from the sandbox is refused, not mangled. */
    kn_receipt_action_t p = {
        .type = "filesystem.file.read", .target_resource = "/tmp/\xff", .timestamp = WHEN};
    assert_null(kn_receipt_chain_append(f->chain, &p, NULL, &err));
    assert_int_equal(err.code, EILSEQ);
    assert_int_equal(kn_receipt_chain_sequence(f->chain), 3);

    /* Real clock and random ids when not given. */
    kn_receipt_action_t d = {.type = "filesystem.file.read"};
    r = kn_receipt_chain_append(f->chain, &d, NULL, &err);
    assert_non_null(r);
    const char *id = json_string_value(json_object_get(r, "id"));
    assert_int_equal(strlen(id), strlen("urn:receipt:") + 36);
    assert_int_equal(id[strlen("urn:receipt:") + 14], '4');
    json_decref(r);
}

/* A rotation receipt hands the chain to a new key; a verifier given only the
 * genesis key follows it. */
static void
test_rotation(void **state)
{
    fixture_t *f = *state;
    kn_error_t err = {0};
    kn_receipt_verdict_t v;
    kn_receipt_key_t next;
    assert_int_equal(kn_receipt_key_generate(&next, &err), 0);
    append_command(f, 1, "a", 0, false);
    json_t *rot = kn_receipt_chain_rotate(f->chain, &next, WHEN, NULL, &err);
    if (!rot)
        fail_msg("rotate: %s", err.msg);
    json_array_append_new(f->receipts, rot);
    json_t *r3 = append_command(f, 3, "b", 0, false);
    /* Before the rotation the old key signs, after it the new one. */
    assert_int_equal(kn_receipt_verify(rot, f->key.public_key, &v, &err), 0);
    assert_int_equal(kn_receipt_verify(r3, next.public_key, &v, &err), 0);
    if (kn_receipt_verify_chain(f->receipts, f->key.public_key, NULL, &v, &err) < 0)
        fail_msg("rotated chain: %s", err.msg);
    /* Starting from the new key fails at once. */
    assert_int_equal(kn_receipt_verify_chain(f->receipts, next.public_key, NULL, &v, &err), -1);
    assert_int_equal(v.index, 0);
    /* A receipt after the rotation signed with the old key is refused. */
    json_t *c = json_deep_copy(f->receipts);
    json_t *forged = json_array_get(c, 2);
    assert_int_equal(kn_receipt_sign(forged, &f->key, "did:kennel:host-test#key-1", WHEN, &err), 0);
    assert_break(f, c, KN_RECEIPT_BAD_SIGNATURE, 2);
    json_decref(c);
    /* The key handed over must be the one the fingerprint names. */
    c = json_deep_copy(f->receipts);
    json_t *kr =
        json_object_get(json_object_get(json_array_get(c, 1), "credentialSubject"), "keyRotation");
    json_object_set_new(kr, "new_key_fingerprint", json_string(kn_receipt_chain_head(f->chain)));
    assert_int_equal(
        kn_receipt_sign(json_array_get(c, 1), &f->key, "did:kennel:host-test#key-1", WHEN, &err),
        0);
    assert_int_equal(kn_receipt_verify_chain(c, f->key.public_key, NULL, &v, &err), -1);
    assert_int_equal(v.index, 1);
    assert_int_equal(v.check, KN_RECEIPT_BAD_KEY_ROTATION);
    json_decref(c);
    kn_receipt_key_wipe(&next);
}

static void
test_execd_routes(void **state)
{
    (void)state;
    static const struct {
        const char *method, *path, *type; /* type NULL: no receipt */
    } cases[] = {
        {"POST", "/command", "system.command.execute"},
        {"POST", "/session/abc123/run", "system.command.execute"},
        {"POST", "/code", "system.code.execute"},
        {"GET", "/files/download?path=/etc/passwd", "filesystem.file.read"},
        {"POST", "/files/upload", "filesystem.file.create"},
        {"DELETE", "/files?path=/a&path=/b", "filesystem.file.delete"},
        {"POST", "/files/mv", "filesystem.file.move"},
        {"GET", "/directories/list?path=/&depth=1", "filesystem.directory.list"},
        {"POST", "/directories", "filesystem.directory.create"},
        {"DELETE", "/directories?path=/tmp/x", "filesystem.directory.delete"},
        {"POST", "/pty", "system.pty.open"},
        {"DELETE", "/pty/s1", "system.pty.close"},
        {"GET", "/ping", NULL},
        {"GET", "/metrics/watch", NULL},
        {"GET", "/command/status/c1", NULL},
        {"GET", "/command/c1/logs?cursor=3", NULL},
        {"POST", "/session//run", "unknown"},
        {"GET", "/command", "unknown"},
        {"POST", "/proxy/8080/x", "unknown"},
        {"DELETE", "/command?id=c1", "unknown"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *type = NULL;
        int rc = kn_receipt_execd_action_type(cases[i].method, cases[i].path, &type);
        if (!cases[i].type) {
            if (rc != 1)
                fail_msg("%s %s: receipted as %s", cases[i].method, cases[i].path, type);
            continue;
        }
        assert_int_equal(rc, 0);
        if (strcmp(type, cases[i].type))
            fail_msg("%s %s: %s, want %s", cases[i].method, cases[i].path, type, cases[i].type);
        assert_non_null(kn_receipt_taxonomy_risk(type));
    }
}

static void
test_key_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/kn-trust-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], path2[256];
    snprintf(path, sizeof path, "%s/receipts.key", dir);
    snprintf(path2, sizeof path2, "%s/copy.key", dir);
    kn_receipt_key_t a, b;
    kn_error_t err = {0};
    assert_int_equal(kn_receipt_key_load(&a, path, &err), -1);
    assert_int_equal(err.code, ENOENT);
    assert_int_equal(kn_receipt_key_load_or_create(&a, path, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* PKCS#8 PEM, as the protocol stores keys. */
    char text[256] = "";
    FILE *pf = fopen(path, "r");
    assert_non_null(pf);
    assert_true(fread(text, 1, sizeof text - 1, pf) > 0);
    fclose(pf);
    assert_int_equal(strncmp(text, "-----BEGIN PRIVATE KEY-----\n", 28), 0);
    assert_int_equal(kn_receipt_key_load_or_create(&b, path, &err), 0);
    assert_memory_equal(&a, &b, sizeof a);
    assert_int_equal(kn_receipt_key_save(&a, path, &err), -1);
    assert_int_equal(err.code, EEXIST);

    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(kn_receipt_key_load(&b, path, &err), -1);
    assert_int_equal(err.code, EPERM);
    assert_non_null(strstr(err.msg, "0600"));
    assert_int_equal(chmod(path, 0600), 0);

    assert_int_equal(symlink(path, path2), 0);
    assert_int_equal(kn_receipt_key_load(&b, path2, &err), -1);
    unlink(path2);

    FILE *fp = fopen(path2, "w");
    assert_non_null(fp);
    fputs("short", fp);
    fclose(fp);
    chmod(path2, 0600);
    assert_int_equal(kn_receipt_key_load(&b, path2, &err), -1);
    assert_int_equal(err.code, EINVAL);
    unlink(path2);
    /* Raw 32-byte seed files of earlier versions still load. */
    fp = fopen(path2, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(a.secret_key, 1, KN_RECEIPT_SEED_SIZE, fp), KN_RECEIPT_SEED_SIZE);
    fclose(fp);
    chmod(path2, 0600);
    assert_int_equal(kn_receipt_key_load(&b, path2, &err), 0);
    assert_memory_equal(&a, &b, sizeof a);
    unlink(path2);
    unlink(path);
    rmdir(dir);
    kn_receipt_key_wipe(&a);
    kn_receipt_key_wipe(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_issue_and_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_breaks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_terminal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_taxonomy_and_risk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test(test_execd_routes),
        cmocka_unit_test(test_signed_text),
        cmocka_unit_test(test_key_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
