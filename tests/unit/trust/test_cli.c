/* test_cli.c - `kennel receipts verify|public-key` (src/cli/cmd_receipts.c)
 * run in-process on chains written the way the server will export them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "trust/jcs.h"
#include "trust/receipt.h"

int kn_cmd_receipts(int argc, char **argv);

typedef struct fixture {
    char dir[64];
    char lines[128]; /* JSON lines */
    char array[128]; /* JSON array */
    char bad[128];   /* receipt 1 edited */
    char keyfile[128];
    char pubkey[KN_RECEIPT_MULTIBASE_KEY_SIZE];
} fixture_t;

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int
setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    kn_error_t err = {0};
    kn_receipt_key_t key;
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/kn-trust-cli-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->lines, sizeof f->lines, "%s/chain.jsonl", f->dir);
    snprintf(f->array, sizeof f->array, "%s/chain.json", f->dir);
    snprintf(f->bad, sizeof f->bad, "%s/bad.jsonl", f->dir);
    snprintf(f->keyfile, sizeof f->keyfile, "%s/host.key", f->dir);
    assert_int_equal(kn_receipt_key_load_or_create(&key, f->keyfile, &err), 0);
    kn_receipt_public_key_encode(key.public_key, f->pubkey);
    kn_receipt_chain_config_t cfg = {
        .issuer_id = "did:kennel:cli-test", .principal_id = "did:user:t", .chain_id = "c1"};
    kn_receipt_chain_t *chain = kn_receipt_chain_new(&cfg, &key, &err);
    assert_non_null(chain);
    json_t *all = json_array();
    char *lines = NULL, *bad = NULL;
    size_t lines_len = 0, bad_len = 0;
    FILE *lf = open_memstream(&lines, &lines_len), *bf = open_memstream(&bad, &bad_len);
    for (int i = 0; i < 3; i++) {
        kn_receipt_action_t a = {.type = "filesystem.file.read", .terminal = i == 2};
        json_t *r = kn_receipt_chain_append(chain, &a, NULL, &err);
        assert_non_null(r);
        char *text = kn_jcs_canonicalize(r, NULL, &err);
        fprintf(lf, "%s\n", text);
        free(text);
        json_t *copy = json_deep_copy(r);
        if (i == 1)
            json_object_set_new(json_object_get(copy, "issuer"), "name", json_string("forged"));
        text = kn_jcs_canonicalize(copy, NULL, &err);
        fprintf(bf, "%s\n", text);
        free(text);
        json_decref(copy);
        json_array_append_new(all, r);
    }
    fclose(lf);
    fclose(bf);
    write_file(f->lines, lines);
    write_file(f->bad, bad);
    free(lines);
    free(bad);
    char *text = json_dumps(all, JSON_INDENT(2));
    write_file(f->array, text);
    free(text);
    json_decref(all);
    kn_receipt_chain_free(chain);
    kn_receipt_key_wipe(&key);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fixture_t *f = *state;
    unlink(f->lines);
    unlink(f->array);
    unlink(f->bad);
    unlink(f->keyfile);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Runs `kennel receipts ARGS...` and returns its exit status. */
static int
run(const char *first, ...)
{
    char *argv[16] = {"receipts", (char *)first};
    int argc = 2;
    va_list ap;
    va_start(ap, first);
    for (char *a; argc < 15 && (a = va_arg(ap, char *));)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    fflush(stdout);
    return kn_cmd_receipts(argc, argv);
}

static void
test_verify(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(run("verify", "--public-key", f->pubkey, f->lines, NULL), 0);
    assert_int_equal(run("verify", "--public-key", f->pubkey, f->array, NULL), 0);
    assert_int_equal(run("verify", "--key", f->keyfile, "--require-terminal", "--expect-length",
                         "3", f->lines, NULL),
                     0);
    assert_int_equal(run("verify", "--public-key", f->pubkey, f->bad, NULL), 1);
    assert_int_equal(
        run("verify", "--public-key", f->pubkey, "--expect-length", "4", f->lines, NULL), 1);
}

static void
test_usage_errors(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(run("verify", f->lines, NULL), 125); /* no key */
    assert_int_equal(run("verify", "--public-key", "zabc", f->lines, NULL), 125);
    assert_int_equal(run("verify", "--public-key", f->pubkey, "/nonexistent", NULL), 125);
    assert_int_equal(run("frobnicate", NULL), 125);
    assert_int_equal(run("public-key", f->keyfile, NULL), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
