/* proc.h - spawning children and reaping every process that dies under us.
 *
 * execd may be PID 1, so one reaper collects every exit (waitpid(-1)) and hands
 * the status to the kn_child_t that registered the pid; orphans re-parented to
 * us are simply reaped. A spawn registers its pid under the same lock the
 * reaper takes, so no exit status can be lost between fork and registration.
 *
 * The reaper runs when main's signal loop sees SIGCHLD (kn_proc_reap). Every
 * child runs in its own process group (pgid == pid) so a kill reaches the whole
 * tree the command started. */
#ifndef KN_EXECD_PROC_H
#define KN_EXECD_PROC_H

#include <stdbool.h>
#include <sys/types.h>

#include "core/error.h"

typedef struct kn_child kn_child_t;

typedef struct kn_spawn {
    const char *const *argv; /* argv[0] is looked up in PATH, unless path is set */
    const char *path;        /* the file to execve (found already); NULL = look up */
    const char *const *env;  /* NULL = inherit execd's environment */
    const char *cwd;         /* NULL = execd's cwd */
    long uid, gid;           /* -1 = unchanged */
    int stdin_fd;            /* -1 = /dev/null */
    int stdout_fd;           /* -1 = /dev/null */
    int stderr_fd;           /* -1 = /dev/null */
    int fd3, fd4;            /* extra descriptors placed at 3 and 4 (-1 = none) */
    /* A new session whose controlling terminal is stdin (a PTY's slave side):
     * the child is a session leader rather than only a group leader. */
    bool ctty;
} kn_spawn_t;

/* Starts a child as described. Returns a child with one reference owned by the
 * caller (release with kn_child_unref), or NULL with err set (including a
 * failed chdir or execve in the child, reported through a CLOEXEC pipe). */
kn_child_t *kn_proc_spawn(const kn_spawn_t *s, kn_error_t *err);

pid_t kn_child_pid(const kn_child_t *c);
/* A descriptor that becomes readable once the child has exited (never read it). */
int kn_child_exit_fd(const kn_child_t *c);
/* True once exited; *code = exit status, or 128+N for death by signal N. */
bool kn_child_exited(kn_child_t *c, int *code);
/* Waits up to timeout_ms (-1 forever) for the exit. Returns true if exited. */
bool kn_child_wait(kn_child_t *c, int timeout_ms, int *code);
/* Sends sig to the child's whole process group (no-op once it was reaped). */
void kn_child_kill(kn_child_t *c, int sig);
/* SIGTERM the group, wait up to grace_ms, then SIGKILL. Returns the exit code. */
int kn_child_terminate(kn_child_t *c, int grace_ms);
void kn_child_ref(kn_child_t *c);
void kn_child_unref(kn_child_t *c);

/* execd's own environment, which every child starts from. A copy taken under
 * the lock that fork holds (NULL-terminated, strdup'ed; NULL without memory). */
char **kn_proc_env_copy(void);
/* Sets one variable of execd's environment under that same lock, so that no
 * child is forked from a half-updated one. -1 with errno from setenv. */
int kn_proc_setenv(const char *key, const char *value);

/* Reaps everything that has exited; call on SIGCHLD. */
void kn_proc_reap(void);
/* Sends sig to the process group of every live registered child. */
void kn_proc_signal_all(int sig);
/* Number of registered children still running. */
int kn_proc_live_count(void);

#endif
