/* sandbox_internal.h - the sandbox struct, shared by spawn.c and copy.c only. */
#ifndef KN_SANDBOX_INTERNAL_H
#define KN_SANDBOX_INTERNAL_H

#include <stdbool.h>
#include <sys/resource.h>

#include "cgroup.h"
#include "netpolicy.h"
#include "sandbox.h"

/* Exit code of the sandbox's init when set-up failed (reported over sync). */
#define KN_CHILD_SETUP_FAILED 125

/* Host ids that root inside maps to when the launcher is root: far above
 * any uid a distribution hands out, and never 0. */
#define KN_ROOTMAP_BASE 1000000u
#define KN_ROOTMAP_LEN 65536u

enum kn_sb_state { KN_SB_NEW, KN_SB_READY, KN_SB_RUNNING, KN_SB_EXITED };

struct kn_sandbox {
    char id[48];
    const kn_config_t *cfg; /* borrowed: must outlive the sandbox */
    /* Host ids that root inside maps to when the launcher is root: far above
     * any uid a distribution hands out, and never 0. */
#define KN_ROOTMAP_BASE 1000000u
#define KN_ROOTMAP_LEN 65536u

    enum kn_sb_state state;
    pid_t pid; /* init of the sandbox, as seen from the host */
    int pidfd;
    int sync; /* SOCK_SEQPACKET to init */
    kn_cgroup_t *cg;
    kn_netns_t *net;      /* NULL: no network beyond lo */
    struct kn_wlayer *wl; /* the writable layer when the launcher made it (wlayer.h) */
    uint64_t t_start, t_exec, t_end;
    int status; /* the program's wait status */
    bool have_status, timed_out, setup_failed;
    struct rusage ru;
    bool have_ru;
    bool unenforced_cgroup, unenforced_landlock;
    kn_warnings_t warnings;
    kn_phases_t phases;
    char late_error[KN_ERROR_MSG_MAX]; /* an ERROR from init after READY */
};

#endif
