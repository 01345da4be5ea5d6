/* test_tar.c - the tar reader's path rules and the confined extractor.
 *
 * Archives are built in memory, header by header, so each test says exactly
 * which hostile entry it holds. Extraction goes into a fresh directory
 * under /tmp with a canary directory next to it that must stay empty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/tar.h"

/* --- building archives ---------------------------------------------------- */

typedef struct buf {
    unsigned char *p;
    size_t len, pos;
} buf_t;

static void
put(buf_t *b, const void *d, size_t n)
{
    b->p = realloc(b->p, b->len + n);
    assert_non_null(b->p);
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void
header(buf_t *b, const char *name, char type, const char *link, size_t size, unsigned mode)
{
    unsigned char h[512] = {0};
    snprintf((char *)h, 100, "%s", name);
    snprintf((char *)h + 100, 8, "%07o", mode);
    snprintf((char *)h + 108, 8, "%07o", 0);
    snprintf((char *)h + 116, 8, "%07o", 0);
    snprintf((char *)h + 124, 12, "%011zo", size);
    snprintf((char *)h + 136, 12, "%011o", 0);
    h[156] = (unsigned char)type;
    if (link)
        snprintf((char *)h + 157, 100, "%s", link);
    memcpy(h + 257,
           "ustar\0"
           "00",
           8);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    put(b, h, 512);
}

static void
data(buf_t *b, const char *d, size_t n)
{
    put(b, d, n);
    static const char zero[512];
    if (n % 512)
        put(b, zero, 512 - n % 512);
}

static void
entry(buf_t *b, const char *name, char type, const char *link, const char *content, unsigned mode)
{
    size_t n = content ? strlen(content) : 0;
    header(b, name, type, link, n, mode);
    if (n)
        data(b, content, n);
}

static void
finish(buf_t *b)
{
    static const char zero[1024];
    put(b, zero, sizeof zero);
}

static ssize_t
mem_read(void *ctx, void *out, size_t n, kn_error_t *err)
{
    buf_t *b = ctx;
    if (n > b->len - b->pos)
        n = b->len - b->pos;
    memcpy(out, b->p + b->pos, n);
    b->pos += n;
    return (ssize_t)n;
}

/* --- a scratch directory with a canary next to it ------------------------- */

typedef struct scratch {
    char top[64], root[96], canary[96];
    int rootfd;
} scratch_t;

static int
setup(void **state)
{
    scratch_t *s = calloc(1, sizeof *s);
    snprintf(s->top, sizeof s->top, "/tmp/kn-tar-test-XXXXXX");
    assert_non_null(mkdtemp(s->top));
    snprintf(s->root, sizeof s->root, "%s/root", s->top);
    snprintf(s->canary, sizeof s->canary, "%s/canary", s->top);
    assert_int_equal(mkdir(s->root, 0755), 0);
    assert_int_equal(mkdir(s->canary, 0755), 0);
    s->rootfd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(s->rootfd >= 0);
    *state = s;
    return 0;
}

static int
canary_entries(const scratch_t *s)
{
    DIR *d = opendir(s->canary);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int
teardown(void **state)
{
    scratch_t *s = *state;
    close(s->rootfd);
    /* Only what this test created: its own top directory. */
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf --one-file-system '%s'", s->top);
    if (!strncmp(s->top, "/tmp/kn-tar-test-", 17) && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", s->top);
    free(s);
    return 0;
}

static int
extract(scratch_t *s, buf_t *b, kn_tar_stats_t *st, kn_error_t *err)
{
    kn_tar_t t;
    kn_tar_init(&t, (kn_tar_src_t){mem_read, NULL, b});
    kn_tar_opts_t o = {.chown = false};
    kn_tar_stats_t local = {0};
    int rc = kn_tar_extract(&t, s->rootfd, &o, st ? st : &local, err);
    kn_tar_free(&t);
    free(b->p);
    return rc;
}

/* --- tests ----------------------------------------------------------------- */

static void
path_clean(void **state)
{
    char out[256];
    kn_error_t err = {0};
    assert_int_equal(kn_tar_path_clean("./a//b/.", out, sizeof out, &err), 0);
    assert_string_equal(out, "a/b");
    assert_int_equal(kn_tar_path_clean("./", out, sizeof out, &err), 0);
    assert_string_equal(out, "");
    assert_int_equal(kn_tar_path_clean("a/..b/c..", out, sizeof out, &err), 0);
    assert_string_equal(out, "a/..b/c..");
    assert_int_equal(kn_tar_path_clean("/etc/passwd", out, sizeof out, &err), -1);
    assert_non_null(strstr(err.msg, "absolute"));
    assert_int_equal(kn_tar_path_clean("a/../../b", out, sizeof out, &err), -1);
    assert_non_null(strstr(err.msg, "'..'"));
    assert_int_equal(kn_tar_path_clean("..", out, sizeof out, &err), -1);
    assert_int_equal(kn_tar_path_clean("a/..", out, sizeof out, &err), -1);
    assert_int_equal(kn_tar_path_clean("", out, sizeof out, &err), -1);
    char longc[400];
    memset(longc, 'x', sizeof longc - 1);
    longc[sizeof longc - 1] = '\0';
    assert_int_equal(kn_tar_path_clean(longc, out, sizeof out, &err), -1);
    assert_int_equal(kn_tar_path_clean("a/b/c", out, 4, &err), -1);
}

static void
symlink_check(void **state)
{
    kn_error_t err = {0};
    assert_int_equal(kn_tar_symlink_check("a/b", "../c", &err), 0);
    assert_int_equal(kn_tar_symlink_check("a/b/c", "../../x", &err), 0);
    assert_int_equal(kn_tar_symlink_check("bin/sh", "busybox", &err), 0);
    assert_int_equal(kn_tar_symlink_check("x", "/etc/passwd", &err), 0); /* resolves inside */
    assert_int_equal(kn_tar_symlink_check("a", "../x", &err), -1);
    assert_non_null(strstr(err.msg, "points outside the layer"));
    assert_int_equal(kn_tar_symlink_check("a/b", "../../x", &err), -1);
    assert_int_equal(kn_tar_symlink_check("a/b", "c/../../../x", &err), -1);
    assert_int_equal(kn_tar_symlink_check("a", "", &err), -1);
}

static void
reader_formats(void **state)
{
    buf_t b = {0};
    /* pax path and a GNU long name both override the header's name. */
    char pax[128], longname[300];
    memset(longname, 'n', 250);
    longname[250] = '\0';
    int len = snprintf(pax, sizeof pax, "xx path=pax/name\n");
    len = snprintf(pax, sizeof pax, "%d path=pax/name\n", len);
    header(&b, "PaxHeaders/x", 'x', NULL, (size_t)len, 0644);
    data(&b, pax, (size_t)len);
    entry(&b, "short", '0', NULL, "one", 0644);
    header(&b, "././@LongLink", 'L', NULL, strlen(longname) + 1, 0644);
    data(&b, longname, strlen(longname) + 1);
    entry(&b, "trunc", '0', NULL, "two", 0644);
    finish(&b);
    kn_tar_t t;
    kn_tar_init(&t, (kn_tar_src_t){mem_read, NULL, &b});
    kn_error_t err = {0};
    const kn_tar_entry_t *e;
    assert_int_equal(kn_tar_next(&t, &e, &err), 1);
    assert_string_equal(e->path, "pax/name");
    assert_int_equal(e->size, 3);
    assert_int_equal(kn_tar_next(&t, &e, &err), 1);
    assert_string_equal(e->path, longname);
    char got[8] = {0};
    assert_int_equal(kn_tar_read(&t, got, sizeof got, &err), 3);
    assert_string_equal(got, "two");
    assert_int_equal(kn_tar_next(&t, &e, &err), 0);
    kn_tar_free(&t);
    free(b.p);
}

static void
reader_rejects_garbage(void **state)
{
    buf_t b = {0};
    entry(&b, "f", '0', NULL, "x", 0644);
    b.p[0] ^= 1; /* checksum no longer matches */
    finish(&b);
    kn_tar_t t;
    kn_tar_init(&t, (kn_tar_src_t){mem_read, NULL, &b});
    kn_error_t err = {0};
    const kn_tar_entry_t *e;
    assert_int_equal(kn_tar_next(&t, &e, &err), -1);
    assert_non_null(strstr(err.msg, "checksum"));
    kn_tar_free(&t);
    free(b.p);

    buf_t c = {0};
    header(&c, "big", '0', NULL, 4096, 0644); /* claims data that is not there */
    kn_tar_init(&t, (kn_tar_src_t){mem_read, NULL, &c});
    assert_int_equal(kn_tar_next(&t, &e, &err), 1);
    char tmp[64];
    assert_int_equal(kn_tar_read(&t, tmp, sizeof tmp, &err), -1);
    assert_non_null(strstr(err.msg, "truncated"));
    kn_tar_free(&t);
    free(c.p);
}

static void
extract_refuses_escapes(void **state)
{
    scratch_t *s = *state;
    char abs[200], up[200], through[200];
    snprintf(abs, sizeof abs, "%s/pwned", s->canary);
    snprintf(up, sizeof up, "../canary");
    struct {
        const char *name;
        char type;
        const char *link;
        const char *want;
    } cases[] = {
        {"../canary/pwned", '0', NULL, "'..'"},
        {abs, '0', NULL, "absolute"},
        {"evil", '2', "../canary", "points outside the layer"},
        {"hl", '1', abs, "points outside the layer"},
        {"hl2", '1', "../canary/x", "'..'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_t b = {0};
        entry(&b, cases[i].name, cases[i].type, cases[i].link, cases[i].type == '0' ? "x" : NULL,
              0644);
        finish(&b);
        kn_error_t err = {0};
        assert_int_equal(extract(s, &b, NULL, &err), -1);
        assert_non_null(strstr(err.msg, cases[i].want));
        assert_int_equal(canary_entries(s), 0);
    }
    /* An absolute symlink is kept (it resolves inside the sandbox), but
     * nothing is ever written through it. */
    buf_t b = {0};
    entry(&b, "out", '2', s->canary, NULL, 0777);
    snprintf(through, sizeof through, "out/pwned");
    entry(&b, through, '0', NULL, "x", 0644);
    finish(&b);
    kn_error_t err = {0};
    assert_int_equal(extract(s, &b, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "passes through the symlink 'out'"));
    assert_int_equal(canary_entries(s), 0);
}

static void
extract_sanitizes(void **state)
{
    scratch_t *s = *state;
    buf_t b = {0};
    entry(&b, "bin/", '5', NULL, NULL, 0755);
    entry(&b, "bin/suid", '0', NULL, "#!", 04755);
    entry(&b, "dev/sda", '4', NULL, NULL, 0600);
    entry(&b, "dev/mem", '3', NULL, NULL, 0600);
    entry(&b, "etc/passwd", '0', NULL, "root", 0644);
    entry(&b, "etc/.wh.shadow", '0', NULL, NULL, 0644);
    entry(&b, "opt/.wh..wh..opq", '0', NULL, NULL, 0644);
    entry(&b, "etc/hard", '1', "etc/passwd", NULL, 0644);
    entry(&b, "etc/passwd", '0', NULL, "again", 0644); /* a later entry replaces */
    entry(&b, "var/empty/", '5', NULL, NULL, 0755);
    entry(&b, "var/.wh.empty", '0', NULL, NULL, 0644); /* whites out a dir of this layer */
    entry(&b, "run/", '5', NULL, NULL, 0755);
    entry(&b, "run", '0', NULL, "file now", 0644);     /* an empty dir replaced by a file */
    entry(&b, ".wh..wh.plnk/", '5', NULL, NULL, 0700); /* aufs bookkeeping: ignored */
    entry(&b, ".wh..wh.plnk/x", '0', NULL, "x", 0644);
    finish(&b);
    kn_tar_stats_t st = {0};
    kn_error_t err = {0};
    struct stat sb;
    assert_int_equal(extract(s, &b, &st, &err), 0);
    assert_int_equal(st.devices_skipped, 2);
    assert_int_equal(st.setid_cleared, 1);
    assert_int_equal(st.whiteouts, 3);
    assert_int_equal(fstatat(s->rootfd, "var/empty", &sb, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISCHR(sb.st_mode));
    assert_int_equal(fstatat(s->rootfd, ".wh.plnk", &sb, AT_SYMLINK_NOFOLLOW), -1);
    assert_int_equal(fstatat(s->rootfd, ".wh..wh.plnk", &sb, AT_SYMLINK_NOFOLLOW), -1);
    assert_int_equal(fstatat(s->rootfd, "run", &sb, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(fstatat(s->rootfd, "bin/suid", &sb, AT_SYMLINK_NOFOLLOW), 0);
    assert_int_equal(sb.st_mode & 07777, 0755);
    assert_int_equal(fstatat(s->rootfd, "dev/sda", &sb, AT_SYMLINK_NOFOLLOW), -1);
    assert_int_equal(fstatat(s->rootfd, "etc/shadow", &sb, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISCHR(sb.st_mode) && sb.st_rdev == makedev(0, 0));
    int opt = openat(s->rootfd, "opt", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char v[4] = {0};
    assert_int_equal(fgetxattr(opt, "user.overlay.opaque", v, sizeof v), 1);
    assert_string_equal(v, "y");
    close(opt);
    assert_int_equal(fstatat(s->rootfd, "etc/hard", &sb, AT_SYMLINK_NOFOLLOW), 0);
    assert_int_equal(sb.st_size, 4); /* the first passwd */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(path_clean),
        cmocka_unit_test(symlink_check),
        cmocka_unit_test(reader_formats),
        cmocka_unit_test(reader_rejects_garbage),
        cmocka_unit_test_setup_teardown(extract_refuses_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(extract_sanitizes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
