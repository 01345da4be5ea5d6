/* sandbox.h - create, run and destroy one sandbox.
 *
 * kn_sandbox_spawn() builds every isolation layer of cfg (see spawn.c for the
 * order) and starts cfg->argv inside. The caller owns the returned sandbox and
 * must call kn_sandbox_destroy(), which kills whatever is left inside and
 * removes the cgroup: nothing of the sandbox outlives it. */
#ifndef KN_SANDBOX_H
#define KN_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "error.h"

typedef struct kn_sandbox kn_sandbox_t;

/* Descriptors of the caller that become 0, 1 and 2 inside; -1 means /dev/null. */
typedef struct kn_stdio {
    int in, out, err;
} kn_stdio_t;

/* A layer the runtime could not enforce in this environment (for example
 * cgroup limits without a delegated cgroup as an unprivileged user). */
#define KN_MAX_WARNINGS 8
typedef struct kn_warnings {
    char msg[KN_MAX_WARNINGS][400];
    int n;
} kn_warnings_t;

typedef struct kn_result {
    int exit_code;                    /* the program's code, or 128+N when killed by signal N */
    int term_signal;                  /* N when killed by a signal, else 0 */
    bool timed_out;                   /* the wall-clock timeout killed the sandbox */
    bool oom_killed;                  /* the memory cgroup killed something inside */
    uint64_t setup_us;                /* spawn() until the program was exec'd */
    uint64_t execute_us;              /* exec until the sandbox ended */
    uint64_t cpu_user_us, cpu_sys_us; /* host-side accounting of the whole tree */
    uint64_t peak_memory;             /* bytes: cgroup peak where there is one, else max RSS */
    uint64_t teardown_us;             /* end of the program until everything is gone */
    char error[KN_ERROR_MSG_MAX];     /* set-up failed after start (e.g. sealing /in): why */
} kn_result_t;

/* Where the set-up time went, in microseconds, in order: launcher steps
 * ("seccomp", "cgroup", "clone", "idmap", "wait_child"), the child's own steps
 * (prefixed "child."), and "start". For benchmarks and --json. */
#define KN_MAX_PHASES 16
typedef struct kn_phases {
    struct {
        char name[24];
        uint64_t us;
    } p[KN_MAX_PHASES];
    int n;
} kn_phases_t;
const kn_phases_t *kn_sandbox_phases(const kn_sandbox_t *sb);

/* Builds every layer and stops just before the program runs (state READY):
 * the caller may copy files in, then calls kn_sandbox_start(). */
int kn_sandbox_spawn(const kn_config_t *cfg, const kn_stdio_t *io, kn_sandbox_t **out,
                     kn_error_t *err);
int kn_sandbox_start(kn_sandbox_t *sb, kn_error_t *err);
/* A descriptor that becomes readable when the program has ended (its status
 * arrived) or the sandbox died. Then call kn_sandbox_collect(). */
int kn_sandbox_syncfd(const kn_sandbox_t *sb);
/* Reads what is pending on the sync descriptor; *done when the program ended.
 * Files may still be copied out after that, until kn_sandbox_finish(). */
int kn_sandbox_collect(kn_sandbox_t *sb, bool *done);
/* Copies a host file into the sandbox (before start) or out of it (after the
 * program ended). Guest paths resolve inside the sandbox's root only:
 * symlinks and ".." cannot leave it. */
int kn_sandbox_copy_in(kn_sandbox_t *sb, const char *local, const char *guest, kn_error_t *err);
int kn_sandbox_write_in(kn_sandbox_t *sb, const char *guest, const void *data, size_t len,
                        kn_error_t *err);
int kn_sandbox_copy_out(kn_sandbox_t *sb, const char *guest, const char *local, kn_error_t *err);
/* Ends the sandbox (every process in it dies), reaps it, fills res. */
int kn_sandbox_finish(kn_sandbox_t *sb, kn_result_t *res);
/* Kills every process of the sandbox (SIGKILL to its init ends the pid namespace). */
int kn_sandbox_kill(kn_sandbox_t *sb, kn_error_t *err);
void kn_sandbox_mark_timed_out(kn_sandbox_t *sb);
/* The host uid and gid that the sandbox's user (cfg->uid, cfg->gid) is, seen
 * from outside: what a host directory bound writable must be owned by (or
 * writable for) so that the sandbox can create files in it. */
uid_t kn_sandbox_host_uid(const kn_config_t *cfg);
gid_t kn_sandbox_host_gid(const kn_config_t *cfg);
/* Pauses (cgroup freezer) or resumes every process of a running sandbox. */
int kn_sandbox_freeze(kn_sandbox_t *sb, bool frozen, kn_error_t *err);
/* Warnings gathered while spawning; valid until destroy. */
const kn_warnings_t *kn_sandbox_warnings(const kn_sandbox_t *sb);
/* True when the named layer ("cgroup", "landlock") is not enforced. */
bool kn_sandbox_unenforced(const kn_sandbox_t *sb, const char *layer);
int kn_sandbox_pidfd(const kn_sandbox_t *sb);
/* A new descriptor of the sandbox's writable layer's upper directory (what
 * the sandbox changed, in overlayfs form: see wlayer.h and mount.c), for a
 * snapshot. ENOTSUP when the launcher did not make the layer. */
int kn_sandbox_open_upper(const kn_sandbox_t *sb, kn_error_t *err);
/* The sandbox's network attachment (DNS proxy, port relays) for the caller's
 * poll loop, or NULL when it has only lo. See netpolicy.h. */
kn_netns_t *kn_sandbox_net(const kn_sandbox_t *sb);
pid_t kn_sandbox_pid(const kn_sandbox_t *sb);
/* Kills what is left, reaps, removes the cgroup, frees sb. NULL is a no-op. */
void kn_sandbox_destroy(kn_sandbox_t *sb);

#endif
