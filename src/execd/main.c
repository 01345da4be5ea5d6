/* main.c - kennel-execd: command line, signals, PID 1 duties, lifetime.
 *
 * All signals execd cares about are blocked in every thread and taken
 * synchronously here with sigtimedwait: SIGCHLD reaps (every zombie, ours or
 * re-parented), SIGTERM and SIGINT are forwarded to every child's process
 * group; SIGTERM (and SIGINT when not PID 1) then shuts down: children get a
 * grace period, then SIGKILL, then the listeners close. Children start with
 * an empty mask and default dispositions (proc.c). */
#include "main.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "code.h"
#include "command.h"
#include "execd.h"
#include "handlers.h"
#include "http.h"
#include "proc.h"

#define KN_SHUTDOWN_GRACE_MS 2000

#if defined(__SANITIZE_ADDRESS__)
/* Sanitizer builds only. LeakSanitizer stops the world with ptrace, which a
 * sandbox's seccomp filter denies: its check at exit would fail and turn
 * the entrypoint's status into 1. Inside a filter it is off (the daemon's
 * leaks are checked by the tests that run it unconfined). */
int __lsan_is_turned_off(void);
int
__lsan_is_turned_off(void)
{
    return prctl(PR_GET_SECCOMP, 0, 0, 0, 0) != 0;
}
#endif

struct opts {
    const char *socket;
    const char *tcp;
    const char *root;
    const char *token;
    size_t max_stdout;
    size_t max_stderr;
    bool no_openat2;
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: kennel-execd --socket PATH [--listen-tcp HOST:PORT] [--max-stdout BYTES]\n"
               "                    [--max-stderr BYTES] [--root DIR] [--access-token TOKEN]\n");
}

static int
parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || s[0] == '-')
        return -1;
    *out = (size_t)v;
    return 0;
}

static int
parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option long_opts[] = {
        {"socket", required_argument, NULL, 's'},
        {"listen-tcp", required_argument, NULL, 't'},
        {"max-stdout", required_argument, NULL, 'o'},
        {"max-stderr", required_argument, NULL, 'e'},
        {"root", required_argument, NULL, 'r'},
        {"access-token", required_argument, NULL, 'a'},
        {"no-openat2", no_argument, NULL, 'N'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct opts){.max_stdout = KN_EXECD_DEFAULT_MAX_STDOUT,
                       .max_stderr = KN_EXECD_DEFAULT_MAX_STDERR,
                       .root = "/",
                       .token = getenv("EXECD_ACCESS_TOKEN")};
    int c;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        switch (c) {
        case 's':
            o->socket = optarg;
            break;
        case 't':
            o->tcp = optarg;
            break;
        case 'o':
            if (parse_size(optarg, &o->max_stdout) < 0)
                goto bad;
            break;
        case 'e':
            if (parse_size(optarg, &o->max_stderr) < 0)
                goto bad;
            break;
        case 'r':
            o->root = optarg;
            break;
        case 'a':
            o->token = optarg;
            break;
        case 'N':
            o->no_openat2 = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            goto bad;
        }
    }
    if (!o->socket || optind != argc)
        goto bad;
    if (o->token && !*o->token)
        o->token = NULL;
    return 0;
bad:
    usage(stderr);
    return -1;
}

/* Sends sig to every child and waits up to grace_ms for them, reaping as they go. */
static void
drain_children(const sigset_t *set, int grace_ms)
{
    int64_t until = kn_util_mono_ms() + grace_ms;
    kn_proc_reap();
    while (kn_proc_live_count() > 0) {
        int64_t left = until - kn_util_mono_ms();
        if (left <= 0)
            break;
        struct timespec ts = {.tv_sec = left / 1000, .tv_nsec = (left % 1000) * 1000000L};
        sigtimedwait(set, NULL, &ts);
        kn_proc_reap();
    }
}

int
kn_execd_main(int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, &o) < 0)
        return 2;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR1); /* look at the entrypoint (command.c) */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    bool pid1 = getpid() == 1;
    if (!pid1)
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

    kn_execd_t ex = {.max_stdout = o.max_stdout,
                     .max_stderr = o.max_stderr,
                     .token = o.token,
                     .no_openat2 = o.no_openat2};
    ex.root_fd = open(o.root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (ex.root_fd < 0) {
        fprintf(stderr, "kennel-execd: open root %s: %s\n", o.root, strerror(errno));
        return 1;
    }
    kn_error_t err = {0};
    if (kn_command_store_init(&ex, &err) < 0 || kn_repl_store_init(&ex, &err) < 0 ||
        kn_pty_store_init(&ex, &err) < 0) {
        fprintf(stderr, "kennel-execd: %s\n", err.msg);
        return 1;
    }
    kn_http_t *h = kn_http_start(&ex, o.socket, o.tcp, &err);
    if (!h) {
        fprintf(stderr, "kennel-execd: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "kennel-execd: serving on %s%s%s (pid %d)\n", o.socket, o.tcp ? " and " : "",
            o.tcp ? o.tcp : "", (int)getpid());

    bool main_ended = false;
    int code = 0;
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);
        if (sig < 0)
            continue;
        if (sig == SIGCHLD) {
            kn_proc_reap();
            if ((main_ended = kn_command_main_ended(&ex, &code)))
                break;
            continue;
        }
        if (sig == SIGUSR1) {
            /* Anyone may send it: only the store says whether it is true. */
            if ((main_ended = kn_command_main_ended(&ex, &code)))
                break;
            continue;
        }
        kn_proc_signal_all(sig);
        if (sig == SIGTERM || (!pid1 && (sig == SIGINT || sig == SIGQUIT)))
            break;
    }

    if (main_ended) {
        /* As when a container's main process exits: what is left is killed. */
        fprintf(stderr, "kennel-execd: the entrypoint ended with status %d: shutting down\n", code);
        code = code < 0 || code > 255 ? 255 : code;
    } else {
        fprintf(stderr, "kennel-execd: shutting down\n");
        drain_children(&set, KN_SHUTDOWN_GRACE_MS);
    }
    kn_proc_signal_all(SIGKILL);
    drain_children(&set, KN_SHUTDOWN_GRACE_MS);
    kn_http_stop(h);
    kn_pty_store_free(&ex);
    kn_repl_store_free(&ex);
    kn_command_store_free(&ex);
    close(ex.root_fd);
    return main_ended ? code : 0;
}
