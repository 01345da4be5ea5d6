/* Unit tests for execd helpers: path normalisation and confinement, UTF-8
 * cleaning, mode conversion, and the output line splitter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "direct.h"
#include "execd.h"
#include "fspath.h"
#include "stream.h"
#include "util.h"
#include "core/utf8.h"

static void
check_norm(const char *in, const char *want)
{
    char out[4096];
    kn_error_t err = {0};
    assert_int_equal(kn_fspath_normalize(in, out, sizeof out, &err), 0);
    assert_string_equal(out, want);
}

static void
test_normalize(void **state)
{
    check_norm("/", "/");
    check_norm("a/b", "/a/b");
    check_norm("/a//b/./c/", "/a/b/c");
    check_norm("/../../etc/passwd", "/etc/passwd");
    check_norm("/a/b/../../../x", "/x");
    check_norm("..", "/");
    char out[64];
    kn_error_t err = {0};
    assert_int_equal(kn_fspath_normalize("", out, sizeof out, &err), -1);
    assert_int_equal(err.code, EINVAL);
    assert_int_equal(kn_fspath_normalize("/a\xff", out, sizeof out, &err), -1);
    assert_int_equal(
        kn_fspath_normalize("/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                            out, sizeof out, &err),
        -1);
    assert_int_equal(err.code, ENAMETOOLONG);
}

/* Both resolvers keep an absolute symlink inside the root. */
static void
confinement(bool no_openat2)
{
    char root[] = "/tmp/kn-execd-unit-XXXXXX";
    assert_non_null(mkdtemp(root));
    char p[512];
    snprintf(p, sizeof p, "%s/etc", root);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/etc/passwd", root);
    FILE *f = fopen(p, "w");
    fputs("inside\n", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/link", root);
    assert_int_equal(symlink("/etc/passwd", p), 0);

    kn_execd_t ex = {.no_openat2 = no_openat2};
    ex.root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    kn_error_t err = {0};
    int fd = kn_fspath_open(&ex, "/link", O_RDONLY, 0, &err);
    if (no_openat2) {
        assert_int_equal(fd, -1); /* the fallback refuses symlinks */
    } else {
        assert_true(fd >= 0);
        char buf[32] = {0};
        assert_true(read(fd, buf, sizeof buf - 1) > 0);
        assert_string_equal(buf, "inside\n");
        close(fd);
    }
    fd = kn_fspath_open(&ex, "/../../etc/passwd", O_RDONLY, 0, &err);
    assert_true(fd >= 0);
    close(fd);
    bool created = false;
    fd = kn_fspath_mkdirs(&ex, "/x/y/z", 0755, &created, &err);
    assert_true(fd >= 0);
    assert_true(created);
    close(fd);
    char base[256];
    fd = kn_fspath_parent(&ex, "/x/y/z", base, &err);
    assert_true(fd >= 0);
    assert_string_equal(base, "z");
    close(fd);
    assert_int_equal(kn_fspath_parent(&ex, "/", base, &err), -1);
    close(ex.root_fd);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

static void
test_confinement_openat2(void **state)
{
    confinement(false);
}

static void
test_confinement_fallback(void **state)
{
    confinement(true);
}

static void
test_utf8_clean(void **state)
{
    size_t n;
    char *s = kn_utf8_clean("ok\xff\xc3\xa5\xed\xa0\x80z", 9, &n);
    assert_string_equal(s, "ok\xef\xbf\xbd\xc3\xa5\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz");
    free(s);
    s = kn_utf8_clean("a\0b", 3, &n);
    assert_int_equal(n, 3);
    free(s);
}

static void
test_modes(void **state)
{
    mode_t m;
    assert_int_equal(kn_util_mode_from_decimal(755, &m), 0);
    assert_int_equal(m, 0755);
    assert_int_equal(kn_util_mode_from_decimal(644, &m), 0);
    assert_int_equal(m, 0644);
    assert_int_equal(kn_util_mode_from_decimal(888, &m), -1);
    assert_int_equal(kn_util_mode_from_decimal(-1, &m), -1);
    assert_int_equal(kn_util_mode_to_decimal(0600), 600);
    assert_int_equal(kn_util_mode_to_decimal(S_IFREG | 04755), 4755);
}

/* Collects the "text" of every event in a stream buffer. */
static int
texts(const kn_buf_t *b, char out[][64], int max)
{
    int n = 0;
    const char *p = b->data;
    while (p && *p && n < max) {
        const char *end = strstr(p, "\n\n");
        json_t *j = json_loadb(p, (size_t)(end - p), 0, NULL);
        assert_non_null(j);
        snprintf(out[n++], 64, "%s", json_string_value(json_object_get(j, "text")));
        json_decref(j);
        p = end + 2;
    }
    return n;
}

static void
test_lines(void **state)
{
    kn_lines_t l;
    kn_buf_t out = {0};
    kn_lines_init(&l, "stdout", 0);
    kn_lines_feed(&l, &out, "a\r\nb", 4);
    kn_lines_feed(&l, &out, "c\rd\n\ne", 6);
    kn_lines_flush(&l, &out);
    char t[16][64];
    int n = texts(&out, t, 16);
    assert_int_equal(n, 5);
    assert_string_equal(t[0], "a");
    assert_string_equal(t[1], "bc");
    assert_string_equal(t[2], "d");
    assert_string_equal(t[3], "\n");
    assert_string_equal(t[4], "e");
    kn_lines_free(&l);
    kn_buf_free(&out);

    kn_lines_init(&l, "stderr", 5);
    kn_lines_feed(&l, &out, "abc\ndefgh\n", 10);
    kn_lines_feed(&l, &out, "more\n", 5);
    n = texts(&out, t, 16);
    assert_int_equal(n, 3);
    assert_string_equal(t[0], "abc");
    assert_string_equal(t[1], "d");
    assert_non_null(strstr(t[2], "truncated"));
    kn_lines_free(&l);
    kn_buf_free(&out);
}

static void
test_raw_chunks_keep_utf8_whole(void **state)
{
    kn_lines_t l;
    kn_buf_t out = {0};
    kn_lines_init(&l, "stdout", 0);
    l.raw = true;
    kn_lines_feed(&l, &out, "a\xc3", 2);
    kn_lines_feed(&l, &out,
                  "\xa5"
                  "b",
                  2);
    kn_lines_flush(&l, &out);
    char t[4][64];
    int n = texts(&out, t, 4);
    assert_int_equal(n, 2);
    assert_string_equal(t[0], "a");
    assert_string_equal(t[1], "\xc3\xa5"
                              "b");
    kn_lines_free(&l);
    kn_buf_free(&out);
}

static void
test_error_event(void **state)
{
    kn_buf_t out = {0};
    assert_int_equal(kn_stream_error(&out, "E", "bad \xff", "l1\nl2"), 0);
    json_t *j = json_loadb(out.data, out.len - 2, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "error");
    json_t *e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "ename")), "E");
    assert_int_equal(json_array_size(json_object_get(e, "traceback")), 2);
    assert_true(json_is_integer(json_object_get(j, "timestamp")));
    json_decref(j);
    kn_buf_free(&out);
}

/* Which command lines run without the shell: plain words only, and never a
 * builtin, keyword or assignment in command position. */
static void
test_direct_simple(void **state)
{
    const char *yes[] = {"true",
                         "false",
                         "  ls\t-la /tmp  ",
                         "python3 -m http.server 8000",
                         "./a.out --x=1 a,b c:d e@f g%h +i",
                         "/usr/bin/env",
                         "echo2 x"};
    const char *no[] = {
        "",         "   ",      "true 1",      "false --help", "echo hi",   "cd /tmp",
        "X=1 env",  "ls *.c",   "ls ~",        "ls $HOME",     "ls 'a b'",  "ls \"a\"",
        "ls a\\ b", "ls; true", "ls && true",  "ls | cat",     "ls > f",    "ls < f",
        "ls &",     "(ls)",     "{ ls; }",     "ls # c",       "ls\nls",    "time ls",
        "if true",  "exec ls",  "kill 1",      "ls {a,b}",     "ls !x",     "ls a[1]",
        "ls ?",     "printf x", "ls \xc3\xa5", "source f",     "test -f x", "ls `x`"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        assert_true(kn_direct_simple(yes[i]));
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
        if (kn_direct_simple(no[i]))
            fail_msg("went direct: [%s]", no[i]);
    }
}

static char **
env_of(const char *const *kv)
{
    size_t n = 0;
    while (kv[n])
        n++;
    char **env = calloc(n + 1, sizeof *env);
    for (size_t i = 0; i < n; i++)
        env[i] = strdup(kv[i]);
    return env;
}

static void
env_free(char **env)
{
    for (char **e = env; *e; e++)
        free(*e);
    free(env);
}

static const char *
env_val(char **env, const char *key)
{
    size_t kl = strlen(key);
    for (char **e = env; *e; e++)
        if (strncmp(*e, key, kl) == 0 && (*e)[kl] == '=')
            return *e + kl + 1;
    return NULL;
}

/* The plan finds the program in the command's PATH and sets PWD, SHLVL and
 * _ as bash would; whatever bash would do more than exec stays with bash. */
static void
test_direct_plan(void **state)
{
    kn_direct_t d;
    char **env = env_of(
        (const char *const[]){"PATH=/nonexistent:/usr/bin:/bin", "SHLVL=4", "PWD=/wrong", NULL});
    assert_true(kn_direct_plan("env -0 x", &env, "/tmp", &d));
    assert_string_equal(d.path, "/usr/bin/env");
    assert_string_equal(d.argv[0], "env");
    assert_string_equal(d.argv[1], "-0");
    assert_string_equal(d.argv[2], "x");
    assert_null(d.argv[3]);
    char *tmp = realpath("/tmp", NULL);
    assert_string_equal(env_val(env, "PWD"), tmp);
    free(tmp);
    assert_string_equal(env_val(env, "SHLVL"), "4");
    assert_string_equal(env_val(env, "_"), "/usr/bin/env");
    kn_direct_free(&d);
    env_free(env);

    /* No SHLVL, or a bad one, is 0; a PWD that names the directory stays. */
    env = env_of((const char *const[]){"PATH=/usr/bin", "SHLVL=x", "PWD=/", NULL});
    assert_true(kn_direct_plan("true", &env, "/", &d));
    assert_string_equal(env_val(env, "SHLVL"), "0");
    assert_string_equal(env_val(env, "PWD"), "/");
    kn_direct_free(&d);
    env_free(env);

    const char *bash_only[][2] = {
        {"PATH=/usr/bin", "BASH_ENV=/etc/profile"}, /* a file bash would source */
        {"PATH=/usr/bin", "ENV=/etc/profile"},
        {"PATH=/usr/bin", "BASH_FUNC_env%%=() { :; }"}, /* a function named env */
        {"PATH=/usr/bin", "SHELLOPTS=xtrace"},
        {"PATH=/usr/bin", "SHLVL=999"}, /* bash warns and resets */
        {"PATH=.:/usr/bin", "X=1"},     /* a relative entry: looked up from cwd */
        {"PATH=:/usr/bin", "X=1"},      /* an empty one: the same */
        {"PATH=/nonexistent", "X=1"},   /* not found: bash's own message */
        {"X=1", "Y=2"},                 /* no PATH: bash's default */
    };
    for (size_t i = 0; i < sizeof bash_only / sizeof *bash_only; i++) {
        env = env_of((const char *const[]){bash_only[i][0], bash_only[i][1], NULL});
        if (kn_direct_plan("env", &env, "/", &d))
            fail_msg("went direct with %s %s", bash_only[i][0], bash_only[i][1]);
        assert_null(env_val(env, "_"));
        env_free(env);
    }

    /* A script without #! is run by bash itself after ENOEXEC; a missing
     * directory is bash's (chdir's) error to report. */
    char dir[] = "/tmp/kn-direct-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p[256];
    snprintf(p, sizeof p, "%s/script", dir);
    FILE *f = fopen(p, "w");
    fputs("echo hi\n", f);
    fclose(f);
    chmod(p, 0755);
    env = env_of((const char *const[]){"PATH=/usr/bin", NULL});
    assert_false(kn_direct_plan("./script", &env, dir, &d));
    f = fopen(p, "w");
    fputs("#!/bin/sh\necho hi\n", f);
    fclose(f);
    assert_true(kn_direct_plan("./script", &env, dir, &d));
    assert_string_equal(d.path, "./script");
    kn_direct_free(&d);
    assert_false(kn_direct_plan("true", &env, "/no/such/dir", &d));
    env_free(env);
    unlink(p);
    rmdir(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_confinement_openat2),
        cmocka_unit_test(test_confinement_fallback),
        cmocka_unit_test(test_utf8_clean),
        cmocka_unit_test(test_modes),
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_error_event),
        cmocka_unit_test(test_raw_chunks_keep_utf8_whole),
        cmocka_unit_test(test_direct_simple),
        cmocka_unit_test(test_direct_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
