/* mount.h - the sandbox's filesystem view.
 *
 * Called in the sandbox's first process, inside its new user and mount
 * namespaces. Builds a fresh root on tmpfs: the image's top-level directories
 * bind-mounted read-only (image "host": the host's own /, with /root and
 * /home hidden), fresh /proc, a minimal /dev, tmpfs on /tmp, /run, /var/tmp,
 * /dev/shm and /work, the requested binds, then pivot_root()s into it and
 * detaches the old root, so nothing of the host outside the view remains
 * reachable. */
#ifndef KN_MOUNT_H
#define KN_MOUNT_H

#include <stdbool.h>

#include "config.h"
#include "error.h"

/* cg (may be NULL): with cfg->service, its directories are bound read-only
 * at /sys/fs/cgroup (v2) or /sys/fs/cgroup/<controller> (v1). */
typedef struct kn_cgroup kn_cgroup_t;
/* id: the sandbox's id; with a network policy, the resolv.conf that
 * kn_net_attach() wrote for it is bound at /etc/resolv.conf. */
/* bind_fds: from kn_mount_bind_tree() for each cfg->binds[i] (or NULL, or
 * -1 entries: bound by path inside the sandbox's user namespace). */
/* wlayer_fd: the writable layer the launcher made (wlayer.h), attached at
 * /overlay of the scratch root; -1: a tmpfs made here. */
int kn_mount_setup_root(const kn_config_t *cfg, const kn_cgroup_t *cg, const char *id,
                        const int *bind_fds, int wlayer_fd, kn_error_t *err);

/* Launcher side, before clone: a detached copy of the mount tree at src,
 * nosuid, nodev and read-only unless rw, that the sandbox attaches with
 * move_mount(). Needs CAP_SYS_ADMIN (root launcher); -1 otherwise. */
int kn_mount_bind_tree(const char *src, bool rw);

/* Called by init, inside the finished root, when the program is about to
 * start: /in (deny-by-default's inputs) becomes read-only. */
int kn_mount_seal_inputs(const kn_config_t *cfg, kn_error_t *err);

/* Writable places of the finished view (for the landlock allowlist);
 * NULL-terminated, static storage plus the config's rw binds. */
int kn_mount_writable_paths(const kn_config_t *cfg, const char **out, size_t cap);

#endif
