/* proc.c - child processes: spawn, registry, reaping, signals. See proc.h. */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

struct kn_child {
    pid_t pid;
    int refs;
    bool exited;
    int code;
    int exit_fd; /* eventfd, signalled once on exit */
    struct kn_child *next;
};

/* The registry of live children; guarded by reg_lock. Module-private state:
 * the reaper must find children by pid from the signal loop. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reg_cond = PTHREAD_COND_INITIALIZER;
static kn_child_t *reg_head;

struct child_err {
    int code;
    char msg[200];
};

/* In the child: report the failure through the sync pipe and die. Only
 * async-signal-safe calls from here on. */
static void __attribute__((noreturn)) child_fail(int sync_fd, const char *what)
{
    struct child_err e = {.code = errno};
    size_t n = strlen(what);
    if (n >= sizeof e.msg)
        n = sizeof e.msg - 1;
    memcpy(e.msg, what, n);
    if (write(sync_fd, &e, sizeof e) < 0) {
        /* nothing more can be reported */
    }
    _exit(127);
}

static int
move_fd(int from, int to)
{
    if (from == to)
        return fcntl(to, F_SETFD, 0);
    return dup2(from, to) < 0 ? -1 : 0;
}

static void __attribute__((noreturn)) child_main(const kn_spawn_t *s, int sync_fd, int devnull)
{
    /* Default dispositions before the mask is lifted: no handler of execd's
     * may run in a child that shares its memory. */
    for (int sig = 1; sig < 32; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    if (s->ctty ? setsid() < 0 : setpgid(0, 0) < 0)
        child_fail(sync_fd, s->ctty ? "setsid" : "setpgid");
    /* Lift the wanted descriptors above 10 first so the dup2 order cannot clobber them. */
    int want[5] = {s->stdin_fd, s->stdout_fd, s->stderr_fd, s->fd3, s->fd4};
    int high[5];
    for (int i = 0; i < 5; i++) {
        int fd = want[i] < 0 ? (i < 3 ? devnull : -1) : want[i];
        high[i] = fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 10);
        if (fd >= 0 && high[i] < 0)
            child_fail(sync_fd, "dup");
    }
    for (int i = 0; i < 5; i++) {
        if (high[i] >= 0 && move_fd(high[i], i) < 0)
            child_fail(sync_fd, "dup2");
    }
    if (s->ctty && ioctl(0, TIOCSCTTY, 0) < 0)
        child_fail(sync_fd, "TIOCSCTTY");
    /* Nothing of execd crosses into the command but these five descriptors. */
    if (sync_fd > 5)
        syscall(SYS_close_range, 5U, (unsigned)sync_fd - 1, 0U);
    syscall(SYS_close_range, (unsigned)sync_fd + 1, ~0U, 0U);
    if (s->cwd && chdir(s->cwd) < 0)
        child_fail(sync_fd, "chdir");
    if (s->gid >= 0) {
        gid_t g = (gid_t)s->gid;
        if (setgroups(1, &g) < 0 || setgid(g) < 0)
            child_fail(sync_fd, "setgid");
    }
    if (s->uid >= 0 && setuid((uid_t)s->uid) < 0)
        child_fail(sync_fd, "setuid");
    extern char **environ;
    if (s->path)
        execve(s->path, (char *const *)s->argv, s->env ? (char *const *)s->env : environ);
    else if (s->env)
        execvpe(s->argv[0], (char *const *)s->argv, (char *const *)s->env);
    else
        execvp(s->argv[0], (char *const *)s->argv);
    child_fail(sync_fd, "exec");
}

struct child_args {
    const kn_spawn_t *s;
    int sync_fd, devnull;
};

static int __attribute__((noreturn)) child_entry(void *arg)
{
    const struct child_args *a = arg;
    child_main(a->s, a->sync_fd, a->devnull);
}

/* Without an identity change the child shares execd's memory until it
 * execs (CLONE_VM | CLONE_VFORK, on a stack of its own, as posix_spawn
 * does): no page tables are copied, which saves about 0.2 ms per command.
 * What the child does before exec is async-signal-safe and writes nothing
 * the parent reads; its descriptors, directory and signal dispositions are
 * its own. setuid/setgid must not run in such a child (glibc makes them
 * signal every thread of the process), so those commands fork. */
static pid_t
start_child(const kn_spawn_t *s, int sync_fd, int devnull)
{
    bool share = s->uid < 0 && s->gid < 0;
#ifdef __SANITIZE_ADDRESS__
    share = false; /* ASan cannot follow instrumented code onto a foreign stack */
#endif
    if (!share) {
        pid_t pid = fork();
        if (pid == 0)
            child_main(s, sync_fd, devnull);
        return pid;
    }
    _Alignas(16) char stack[64 * 1024];
    struct child_args a = {s, sync_fd, devnull};
    return clone(child_entry, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
}

/* execd's environment under reg_lock: a child that shares execd's memory
 * (start_child, called with the lock held) reads it until it execs (PATH
 * for execvp), so nothing may change it meanwhile. */
char **
kn_proc_env_copy(void)
{
    extern char **environ;
    pthread_mutex_lock(&reg_lock);
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = calloc(n + 1, sizeof *env);
    for (size_t i = 0; env && i < n; i++) {
        if (!(env[i] = strdup(environ[i]))) {
            while (i > 0)
                free(env[--i]);
            free(env);
            env = NULL;
        }
    }
    pthread_mutex_unlock(&reg_lock);
    return env;
}

int
kn_proc_setenv(const char *key, const char *value)
{
    pthread_mutex_lock(&reg_lock);
    int rc = setenv(key, value, 1);
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

kn_child_t *
kn_proc_spawn(const kn_spawn_t *s, kn_error_t *err)
{
    kn_child_t *c = NULL;
    int sync[2] = {-1, -1};
    int devnull = -1;

    c = calloc(1, sizeof *c);
    if (!c) {
        kn_error_set(err, ENOMEM, "spawn");
        goto fail;
    }
    c->refs = 2; /* the caller's and the registry's */
    c->exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->exit_fd < 0) {
        kn_error_set(err, errno, "eventfd");
        goto fail;
    }
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) {
        /* A root without /dev: give the child a closed pipe as stdin instead. */
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) {
            kn_error_set(err, errno, "open /dev/null");
            goto fail;
        }
        close(p[1]);
        devnull = p[0];
    }
    if (pipe2(sync, O_CLOEXEC) < 0) {
        kn_error_set(err, errno, "pipe");
        goto fail;
    }

    pthread_mutex_lock(&reg_lock);
    pid_t pid = start_child(s, sync[1], devnull);
    if (pid < 0) {
        pthread_mutex_unlock(&reg_lock);
        kn_error_set(err, errno, "fork");
        goto fail;
    }
    c->pid = pid;
    c->next = reg_head;
    reg_head = c;
    pthread_mutex_unlock(&reg_lock);
    /* Also set the group from the parent so a kill right after spawn finds it
     * (not for a session leader to be: setsid() fails in a group leader). */
    if (!s->ctty)
        setpgid(pid, pid);

    close(sync[1]);
    sync[1] = -1;
    struct child_err ce;
    ssize_t n;
    do {
        n = read(sync[0], &ce, sizeof ce);
    } while (n < 0 && errno == EINTR);
    close(sync[0]);
    sync[0] = -1;
    close(devnull);
    devnull = -1;
    if (n == (ssize_t)sizeof ce) {
        ce.msg[sizeof ce.msg - 1] = '\0';
        kn_error_set(err, ce.code, "%s %s", ce.msg,
                     strcmp(ce.msg, "chdir") == 0 ? (s->cwd ? s->cwd : "") : s->argv[0]);
        kn_child_wait(c, -1, NULL);
        kn_child_unref(c);
        return NULL;
    }
    return c;

fail:
    if (sync[0] >= 0)
        close(sync[0]);
    if (sync[1] >= 0)
        close(sync[1]);
    if (devnull >= 0)
        close(devnull);
    if (c) {
        if (c->exit_fd >= 0)
            close(c->exit_fd);
        free(c);
    }
    return NULL;
}

pid_t
kn_child_pid(const kn_child_t *c)
{
    return c->pid;
}

int
kn_child_exit_fd(const kn_child_t *c)
{
    return c->exit_fd;
}

bool
kn_child_exited(kn_child_t *c, int *code)
{
    pthread_mutex_lock(&reg_lock);
    bool done = c->exited;
    if (done && code)
        *code = c->code;
    pthread_mutex_unlock(&reg_lock);
    return done;
}

bool
kn_child_wait(kn_child_t *c, int timeout_ms, int *code)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    if (timeout_ms > 0) {
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&reg_lock);
    while (!c->exited && timeout_ms != 0) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&reg_cond, &reg_lock);
        } else if (pthread_cond_timedwait(&reg_cond, &reg_lock, &dl) == ETIMEDOUT) {
            break;
        }
    }
    bool done = c->exited;
    if (done && code)
        *code = c->code;
    pthread_mutex_unlock(&reg_lock);
    return done;
}

void
kn_child_kill(kn_child_t *c, int sig)
{
    pthread_mutex_lock(&reg_lock);
    /* Signal the group even after the leader died: its descendants may live on.
     * The pgid cannot be reused while any member of the group is alive. */
    if (kill(-c->pid, sig) < 0 && !c->exited)
        kill(c->pid, sig);
    pthread_mutex_unlock(&reg_lock);
}

int
kn_child_terminate(kn_child_t *c, int grace_ms)
{
    int code = -1;
    if (kn_child_exited(c, &code))
        return code;
    kn_child_kill(c, SIGTERM);
    if (!kn_child_wait(c, grace_ms, &code)) {
        kn_child_kill(c, SIGKILL);
        kn_child_wait(c, -1, &code);
    }
    return code;
}

void
kn_child_ref(kn_child_t *c)
{
    pthread_mutex_lock(&reg_lock);
    c->refs++;
    pthread_mutex_unlock(&reg_lock);
}

void
kn_child_unref(kn_child_t *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&reg_lock);
    bool last = --c->refs == 0;
    pthread_mutex_unlock(&reg_lock);
    if (last) {
        close(c->exit_fd);
        free(c);
    }
}

void
kn_proc_reap(void)
{
    for (;;) {
        int st;
        pthread_mutex_lock(&reg_lock);
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0) {
            pthread_mutex_unlock(&reg_lock);
            if (pid < 0 && errno == EINTR)
                continue;
            return;
        }
        kn_child_t **pp = &reg_head;
        kn_child_t *found = NULL;
        for (; *pp; pp = &(*pp)->next) {
            if ((*pp)->pid == pid) {
                found = *pp;
                *pp = found->next;
                break;
            }
        }
        if (found) {
            found->exited = true;
            found->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            uint64_t one = 1;
            if (write(found->exit_fd, &one, sizeof one) < 0) {
                /* eventfd counter cannot overflow with one write */
            }
            pthread_cond_broadcast(&reg_cond);
        }
        bool last = found && --found->refs == 0;
        pthread_mutex_unlock(&reg_lock);
        if (last) {
            close(found->exit_fd);
            free(found);
        }
    }
}

void
kn_proc_signal_all(int sig)
{
    pthread_mutex_lock(&reg_lock);
    for (kn_child_t *c = reg_head; c; c = c->next)
        kill(-c->pid, sig);
    pthread_mutex_unlock(&reg_lock);
}

int
kn_proc_live_count(void)
{
    int n = 0;
    pthread_mutex_lock(&reg_lock);
    for (kn_child_t *c = reg_head; c; c = c->next)
        n++;
    pthread_mutex_unlock(&reg_lock);
    return n;
}
