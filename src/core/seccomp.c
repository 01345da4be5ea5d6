/* seccomp.c - default deny list for agent workloads.
 *
 * The default action is ALLOW and a list of calls that open kernel attack
 * surface or escape namespace assumptions is refused. Where a call has to
 * fail in a particular way for libc to cope, it does: clone3 fails ENOSYS so
 * that glibc falls back to clone(), whose namespace flags we can inspect
 * (clone3 passes them in memory, out of a filter's reach). Foreign ABIs
 * (i386 through int 0x80, x32) are not in the filter's architecture list, so
 * libseccomp's bad-architecture action kills the process that tries them. */
#include "kn_seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

/* Refused with EPERM in every profile. */
static const char *const deny_always[] = {
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    "bpf",
    "perf_event_open",
    "kexec_load",
    "kexec_file_load",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "unshare",
    "setns",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "open_by_handle_at",
    "name_to_handle_at",
    "syslog",
    "vhangup",
    "iopl",
    "ioperm",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "memfd_secret",
    "uselib",
    "nfsservctl",
    "fanotify_init",
    NULL,
};

/* The deny-by-default profile's socket family (seed §5). */
static const char *const deny_sockets[] = {
    "socket",   "socketpair",  "connect",     "bind",     "listen",   "accept",
    "accept4",  "sendto",      "sendmsg",     "sendmmsg", "recvfrom", "recvmsg",
    "recvmmsg", "getpeername", "getsockname", "shutdown", NULL,
};

static const unsigned long long ns_clone_flags[] = {
    CLONE_NEWUSER, CLONE_NEWNS,  CLONE_NEWPID,    CLONE_NEWNET,
    CLONE_NEWUTS,  CLONE_NEWIPC, CLONE_NEWCGROUP, 0x00000080ULL /* CLONE_NEWTIME */,
};

static int
deny_name(scmp_filter_ctx ctx, const char *name, int err_no, kn_error_t *err)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR)
        return 0; /* not a syscall on this architecture */
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(err_no), nr, 0);
    if (rc < 0)
        return kn_error_set(err, -rc, "seccomp rule for %s", name);
    return 0;
}

static int
add_default_rules(scmp_filter_ctx ctx, kn_error_t *err)
{
    int rc;
    for (const char *const *n = deny_always; *n; n++)
        if (deny_name(ctx, *n, EPERM, err) < 0)
            return -1;
    if (deny_name(ctx, "clone3", ENOSYS, err) < 0)
        return -1;
    for (size_t i = 0; i < sizeof ns_clone_flags / sizeof ns_clone_flags[0]; i++) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, ns_clone_flags[i], ns_clone_flags[i]));
        if (rc < 0)
            return kn_error_set(err, -rc, "seccomp clone rule");
    }
    /* Terminal injection: TIOCSTI pushes input into a terminal, TIOCLINUX
     * can do the same on a virtual console. The request is an int, so only
     * the low 32 bits are compared. */
    const unsigned long long bad_ioctls[] = {TIOCSTI, TIOCLINUX};
    for (size_t i = 0; i < 2; i++) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffULL, bad_ioctls[i]));
        if (rc < 0)
            return kn_error_set(err, -rc, "seccomp ioctl rule");
    }
    /* Socket families: AF_UNIX, AF_INET, AF_INET6 and NETLINK_ROUTE (glibc's
     * getifaddrs needs it; in a private netns it sees only the sandbox's own
     * interfaces). Everything else (AF_PACKET, AF_VSOCK, AF_ALG, ...) fails. */
    /* AF_UNIX=1, AF_INET=2, AF_INET6=10 and AF_NETLINK=16 pass: refuse 0,
     * 3-9, 11-15 one by one and everything above 16 with one comparison. */
    for (unsigned fam = 0; fam < AF_NETLINK; fam++) {
        if (fam == AF_UNIX || fam == AF_INET || fam == AF_INET6)
            continue;
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
                              SCMP_A0(SCMP_CMP_EQ, fam));
        if (rc < 0)
            return kn_error_set(err, -rc, "seccomp socket family rule");
    }
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
                          SCMP_A0(SCMP_CMP_GT, AF_NETLINK));
    if (rc < 0)
        return kn_error_set(err, -rc, "seccomp socket family rule");
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 2,
                          SCMP_A0(SCMP_CMP_EQ, AF_NETLINK), SCMP_A2(SCMP_CMP_NE, 0));
    if (rc < 0)
        return kn_error_set(err, -rc, "seccomp netlink rule");
    /* Raw sockets of the allowed families. */
    const unsigned fams[] = {AF_INET, AF_INET6};
    for (size_t i = 0; i < 2; i++) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 2,
                              SCMP_A0(SCMP_CMP_EQ, fams[i]),
                              SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_RAW));
        if (rc < 0)
            return kn_error_set(err, -rc, "seccomp raw socket rule");
    }
    return 0;
}

static int
export_bpf(scmp_filter_ctx ctx, kn_bpf_t *out, kn_error_t *err)
{
    int rc = -1;
    int fd = memfd_create("kennel-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return kn_error_set(err, errno, "memfd_create");
    int r = seccomp_export_bpf(ctx, fd);
    if (r < 0) {
        kn_error_set(err, -r, "seccomp_export_bpf");
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        kn_error_set(err, errno, "fstat");
        goto out;
    }
    size_t n = (size_t)st.st_size;
    if (n == 0 || n % sizeof(struct sock_filter) || n / sizeof(struct sock_filter) > 0xffff) {
        kn_error_set(err, EINVAL, "seccomp filter of %zu bytes", n);
        goto out;
    }
    struct sock_filter *insns = malloc(n);
    if (!insns) {
        kn_error_set(err, ENOMEM, "seccomp filter");
        goto out;
    }
    if (pread(fd, insns, n, 0) != (ssize_t)n) {
        free(insns);
        kn_error_set(err, errno ? errno : EIO, "read seccomp filter");
        goto out;
    }
    out->insns = insns;
    out->len = (unsigned short)(n / sizeof(struct sock_filter));
    rc = 0;
out:
    close(fd);
    return rc;
}

int
kn_seccomp_compile(const kn_config_t *cfg, kn_bpf_t *out, kn_error_t *err)
{
    int rc = -1;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return kn_error_set(err, ENOMEM, "seccomp_init");
    /* Any architecture other than the native one is killed, not just refused:
     * a process that tries int 0x80 or x32 is not a legitimate workload. */
    if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0 ||
        seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) < 0) {
        kn_error_set(err, EINVAL, "seccomp attributes");
        goto out;
    }
    if (add_default_rules(ctx, err) < 0)
        goto out;
    if (cfg->deny_sockets)
        for (const char *const *n = deny_sockets; *n; n++)
            if (deny_name(ctx, *n, EPERM, err) < 0)
                goto out;
    rc = export_bpf(ctx, out, err);
out:
    seccomp_release(ctx);
    return rc;
}

int
kn_seccomp_compile_exec_notify(kn_bpf_t *out, kn_error_t *err)
{
    int rc = -1;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return kn_error_set(err, ENOMEM, "seccomp_init");
    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    int r;
    if ((r = seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, SCMP_SYS(execve), 0)) < 0 ||
        (r = seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, SCMP_SYS(execveat), 0)) < 0) {
        kn_error_set(err, -r, "seccomp notify rule");
        goto out;
    }
    rc = export_bpf(ctx, out, err);
out:
    seccomp_release(ctx);
    return rc;
}

#ifdef KN_HAVE_PRECOMPILED_BPF
#include "kn_bpf_precompiled.h"

static int
copy_prog(const struct sock_filter *insns, size_t len, kn_bpf_t *out, kn_error_t *err)
{
    out->insns = malloc(len * sizeof *insns);
    if (!out->insns)
        return kn_error_set(err, ENOMEM, "seccomp filter");
    memcpy(out->insns, insns, len * sizeof *insns);
    out->len = (unsigned short)len;
    return 0;
}

int
kn_seccomp_build(const kn_config_t *cfg, kn_bpf_t *out, kn_error_t *err)
{
    if (cfg->deny_sockets)
        return copy_prog(kn_bpf_deny_sockets,
                         sizeof kn_bpf_deny_sockets / sizeof(struct sock_filter), out, err);
    return copy_prog(kn_bpf_default, sizeof kn_bpf_default / sizeof(struct sock_filter), out, err);
}

int
kn_seccomp_build_exec_notify(kn_bpf_t *out, kn_error_t *err)
{
    return copy_prog(kn_bpf_exec_notify, sizeof kn_bpf_exec_notify / sizeof(struct sock_filter),
                     out, err);
}
#else
int
kn_seccomp_build(const kn_config_t *cfg, kn_bpf_t *out, kn_error_t *err)
{
    return kn_seccomp_compile(cfg, out, err);
}

int
kn_seccomp_build_exec_notify(kn_bpf_t *out, kn_error_t *err)
{
    return kn_seccomp_compile_exec_notify(out, err);
}
#endif

int
kn_seccomp_load(const kn_bpf_t *prog, int *listener, kn_error_t *err)
{
    struct sock_fprog fprog = {.len = prog->len, .filter = prog->insns};
    unsigned flags = listener ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0;
    long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
    if (fd < 0)
        return kn_error_set(err, errno, "load seccomp filter");
    if (listener) {
        fcntl((int)fd, F_SETFD, FD_CLOEXEC);
        *listener = (int)fd;
    }
    return 0;
}

int
kn_seccomp_notify_answer(int listener, bool *allow_next)
{
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    memset(&req, 0, sizeof req);
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0)
        return -1;
    memset(&resp, 0, sizeof resp);
    resp.id = req.id;
    if (*allow_next) {
        *allow_next = false;
        resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    } else {
        resp.error = -EPERM;
    }
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0 && errno != ENOENT)
        return -1;
    return 0;
}

void
kn_bpf_free(kn_bpf_t *prog)
{
    if (prog) {
        free(prog->insns);
        prog->insns = NULL;
        prog->len = 0;
    }
}
