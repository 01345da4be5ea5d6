/* kernel.c - kennel-probe, kernel attack surface: bpf, perf, io_uring, keys, modules and friends.
 */
#include "probe.h"

int
p_bpf(int argc, char **argv)
{
    union bpf_attr attr;
    long fd;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    j_begin("bpf");
    j_str("result", rc_name(fd));
    if (fd >= 0)
        close((int)fd);
    return j_end();
}

/* perf: self-monitoring of user time, which perf_event_paranoid=2 allows. */
int
p_perf(int argc, char **argv)
{
    struct perf_event_attr attr;
    long fd;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
    j_begin("perf");
    j_str("result", rc_name(fd));
    if (fd >= 0)
        close((int)fd);
    return j_end();
}

int
p_io_uring(int argc, char **argv)
{
    struct io_uring_params params;
    long fd;
    memset(&params, 0, sizeof params);
    fd = syscall(SYS_io_uring_setup, 4, &params);
    j_begin("io_uring");
    j_str("result", rc_name(fd));
    if (fd >= 0)
        close((int)fd);
    j_str("enter", rc_name(syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0)));
    j_str("register", rc_name(syscall(SYS_io_uring_register, -1, 0, NULL, 0)));
    return j_end();
}

/* userfaultfd: user-mode-only faults, which unprivileged users may create. */
int
p_userfaultfd(int argc, char **argv)
{
    long fd = syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
    j_begin("userfaultfd");
    j_str("result", rc_name(fd));
    if (fd >= 0)
        close((int)fd);
    return j_end();
}

int
p_keyctl(int argc, char **argv)
{
    long id = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
    j_begin("keyctl");
    j_str("result", rc_name(id));
    j_str("add_key", rc_name(syscall(SYS_add_key, "kennel_probe_bogus_type", "kennel-probe", "x",
                                     (size_t)1, KEY_SPEC_PROCESS_KEYRING)));
    j_str("request_key", rc_name(syscall(SYS_request_key, "user", "kennel-probe-absent-key", NULL,
                                         KEY_SPEC_PROCESS_KEYRING)));
    return j_end();
}

/* Privileged calls with arguments the host rejects after the permission
 * check (bad magic, too many segments, missing files, unknown module). */
int
p_kexec(int argc, char **argv)
{
    j_begin("kexec");
    j_str("result", rc_name(syscall(SYS_kexec_load, 0UL, 100000UL, NULL, 0UL)));
    return j_end();
}

int
p_reboot(int argc, char **argv)
{
    j_begin("reboot");
    j_str("result", rc_name(syscall(SYS_reboot, 0xfee1dead, 0x6b656e6e, 0x6b656e6e, NULL)));
    return j_end();
}

int
p_swapon(int argc, char **argv)
{
    j_begin("swapon");
    j_str("result", rc_name(syscall(SYS_swapon, "/kennel-probe-nonexistent-swap", 0)));
    j_str("swapoff", rc_name(syscall(SYS_swapoff, "/kennel-probe-nonexistent-swap")));
    return j_end();
}

int
p_acct(int argc, char **argv)
{
    j_begin("acct");
    j_str("result", rc_name(syscall(SYS_acct, "/kennel-probe-nonexistent/acct")));
    return j_end();
}

int
p_module(int argc, char **argv)
{
    static const char junk[16] = "not an ELF";
    j_begin("module");
    j_str("result", rc_name(syscall(SYS_init_module, junk, sizeof junk, "")));
    j_str("finit_module", rc_name(syscall(SYS_finit_module, -1, "", 0)));
    j_str("delete_module",
          rc_name(syscall(SYS_delete_module, "kennel_probe_absent_module", O_NONBLOCK)));
    return j_end();
}

static int
child_iopl(void *arg)
{
    return syscall(SYS_iopl, 3) < 0 ? errno : 0;
}

static int
child_ioperm(void *arg)
{
    return syscall(SYS_ioperm, 0x80UL, 1UL, 1) < 0 ? errno : 0;
}

int
p_iopl(int argc, char **argv)
{
    j_begin("iopl");
    j_str("result", run_in_child(child_iopl, NULL));
    j_str("ioperm", run_in_child(child_ioperm, NULL));
    return j_end();
}

int
p_syslog(int argc, char **argv)
{
    j_begin("syslog");
    j_str("result", rc_name(klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0)));
    return j_end();
}

/* open-by-handle: the "shocker" escape, opening a host inode by handle. */
int
p_open_by_handle(int argc, char **argv)
{
    union {
        struct file_handle fh;
        char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    } h;
    int mount_id, rootfd, fd;
    h.fh.handle_bytes = MAX_HANDLE_SZ;
    j_begin("open-by-handle");
    j_str("name_to_handle",
          rc_name(name_to_handle_at(AT_FDCWD, argc > 0 ? argv[0] : "/etc", &h.fh, &mount_id, 0)));
    rootfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    fd = open_by_handle_at(rootfd, &h.fh, O_RDONLY | O_CLOEXEC);
    j_str("result", rc_name(fd));
    if (fd >= 0)
        close(fd);
    if (rootfd >= 0)
        close(rootfd);
    return j_end();
}

int
p_landlock(int argc, char **argv)
{
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    j_begin("landlock");
    j_str("result", rc_name(abi));
    j_int("abi", abi);
    return j_end();
}

/* clock: set the realtime clock to what it reads (a no-op if allowed; the
 * guard keeps it off the host anyway), and adjtimex with a mode. */
int
p_clock(int argc, char **argv)
{
    struct timespec now;
    struct timex tx;
    clock_gettime(CLOCK_REALTIME, &now);
    j_begin("clock");
    j_str("result", rc_name(clock_settime(CLOCK_REALTIME, &now)));
    memset(&tx, 0, sizeof tx);
    tx.modes = ADJ_TICK;
    tx.tick = 10000; /* the default tick */
    j_str("adjtimex", rc_name(adjtimex(&tx)));
    return j_end();
}
