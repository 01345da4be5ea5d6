/* fspath.h - paths from requests, resolved so they never leave the served root.
 *
 * Every path is first normalised lexically (absolute, no "." / ".." / "//";
 * ".." at the top stays at the top), then opened relative to ex->root_fd with
 * openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): absolute symlinks and ".."
 * inside the root resolve as if the root were "/", so no path or symlink can
 * reach outside it. Without openat2 (old kernels, or ex->no_openat2 for tests)
 * a per-component O_NOFOLLOW walk is used instead, which refuses symlinks. */
#ifndef KN_EXECD_FSPATH_H
#define KN_EXECD_FSPATH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/error.h"
#include "execd.h"

/* Writes the normalised form of path into out. -1 (EINVAL) for an empty path,
 * a path too long, or one that is not valid UTF-8. */
int kn_fspath_normalize(const char *path, char *out, size_t n, kn_error_t *err);
/* Opens path inside the root with open(2) flags (O_CLOEXEC is added). */
int kn_fspath_open(const kn_execd_t *ex, const char *path, int flags, mode_t mode, kn_error_t *err);
/* Opens the directory holding path's last component (O_PATH) and copies that
 * component to base (>= 256 bytes). Fails with EINVAL for the root itself. */
int kn_fspath_parent(const kn_execd_t *ex, const char *path, char *base, kn_error_t *err);
/* mkdir -p inside the root. *created tells whether the last directory is new.
 * Returns an O_PATH fd of the directory. */
int kn_fspath_mkdirs(const kn_execd_t *ex, const char *path, mode_t mode, bool *created,
                     kn_error_t *err);

#endif
