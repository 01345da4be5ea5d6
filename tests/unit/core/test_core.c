/* Unit tests of the runtime library's pure parts and of the seccomp filter,
 * loaded for real in a forked child. */
#include <errno.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/kn_seccomp.h"
#include "core/landlock.h"

static void
test_parse_size(void **state)
{
    uint64_t v = 0;
    assert_int_equal(kn_parse_size("512", &v), 0);
    assert_int_equal(v, 512);
    assert_int_equal(kn_parse_size("64m", &v), 0);
    assert_int_equal(v, 64ULL << 20);
    assert_int_equal(kn_parse_size("1G", &v), 0);
    assert_int_equal(v, 1ULL << 30);
    assert_int_equal(kn_parse_size("100k", &v), 0);
    assert_int_equal(v, 100ULL << 10);
    assert_int_equal(kn_parse_size("2MiB", &v), 0);
    assert_int_equal(v, 2ULL << 20);
    assert_int_equal(kn_parse_size("-5", &v), -1);
    assert_int_equal(kn_parse_size("abc", &v), -1);
    assert_int_equal(kn_parse_size("5x", &v), -1);
    assert_int_equal(kn_parse_size("", &v), -1);
    assert_int_equal(kn_parse_size("99999999999999999999g", &v), -1);
}

static void
test_profiles(void **state)
{
    kn_config_t c;
    kn_error_t err = {0};
    assert_int_equal(kn_profile_load(&c, "default", &err), 0);
    assert_false(c.net.enabled);
    assert_false(c.deny_exec);
    assert_int_equal(c.uid, 0);
    assert_true(c.n_env >= 2);
    kn_config_free(&c);

    assert_int_equal(kn_profile_load(&c, "deny-by-default", &err), 0);
    assert_int_equal(c.uid, 65532);
    assert_int_equal(c.gid, 65532);
    assert_int_equal(c.pids, 64);
    assert_int_equal(c.memory, 256ULL << 20);
    assert_int_equal(c.tmp_size, 16ULL << 20);
    assert_true(c.tmp_noexec && c.root_readonly && c.in_out);
    assert_true(c.deny_exec && c.deny_sockets);
    assert_int_equal(c.n_env, 0); /* --env-file /dev/null */
    kn_config_free(&c);

    assert_int_equal(kn_profile_load(&c, "nope", &err), -1);
    assert_non_null(strstr(err.msg, "unknown profile 'nope'"));
}

static void
test_validate(void **state)
{
    kn_config_t c;
    kn_error_t err = {0};
    char *argv[] = {"true", NULL};
    assert_int_equal(kn_profile_load(&c, "default", &err), 0);
    assert_int_equal(kn_config_validate(&c, &err), -1); /* no command */
    assert_int_equal(kn_config_set_argv(&c, argv, &err), 0);
    assert_int_equal(kn_config_validate(&c, &err), 0);

    assert_int_equal(kn_config_set_str(&c.image, "relative/dir", &err), 0);
    assert_int_equal(kn_config_validate(&c, &err), -1);
    assert_non_null(strstr(err.msg, "unknown"));
    assert_int_equal(kn_config_set_str(&c.image, "host", &err), 0);

    assert_int_equal(kn_config_add_bind(&c, "/nonexistent-kennel-src", "/x", false, &err), 0);
    assert_int_equal(kn_config_validate(&c, &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent-kennel-src"));
    kn_config_free(&c);

    assert_int_equal(kn_profile_load(&c, "default", &err), 0);
    assert_int_equal(kn_config_set_argv(&c, argv, &err), 0);
    assert_int_equal(kn_config_add_bind(&c, "/etc", "/a/../b", false, &err), 0);
    assert_int_equal(kn_config_validate(&c, &err), -1);
    assert_non_null(strstr(err.msg, ".."));
    kn_config_free(&c);

    assert_int_equal(kn_profile_load(&c, "default", &err), 0);
    assert_int_equal(kn_config_setenv(&c, "A=1", &err), 0);
    assert_int_equal(kn_config_setenv(&c, "A=2", &err), 0); /* replaces */
    size_t seen = 0;
    for (size_t i = 0; i < c.n_env; i++)
        if (!strncmp(c.env[i], "A=", 2))
            seen++, assert_string_equal(c.env[i], "A=2");
    assert_int_equal(seen, 1);
    assert_int_equal(kn_config_setenv(&c, "=x", &err), -1);
    assert_int_equal(kn_config_setenv(&c, "novalue", &err), -1);
    kn_config_free(&c);
}

/* Loads the filter of `profile` in a child and reports errno of a probe. */
static int
probe_in_filter(const char *profile, int which)
{
    kn_config_t c;
    kn_error_t err = {0};
    kn_bpf_t prog;
    assert_int_equal(kn_profile_load(&c, profile, &err), 0);
    assert_int_equal(kn_seccomp_build(&c, &prog, &err), 0);
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        if (kn_seccomp_load(&prog, NULL, &err) < 0)
            _exit(99);
        long r = 0;
        errno = 0;
        switch (which) {
        case 0:
            r = mount("none", "/", "tmpfs", 0, NULL);
            break;
        case 1:
            r = syscall(SYS_clone3, NULL, 0);
            break;
        case 2:
            r = unshare(CLONE_NEWUSER);
            break;
        case 3:
            r = socket(AF_PACKET, SOCK_RAW, 0);
            break;
        case 4:
            r = ioctl(0, TIOCSTI, "x");
            break;
        case 5:
            r = socket(AF_INET, SOCK_STREAM, 0);
            break;
        case 6:
            r = syscall(SYS_keyctl, 0, 0, 0, 0, 0);
            break;
        }
        int e = r < 0 ? errno : 0;
        if (write(p[1], &e, sizeof e) != sizeof e)
            _exit(98);
        _exit(0);
    }
    int e = -1, st;
    close(p[1]);
    assert_int_equal(read(p[0], &e, sizeof e), sizeof e);
    close(p[0]);
    waitpid(pid, &st, 0);
    kn_bpf_free(&prog);
    kn_config_free(&c);
    return e;
}

static void
test_seccomp_default(void **state)
{
    assert_int_equal(probe_in_filter("default", 0), EPERM);
    assert_int_equal(probe_in_filter("default", 1), ENOSYS); /* glibc falls back to clone */
    assert_int_equal(probe_in_filter("default", 2), EPERM);
    assert_int_equal(probe_in_filter("default", 3), EPERM);
    assert_int_equal(probe_in_filter("default", 4), EPERM);
    assert_int_equal(probe_in_filter("default", 5), 0); /* sockets are allowed by default */
    assert_int_equal(probe_in_filter("default", 6), EPERM);
    assert_int_equal(probe_in_filter("deny-by-default", 5), EPERM);
}

/* The filters embedded at build time are exactly what libseccomp compiles
 * on this machine now. */
static void
test_seccomp_precompiled_matches(void **state)
{
    const char *profiles[] = {"default", "deny-by-default"};
    for (int i = 0; i < 2; i++) {
        kn_config_t c;
        kn_error_t err = {0};
        kn_bpf_t a, b;
        assert_int_equal(kn_profile_load(&c, profiles[i], &err), 0);
        assert_int_equal(kn_seccomp_build(&c, &a, &err), 0);
        assert_int_equal(kn_seccomp_compile(&c, &b, &err), 0);
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.insns, b.insns, a.len * sizeof a.insns[0]);
        kn_bpf_free(&a);
        kn_bpf_free(&b);
        kn_config_free(&c);
    }
    kn_bpf_t a, b;
    kn_error_t err = {0};
    assert_int_equal(kn_seccomp_build_exec_notify(&a, &err), 0);
    assert_int_equal(kn_seccomp_compile_exec_notify(&b, &err), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.insns, b.insns, a.len * sizeof a.insns[0]);
    kn_bpf_free(&a);
    kn_bpf_free(&b);
}

static void
test_landlock_abi(void **state)
{
    int abi = kn_landlock_abi();
    assert_true(abi >= 0);
    if (abi == 0)
        print_message("note: this kernel has no landlock; the layer is reported unenforced\n");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_profiles),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_seccomp_default),
        cmocka_unit_test(test_seccomp_precompiled_matches),
        cmocka_unit_test(test_landlock_abi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
