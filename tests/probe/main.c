/* kennel-probe - a small static program that tries one forbidden (or
 * ordinary) thing from inside a sandbox and reports what happened.
 *
 *   kennel-probe SUBCOMMAND [ARGS...]
 *
 * Every subcommand prints exactly one JSON object on one line to stdout and
 * exits 0, whatever the outcome: the test that ran it decides whether the
 * outcome is acceptable. "result" is "ok" when the operation succeeded, the
 * errno name (EPERM, ENOSYS, ...) when it failed, or "killed:SIGSYS"
 * when it ran in a child that a signal killed. A few subcommands (mem,
 * forkmax, orphans, spin, sleep) exist to load the sandbox rather than to
 * probe it.
 *
 * The program is linked statically so that it runs inside any root, and it
 * is written so that running a probe on the host by mistake does no harm:
 * privileged calls are made with arguments that fail after the permission
 * check (a missing path, a bogus magic number), so the host sees ENOENT or
 * EINVAL where a sandbox must see EPERM. `mount`, `umount`, `remount`,
 * `hostname` and `tiocsti` are the exception and must only run inside a
 * sandbox: --unless-ns makes sure of that. */
#include "probe.h"

static const struct probe {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} probes[] = {
    {"net-tcp", p_net_tcp, "ADDR PORT  TCP connect (2 s limit)"},
    {"net-udp", p_net_udp, "ADDR PORT  send one UDP datagram"},
    {"raw", p_raw, "raw ICMP socket"},
    {"af-packet", p_af_packet, "AF_PACKET socket"},
    {"af-vsock", p_af_vsock, "AF_VSOCK socket (created, never connected)"},
    {"netlink", p_netlink, "AF_NETLINK sockets of several families"},
    {"socket", p_socket, "[inet|inet6|unix]  create a socket"},
    {"socketpair", p_socketpair, "AF_UNIX socketpair"},
    {"socket-families", p_socket_families, "address families that can make a socket"},
    {"unix", p_unix, "PATH|@NAME  connect to a unix socket"},
    {"ifaces", p_ifaces, "network interfaces visible"},
    {"ptrace", p_ptrace, "[attach|traceme|PID]"},
    {"process-vm", p_process_vm, "process_vm_readv on a child"},
    {"kill", p_kill, "PID [SIG]"},
    {"steal-fds", p_steal_fds, "[PID]  pidfd_getfd every descriptor of PID (default 1)"},
    {"ps", p_ps, "visible processes"},
    {"orphans", p_orphans, "MARKER N  detached grandchildren that ignore SIGTERM"},
    {"forkmax", p_forkmax, "[CAP]  fork until it fails"},
    {"caps", p_caps, "credentials, capabilities, seccomp state"},
    {"setuid", p_setuid, "try setuid(0)"},
    {"int80", p_int80, "i386 getpid via int 0x80"},
    {"x32", p_x32, "x32 ABI getpid"},
    {"clone3", p_clone3, "clone3"},
    {"clone-ns", p_clone_ns, "clone with each namespace flag"},
    {"unshare", p_unshare, "unshare each namespace"},
    {"userns", p_userns, "unshare(CLONE_NEWUSER)"},
    {"setns", p_setns, "setns into the own uts namespace"},
    {"mount", p_mount, "[TARGET]  tmpfs mount (sandbox only)"},
    {"remount", p_remount, "[PATH]  remount read-write (sandbox only)"},
    {"umount", p_umount, "[PATH]  unmount (sandbox only)"},
    {"newmount", p_newmount, "fsopen and open_tree (new mount API)"},
    {"pivot-root", p_pivot_root, "pivot_root"},
    {"chroot", p_chroot, "chroot"},
    {"bpf", p_bpf, "BPF_MAP_CREATE"},
    {"perf", p_perf, "perf_event_open on self"},
    {"io_uring", p_io_uring, "io_uring_setup"},
    {"userfaultfd", p_userfaultfd, "userfaultfd"},
    {"keyctl", p_keyctl, "keyctl, add_key, request_key"},
    {"kexec", p_kexec, "kexec_load"},
    {"reboot", p_reboot, "reboot (bad magic)"},
    {"swapon", p_swapon, "swapon/swapoff"},
    {"acct", p_acct, "acct"},
    {"module", p_module, "init_module, finit_module, delete_module"},
    {"iopl", p_iopl, "iopl(3)"},
    {"syslog", p_syslog, "syslog (klogctl)"},
    {"open-by-handle", p_open_by_handle, "[PATH]  open_by_handle_at"},
    {"sched", p_sched, "SCHED_FIFO, negative nice, real-time I/O priority"},
    {"clock", p_clock, "clock_settime and adjtimex"},
    {"landlock", p_landlock, "landlock ABI version"},
    {"tiocsti", p_tiocsti, "terminal input injection"},
    {"fds", p_fds, "[all]  open descriptors"},
    {"env", p_env, "environment"},
    {"write", p_write, "PATH [TEXT]  create and write a file"},
    {"open-w", p_open_w, "PATH  open for writing"},
    {"read", p_read, "PATH  read a file"},
    {"mkdir", p_mkdir, "PATH"},
    {"ls", p_ls, "[DIR]  list a directory"},
    {"mknod", p_mknod, "[DIR]  device nodes"},
    {"exec", p_exec, "PATH [ARGS...]  execve"},
    {"execveat", p_execveat, "PATH [ARGS...]  execveat(fd, \"\", AT_EMPTY_PATH)"},
    {"exe-write", p_exe_write, "[--write-under PREFIX]  open /proc/*/exe for writing"},
    {"mem", p_mem, "MB  allocate and touch memory"},
    {"fill", p_fill, "PATH MB  write a file"},
    {"spin", p_spin, "SECONDS  burn CPU"},
    {"sleep", p_sleep, "SECONDS"},
    {"hostname", p_hostname, "[NAME]  sethostname"},
};

/* --unless-ns KIND:[INODE] (repeatable, before the probe name): refuse to
 * run when this process is in that namespace, i.e. the caller's own. The
 * tests pass the host's pid, mnt, uts and net namespaces, so that a runtime
 * that failed to isolate never lets a probe (umount /proc, sethostname,
 * kill -1, ...) act on the host. Returns the first non-option index. */
static int
guard_namespaces(int argc, char **argv, const char **refused)
{
    int i = 1;
    *refused = NULL;
    while (i + 1 < argc && !strcmp(argv[i], "--unless-ns")) {
        const char *spec = argv[i + 1];
        const char *colon = strchr(spec, ':');
        char path[64], link[64];
        ssize_t n;
        if (colon && (size_t)(colon - spec) < 16) {
            snprintf(path, sizeof path, "/proc/self/ns/%.*s", (int)(colon - spec), spec);
            n = readlink(path, link, sizeof link - 1);
            link[n > 0 ? n : 0] = 0;
            if (n > 0 && !strcmp(link, spec))
                *refused = spec;
        }
        i += 2;
    }
    return i;
}

int
main(int argc, char **argv)
{
    const char *refused;
    int first = guard_namespaces(argc, argv, &refused);
    if (first >= argc || !strcmp(argv[first], "--help")) {
        printf("usage: kennel-probe [--unless-ns KIND:[INODE]]... PROBE [ARGS...]\n\n");
        for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
            printf("  %-15s %s\n", probes[i].name, probes[i].help);
        return first >= argc ? 2 : 0;
    }
    if (refused) {
        j_begin(argv[first]);
        j_str("result", "refused");
        j_str("reason", "running in the caller's namespace");
        j_str("namespace", refused);
        return j_end();
    }
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        if (!strcmp(argv[first], probes[i].name))
            return probes[i].fn(argc - first - 1, argv + first + 1);
    }
    return usage_error(argv[first], "unknown probe");
}
