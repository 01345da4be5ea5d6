/* kennel-probe - a small static program that tries one forbidden (or
 * ordinary) thing from inside a sandbox and reports what happened.
 *
 *   kennel-probe SUBCOMMAND [ARGS...]
 *
 * Every subcommand prints exactly one JSON object on one line to stdout and
 * exits 0, whatever the outcome: the test that ran it decides whether the
 * outcome is acceptable. "result" is "ok" when the operation succeeded, the
 * errno name (EPERM, ENOSYS, ...) when it failed, or "killed:SIGSYS" /
 * "exited:N" when it ran in a child that died. A few subcommands (mem,
 * forkmax, orphans, spin, sleep) exist to load the sandbox rather than to
 * probe it.
 *
 * The program is linked statically so that it runs inside any root, and it
 * is written so that running a probe on the host by mistake does no harm:
 * privileged calls are made with arguments that fail after the permission
 * check (a missing path, a bogus magic number), so the host sees ENOENT or
 * EINVAL where a sandbox must see EPERM. `mount`, `umount` and `remount` are
 * the exception and must only run inside a sandbox. */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/if_ether.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/landlock.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <linux/userfaultfd.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif
#ifndef __X32_SYSCALL_BIT
#define __X32_SYSCALL_BIT 0x40000000
#endif

/* ---- one JSON object, built in a fixed buffer and printed once ---- */

#define OUT_MAX (256 * 1024)
static char out_buf[OUT_MAX];
static size_t out_len;
static int out_first = 1; /* no comma before the next member */

static void
out_raw(const char *s, size_t n)
{
    if (out_len + n >= OUT_MAX - 8)
        n = OUT_MAX - 8 - out_len; /* truncate rather than overflow */
    memcpy(out_buf + out_len, s, n);
    out_len += n;
}

static void
out_puts(const char *s)
{
    out_raw(s, strlen(s));
}

static void
out_quoted(const char *s, size_t n)
{
    out_puts("\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            out_raw(esc, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            /* non-ASCII bytes are escaped one by one so the line stays valid JSON */
            snprintf(esc, sizeof esc, "\\u%04x", c);
            out_puts(esc);
        } else {
            out_raw((const char *)&c, 1);
        }
    }
    out_puts("\"");
}

static void
out_sep(void)
{
    if (!out_first)
        out_puts(",");
    out_first = 0;
}

static void
out_key(const char *key)
{
    out_sep();
    out_quoted(key, strlen(key));
    out_puts(":");
    out_first = 1; /* the value that follows needs no comma */
}

static void
j_str(const char *key, const char *val)
{
    out_key(key);
    out_quoted(val, strlen(val));
    out_first = 0;
}

static void
j_strn(const char *key, const char *val, size_t n)
{
    out_key(key);
    out_quoted(val, n);
    out_first = 0;
}

static void
j_int(const char *key, long long v)
{
    char num[32];
    out_key(key);
    snprintf(num, sizeof num, "%lld", v);
    out_puts(num);
    out_first = 0;
}

static void
j_bool(const char *key, int v)
{
    out_key(key);
    out_puts(v ? "true" : "false");
    out_first = 0;
}

/* Nested containers: j_open("key", '{') ... j_close('}'). A NULL key opens
 * an anonymous element inside an array. */
static void
j_open(const char *key, char bracket)
{
    char b[2] = {bracket, 0};
    if (key)
        out_key(key);
    else
        out_sep();
    out_puts(b);
    out_first = 1;
}

static void
j_close(char bracket)
{
    char b[2] = {bracket, 0};
    out_puts(b);
    out_first = 0;
}

/* An array element that is a string. */
static void
j_elem(const char *val)
{
    out_sep();
    out_quoted(val, strlen(val));
}

static void
j_begin(const char *probe)
{
    out_len = 0;
    out_first = 1;
    out_puts("{");
    j_str("probe", probe);
}

static int
j_end(void)
{
    ssize_t n;
    size_t off = 0;
    out_puts("}\n");
    while (off < out_len) {
        n = write(STDOUT_FILENO, out_buf + off, out_len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    return 0;
}

/* ---- outcome names ---- */

static const char *
errname(int e)
{
    static char buf[16];
    const char *n = e ? strerrorname_np(e) : NULL;
    if (!e)
        return "ok";
    if (n)
        return n;
    snprintf(buf, sizeof buf, "E%d", e);
    return buf;
}

/* "ok" when rc >= 0, else the errno name. Call right after the syscall. */
static const char *
rc_name(long rc)
{
    return rc >= 0 ? "ok" : errname(errno);
}

static const char *
signame(int sig)
{
    static char buf[32];
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev)
        snprintf(buf, sizeof buf, "SIG%s", abbrev);
    else
        snprintf(buf, sizeof buf, "SIG%d", sig);
    return buf;
}

/* Runs fn in a forked child and names how it ended. fn returns 0 for
 * success or an errno value, which travels back as the exit status; a child
 * killed by seccomp (SIGSYS) or anything else is reported as killed:SIG. */
static const char *
run_in_child(int (*fn)(void *), void *arg)
{
    static char buf[48];
    int status;
    pid_t pid = fork();
    if (pid < 0)
        return errname(errno);
    if (pid == 0)
        _exit(fn(arg) & 0xff);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return errname(errno);
    }
    if (WIFSIGNALED(status)) {
        snprintf(buf, sizeof buf, "killed:%s", signame(WTERMSIG(status)));
        return buf;
    }
    return errname(WEXITSTATUS(status));
}

static pid_t
spawn_pauser(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        for (;;)
            pause();
    }
    return pid;
}

static void
kill_and_reap(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

static long
parse_long(const char *s, long dflt)
{
    char *end;
    long v;
    if (!s)
        return dflt;
    errno = 0;
    v = strtol(s, &end, 0);
    if (errno || *end)
        return dflt;
    return v;
}

static uint64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- network ---- */

static int
make_addr(const char *host, const char *port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    long p = parse_long(port, -1);
    memset(ss, 0, sizeof *ss);
    if (p < 0 || p > 65535)
        return -1;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)p);
        *len = sizeof *in4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)p);
        *len = sizeof *in6;
        return 0;
    }
    return -1;
}

static int
usage_error(const char *probe, const char *what)
{
    j_begin(probe);
    j_str("result", "usage");
    j_str("error", what);
    return j_end();
}

/* net-tcp ADDR PORT: connect with a 2 s limit; "stage" says which call failed. */
static int
p_net_tcp(int argc, char **argv)
{
    struct sockaddr_storage ss;
    socklen_t len;
    struct pollfd pfd;
    int fd, soerr = 0;
    socklen_t sl = sizeof soerr;

    if (argc < 2 || make_addr(argv[0], argv[1], &ss, &len) < 0)
        return usage_error("net-tcp", "net-tcp ADDR PORT");
    j_begin("net-tcp");
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        j_str("result", errname(errno));
        j_str("stage", "socket");
        return j_end();
    }
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        if (errno != EINPROGRESS) {
            j_str("result", errname(errno));
            j_str("stage", "connect");
            return j_end();
        }
        pfd.fd = fd;
        pfd.events = POLLOUT;
        if (poll(&pfd, 1, 2000) == 0) {
            j_str("result", "ETIMEDOUT");
            j_str("stage", "connect");
            return j_end();
        }
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    }
    j_str("result", errname(soerr));
    j_str("stage", "connect");
    if (!soerr) {
        static const char msg[] = "kennel-probe-tcp\n";
        j_str("send", rc_name(send(fd, msg, sizeof msg - 1, MSG_NOSIGNAL)));
    }
    close(fd);
    return j_end();
}

/* net-udp ADDR PORT: send one datagram. */
static int
p_net_udp(int argc, char **argv)
{
    static const char msg[] = "kennel-probe-udp\n";
    struct sockaddr_storage ss;
    socklen_t len;
    int fd;

    if (argc < 2 || make_addr(argv[0], argv[1], &ss, &len) < 0)
        return usage_error("net-udp", "net-udp ADDR PORT");
    j_begin("net-udp");
    fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        j_str("result", errname(errno));
        j_str("stage", "socket");
        return j_end();
    }
    j_str("result", rc_name(sendto(fd, msg, sizeof msg - 1, 0, (struct sockaddr *)&ss, len)));
    j_str("stage", "sendto");
    close(fd);
    return j_end();
}

/* socket(2) with bits above 31 set in the family: the kernel takes an int
 * and drops them, a filter that compares all 64 bits does not. */
static long
socket_highbits(int family, int type, int proto)
{
    return syscall(SYS_socket, (unsigned long)family | (1UL << 32), type | SOCK_CLOEXEC, proto);
}

static int
p_socket_simple(const char *probe, int family, int type, int proto)
{
    int fd = socket(family, type | SOCK_CLOEXEC, proto);
    long fd2;
    j_begin(probe);
    j_str("result", rc_name(fd));
    if (fd >= 0)
        close(fd);
    fd2 = socket_highbits(family, type, proto);
    j_str("highbits", rc_name(fd2));
    if (fd2 >= 0)
        close((int)fd2);
    return j_end();
}

static int
p_raw(int argc, char **argv)
{
    return p_socket_simple("raw", AF_INET, SOCK_RAW, IPPROTO_ICMP);
}

static int
p_af_packet(int argc, char **argv)
{
    return p_socket_simple("af-packet", AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
}

/* Creates the socket only: a vsock connect would leave the machine. */
static int
p_af_vsock(int argc, char **argv)
{
    return p_socket_simple("af-vsock", AF_VSOCK, SOCK_STREAM, 0);
}

/* socket inet|inet6|unix: creating any socket at all. */
static int
p_socket(int argc, char **argv)
{
    const char *kind = argc > 0 ? argv[0] : "inet";
    int family = AF_INET;
    if (!strcmp(kind, "inet6"))
        family = AF_INET6;
    else if (!strcmp(kind, "unix"))
        family = AF_UNIX;
    return p_socket_simple("socket", family, SOCK_STREAM, 0);
}

/* socket-families: every address family 0..63 with the common socket
 * types; lists the families for which some socket could be created. A
 * family the kernel refuses with EAFNOSUPPORT counts as closed. */
static int
p_socket_families(int argc, char **argv)
{
    static const int types[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET};
    j_begin("socket-families");
    j_open("opened", '[');
    for (int fam = 0; fam < 64; fam++) {
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            int fd = socket(fam, types[t] | SOCK_CLOEXEC, 0);
            if (fd >= 0) {
                char num[16];
                close(fd);
                snprintf(num, sizeof num, "%d", fam);
                out_sep();
                out_puts(num);
                break;
            }
        }
    }
    j_close(']');
    j_str("result", "ok");
    return j_end();
}

static int
p_socketpair(int argc, char **argv)
{
    int sv[2];
    int rc = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    j_begin("socketpair");
    j_str("result", rc_name(rc));
    if (rc == 0) {
        close(sv[0]);
        close(sv[1]);
    }
    return j_end();
}

/* netlink: every family but route must be refused; route is reported apart. */
static int
p_netlink(int argc, char **argv)
{
    static const struct {
        const char *name;
        int proto;
    } fams[] = {
        {"route", NETLINK_ROUTE},         {"sock_diag", NETLINK_SOCK_DIAG},
        {"xfrm", NETLINK_XFRM},           {"audit", NETLINK_AUDIT},
        {"netfilter", NETLINK_NETFILTER}, {"kobject_uevent", NETLINK_KOBJECT_UEVENT},
        {"generic", NETLINK_GENERIC},
    };
    const char *worst = NULL;
    j_begin("netlink");
    j_open("families", '{');
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, fams[i].proto);
        const char *r = rc_name(fd);
        j_str(fams[i].name, r);
        if (fd >= 0)
            close(fd);
        if (fams[i].proto == NETLINK_ROUTE)
            continue;
        if (!worst || !strcmp(r, "ok"))
            worst = r;
    }
    j_close('}');
    {
        long fd = socket_highbits(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT);
        j_str("audit_highbits", rc_name(fd));
        if (fd >= 0)
            close((int)fd);
    }
    /* result: "ok" if any non-route family opened, else the first refusal */
    j_str("result", worst ? worst : "ok");
    return j_end();
}

/* unix PATH|@ABSTRACT: connect to a unix socket. */
static int
p_unix(int argc, char **argv)
{
    struct sockaddr_un sun;
    socklen_t len;
    int fd, rc;
    size_t n;

    if (argc < 1 || strlen(argv[0]) >= sizeof sun.sun_path)
        return usage_error("unix", "unix PATH|@NAME");
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    n = strlen(argv[0]);
    memcpy(sun.sun_path, argv[0], n);
    if (argv[0][0] == '@')
        sun.sun_path[0] = '\0'; /* abstract namespace */
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (argv[0][0] == '@' ? 0 : 1));
    j_begin("unix");
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        j_str("result", errname(errno));
        j_str("stage", "socket");
        return j_end();
    }
    rc = connect(fd, (struct sockaddr *)&sun, len);
    j_str("result", rc_name(rc));
    j_str("stage", "connect");
    close(fd);
    return j_end();
}

/* ifaces: the interfaces of this network namespace, from /proc/net/dev. */
static int
p_ifaces(int argc, char **argv)
{
    char line[512];
    int n = 0;
    FILE *f = fopen("/proc/net/dev", "re");
    j_begin("ifaces");
    if (!f) {
        j_str("result", errname(errno));
        return j_end();
    }
    j_open("ifaces", '[');
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        char *name = line;
        if (++n <= 2 || !colon)
            continue; /* two header lines */
        *colon = 0;
        while (*name == ' ')
            name++;
        j_elem(name);
    }
    j_close(']');
    fclose(f);
    j_str("result", "ok");
    return j_end();
}

/* ---- processes ---- */

static int
child_traceme(void *arg)
{
    return ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0 ? errno : 0;
}

/* ptrace [attach|traceme|PID] */
static int
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
static int
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
static int
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
static int
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

static void
read_small(const char *path, char *buf, size_t size)
{
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    buf[0] = 0;
    if (fd < 0)
        return;
    n = read(fd, buf, size - 1);
    buf[n > 0 ? n : 0] = 0;
    close(fd);
}

/* A "Key:\tvalue" line of /proc/PID/status, whitespace trimmed. */
static int
status_field(const char *status, const char *key, char *val, size_t size)
{
    size_t klen = strlen(key);
    const char *p = status;
    while (p && *p) {
        if (!strncmp(p, key, klen) && p[klen] == ':') {
            const char *v = p + klen + 1;
            size_t n = 0;
            while (*v == ' ' || *v == '\t')
                v++;
            while (v[n] && v[n] != '\n' && n + 1 < size)
                n++;
            memcpy(val, v, n);
            val[n] = 0;
            return 0;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    val[0] = 0;
    return -1;
}

/* ps: every process visible in /proc, with its name, parent and uid. */
static int
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
static int
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
static int
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
static int
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
static int
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

static int
p_int80(int argc, char **argv)
{
    j_begin("int80");
    j_str("result", run_in_child(child_int80, NULL));
    return j_end();
}

static int
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

static int
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

static int
p_clone_ns(int argc, char **argv)
{
    return ns_matrix("clone-ns", child_clone_ns);
}

static int
p_unshare(int argc, char **argv)
{
    return ns_matrix("unshare", child_unshare);
}

/* userns: the single most important namespace to refuse. */
static int
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

static int
p_setns(int argc, char **argv)
{
    j_begin("setns");
    j_str("result", run_in_child(child_setns, "/proc/self/ns/uts"));
    return j_end();
}

/* mount [TARGET]: tmpfs on a fresh directory. Inside a sandbox only. */
static int
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
static int
p_remount(int argc, char **argv)
{
    const char *target = argc > 0 ? argv[0] : "/";
    j_begin("remount");
    j_str("target", target);
    j_str("result", rc_name(mount(NULL, target, NULL, MS_REMOUNT | MS_BIND, NULL)));
    return j_end();
}

/* umount PATH: uncover what a mount hides. Inside a sandbox only. */
static int
p_umount(int argc, char **argv)
{
    const char *target = argc > 0 ? argv[0] : "/proc";
    j_begin("umount");
    j_str("target", target);
    j_str("result", rc_name(umount2(target, MNT_DETACH)));
    return j_end();
}

/* newmount: the new mount API, which a filter on mount(2) alone misses. */
static int
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
    return j_end();
}

/* pivot-root: missing paths, so the host fails with ENOENT after the
 * permission check; a sandbox must fail before it with EPERM. */
static int
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

static int
p_chroot(int argc, char **argv)
{
    j_begin("chroot");
    j_str("result", run_in_child(child_chroot, NULL));
    return j_end();
}

/* ---- kernel attack surface ---- */

static int
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
static int
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

static int
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
static int
p_userfaultfd(int argc, char **argv)
{
    long fd = syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
    j_begin("userfaultfd");
    j_str("result", rc_name(fd));
    if (fd >= 0)
        close((int)fd);
    return j_end();
}

static int
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
static int
p_kexec(int argc, char **argv)
{
    j_begin("kexec");
    j_str("result", rc_name(syscall(SYS_kexec_load, 0UL, 100000UL, NULL, 0UL)));
    return j_end();
}

static int
p_reboot(int argc, char **argv)
{
    j_begin("reboot");
    j_str("result", rc_name(syscall(SYS_reboot, 0xfee1dead, 0x6b656e6e, 0x6b656e6e, NULL)));
    return j_end();
}

static int
p_swapon(int argc, char **argv)
{
    j_begin("swapon");
    j_str("result", rc_name(syscall(SYS_swapon, "/kennel-probe-nonexistent-swap", 0)));
    j_str("swapoff", rc_name(syscall(SYS_swapoff, "/kennel-probe-nonexistent-swap")));
    return j_end();
}

static int
p_acct(int argc, char **argv)
{
    j_begin("acct");
    j_str("result", rc_name(syscall(SYS_acct, "/kennel-probe-nonexistent/acct")));
    return j_end();
}

static int
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
p_iopl(int argc, char **argv)
{
    j_begin("iopl");
    j_str("result", run_in_child(child_iopl, NULL));
    return j_end();
}

static int
p_syslog(int argc, char **argv)
{
    j_begin("syslog");
    j_str("result", rc_name(klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0)));
    return j_end();
}

/* open-by-handle: the "shocker" escape, opening a host inode by handle. */
static int
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

static int
p_landlock(int argc, char **argv)
{
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    j_begin("landlock");
    j_str("result", rc_name(abi));
    j_int("abi", abi);
    return j_end();
}

/* ---- terminal ---- */

static const char *
tiocsti_on(int fd, unsigned long cmd)
{
    static const char inject[] = "KENNEL_TIOCSTI_INJECTED\n";
    for (size_t i = 0; i < sizeof inject - 1; i++) {
        if (syscall(SYS_ioctl, fd, cmd, &inject[i]) < 0)
            return errname(errno);
    }
    return "ok";
}

/* tiocsti: push input into the terminal on fd 0 and on /dev/tty, also with
 * the ioctl number's upper 32 bits set (the kernel ignores them, a careless
 * filter does not). Then TIOCLINUX, and an attempt to take the terminal as
 * controlling tty. "result" is "ok" if any injection got through. */
static int
p_tiocsti(int argc, char **argv)
{
    const char *r0, *rhigh, *rtty = "ENXIO", *result;
    char subcode = 6; /* TIOCL_GETSHIFTSTATE: a read-only subcode */
    int tty;

    j_begin("tiocsti");
    j_bool("stdin_isatty", isatty(0));
    j_str("sctty", rc_name(ioctl(0, TIOCSCTTY, 0)));
    r0 = tiocsti_on(0, TIOCSTI);
    rhigh = tiocsti_on(0, 0x100000000UL | TIOCSTI);
    tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (tty >= 0) {
        rtty = tiocsti_on(tty, TIOCSTI);
        close(tty);
    } else {
        rtty = errname(errno);
    }
    j_str("stdin", r0);
    j_str("stdin_highbits", rhigh);
    j_str("dev_tty", rtty);
    j_str("tioclinux", rc_name(ioctl(0, TIOCLINUX, &subcode)));
    if (!strcmp(r0, "ok") || !strcmp(rhigh, "ok") || !strcmp(rtty, "ok"))
        result = "ok";
    else
        result = r0;
    j_str("result", result);
    return j_end();
}

/* ---- files ---- */

static int
p_fds(int argc, char **argv)
{
    int all = argc > 0 && !strcmp(argv[0], "all");
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    j_begin("fds");
    if (!d) {
        j_str("result", errname(errno));
        return j_end();
    }
    j_open("fds", '{');
    while ((de = readdir(d))) {
        char path[300], target[PATH_MAX];
        ssize_t n;
        if (de->d_name[0] == '.' || parse_long(de->d_name, -1) == dirfd(d))
            continue;
        snprintf(path, sizeof path, "/proc/self/fd/%s", de->d_name);
        n = readlink(path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        j_str(de->d_name, n > 0 ? target : errname(errno));
    }
    j_close('}');
    closedir(d);
    if (all) {
        /* every other visible process: pid -> {fd: target or errno} */
        DIR *procs = opendir("/proc");
        j_open("others", '{');
        while (procs && (de = readdir(procs))) {
            char dir[300];
            DIR *fdd;
            struct dirent *fe;
            if (!isdigit((unsigned char)de->d_name[0]) || parse_long(de->d_name, 0) == getpid())
                continue;
            snprintf(dir, sizeof dir, "/proc/%s/fd", de->d_name);
            fdd = opendir(dir);
            if (!fdd) {
                j_str(de->d_name, errname(errno));
                continue;
            }
            j_open(de->d_name, '{');
            while ((fe = readdir(fdd))) {
                char path[600], target[PATH_MAX];
                ssize_t n;
                if (fe->d_name[0] == '.')
                    continue;
                snprintf(path, sizeof path, "%s/%s", dir, fe->d_name);
                n = readlink(path, target, sizeof target - 1);
                target[n > 0 ? n : 0] = 0;
                j_str(fe->d_name, n > 0 ? target : errname(errno));
            }
            j_close('}');
            closedir(fdd);
        }
        j_close('}');
        if (procs)
            closedir(procs);
    }
    j_str("result", "ok");
    return j_end();
}

static int
p_env(int argc, char **argv)
{
    j_begin("env");
    j_open("env", '{');
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        char key[256];
        size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
        if (n >= sizeof key)
            n = sizeof key - 1;
        memcpy(key, *e, n);
        key[n] = 0;
        j_str(key, eq ? eq + 1 : "");
    }
    j_close('}');
    j_str("result", "ok");
    return j_end();
}

/* write PATH [TEXT]: create or truncate PATH and write TEXT. */
static int
p_write(int argc, char **argv)
{
    const char *text = argc > 1 ? argv[1] : "kennel-probe\n";
    int fd;
    ssize_t n;
    if (argc < 1)
        return usage_error("write", "write PATH [TEXT]");
    j_begin("write");
    j_str("path", argv[0]);
    fd = open(argv[0], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        j_str("result", errname(errno));
        return j_end();
    }
    n = write(fd, text, strlen(text));
    j_str("result", n == (ssize_t)strlen(text) ? "ok" : errname(n < 0 ? errno : EIO));
    close(fd);
    return j_end();
}

/* open-w PATH: open an existing file for writing, write nothing. */
static int
p_open_w(int argc, char **argv)
{
    int fd;
    if (argc < 1)
        return usage_error("open-w", "open-w PATH");
    fd = open(argv[0], O_WRONLY | O_CLOEXEC);
    j_begin("open-w");
    j_str("path", argv[0]);
    j_str("result", rc_name(fd));
    if (fd >= 0)
        close(fd);
    return j_end();
}

static int
p_read(int argc, char **argv)
{
    char buf[8192];
    ssize_t n;
    int fd;
    if (argc < 1)
        return usage_error("read", "read PATH");
    fd = open(argv[0], O_RDONLY | O_CLOEXEC);
    j_begin("read");
    j_str("path", argv[0]);
    if (fd < 0) {
        j_str("result", errname(errno));
        return j_end();
    }
    n = read(fd, buf, sizeof buf);
    j_str("result", rc_name(n));
    if (n > 0)
        j_strn("data", buf, (size_t)n);
    close(fd);
    return j_end();
}

static int
p_mkdir(int argc, char **argv)
{
    if (argc < 1)
        return usage_error("mkdir", "mkdir PATH");
    j_begin("mkdir");
    j_str("path", argv[0]);
    j_str("result", rc_name(mkdir(argv[0], 0755)));
    return j_end();
}

static int
p_ls(int argc, char **argv)
{
    const char *path = argc > 0 ? argv[0] : ".";
    DIR *d = opendir(path);
    struct dirent *de;
    j_begin("ls");
    j_str("path", path);
    if (!d) {
        j_str("result", errname(errno));
        return j_end();
    }
    j_open("entries", '{');
    while ((de = readdir(d))) {
        struct stat st;
        const char *kind = "other";
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (S_ISDIR(st.st_mode))
                kind = "dir";
            else if (S_ISREG(st.st_mode))
                kind = "file";
            else if (S_ISLNK(st.st_mode))
                kind = "link";
            else if (S_ISSOCK(st.st_mode))
                kind = "socket";
            else if (S_ISCHR(st.st_mode))
                kind = "chr";
            else if (S_ISBLK(st.st_mode))
                kind = "blk";
            else if (S_ISFIFO(st.st_mode))
                kind = "fifo";
        }
        j_str(de->d_name, kind);
    }
    j_close('}');
    closedir(d);
    j_str("result", "ok");
    return j_end();
}

/* mknod DIR: a block device and a char device node in DIR. */
static int
p_mknod(int argc, char **argv)
{
    char blk[PATH_MAX], chr[PATH_MAX];
    const char *dir = argc > 0 ? argv[0] : "/tmp";
    int rb, rc;
    snprintf(blk, sizeof blk, "%s/kennel-probe-blk", dir);
    snprintf(chr, sizeof chr, "%s/kennel-probe-mem", dir);
    rb = mknod(blk, S_IFBLK | 0600, makedev(253, 0));
    j_begin("mknod");
    j_str("result", rc_name(rb));
    rc = mknod(chr, S_IFCHR | 0600, makedev(1, 1)); /* /dev/mem */
    j_str("chr_mem", rc_name(rc));
    if (rb == 0)
        unlink(blk);
    if (rc == 0)
        unlink(chr);
    return j_end();
}

/* exec PATH [ARGS...]: only prints when execve fails. */
static int
p_exec(int argc, char **argv)
{
    if (argc < 1)
        return usage_error("exec", "exec PATH [ARGS...]");
    execv(argv[0], argv);
    j_begin("exec");
    j_str("path", argv[0]);
    j_str("result", errname(errno));
    return j_end();
}

/* execveat PATH [ARGS...]: exec through a descriptor (fexecve), the route
 * a filter that only knows execve misses. Prints only when it fails. */
static int
p_execveat(int argc, char **argv)
{
    int fd;
    if (argc < 1)
        return usage_error("execveat", "execveat PATH [ARGS...]");
    fd = open(argv[0], O_RDONLY | O_CLOEXEC);
    j_begin("execveat");
    j_str("path", argv[0]);
    if (fd < 0) {
        j_str("result", errname(errno));
        j_str("stage", "open");
        return j_end();
    }
    syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH);
    j_str("result", errname(errno));
    j_str("stage", "execveat");
    return j_end();
}

/* exe-write [--write-under PREFIX]: open every visible /proc/PID/exe for
 * writing (the runc CVE-2019-5736 route to the runtime's binary). With
 * --write-under, a marker is written through any descriptor that opened onto
 * a file whose path starts with PREFIX, so that the host can see the damage
 * on a copy it made for the purpose; nothing else is ever written. This
 * probe's own binary is skipped. */
static int
p_exe_write(int argc, char **argv)
{
    const char *prefix = argc > 1 && !strcmp(argv[0], "--write-under") ? argv[1] : NULL;
    DIR *d = opendir("/proc");
    struct dirent *de;
    struct stat self;
    int any = 0;
    stat("/proc/self/exe", &self);
    j_begin("exe-write");
    j_open("targets", '{');
    while (d && (de = readdir(d))) {
        char path[300], target[PATH_MAX], key[320];
        struct stat st;
        ssize_t n;
        int fd;
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        snprintf(path, sizeof path, "/proc/%s/exe", de->d_name);
        n = readlink(path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        if (stat(path, &st) == 0 && st.st_dev == self.st_dev && st.st_ino == self.st_ino)
            continue;
        snprintf(key, sizeof key, "%s %s", de->d_name, n > 0 ? target : "?");
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 && errno == ETXTBSY) {
            /* wait for the process to exec something else, as runc's attacker did */
            for (int i = 0; i < 20 && fd < 0 && errno == ETXTBSY; i++) {
                usleep(5000);
                fd = open(path, O_WRONLY | O_CLOEXEC);
            }
        }
        j_str(key, rc_name(fd));
        if (fd >= 0) {
            any = 1;
            if (prefix && n > 0 && !strncmp(target, prefix, strlen(prefix))) {
                static const char pwn[] = "KENNEL-PWNED";
                j_str("wrote", rc_name(pwrite(fd, pwn, sizeof pwn - 1, 0)));
            }
            close(fd);
        }
    }
    j_close('}');
    if (d)
        closedir(d);
    j_str("result", any ? "ok" : "EACCES");
    return j_end();
}

/* ---- load ---- */

/* mem MB: allocate and touch MB mebibytes; on failure report the errno. */
static int
p_mem(int argc, char **argv)
{
    long mb = parse_long(argc > 0 ? argv[0] : NULL, 64);
    long done = 0;
    int err = 0;
    for (; done < mb; done++) {
        char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            err = errno;
            break;
        }
        for (size_t i = 0; i < (1u << 20); i += 4096)
            p[i] = (char)(i | 1);
    }
    j_begin("mem");
    j_int("mebibytes", done);
    j_str("result", errname(err));
    return j_end();
}

/* fill PATH MB: write up to MB mebibytes into PATH. */
static int
p_fill(int argc, char **argv)
{
    static char chunk[1 << 20];
    long mb = parse_long(argc > 1 ? argv[1] : NULL, 64);
    long long written = 0;
    int err = 0, fd;
    if (argc < 1)
        return usage_error("fill", "fill PATH MB");
    signal(SIGXFSZ, SIG_IGN); /* so RLIMIT_FSIZE shows as EFBIG */
    memset(chunk, 'k', sizeof chunk);
    fd = open(argv[0], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = errno;
    } else {
        while (written < (long long)mb << 20) {
            ssize_t n = write(fd, chunk, sizeof chunk);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                err = errno;
                break;
            }
            if (n == 0) {
                err = ENOSPC;
                break;
            }
            written += n;
        }
        if (!err && fsync(fd) < 0)
            err = errno;
        close(fd);
    }
    j_begin("fill");
    j_str("path", argv[0]);
    j_int("bytes", written);
    j_str("result", errname(err));
    return j_end();
}

/* spin SECONDS: burn CPU for SECONDS of wall time, report CPU time used. */
static int
p_spin(int argc, char **argv)
{
    double secs = argc > 0 ? strtod(argv[0], NULL) : 1.0;
    uint64_t end = now_ms() + (uint64_t)(secs * 1000.0);
    volatile uint64_t x = 0;
    struct rusage ru;
    while (now_ms() < end) {
        for (int i = 0; i < 100000; i++)
            x += (uint64_t)i;
    }
    getrusage(RUSAGE_SELF, &ru);
    j_begin("spin");
    j_int("user_ms", ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000);
    j_int("sys_ms", ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000);
    j_int("wall_ms", (long long)(secs * 1000.0));
    j_str("result", "ok");
    return j_end();
}

static int
p_sleep(int argc, char **argv)
{
    double secs = argc > 0 ? strtod(argv[0], NULL) : 1.0;
    struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    j_begin("sleep");
    j_str("result", "ok");
    return j_end();
}

static int
p_hostname(int argc, char **argv)
{
    struct utsname u;
    j_begin("hostname");
    if (argc > 0)
        j_str("result", rc_name(sethostname(argv[0], strlen(argv[0]))));
    else
        j_str("result", "ok");
    uname(&u);
    j_str("nodename", u.nodename);
    return j_end();
}

/* ---- dispatch ---- */

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

int
main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        printf("usage: kennel-probe PROBE [ARGS...]\n\n");
        for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
            printf("  %-15s %s\n", probes[i].name, probes[i].help);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        if (!strcmp(argv[1], probes[i].name))
            return probes[i].fn(argc - 2, argv + 2);
    }
    return usage_error(argv[1], "unknown probe");
}
