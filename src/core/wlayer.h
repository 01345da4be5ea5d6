/* wlayer.h - a sandbox's writable layer, made by the launcher.
 *
 * One file system per sandbox takes every write the sandbox can make to
 * its own tree (mount.c): the upper directory of an image's overlay root,
 * or what backs /work, /tmp and /var/tmp of a host or directory root. The
 * launcher makes it as a detached mount (it never appears in the host's
 * mount table), the sandbox attaches it while it builds its root, and the
 * launcher keeps a reference, through which a snapshot reads the layer
 * while the sandbox runs (kn_sandbox_upper).
 *
 *   tmpfs  root_size bytes (at most half the memory limit, as every
 *          writable tmpfs), charged to the sandbox's memory cgroup.
 *   disk   an ext4 file system of root_size bytes in a file made in
 *          wlayer_dir with O_TMPFILE (it never has a name), its blocks
 *          reserved up front with fallocate (the host's disk is never
 *          promised twice), on a loop device that detaches itself when its
 *          last user goes (LO_FLAGS_AUTOCLEAR). When the sandbox and its
 *          launcher are gone, the kernel drops the mount, the loop device
 *          and the file's blocks, in that order: nothing is left behind,
 *          whatever killed them. See docs/decisions.md (writable layer).
 *
 * Inside: upper/ and work/ (overlayfs's pair), owned by the sandbox's root. */
#ifndef KN_WLAYER_H
#define KN_WLAYER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "error.h"

#define KN_WLAYER_DISK_MIN (16ull << 20)
/* Where disk-backed layers are made unless the caller says. */
#define KN_LAYER_DIR_DEFAULT "/var/lib/kennel/layers"

typedef struct kn_wlayer kn_wlayer_t;

/* Makes the layer cfg asks for; uid/gid (host ids) own upper/ and work/.
 * Needs CAP_SYS_ADMIN (a root launcher). */
int kn_wlayer_create(const kn_config_t *cfg, uid_t uid, gid_t gid, kn_wlayer_t **out,
                     kn_error_t *err);
/* The detached mount, for move_mount() in the sandbox. */
int kn_wlayer_fd(const kn_wlayer_t *w);
/* A new descriptor of upper/ (O_DIRECTORY), or -1 with errno. */
int kn_wlayer_open_upper(const kn_wlayer_t *w);
/* "tmpfs" or "disk". */
const char *kn_wlayer_kind_name(const kn_wlayer_t *w);
/* The size the layer was made with, in bytes. */
uint64_t kn_wlayer_size(const kn_wlayer_t *w);
void kn_wlayer_free(kn_wlayer_t *w);

#endif
