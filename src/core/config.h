/* config.h - the one sandbox specification.
 *
 * CLI flags, API bodies and profile files all fill a kn_config_t; it is
 * validated once (kn_config_validate) and then handed to kn_sandbox_spawn().
 * All strings and arrays are owned by the config and freed by kn_config_free(). */
#ifndef KN_CONFIG_H
#define KN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "netpolicy.h"

#define KN_MAX_BINDS 64
#define KN_MAX_ENV 1024

typedef enum kn_wlayer_kind { KN_WLAYER_TMPFS = 0, KN_WLAYER_DISK } kn_wlayer_kind_t;

typedef struct kn_bind {
    char *src; /* host path (absolute after validation) */
    char *dst; /* path inside the sandbox, absolute */
    bool rw;
} kn_bind_t;

typedef struct kn_config {
    char *profile; /* name of the profile the config started from */
    char *image;   /* "host", an absolute rootfs directory, or a stored image's ref */
    /* Set by kn_image_apply_config for a stored image: its unpacked layers
     * ("HEX/fs", bottom first, NULL-terminated) below image_layer_dir. The
     * root is then an overlay of them under a writable tmpfs layer. */
    char *image_layer_dir;
    char **image_layers;
    /* A snapshot of a sandbox whose root was the host or a rootfs
     * directory: its layers go over that root's writable places (/work,
     * /tmp, /var/tmp), not over a whole image. NULL otherwise. */
    char *image_base;

    /* The process. */
    char **argv; /* NULL-terminated; argv[0] is looked up in PATH inside */
    char **env;  /* NULL-terminated "KEY=VALUE" list: the whole environment */
    size_t n_env;
    char *cwd;
    uid_t uid; /* ids inside the sandbox */
    gid_t gid;
    char *hostname;

    /* Filesystem. */
    bool root_readonly; /* the writable layer is read-only too */
    uint64_t root_size; /* bytes of the writable layer */
    /* Where the writable layer lives: memory (tmpfs, charged to the
     * sandbox's memory cgroup) or a file system image of root_size bytes on
     * disk, made under wlayer_dir (see wlayer.h). */
    kn_wlayer_kind_t wlayer;
    char *wlayer_dir;
    uint64_t tmp_size; /* bytes of /tmp */
    bool tmp_noexec;   /* /tmp mounted noexec */
    bool in_out;       /* provide /in (read-only) and /out (writable) */
    bool hide_home;    /* /root and /home of the host are not shown */
    kn_bind_t binds[KN_MAX_BINDS];
    size_t n_binds;

    /* Limits. 0 means "no limit" except where noted. */
    uint64_t memory;     /* bytes, swap off */
    uint32_t pids;       /* tasks in the cgroup and RLIMIT_NPROC inside */
    double cpus;         /* CPU bandwidth, in CPUs */
    uint64_t timeout_ms; /* wall clock, required (> 0); the whole sandbox is killed.
                          * A caller with no deadline passes a huge value. */
    uint64_t fsize;      /* RLIMIT_FSIZE, bytes */
    uint64_t nofile;     /* RLIMIT_NOFILE */

    /* Security layers. Each is on unless a profile says otherwise. */
    kn_net_policy_t net; /* disabled: a network namespace with only lo */
    bool deny_sockets;   /* seccomp: socket family calls fail EPERM */
    bool deny_exec;      /* seccomp: execve after the entry process fails */
    bool landlock;       /* apply a landlock ruleset where the kernel has it */

    /* A long-lived sandbox driven through execd (the server's kind): it can
     * be paused (cgroup freezer) and sees its own cgroup, read-only, at
     * /sys/fs/cgroup for metrics. */
    bool service;
} kn_config_t;

/* Fills cfg with the named profile ("default", "deny-by-default").
 * cfg must be zeroed or freed before. Returns -1 for an unknown name. */
int kn_profile_load(kn_config_t *cfg, const char *name, kn_error_t *err);
/* NULL-terminated list of the built-in profile names. */
const char *const *kn_profile_names(void);

/* Helpers that keep ownership rules in one place. Each copies its input. */
int kn_config_set_argv(kn_config_t *cfg, char *const *argv, kn_error_t *err);
int kn_config_setenv(kn_config_t *cfg, const char *kv, kn_error_t *err);
int kn_config_add_bind(kn_config_t *cfg, const char *src, const char *dst, bool rw,
                       kn_error_t *err);
int kn_config_set_str(char **field, const char *value, kn_error_t *err);

/* Checks every field once; resolves bind sources to absolute paths.
 * Returns -1 with a message naming the first bad field. */
int kn_config_validate(kn_config_t *cfg, kn_error_t *err);
void kn_config_free(kn_config_t *cfg);

/* Parses "512m", "1g", "1048576" (bytes; k/m/g are powers of 1024). */
int kn_parse_size(const char *s, uint64_t *out);

#endif
