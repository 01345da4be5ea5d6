/* proc.c - kennel-probe, processes and privilege: ptrace, signals, namespaces, mounts, credentials.
 */
#include "probe.h"

static int
child_traceme(void *arg)
{
    return ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0 ? errno : 0;
}

/* ptrace [attach|traceme|PID] */
int
p_ptrace(int argc, char **argv)
{
    const char *mode = argc > 0 ? argv[0] : "attach";
    j_begin("ptrace");
    j_str("mode", mode);
    if (!strcmp(mode, "traceme")) {
        j_str("result", run_in_child(child_traceme, NULL));
        return j_end();
    }
    pid_t target = !strcmp(mode, "attach") ? spawn_pauser() : (pid_t)parse_long(mode, -1);
    if (target <= 0) {
        j_str("result", errname(errno ? errno : EINVAL));
        return j_end();
    }
    long rc = ptrace(PTRACE_ATTACH, target, NULL, NULL);
    j_str("result", rc_name(rc));
    if (rc == 0) {
        waitpid(target, NULL, __WALL);
        ptrace(PTRACE_DETACH, target, NULL, NULL);
    }
    if (!strcmp(mode, "attach"))
        kill_and_reap(target);
    return j_end();
}

/* process-vm: read a child's memory with process_vm_readv. */
int
p_process_vm(int argc, char **argv)
{
    static volatile long secret = 0x6b656e6e656cL;
    long copy = 0;
    struct iovec local = {&copy, sizeof copy};
    struct iovec remote = {(void *)&secret, sizeof secret};
    pid_t child = spawn_pauser();
    ssize_t n = process_vm_readv(child, &local, 1, &remote, 1, 0);
    j_begin("process-vm");
    j_str("result", rc_name(n));
    j_str("writev", rc_name(process_vm_writev(child, &local, 1, &remote, 1, 0)));
    kill_and_reap(child);
    return j_end();
}

/* steal-fds [PID]: copy every descriptor of PID with pidfd_getfd. */
int
p_steal_fds(int argc, char **argv)
{
    long pid = parse_long(argc > 0 ? argv[0] : NULL, 1);
    long pfd = syscall(SYS_pidfd_open, pid, 0);
    const char *refusal = "EBADF";
    int stolen = 0;
    j_begin("steal-fds");
    j_int("pid", pid);
    if (pfd < 0) {
        j_str("result", errname(errno));
        j_str("stage", "pidfd_open");
        return j_end();
    }
    j_open("stolen", '{');
    for (int fd = 0; fd < 256; fd++) {
        long nfd = syscall(SYS_pidfd_getfd, pfd, fd, 0);
        char link[64], target[PATH_MAX], key[16];
        ssize_t n;
        if (nfd < 0) {
            if (errno != EBADF)
                refusal = errname(errno);
            continue;
        }
        snprintf(link, sizeof link, "/proc/self/fd/%ld", nfd);
        n = readlink(link, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        snprintf(key, sizeof key, "%d", fd);
        j_str(key, target);
        close((int)nfd);
        stolen++;
    }
    j_close('}');
    close((int)pfd);
    j_str("result", stolen ? "ok" : refusal);
    return j_end();
}

/* kill PID [SIG] */
int
p_kill(int argc, char **argv)
{
    long pid = parse_long(argc > 0 ? argv[0] : NULL, 0);
    int sig = (int)parse_long(argc > 1 ? argv[1] : NULL, SIGKILL);
    if (argc < 1)
        return usage_error("kill", "kill PID [SIG]");
    j_begin("kill");
    j_int("pid", pid);
    j_int("signal", sig);
    j_str("result", rc_name(kill((pid_t)pid, sig)));
    return j_end();
}

/* ps: every process visible in /proc, with its name, parent and uid. */
int
p_ps(int argc, char **argv)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    int count = 0;
    j_begin("ps");
    if (!d) {
        j_str("result", errname(errno));
        return j_end();
    }
    j_open("procs", '[');
    while ((de = readdir(d))) {
        char path[300], status[4096], val[128], cmd[256];
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        snprintf(path, sizeof path, "/proc/%s/status", de->d_name);
        read_small(path, status, sizeof status);
        snprintf(path, sizeof path, "/proc/%s/cmdline", de->d_name);
        read_small(path, cmd, sizeof cmd);
        j_open(NULL, '{');
        j_int("pid", parse_long(de->d_name, -1));
        status_field(status, "Name", val, sizeof val);
        j_str("name", val);
        status_field(status, "PPid", val, sizeof val);
        j_int("ppid", parse_long(val, -1));
        status_field(status, "Uid", val, sizeof val);
        j_int("uid", parse_long(strtok(val, " \t"), -1));
        j_str("cmdline", cmd); /* first argument only: NULs end it */
        j_close('}');
        count++;
    }
    j_close(']');
    closedir(d);
    j_int("count", count);
    j_str("result", "ok");
    return j_end();
}

/* orphans MARKER N: N grandchildren that leave the session, ignore the usual
 * termination signals and sleep; then this process sleeps too. Used to check
 * that a timeout kills the whole tree. MARKER only needs to be in argv. */
int
p_orphans(int argc, char **argv)
{
    long n = parse_long(argc > 1 ? argv[1] : NULL, 3);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            setsid();
            if (fork() == 0) {
                for (;;)
                    pause();
            }
            _exit(0);
        }
        if (pid > 0)
            waitpid(pid, NULL, 0);
    }
    j_begin("orphans");
    j_int("spawned", n);
    j_str("result", "ok");
    j_end();
    for (;;)
        pause();
}

/* forkmax [CAP]: fork until it fails, report how many children existed. */
int
p_forkmax(int argc, char **argv)
{
    long cap = parse_long(argc > 0 ? argv[0] : NULL, 4096);
    pid_t *kids = calloc((size_t)cap, sizeof *kids);
    long n = 0;
    int err = 0;
    if (!kids)
        return usage_error("forkmax", "out of memory");
    while (n < cap) {
        pid_t pid = fork();
        if (pid < 0) {
            err = errno;
            break;
        }
        if (pid == 0) {
            for (;;)
                pause();
        }
        kids[n++] = pid;
    }
    for (long i = 0; i < n; i++)
        kill_and_reap(kids[i]);
    free(kids);
    j_begin("forkmax");
    j_int("children", n);
    j_str("result", errname(err));
    return j_end();
}

/* ---- privilege ---- */

/* caps: credentials, capability sets and seccomp state of this process. */
int
p_caps(int argc, char **argv)
{
    static const char *const fields[] = {"Uid",        "Gid",     "Groups",         "CapInh",
                                         "CapPrm",     "CapEff",  "CapBnd",         "CapAmb",
                                         "NoNewPrivs", "Seccomp", "Seccomp_filters"};
    char status[8192], val[256], map[1024];
    read_small("/proc/self/status", status, sizeof status);
    j_begin("caps");
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        status_field(status, fields[i], val, sizeof val);
        j_str(fields[i], val);
    }
    j_int("uid", getuid());
    j_int("euid", geteuid());
    j_int("gid", getgid());
    j_int("egid", getegid());
    read_small("/proc/self/uid_map", map, sizeof map);
    j_str("uid_map", map);
    read_small("/proc/self/gid_map", map, sizeof map);
    j_str("gid_map", map);
    j_int("securebits", prctl(PR_GET_SECUREBITS));
    j_str("result", "ok");
    return j_end();
}

/* setuid: try to become root (or stay root) and report what stuck. */
int
p_setuid(int argc, char **argv)
{
    char status[8192], val[64];
    j_begin("setuid");
    j_int("uid_before", getuid());
    j_int("euid_before", geteuid());
    j_str("setgroups", rc_name(setgroups(0, NULL)));
    j_str("setgid", rc_name(setgid(0)));
    j_str("result", rc_name(setuid(0)));
    j_int("uid", getuid());
    j_int("euid", geteuid());
    read_small("/proc/self/status", status, sizeof status);
    status_field(status, "CapEff", val, sizeof val);
    j_str("CapEff", val);
    return j_end();
}

static int
child_int80(void *arg)
{
    long ret = 20; /* i386 getpid */
    __asm__ volatile("int $0x80" : "+a"(ret) : : "memory", "r8", "r9", "r10", "r11");
    return ret < 0 && ret > -4096 ? (int)-ret : 0;
}

static int
child_x32(void *arg)
{
    long ret = syscall(__X32_SYSCALL_BIT | SYS_getpid);
    return ret < 0 ? errno : 0;
}

int
p_int80(int argc, char **argv)
{
    j_begin("int80");
    j_str("result", run_in_child(child_int80, NULL));
    return j_end();
}

int
p_x32(int argc, char **argv)
{
    j_begin("x32");
    j_str("result", run_in_child(child_x32, NULL));
    return j_end();
}

static int
child_clone3(void *arg)
{
    struct clone_args ca;
    long pid;
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = SIGCHLD;
    pid = syscall(SYS_clone3, &ca, sizeof ca);
    if (pid == 0)
        _exit(0);
    if (pid < 0)
        return errno;
    waitpid((pid_t)pid, NULL, 0);
    return 0;
}

int
p_clone3(int argc, char **argv)
{
    j_begin("clone3");
    j_str("result", run_in_child(child_clone3, NULL));
    return j_end();
}

static const struct {
    const char *name;
    int flag;
} ns_flags[] = {
    {"user", CLONE_NEWUSER},     {"mnt", CLONE_NEWNS},  {"net", CLONE_NEWNET},
    {"pid", CLONE_NEWPID},       {"uts", CLONE_NEWUTS}, {"ipc", CLONE_NEWIPC},
    {"cgroup", CLONE_NEWCGROUP},
};

static int
child_clone_ns(void *arg)
{
    int flag = *(int *)arg;
    long pid = syscall(SYS_clone, (unsigned long)flag | SIGCHLD, 0, NULL, NULL, 0);
    if (pid == 0)
        _exit(0);
    if (pid < 0)
        return errno;
    waitpid((pid_t)pid, NULL, 0);
    return 0;
}

static int
child_unshare(void *arg)
{
    return unshare(*(int *)arg) < 0 ? errno : 0;
}

/* One result per namespace kind; "result" is "ok" if any call succeeded,
 * else the first failure. */
static int
ns_matrix(const char *probe, int (*fn)(void *))
{
    char result[48] = "";
    j_begin(probe);
    j_open("namespaces", '{');
    for (size_t i = 0; i < sizeof ns_flags / sizeof ns_flags[0]; i++) {
        int flag = ns_flags[i].flag;
        const char *r = run_in_child(fn, &flag);
        j_str(ns_flags[i].name, r);
        if (!result[0] || !strcmp(r, "ok"))
            snprintf(result, sizeof result, "%s", r);
    }
    j_close('}');
    j_str("result", result);
    return j_end();
}

int
p_clone_ns(int argc, char **argv)
{
    return ns_matrix("clone-ns", child_clone_ns);
}

int
p_unshare(int argc, char **argv)
{
    return ns_matrix("unshare", child_unshare);
}

/* userns: the single most important namespace to refuse. */
int
p_userns(int argc, char **argv)
{
    int flag = CLONE_NEWUSER;
    j_begin("userns");
    j_str("result", run_in_child(child_unshare, &flag));
    return j_end();
}

static int
child_setns(void *arg)
{
    int fd = open((const char *)arg, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    return setns(fd, 0) < 0 ? errno : 0;
}

int
p_setns(int argc, char **argv)
{
    j_begin("setns");
    j_str("result", run_in_child(child_setns, "/proc/self/ns/uts"));
    return j_end();
}

/* mount [TARGET]: tmpfs on a fresh directory. Inside a sandbox only. */
int
p_mount(int argc, char **argv)
{
    char tmpl[] = "/tmp/kennel-probe-mnt-XXXXXX";
    const char *target = argc > 0 ? argv[0] : mkdtemp(tmpl);
    int rc;
    if (!target)
        target = "/tmp";
    rc = mount("kennel-probe", target, "tmpfs", 0, "size=1m");
    j_begin("mount");
    j_str("target", target);
    j_str("result", rc_name(rc));
    if (rc == 0)
        umount2(target, MNT_DETACH);
    if (argc == 0 && target == tmpl)
        rmdir(tmpl);
    return j_end();
}

/* remount PATH: make a read-only mount writable again. Inside a sandbox only. */
int
p_remount(int argc, char **argv)
{
    const char *target = argc > 0 ? argv[0] : "/";
    j_begin("remount");
    j_str("target", target);
    j_str("result", rc_name(mount(NULL, target, NULL, MS_REMOUNT | MS_BIND, NULL)));
    return j_end();
}

/* umount PATH: uncover what a mount hides. Inside a sandbox only. */
int
p_umount(int argc, char **argv)
{
    const char *target = argc > 0 ? argv[0] : "/proc";
    j_begin("umount");
    j_str("target", target);
    j_str("result", rc_name(umount2(target, MNT_DETACH)));
    return j_end();
}

/* newmount: the new mount API, which a filter on mount(2) alone misses. */
int
p_newmount(int argc, char **argv)
{
    long fs = syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC);
    long tree;
    j_begin("newmount");
    j_str("result", rc_name(fs));
    if (fs >= 0)
        close((int)fs);
    tree = syscall(SYS_open_tree, AT_FDCWD, "/", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    j_str("open_tree", rc_name(tree));
    if (tree >= 0)
        close((int)tree);
    {
        /* clear read-only on the root mount: a no-op where / is writable */
        struct mount_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.attr_clr = MOUNT_ATTR_RDONLY;
        j_str("mount_setattr",
              rc_name(syscall(SYS_mount_setattr, AT_FDCWD, "/", 0, &attr, sizeof attr)));
    }
    return j_end();
}

/* pivot-root: missing paths, so the host fails with ENOENT after the
 * permission check; a sandbox must fail before it with EPERM. */
int
p_pivot_root(int argc, char **argv)
{
    j_begin("pivot-root");
    j_str("result", rc_name(syscall(SYS_pivot_root, "/kennel-probe-nonexistent-new",
                                    "/kennel-probe-nonexistent-old")));
    return j_end();
}

static int
child_chroot(void *arg)
{
    return chroot("/tmp") < 0 ? errno : 0;
}

int
p_chroot(int argc, char **argv)
{
    j_begin("chroot");
    j_str("result", run_in_child(child_chroot, NULL));
    return j_end();
}

/* sched: real-time scheduling, negative nice and real-time I/O priority,
 * each a way for one sandbox to starve the host's other work. */
int
p_sched(int argc, char **argv)
{
    struct sched_param sp = {.sched_priority = 1};
    j_begin("sched");
    j_str("result", rc_name(sched_setscheduler(0, SCHED_FIFO, &sp)));
    j_str("nice", rc_name(setpriority(PRIO_PROCESS, 0, -5)));
    /* IOPRIO_PRIO_VALUE(IOPRIO_CLASS_RT, 0); 1 = IOPRIO_WHO_PROCESS */
    j_str("ioprio_rt", rc_name(syscall(SYS_ioprio_set, 1, 0, (1 << 13) | 0)));
    return j_end();
}
