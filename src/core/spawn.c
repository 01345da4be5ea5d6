/* spawn.c - the containment order, parent and child sides.
 *
 * Parent (the launcher, outside):            Child (init of the sandbox):
 *   compile seccomp filters
 *   create the cgroup with its limits
 *   clone(NEWUSER|NEWPID|NEWNS|NEWNET|
 *         NEWIPC|NEWUTS)            ───────►  wait for GO
 *   write uid/gid maps, join the cgroup
 *   send GO                         ───────►  become root of the userns, drop host groups
 *                                             unshare(NEWCGROUP)  (after joining: the
 *                                               cgroup namespace is rooted at our cgroup)
 *                                             hostname, mounts + pivot_root, lo up,
 *                                             rlimits, setsid (no host terminal)
 *                              ◄───────       READY (or ERROR {errno, message})
 *   copy uploads in via /proc/PID/root
 *   send EXEC                       ───────►  fork the program; in the program:
 *                                               stdio, close every other fd, ids,
 *                                               cwd, drop capabilities,
 *                                               no_new_privs, landlock, seccomp, exec
 *                                             init: reap, forward signals, answer the
 *                                               exec notification, report STATUS
 *                              ◄───────       STATUS {wait status}
 *   copy downloads out, send BYE    ───────►  exit (the kernel kills whatever is left)
 *
 * Errors in the child travel back over the sync socket so the launcher can
 * report the real cause; the child never prints. */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "caps.h"
#include "cgroup.h"
#include "compat.h"
#include "landlock.h"
#include "mount.h"
#include "net.h"
#include "sandbox_internal.h"
#include "kn_seccomp.h"
#include "util.h"
#include "wlayer.h"

enum { MSG_GO = 1, MSG_READY, MSG_ERROR, MSG_EXEC, MSG_STATUS, MSG_BYE };

typedef struct msg {
    int type;
    int value; /* errno for ERROR, wait status for STATUS */
    char text[KN_ERROR_MSG_MAX];
} msg_t;

static int
send_msg(int fd, int type, int value, const char *text)
{
    msg_t m = {.type = type, .value = value};
    if (text)
        snprintf(m.text, sizeof m.text, "%s", text);
    size_t len = offsetof(msg_t, text) + (text ? strlen(m.text) + 1 : 0);
    ssize_t n;
    do
        n = send(fd, &m, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}

/* Returns 1 with a message, 0 on EOF, -1 on error. */
static int
recv_msg(int fd, msg_t *m)
{
    memset(m, 0, sizeof *m);
    ssize_t n;
    do
        n = recv(fd, m, sizeof *m, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if (n == 0)
        return 0;
    m->text[sizeof m->text - 1] = '\0';
    return 1;
}

/* ------------------------------------------------------------------ child */

typedef struct child_ctx {
    const kn_config_t *cfg;
    const kn_stdio_t *io;
    int sync;
    bool rootmap; /* root inside maps to KN_ROOTMAP_BASE */
    const char *id;
    const int *bind_fds;
    int wlayer_fd; /* the launcher's writable layer, or -1 */
    const kn_cgroup_t *cg;
    bool no_cgroup; /* set at EXEC: limit memory with RLIMIT_AS instead */
    const kn_bpf_t *filter;
    const kn_bpf_t *init_filter; /* filter without the socket calls init needs */
    const kn_bpf_t *exec_notify; /* NULL unless cfg->deny_exec */
} child_ctx_t;

static __attribute__((noreturn)) void
child_fail(int sync, const kn_error_t *err)
{
    send_msg(sync, MSG_ERROR, err->code, err->msg);
    _exit(KN_CHILD_SETUP_FAILED);
}

static int
set_rlimits(const kn_config_t *cfg, kn_error_t *err)
{
    struct {
        int res;
        uint64_t val;
    } lims[] = {
        {RLIMIT_CORE, 0},
        {RLIMIT_NOFILE, cfg->nofile},
        {RLIMIT_FSIZE, cfg->fsize},
        /* Second line behind the pids cgroup; counted per user namespace. */
        {RLIMIT_NPROC, cfg->pids},
    };
    for (size_t i = 0; i < sizeof lims / sizeof lims[0]; i++) {
        if (lims[i].res != RLIMIT_CORE && lims[i].val == 0)
            continue;
        struct rlimit rl = {lims[i].val, lims[i].val};
        if (setrlimit(lims[i].res, &rl) < 0)
            return kn_error_set(err, errno, "setrlimit %d", lims[i].res);
    }
    return 0;
}

/* Appends "name=us " to the child's timing report (sent with READY). */
static void
lap(char *report, size_t len, const char *name, uint64_t *t)
{
    uint64_t now = kn_now_us();
    size_t used = strlen(report);
    snprintf(report + used, len - used, "%s=%llu ", name, (unsigned long long)(now - *t));
    *t = now;
}

/* The one place the sandbox's containment is applied, in order. */
static int
contain(const child_ctx_t *c, char *report, size_t rlen, kn_error_t *err)
{
    const kn_config_t *cfg = c->cfg;
    uint64_t t = kn_now_us();
    if (c->rootmap) {
        /* Host groups (root's own among them) must not come along. */
        if (setgroups(0, NULL) < 0)
            return kn_error_set(err, errno, "setgroups");
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
            return kn_error_set(err, errno, "become root of the user namespace");
    }
    if (sethostname(cfg->hostname, strlen(cfg->hostname)) < 0)
        return kn_error_set(err, errno, "sethostname");
    lap(report, rlen, "ids", &t);
    if (kn_mount_setup_root(cfg, c->cg, c->id, c->bind_fds, c->wlayer_fd, err) < 0)
        return -1;
    lap(report, rlen, "mounts", &t);
    if (kn_net_loopback_up(err) < 0)
        return -1;
    lap(report, rlen, "loopback", &t);
    if (set_rlimits(cfg, err) < 0)
        return -1;
    if (setsid() < 0)
        return kn_error_set(err, errno, "setsid");
    lap(report, rlen, "rlimits", &t);
    return 0;
}

/* Finds argv[0] in the sandbox's PATH without trying to execute anything:
 * with deny_exec exactly one execve may happen. */
static const char *
resolve_program(const kn_config_t *cfg, char *buf, size_t len)
{
    const char *prog = cfg->argv[0];
    if (strchr(prog, '/'))
        return prog;
    const char *path = "/usr/local/bin:/usr/bin:/bin";
    for (size_t i = 0; i < cfg->n_env; i++)
        if (!strncmp(cfg->env[i], "PATH=", 5))
            path = cfg->env[i] + 5;
    const char *p = path;
    const char *found_noexec = NULL;
    while (*p) {
        const char *colon = strchr(p, ':');
        size_t dl = colon ? (size_t)(colon - p) : strlen(p);
        if (dl == 0)
            snprintf(buf, len, "./%s", prog);
        else
            snprintf(buf, len, "%.*s/%s", (int)dl, p, prog);
        struct stat st;
        if (stat(buf, &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(buf, X_OK) == 0)
                return buf;
            found_noexec = found_noexec ? found_noexec : "";
        }
        p = colon ? colon + 1 : p + dl;
    }
    return found_noexec ? "" : NULL;
}

static __attribute__((noreturn)) void
program_fail(int code, const char *what, const char *prog, int e)
{
    char line[PATH_MAX + 128];
    int n = e ? snprintf(line, sizeof line, "kennel: %s %s: %s\n", what, prog, strerror(e))
              : snprintf(line, sizeof line, "kennel: %s %s\n", what, prog);
    if (n > 0)
        kn_write_all(STDERR_FILENO, line, (size_t)n);
    _exit(code);
}

/* The program: from init's fork to execve. Never returns. */
static __attribute__((noreturn)) void
program_main(const child_ctx_t *c)
{
    const kn_config_t *cfg = c->cfg;
    kn_error_t err = {0};
    int fds[3] = {c->io->in, c->io->out, c->io->err};
    int devnull = -1;
    for (int i = 0; i < 3; i++) {
        if (fds[i] < 0) {
            if (devnull < 0)
                devnull = open("/dev/null", O_RDWR);
            fds[i] = devnull;
        }
    }
    /* Move the sources above 2 first so that dup2 order cannot clobber them. */
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0 && fds[i] < 3)
            fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
    for (int i = 0; i < 3; i++)
        if (fds[i] < 0 || dup2(fds[i], i) < 0)
            _exit(KN_CHILD_SETUP_FAILED);
    /* Every descriptor of the host except stdio is gone. */
    kn_sys_close_range(3, ~0U, 0);

    if (c->no_cgroup && cfg->memory) {
        /* Without a memory cgroup, the address space is the only bound left.
         * Runtimes that reserve large ranges (node) may not start under it;
         * the launcher's warning says so. */
        struct rlimit rl = {cfg->memory, cfg->memory};
        if (setrlimit(RLIMIT_AS, &rl) < 0)
            program_fail(KN_CHILD_SETUP_FAILED, "setrlimit", "RLIMIT_AS", errno);
    }
    if (kn_caps_drop_bounding(&err) < 0)
        program_fail(KN_CHILD_SETUP_FAILED, "capabilities:", err.msg, 0);
    if (setresgid(cfg->gid, cfg->gid, cfg->gid) < 0 || setresuid(cfg->uid, cfg->uid, cfg->uid) < 0)
        program_fail(KN_CHILD_SETUP_FAILED, "switch to uid of", cfg->argv[0], errno);
    if (kn_caps_clear(&err) < 0)
        program_fail(KN_CHILD_SETUP_FAILED, "capabilities:", err.msg, 0);
    if (chdir(cfg->cwd ? cfg->cwd : "/") < 0)
        program_fail(KN_CHILD_SETUP_FAILED, "chdir", cfg->cwd ? cfg->cwd : "/", errno);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        program_fail(KN_CHILD_SETUP_FAILED, "no_new_privs", "", errno);
    if (cfg->landlock) {
        const char *w[KN_MAX_BINDS + 8];
        kn_mount_writable_paths(cfg, w, sizeof w / sizeof w[0]);
        if (kn_landlock_apply(w, &err) < 0)
            program_fail(KN_CHILD_SETUP_FAILED, "landlock:", err.msg, 0);
    }
    char buf[PATH_MAX];
    const char *path = resolve_program(cfg, buf, sizeof buf);
    if (kn_seccomp_load(c->filter, NULL, &err) < 0)
        program_fail(KN_CHILD_SETUP_FAILED, "seccomp:", err.msg, 0);
    if (!path)
        program_fail(127, "command not found:", cfg->argv[0], ENOENT);
    if (!*path)
        program_fail(126, "cannot execute", cfg->argv[0], EACCES);
    char *empty_env[] = {NULL};
    execve(path, cfg->argv, cfg->env ? cfg->env : empty_env);
    program_fail(errno == ENOENT ? 127 : 126, "exec", cfg->argv[0], errno);
}

/* Init: reaps everything, forwards signals to the program, answers the exec
 * notification, and reports the program's wait status. Never returns. */
static __attribute__((noreturn)) void
init_main(const child_ctx_t *c)
{
    kn_error_t err = {0};
    sigset_t mask;
    sigemptyset(&mask);
    int fwd[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    for (size_t i = 0; i < sizeof fwd / sizeof fwd[0]; i++)
        sigaddset(&mask, fwd[i]);
    sigaddset(&mask, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        child_fail(c->sync, &(kn_error_t){errno, "sigprocmask"});
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sfd < 0)
        child_fail(c->sync, &(kn_error_t){errno, "signalfd"});

    int listener = -1;
    if (c->exec_notify) {
        /* Loaded here so that init holds the listener and the program
         * inherits the filter: its first execve is ours, later ones fail. */
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
            kn_seccomp_load(c->exec_notify, &listener, &err) < 0)
            child_fail(c->sync, &err);
    }

    pid_t prog = fork();
    if (prog < 0)
        child_fail(c->sync, &(kn_error_t){errno, "fork the program"});
    if (prog == 0) {
        /* The program starts with default dispositions and an empty mask,
         * whatever the launcher ignored or blocked (SIGPIPE above all). */
        for (int sig = 1; sig < NSIG; sig++)
            if (sig != SIGKILL && sig != SIGSTOP)
                signal(sig, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        program_main(c);
    }
    /* Init keeps nothing of the caller's: no stdio, no capabilities. */
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int i = 0; i < 3 && devnull >= 0; i++)
        dup2(devnull, i);
    if (c->io->in > 2)
        close(c->io->in);
    if (c->io->out > 2)
        close(c->io->out);
    if (c->io->err > 2)
        close(c->io->err);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (kn_caps_drop_bounding(&err) == 0)
        kn_caps_clear(&err);
    /* Init talks to the program only through signals, waits and the exec
     * notifications, but it shares the sandbox: it gets no_new_privs and the
     * program's filter (less the socket calls of deny_sockets: init reports
     * over its socket), loaded after the fork so that the program is not
     * filtered twice. Failing here would leave init less contained than
     * what it supervises, so it ends the sandbox. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        kn_seccomp_load(c->init_filter, NULL, &err) < 0) {
        kill(prog, SIGKILL);
        _exit(KN_CHILD_SETUP_FAILED);
    }

    bool allow_exec = true;
    int status = 0;
    /* Init lives as long as the sandbox: the set-up's stack and heap go. */
    kn_release_setup_memory();
    for (;;) {
        struct pollfd pfd[3] = {{sfd, POLLIN, 0}, {c->sync, POLLIN, 0}, {listener, POLLIN, 0}};
        int n = poll(pfd, listener >= 0 ? 3 : 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (pfd[1].revents & (POLLHUP | POLLERR | POLLIN)) {
            /* The launcher is gone (or misbehaves): end the sandbox. */
            msg_t m;
            if (recv_msg(c->sync, &m) <= 0)
                _exit(KN_CHILD_SETUP_FAILED);
        }
        if (listener >= 0 && (pfd[2].revents & POLLIN))
            kn_seccomp_notify_answer(listener, &allow_exec);
        if (pfd[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == sizeof si) {
                if ((int)si.ssi_signo != SIGCHLD) {
                    kill(prog, (int)si.ssi_signo);
                    continue;
                }
                for (;;) {
                    int st;
                    pid_t w = waitpid(-1, &st, WNOHANG);
                    if (w <= 0)
                        break;
                    if (w == prog) {
                        status = st;
                        goto done;
                    }
                }
                break;
            }
        }
    }
done:
    /* Status first, then wait for the launcher to finish copying out. */
    send_msg(c->sync, MSG_STATUS, status, NULL);
    msg_t m;
    recv_msg(c->sync, &m);
    _exit(0);
}

/* Init is a copy of the launcher, and /proc/1/cmdline is readable by every
 * process of the sandbox: without this, a program would read the
 * launcher's whole command line (host paths, the code of the other sources
 * of one `kennel run`). The argument area is overwritten in place; its
 * bounds come from /proc/self/stat (fields 48 and 49), read while /proc is
 * still the host's. */
static void
hide_launcher_args(void)
{
    char stat[4096];
    if (kn_read_file("/proc/self/stat", stat, sizeof stat, NULL) <= 0)
        return;
    const char *p = strrchr(stat, ')'); /* the command name may hold spaces */
    if (!p)
        return;
    unsigned long long start = 0, end = 0;
    int field = 2;
    for (p++; *p && field < 49; p++) {
        if (*p != ' ')
            continue;
        field++;
        if (field == 48)
            start = strtoull(p + 1, NULL, 10);
        else if (field == 49)
            end = strtoull(p + 1, NULL, 10);
    }
    if (!start || end <= start || end - start > (1u << 24))
        return;
    static const char name[] = "kennel-init";
    size_t len = (size_t)(end - start);
    char *args = (char *)(uintptr_t)start;
    memset(args, 0, len);
    memcpy(args, name, len > sizeof name ? sizeof name : len - 1);
}

static __attribute__((noreturn)) void
child_main(child_ctx_t *c)
{
    kn_error_t err = {0};
    /* Die with the launcher. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    hide_launcher_args();
    msg_t m;
    if (recv_msg(c->sync, &m) != 1 || m.type != MSG_GO)
        _exit(KN_CHILD_SETUP_FAILED);
    char report[256] = "";
    if (contain(c, report, sizeof report, &err) < 0)
        child_fail(c->sync, &err);
    if (send_msg(c->sync, MSG_READY, 0, report) < 0)
        _exit(KN_CHILD_SETUP_FAILED);
    if (recv_msg(c->sync, &m) != 1 || m.type != MSG_EXEC)
        _exit(KN_CHILD_SETUP_FAILED);
    c->no_cgroup = m.value == 1;
    /* Init is surely in its cgroup by now (born there, or moved before
     * READY): the cgroup namespace is rooted there. */
    if (unshare(CLONE_NEWCGROUP) < 0)
        child_fail(c->sync, &(kn_error_t){errno, "unshare cgroup namespace"});
    kn_error_t err2 = {0};
    if (kn_mount_seal_inputs(c->cfg, &err2) < 0)
        child_fail(c->sync, &err2);
    init_main(c);
}

/* ----------------------------------------------------------------- parent */

static int
write_id_maps(pid_t pid, const kn_config_t *cfg, bool rootmap, kn_error_t *err)
{
    char path[64], map[64];
    if (rootmap) {
        snprintf(map, sizeof map, "0 %u %u", KN_ROOTMAP_BASE, KN_ROOTMAP_LEN);
        snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
        if (kn_write_file(path, map, err) < 0)
            return -1;
        snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
        return kn_write_file(path, map, err);
    }
    snprintf(path, sizeof path, "/proc/%d/setgroups", (int)pid);
    if (kn_write_file(path, "deny", err) < 0)
        return -1;
    snprintf(map, sizeof map, "%u %u 1", (unsigned)cfg->uid, (unsigned)geteuid());
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
    if (kn_write_file(path, map, err) < 0)
        return -1;
    snprintf(map, sizeof map, "%u %u 1", (unsigned)cfg->gid, (unsigned)getegid());
    snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
    return kn_write_file(path, map, err);
}

static void
warn(kn_sandbox_t *sb, const char *what, const char *detail)
{
    if (sb->warnings.n >= KN_MAX_WARNINGS)
        return;
    snprintf(sb->warnings.msg[sb->warnings.n++], sizeof sb->warnings.msg[0], "%s: %s", what,
             detail);
}

static void
phase(kn_sandbox_t *sb, const char *name, uint64_t *t)
{
    uint64_t now = kn_now_us();
    if (sb->phases.n < KN_MAX_PHASES) {
        snprintf(sb->phases.p[sb->phases.n].name, sizeof sb->phases.p[0].name, "%s", name);
        sb->phases.p[sb->phases.n++].us = now - *t;
    }
    *t = now;
}

/* Adds the child's "name=us ..." report as "child.name" phases. */
static void
child_phases(kn_sandbox_t *sb, char *report)
{
    for (char *save = NULL, *tok = strtok_r(report, " ", &save); tok;
         tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || sb->phases.n >= KN_MAX_PHASES)
            continue;
        *eq = '\0';
        snprintf(sb->phases.p[sb->phases.n].name, sizeof sb->phases.p[0].name, "child.%s", tok);
        sb->phases.p[sb->phases.n++].us = strtoull(eq + 1, NULL, 10);
    }
}

static void
make_id(char *buf, size_t len)
{
    unsigned char r[6];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || kn_read_all(fd, r, sizeof r) != (ssize_t)sizeof r)
        memset(r, 0, sizeof r);
    if (fd >= 0)
        close(fd);
    snprintf(buf, len, "%d-%02x%02x%02x%02x%02x%02x", (int)getpid(), r[0], r[1], r[2], r[3], r[4],
             r[5]);
}

static int
setup_cgroup(kn_sandbox_t *sb, const kn_config_t *cfg, kn_error_t *err)
{
    kn_cgroup_limits_t lim = {.memory = cfg->memory,
                              .pids = cfg->pids,
                              .cpus = cfg->cpus,
                              .freezer = cfg->service,
                              .cpuacct = cfg->service};
    kn_error_t cerr = {0};
    sb->cg = kn_cgroup_create(sb->id, &lim, &cerr);
    if (sb->cg)
        return 0;
    if (geteuid() == 0) {
        /* Root was promised limits; running without them would be a lie. */
        *err = cerr;
        return kn_error_prefix(err, "cgroup");
    }
    sb->unenforced_cgroup = true;
    warn(sb,
         "cgroup limits are not enforced; memory falls back to RLIMIT_AS (address space: "
         "some runtimes, node among them, cannot start under a small one), pids to "
         "RLIMIT_NPROC, CPU is not limited",
         cerr.msg);
    return 0;
}

int
kn_sandbox_spawn(const kn_config_t *cfg, const kn_stdio_t *io, kn_sandbox_t **out, kn_error_t *err)
{
    uint64_t t0 = kn_now_us();
    kn_sandbox_t *sb = calloc(1, sizeof *sb);
    if (!sb)
        return kn_error_set(err, ENOMEM, "sandbox");
    sb->pid = -1;
    sb->pidfd = -1;
    sb->sync = -1;
    sb->t_start = t0;
    sb->cfg = cfg;
    make_id(sb->id, sizeof sb->id);

    kn_bpf_t filter = {0}, notify = {0}, init_filter = {0};
    int bind_fds[KN_MAX_BINDS];
    for (size_t i = 0; i < KN_MAX_BINDS; i++)
        bind_fds[i] = -1;
    int sp[2] = {-1, -1};
    uint64_t t = t0;
    if (kn_seccomp_build(cfg, &filter, err) < 0)
        goto fail;
    if (cfg->deny_exec && kn_seccomp_build_exec_notify(&notify, err) < 0)
        goto fail;
    if (cfg->deny_sockets && kn_seccomp_build(&(kn_config_t){0}, &init_filter, err) < 0)
        goto fail;
    phase(sb, "seccomp", &t);
    if (cfg->landlock && kn_landlock_abi() == 0) {
        sb->unenforced_landlock = true;
        warn(sb, "landlock is not enforced", "the kernel does not offer it");
    }
    if (setup_cgroup(sb, cfg, err) < 0)
        goto fail;
    phase(sb, "cgroup", &t);
    /* Bind sources are reached with the launcher's rights, not the
     * sandbox user's (see mount.c setup_binds). */
    for (size_t i = 0; i < cfg->n_binds && geteuid() == 0; i++)
        bind_fds[i] = kn_mount_bind_tree(cfg->binds[i].src, cfg->binds[i].rw);
    /* The writable layer is the launcher's when it must outlive a glance
     * from inside: on disk, or for a service sandbox (snapshots read it). */
    if (!cfg->root_readonly && (cfg->wlayer == KN_WLAYER_DISK || cfg->service)) {
        if (geteuid() == 0) {
            /* upper/ belongs to root inside (overlayfs creates as it). */
            if (kn_wlayer_create(cfg, KN_ROOTMAP_BASE, KN_ROOTMAP_BASE, &sb->wl, err) < 0)
                goto fail;
            phase(sb, "wlayer", &t);
        } else if (cfg->wlayer == KN_WLAYER_DISK) {
            kn_error_set(err, EPERM, "a disk-backed writable layer needs kennel to run as root");
            goto fail;
        }
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
        kn_error_set(err, errno, "socketpair");
        goto fail;
    }

    child_ctx_t c = {.cfg = cfg,
                     .io = io,
                     .sync = sp[1],
                     .rootmap = geteuid() == 0,
                     .id = sb->id,
                     .bind_fds = bind_fds,
                     .wlayer_fd = sb->wl ? kn_wlayer_fd(sb->wl) : -1,
                     .cg = sb->cg,
                     .filter = &filter,
                     .init_filter = cfg->deny_sockets ? &init_filter : &filter,
                     .exec_notify = cfg->deny_exec ? &notify : NULL};
    int pidfd = -1;
    unsigned long flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC |
                          CLONE_NEWUTS | CLONE_PIDFD | SIGCHLD;
    /* The child is born in its cgroup: the launcher steps in for the clone
     * and out right after (see kn_cgroup_enter). If stepping in fails, the
     * child is moved the slow way below. */
    bool born_inside = sb->cg && kn_cgroup_enter(sb->cg, NULL) == 0;
    long pid = syscall(SYS_clone, flags, NULL, &pidfd, NULL, 0);
    if (pid != 0 && born_inside && kn_cgroup_leave(sb->cg, err) < 0) {
        if (pid > 0) {
            kill((pid_t)pid, SIGKILL);
            waitpid((pid_t)pid, NULL, 0);
            close(pidfd);
        }
        kn_error_prefix(err, "leave the sandbox's cgroup");
        goto fail;
    }
    if (pid < 0) {
        kn_error_set(err, errno, "clone the sandbox (user namespaces available?)");
        goto fail;
    }
    if (pid == 0) {
        close(sp[0]);
        child_main(&c);
    }
    sb->pid = (pid_t)pid;
    sb->pidfd = pidfd;
    close(sp[1]);
    sp[1] = -1;
    sb->sync = sp[0];
    sp[0] = -1;
    phase(sb, "clone", &t);

    if (write_id_maps(sb->pid, cfg, c.rootmap, err) < 0) {
        kn_error_prefix(err, "user namespace id maps");
        goto fail;
    }
    if (cfg->net.enabled) {
        if (geteuid() != 0) {
            kn_error_set(err, EPERM, "a network policy needs kennel to run as root");
            goto fail;
        }
        if (!(sb->net = kn_net_attach(&cfg->net, sb->pid, sb->id, err)))
            goto fail;
        phase(sb, "network", &t);
    }
    if (send_msg(sb->sync, MSG_GO, 0, NULL) < 0) {
        kn_error_set(err, errno, "start the sandbox");
        goto fail;
    }
    phase(sb, "idmap", &t);
    if (sb->cg && !born_inside) {
        if (kn_cgroup_add_pid(sb->cg, sb->pid, err) < 0)
            goto fail;
        phase(sb, "cgroup_join", &t);
    }
    msg_t m;
    int r = recv_msg(sb->sync, &m);
    if (r != 1 || m.type != MSG_READY) {
        if (r == 1 && m.type == MSG_ERROR)
            kn_error_set(err, 0, "sandbox set-up: %s", m.text), err->code = m.value;
        else
            kn_error_set(err, EPROTO, "sandbox set-up ended without a word");
        goto fail;
    }
    phase(sb, "wait_child", &t);
    child_phases(sb, m.text);
    if (sb->net) {
        if (kn_net_ready(sb->net, err) < 0)
            goto fail;
        phase(sb, "network_ready", &t);
    }
    for (size_t i = 0; i < cfg->n_binds; i++) {
        if (bind_fds[i] >= 0)
            close(bind_fds[i]);
        bind_fds[i] = -1;
    }
    kn_bpf_free(&filter);
    kn_bpf_free(&notify);
    kn_bpf_free(&init_filter);
    sb->state = KN_SB_READY;
    *out = sb;
    return 0;
fail:
    for (size_t i = 0; i < cfg->n_binds; i++)
        if (bind_fds[i] >= 0)
            close(bind_fds[i]);
    if (sp[0] >= 0)
        close(sp[0]);
    if (sp[1] >= 0)
        close(sp[1]);
    kn_bpf_free(&filter);
    kn_bpf_free(&notify);
    kn_bpf_free(&init_filter);
    kn_sandbox_destroy(sb);
    return -1;
}

int
kn_sandbox_start(kn_sandbox_t *sb, kn_error_t *err)
{
    if (sb->state != KN_SB_READY)
        return kn_error_set(err, EINVAL, "sandbox is not ready to start");
    if (send_msg(sb->sync, MSG_EXEC, sb->cg ? 0 : 1, NULL) < 0)
        return kn_error_set(err, errno, "start the program");
    sb->t_exec = kn_now_us();
    uint64_t t = sb->t_start;
    for (int i = 0; i < sb->phases.n; i++)
        if (strncmp(sb->phases.p[i].name, "child.", 6) != 0)
            t += sb->phases.p[i].us;
    phase(sb, "start", &t);
    sb->state = KN_SB_RUNNING;
    return 0;
}

int
kn_sandbox_collect(kn_sandbox_t *sb, bool *done)
{
    *done = false;
    if (sb->state != KN_SB_RUNNING)
        return 0;
    msg_t m;
    int r = recv_msg(sb->sync, &m);
    if (r == 1 && m.type == MSG_STATUS) {
        sb->status = m.value;
        sb->have_status = true;
    }
    if (r == 1 && m.type == MSG_ERROR) {
        snprintf(sb->late_error, sizeof sb->late_error, "sandbox set-up: %s", m.text);
        return 0; /* init exits next: EOF ends the wait */
    }
    if (r == 1 && m.type != MSG_STATUS)
        return 0;
    sb->t_end = kn_now_us();
    sb->state = KN_SB_EXITED;
    *done = true;
    return 0;
}

int
kn_sandbox_kill(kn_sandbox_t *sb, kn_error_t *err)
{
    if (sb->pidfd >= 0 && kn_sys_pidfd_send_signal(sb->pidfd, SIGKILL) < 0 && errno != ESRCH)
        return kn_error_set(err, errno, "kill the sandbox");
    if (sb->cg)
        kn_cgroup_kill_all(sb->cg);
    return 0;
}

static void
reap(kn_sandbox_t *sb)
{
    if (sb->pid <= 0)
        return;
    struct rusage ru;
    int st;
    pid_t w;
    do
        w = wait4(sb->pid, &st, 0, &ru);
    while (w < 0 && errno == EINTR);
    if (w == sb->pid) {
        sb->ru = ru;
        sb->have_ru = true;
        if (!sb->have_status && WIFEXITED(st) && WEXITSTATUS(st) == KN_CHILD_SETUP_FAILED)
            sb->setup_failed = true;
    }
    sb->pid = -1;
}

int
kn_sandbox_finish(kn_sandbox_t *sb, kn_result_t *res)
{
    memset(res, 0, sizeof *res);
    uint64_t t_fin = kn_now_us();
    /* Release init: it exits, and with it every process left in the sandbox. */
    if (sb->sync >= 0) {
        send_msg(sb->sync, MSG_BYE, 0, NULL);
        close(sb->sync);
        sb->sync = -1;
    }
    kn_net_release_begin(sb->net); /* overlaps the reaping below */
    kn_sandbox_kill(sb, NULL);
    reap(sb);
    if (!sb->t_end)
        sb->t_end = kn_now_us();
    res->timed_out = sb->timed_out;
    snprintf(res->error, sizeof res->error, "%s", sb->late_error);
    if (sb->have_status) {
        if (WIFSIGNALED(sb->status)) {
            res->term_signal = WTERMSIG(sb->status);
            res->exit_code = 128 + res->term_signal;
        } else {
            res->exit_code = WEXITSTATUS(sb->status);
        }
    } else {
        /* Init died before the program's status came: killed from outside. */
        res->term_signal = SIGKILL;
        res->exit_code = 128 + SIGKILL;
    }
    res->setup_us = sb->t_exec ? sb->t_exec - sb->t_start : 0;
    res->execute_us = sb->t_exec ? sb->t_end - sb->t_exec : 0;
    if (sb->have_ru) {
        res->cpu_user_us =
            (uint64_t)sb->ru.ru_utime.tv_sec * 1000000u + (uint64_t)sb->ru.ru_utime.tv_usec;
        res->cpu_sys_us =
            (uint64_t)sb->ru.ru_stime.tv_sec * 1000000u + (uint64_t)sb->ru.ru_stime.tv_usec;
        res->peak_memory = (uint64_t)sb->ru.ru_maxrss * 1024u;
    }
    if (sb->cg) {
        kn_cgroup_stats_t st;
        kn_cgroup_stats(sb->cg, &st);
        if (st.have_memory && st.peak_memory)
            res->peak_memory = st.peak_memory;
        if (st.have_cpu) {
            res->cpu_user_us = st.cpu_user_us;
            res->cpu_sys_us = st.cpu_sys_us;
        }
        res->oom_killed = st.oom_kills > 0;
        /* The cgroup goes now, so that teardown is measured and nothing of
         * the sandbox outlives finish. */
        kn_cgroup_destroy(sb->cg);
        sb->cg = NULL;
    }
    kn_net_detach(sb->net);
    sb->net = NULL;
    res->teardown_us = kn_now_us() - t_fin;
    return 0;
}

const kn_phases_t *
kn_sandbox_phases(const kn_sandbox_t *sb)
{
    return &sb->phases;
}

int
kn_sandbox_freeze(kn_sandbox_t *sb, bool frozen, kn_error_t *err)
{
    if (!sb->cg)
        return kn_error_set(err, ENOTSUP, "pause needs a cgroup, and this sandbox has none");
    return kn_cgroup_freeze(sb->cg, frozen, err);
}

void
kn_sandbox_destroy(kn_sandbox_t *sb)
{
    if (!sb)
        return;
    if (sb->sync >= 0)
        close(sb->sync);
    if (sb->pid > 0) {
        kn_sandbox_kill(sb, NULL);
        reap(sb);
    }
    if (sb->pidfd >= 0)
        close(sb->pidfd);
    kn_cgroup_destroy(sb->cg);
    kn_net_detach(sb->net);
    kn_wlayer_free(sb->wl);
    free(sb);
}

const kn_warnings_t *
kn_sandbox_warnings(const kn_sandbox_t *sb)
{
    return &sb->warnings;
}

int
kn_sandbox_open_upper(const kn_sandbox_t *sb, kn_error_t *err)
{
    if (!sb->wl)
        return kn_error_set(err, ENOTSUP,
                            "this sandbox's writable layer is not reachable from outside (a "
                            "read-only root, or kennel not running as root)");
    int fd = kn_wlayer_open_upper(sb->wl);
    if (fd < 0)
        return kn_error_set(err, errno, "the sandbox's writable layer");
    return fd;
}

int
kn_sandbox_pidfd(const kn_sandbox_t *sb)
{
    return sb->pidfd;
}

kn_netns_t *
kn_sandbox_net(const kn_sandbox_t *sb)
{
    return sb->net;
}

int
kn_sandbox_syncfd(const kn_sandbox_t *sb)
{
    return sb->sync;
}

pid_t
kn_sandbox_pid(const kn_sandbox_t *sb)
{
    return sb->pid;
}

void
kn_sandbox_mark_timed_out(kn_sandbox_t *sb)
{
    sb->timed_out = true;
}

bool
kn_sandbox_unenforced(const kn_sandbox_t *sb, const char *layer)
{
    if (!strcmp(layer, "cgroup"))
        return sb->unenforced_cgroup;
    if (!strcmp(layer, "landlock"))
        return sb->unenforced_landlock;
    return false;
}

uid_t
kn_sandbox_host_uid(const kn_config_t *cfg)
{
    return geteuid() == 0 ? KN_ROOTMAP_BASE + cfg->uid : geteuid();
}

gid_t
kn_sandbox_host_gid(const kn_config_t *cfg)
{
    return geteuid() == 0 ? KN_ROOTMAP_BASE + cfg->gid : getegid();
}
