/* test_execd.c - parameters and outcomes of proxied execd requests
 * (src/trust/execd.c): the shapes of docs/receipts.md, streams split at
 * every byte, bounded parsing of what an untrusted backend sends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "trust/execd.h"
#include "trust/jcs.h"
#include "trust/receipt.h"

static kn_execd_capture_t *
capture(const char *method, const char *target)
{
    bool not_action = true;
    kn_error_t err = {0};
    kn_execd_capture_t *c = kn_execd_capture_new(method, target, &not_action, &err);
    assert_non_null(c);
    assert_false(not_action);
    return c;
}

/* Canonical text of a JSON value, for comparisons. */
static char *
canon(const json_t *v)
{
    kn_error_t err = {0};
    char *s = kn_jcs_canonicalize(v, NULL, &err);
    assert_non_null(s);
    return s;
}

static void
assert_json(const json_t *v, const char *expected_canonical)
{
    char *s = canon(v);
    assert_string_equal(s, expected_canonical);
    free(s);
}

static void
hash_of(const char *s, size_t n, char *out)
{
    kn_receipt_hash_bytes(s, n, out);
}

static void
test_not_actions(void **state)
{
    (void)state;
    const char *reads[][2] = {{"GET", "/ping"},
                              {"GET", "/metrics"},
                              {"GET", "/metrics/watch"},
                              {"GET", "/command/status/abc"},
                              {"GET", "/command/abc/logs?cursor=3"}};
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        bool not_action = false;
        kn_error_t err = {0};
        assert_null(kn_execd_capture_new(reads[i][0], reads[i][1], &not_action, &err));
        assert_true(not_action);
    }
}

/* Runs a response through the capture in pieces of `step` bytes. */
static void
feed(kn_execd_capture_t *c, const char *text, size_t step)
{
    size_t n = strlen(text);
    for (size_t i = 0; i < n; i += step)
        kn_execd_capture_response_body(c, text + i, n - i < step ? n - i : step);
}

static void
outcome(kn_execd_capture_t *c, bool complete, const char *expect_response,
        const char *expect_status, const char *expect_error)
{
    json_t *resp = NULL;
    const char *status = NULL;
    char error[256];
    kn_error_t err = {0};
    assert_int_equal(
        kn_execd_capture_outcome(c, complete, &resp, &status, error, sizeof error, &err), 0);
    assert_json(resp, expect_response);
    assert_string_equal(status, expect_status);
    if (expect_error)
        assert_non_null(strstr(error, expect_error));
    else
        assert_string_equal(error, "");
    json_decref(resp);
}

static void
test_command(void **state)
{
    (void)state;
    const char *body = "{\"command\":\"echo hi; exit 3\",\"cwd\":\"/tmp\",\"background\":false,"
                       "\"timeout\":5000,\"envs\":{\"X\":\"y\"}}";
    const char *sse =
        "{\"type\":\"init\",\"text\":\"6f1c\",\"timestamp\":1}\n\n"
        "{\"type\":\"stdout\",\"text\":\"hi\",\"timestamp\":2}\n\n"
        "{\"type\":\"error\",\"error\":{\"ename\":\"CommandExecError\",\"evalue\":\"3\","
        "\"traceback\":[\"exit status 3\"]},\"timestamp\":3}\n\n";
    for (size_t step = 1; step < strlen(sse) + 1; step += step < 8 ? 1 : 13) {
        kn_execd_capture_t *c = capture("POST", "/command");
        assert_string_equal(kn_execd_capture_type(c), "system.command.execute");
        assert_string_equal(kn_execd_capture_system(c), "opensandbox:execd");
        assert_string_equal(kn_execd_capture_resource(c), "/command");
        assert_true(kn_execd_capture_reads_body(c));
        kn_execd_capture_request_body(c, body, strlen(body));
        bool pending = true;
        kn_error_t err = {0};
        json_t *p = kn_execd_capture_parameters(c, &pending, &err);
        assert_false(pending);
        /* ADR-0027: {"command", "env"}; the rest of the request is not in it. */
        assert_json(p, "{\"command\":\"echo hi; exit 3\",\"env\":{\"X\":\"y\"}}");
        json_decref(p);
        kn_execd_capture_response_head(c, 200, "text/event-stream");
        feed(c, sse, step);
        outcome(c, true, "{\"exit_code\":3}", "failure", "exit code 3");
        kn_execd_capture_free(c);
    }
    /* Success; a last event without its blank line still counts. */
    kn_execd_capture_t *c = capture("POST", "/command");
    kn_execd_capture_request_body(c, "{\"command\":\"true\"}", 18);
    kn_execd_capture_response_head(c, 200, "text/event-stream");
    feed(c, "{\"type\":\"init\",\"text\":\"a\"}\n\n{\"type\":\"execution_complete\"}", 5);
    outcome(c, true, "{\"exit_code\":0}", "success", NULL);
    kn_execd_capture_free(c);
    /* The client hung up mid-stream: no exit code, a failure. */
    c = capture("POST", "/command");
    kn_execd_capture_request_body(c, "{\"command\":\"sleep 9\"}", 21);
    kn_execd_capture_response_head(c, 200, "text/event-stream");
    feed(c, "{\"type\":\"init\",\"text\":\"a\"}\n\n", 100);
    outcome(c, false, "{\"exit_code\":null}", "failure", "before the command");
    kn_execd_capture_free(c);
    /* A session run: {"command"} only. */
    c = capture("POST", "/session/abc/run");
    kn_execd_capture_request_body(c, "{\"command\":\"pwd\",\"cwd\":\"/var\"}", 30);
    bool pending;
    kn_error_t err = {0};
    json_t *p = kn_execd_capture_parameters(c, &pending, &err);
    assert_json(p, "{\"command\":\"pwd\"}");
    json_decref(p);
    assert_string_equal(kn_execd_capture_resource(c), "/session/abc/run");
    kn_execd_capture_free(c);
    /* A body that is not JSON is still committed to, by its hash. */
    c = capture("POST", "/command");
    kn_execd_capture_request_body(c, "not json", 8);
    p = kn_execd_capture_parameters(c, &pending, &err);
    char h[KN_RECEIPT_HASH_SIZE], want[128];
    hash_of("not json", 8, h);
    snprintf(want, sizeof want, "{\"body_hash\":\"%s\"}", h);
    assert_json(p, want);
    json_decref(p);
    kn_execd_capture_free(c);
}

static void
test_code(void **state)
{
    (void)state;
    kn_execd_capture_t *c = capture("POST", "/code");
    const char *body = "{\"code\":\"print(1+1)\",\"context\":{\"language\":\"python\"}}";
    kn_execd_capture_request_body(c, body, strlen(body));
    bool pending;
    kn_error_t err = {0};
    json_t *p = kn_execd_capture_parameters(c, &pending, &err);
    char h[KN_RECEIPT_HASH_SIZE], want[512];
    hash_of("print(1+1)", 10, h);
    snprintf(want, sizeof want, "{\"code_hash\":\"%s\",\"language\":\"python\"}", h);
    assert_json(p, want);
    json_decref(p);
    kn_execd_capture_response_head(c, 200, "text/event-stream");
    feed(c,
         "{\"type\":\"stdout\",\"text\":\"a\\n\"}\n\n{\"type\":\"stderr\",\"text\":\"b\"}\n\n"
         "{\"type\":\"result\",\"results\":{\"text\":\"2\"}}\n\n"
         "{\"type\":\"execution_complete\",\"execution_time\":3}\n\n",
         7);
    char logs[KN_RECEIPT_HASH_SIZE], res[KN_RECEIPT_HASH_SIZE];
    hash_of("a\nb", 3, logs);
    hash_of("{\"text\":\"2\"}", 12, res);
    snprintf(want, sizeof want, "{\"logs_hash\":\"%s\",\"result_hash\":\"%s\"}", logs, res);
    outcome(c, true, want, "success", NULL);
    kn_execd_capture_free(c);
}

static void
test_files_and_queries(void **state)
{
    (void)state;
    kn_execd_capture_t *c = capture("GET", "/files/download?path=%2Ftmp%2Fa+b.txt");
    assert_string_equal(kn_execd_capture_type(c), "filesystem.file.read");
    assert_string_equal(kn_execd_capture_resource(c), "/files/download");
    bool pending;
    kn_error_t err = {0};
    json_t *p = kn_execd_capture_parameters(c, &pending, &err);
    assert_json(p, "{\"path\":\"/tmp/a b.txt\"}");
    json_decref(p);
    kn_execd_capture_response_head(c, 200, "application/octet-stream");
    feed(c, "hello world", 3);
    char h[KN_RECEIPT_HASH_SIZE], want[256];
    hash_of("hello world", 11, h);
    snprintf(want, sizeof want, "{\"content_hash\":\"%s\"}", h);
    outcome(c, true, want, "success", NULL);
    kn_execd_capture_free(c);

    /* Repeated paths; a %-escape that is not UTF-8 is kept as sent. */
    c = capture("DELETE", "/files?path=%2Fa&path=%2Fb&path=%FF");
    assert_string_equal(kn_execd_capture_type(c), "filesystem.file.delete");
    p = kn_execd_capture_parameters(c, &pending, &err);
    assert_json(p, "{\"paths\":[\"/a\",\"/b\",\"%FF\"]}");
    json_decref(p);
    kn_execd_capture_response_head(c, 200, NULL);
    outcome(c, true, "{}", "success", NULL);
    kn_execd_capture_free(c);

    c = capture("GET", "/directories/list?path=%2Ftmp&depth=2");
    p = kn_execd_capture_parameters(c, &pending, &err);
    assert_json(p, "{\"depth\":\"2\",\"path\":\"/tmp\"}");
    json_decref(p);
    kn_execd_capture_response_head(c, 200, "application/json");
    feed(c, "[]", 1);
    hash_of("[]", 2, h);
    snprintf(want, sizeof want, "{\"entries_hash\":\"%s\"}", h);
    outcome(c, true, want, "success", NULL);
    kn_execd_capture_free(c);

    /* A JSON body without an ADR shape: the body itself. */
    c = capture("POST", "/files/mv");
    assert_string_equal(kn_execd_capture_type(c), "filesystem.file.move");
    kn_execd_capture_request_body(c, "[{\"src\":\"/a\", \"dest\":\"/b\"}]", 27);
    p = kn_execd_capture_parameters(c, &pending, &err);
    assert_json(p, "[{\"dest\":\"/b\",\"src\":\"/a\"}]");
    json_decref(p);
    /* An error answer: status and the error code, nothing else. */
    kn_execd_capture_response_head(c, 404, "application/json");
    feed(c, "{\"code\":\"FILE_NOT_FOUND\",\"message\":\"/a: secret detail\"}", 4);
    hash_of("{\"code\":\"FILE_NOT_FOUND\",\"message\":\"/a: secret detail\"}", 52, h);
    snprintf(want, sizeof want, "{\"body_hash\":\"%s\",\"status\":404}", h);
    json_t *resp = NULL;
    const char *status;
    char error[256];
    assert_int_equal(kn_execd_capture_outcome(c, true, &resp, &status, error, sizeof error, &err),
                     0);
    assert_string_equal(status, "failure");
    assert_string_equal(error, "execd answered HTTP 404 FILE_NOT_FOUND");
    json_decref(resp);
    kn_execd_capture_free(c);

    /* Routes outside the taxonomy: "unknown" with the method in target.system. */
    c = capture("POST", "/code/context");
    assert_string_equal(kn_execd_capture_type(c), "unknown");
    assert_string_equal(kn_execd_capture_system(c), "execd:POST /code/context");
    kn_execd_capture_free(c);
}

static void
test_upload_multipart(void **state)
{
    (void)state;
    const char *b = "----kb";
    char body[2048];
    int n = snprintf(body, sizeof body,
                     "--%s\r\nContent-Disposition: form-data; name=\"metadata\"; "
                     "filename=\"metadata\"\r\nContent-Type: application/json\r\n\r\n"
                     "{\"path\":\"/tmp/a.txt\",\"mode\":644}\r\n--%s\r\n"
                     "Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n"
                     "line1\r\n--not-the-boundary\r\r\n-\r\n--%s\r\n"
                     "Content-Disposition: form-data; name=\"metadata\"\r\n\r\n"
                     "{\"path\":\"/tmp/b\"}\r\n--%s\r\n"
                     "Content-Disposition: form-data; name=\"file\"\r\n\r\n"
                     "\r\n--%s--\r\n",
                     b, b, b, b, b);
    const char *content1 = "line1\r\n--not-the-boundary\r\r\n-";
    char h1[KN_RECEIPT_HASH_SIZE], h2[KN_RECEIPT_HASH_SIZE], want[512];
    hash_of(content1, strlen(content1), h1);
    hash_of("", 0, h2);
    snprintf(want, sizeof want,
             "{\"files\":[{\"content_hash\":\"%s\",\"path\":\"/tmp/a.txt\"},"
             "{\"content_hash\":\"%s\",\"path\":\"/tmp/b\"}]}",
             h1, h2);
    char ct[64];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", b);
    /* Every split point of the body in two, and byte by byte. */
    for (int split = 0; split <= n + 1; split++) {
        kn_execd_capture_t *c = capture("POST", "/files/upload");
        assert_false(kn_execd_capture_reads_body(c));
        kn_execd_capture_request_type(c, ct);
        bool pending = false;
        kn_error_t err = {0};
        assert_null(kn_execd_capture_parameters(c, &pending, &err));
        assert_true(pending);
        if (split <= n) {
            kn_execd_capture_request_body(c, body, (size_t)split);
            kn_execd_capture_request_body(c, body + split, (size_t)(n - split));
        } else {
            for (int i = 0; i < n; i++)
                kn_execd_capture_request_body(c, body + i, 1);
        }
        json_t *p = kn_execd_capture_parameters(c, &pending, &err);
        assert_false(pending);
        char *s = canon(p);
        if (strcmp(s, want))
            fail_msg("split %d: %s", split, s);
        free(s);
        json_decref(p);
        kn_execd_capture_response_head(c, 200, NULL);
        char bw[64];
        snprintf(bw, sizeof bw, "{\"bytes_written\":%zu}", strlen(content1));
        outcome(c, true, bw, "success", NULL);
        kn_execd_capture_free(c);
    }
    /* Not multipart: the raw body's hash. */
    kn_execd_capture_t *c = capture("POST", "/files/upload");
    kn_execd_capture_request_type(c, "application/octet-stream");
    kn_execd_capture_request_body(c, "xyz", 3);
    bool pending;
    kn_error_t err = {0};
    json_t *p = kn_execd_capture_parameters(c, &pending, &err);
    assert_non_null(json_object_get(p, "body_hash"));
    json_decref(p);
    kn_execd_capture_free(c);
}

static void
test_hostile_stream(void **state)
{
    (void)state;
    /* An event larger than the parse cap: memory stays bounded and the
     * outcome says what was not understood. */
    kn_execd_capture_t *c = capture("POST", "/command");
    kn_execd_capture_request_body(c, "{\"command\":\"x\"}", 15);
    kn_execd_capture_response_head(c, 200, "text/event-stream");
    size_t big = KN_EXECD_MAX_EVENT + 100;
    char *junk = malloc(big);
    assert_non_null(junk);
    memset(junk, 'a', big);
    kn_execd_capture_response_body(c, "{\"type\":\"stdout\",\"text\":\"", 25);
    kn_execd_capture_response_body(c, junk, big);
    kn_execd_capture_response_body(c, "\"}\n\n{\"type\":\"execution_complete\"}\n\n", 36);
    free(junk);
    outcome(c, true, "{\"exit_code\":0}", "failure", "not parsed");
    kn_execd_capture_free(c);
    /* No answer at all. */
    c = capture("POST", "/command");
    outcome(c, false, "{}", "failure", "no answer");
    kn_execd_capture_free(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_actions),
        cmocka_unit_test(test_command),
        cmocka_unit_test(test_code),
        cmocka_unit_test(test_files_and_queries),
        cmocka_unit_test(test_upload_multipart),
        cmocka_unit_test(test_hostile_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
