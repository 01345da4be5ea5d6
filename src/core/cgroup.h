/* cgroup.h - one cgroup per sandbox, on cgroup v2 where its controllers are
 * available and v1 otherwise, behind one small interface.
 *
 * The cgroup is created beneath the caller's own cgroup (so a delegated
 * subtree works), holds the limits, and is removed by kn_cgroup_destroy(). */
#ifndef KN_CGROUP_H
#define KN_CGROUP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

typedef struct kn_cgroup kn_cgroup_t;

typedef struct kn_cgroup_limits {
    uint64_t memory; /* bytes; swap is limited to 0 on top of it */
    uint32_t pids;
    double cpus;
    bool freezer; /* v1: also join the freezer hierarchy (pause/resume) */
    bool cpuacct; /* v1: also join cpuacct (CPU usage readable from inside) */
} kn_cgroup_limits_t;

typedef struct kn_cgroup_stats {
    uint64_t peak_memory; /* bytes */
    uint64_t cpu_user_us, cpu_sys_us;
    uint64_t oom_kills;
    bool have_memory, have_cpu;
} kn_cgroup_stats_t;

/* Creates "<own cgroup>/kennel-<name>" with the limits. NULL + err when the
 * caller has no writable cgroup (unprivileged without delegation). */
kn_cgroup_t *kn_cgroup_create(const char *name, const kn_cgroup_limits_t *lim, kn_error_t *err);
/* Calls fn(name, dir) for each directory of the cgroup: name is "" for v2,
 * the controller for v1. */
void kn_cgroup_each_dir(const kn_cgroup_t *cg,
                        void (*fn)(const char *name, const char *dir, void *arg), void *arg);
/* "v1" or "v2". */
const char *kn_cgroup_version(const kn_cgroup_t *cg);
int kn_cgroup_add_pid(kn_cgroup_t *cg, pid_t pid, kn_error_t *err);
/* Moves the calling thread into cg (enter) or back to the cgroup it was
 * created from (leave). A process cloned in between is born inside cg and
 * never migrates: on v1, moving another process takes a global lock that
 * waits for an RCU grace period (measured here: up to 15 ms), while a
 * thread moving itself through "tasks" does not. Call only from a
 * single-threaded launcher. */
int kn_cgroup_enter(kn_cgroup_t *cg, kn_error_t *err);
int kn_cgroup_leave(kn_cgroup_t *cg, kn_error_t *err);
int kn_cgroup_stats(kn_cgroup_t *cg, kn_cgroup_stats_t *st);
int kn_cgroup_freeze(kn_cgroup_t *cg, bool frozen, kn_error_t *err);
/* SIGKILL every task in the cgroup. */
void kn_cgroup_kill_all(kn_cgroup_t *cg);
/* Kills what is left, removes the directories, frees cg. NULL is a no-op. */
void kn_cgroup_destroy(kn_cgroup_t *cg);

#endif
