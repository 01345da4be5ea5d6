/* tar.h - a small, careful tar reader and extractor for image layers.
 *
 * Reads ustar, pax (path, linkpath, size, uid, gid, mtime) and GNU long
 * names (L, K) from any byte source. Extraction works only through directory
 * descriptors beneath one root descriptor: no entry may leave it (absolute
 * names, `..`, symlinks on the way, hard links or symlinks that point out
 * are refused), device nodes are skipped, setuid/setgid bits are cleared,
 * and OCI whiteouts become overlayfs whiteouts (see kn_tar_extract). */
#ifndef KN_TAR_H
#define KN_TAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

/* The byte source: read() returns bytes read (0 at the end) or -1 with err;
 * skip (may be NULL) passes over n bytes that are known to be there. */
typedef struct kn_tar_src {
    ssize_t (*read)(void *ctx, void *buf, size_t n, kn_error_t *err);
    int (*skip)(void *ctx, uint64_t n, kn_error_t *err);
    void *ctx;
} kn_tar_src_t;

typedef struct kn_tar_entry {
    char *path; /* as written in the archive (pax and GNU names applied); owned */
    char *link; /* link target for symlinks and hard links; owned, "" if none */
    char type;  /* '0' file, '1' hard link, '2' symlink, '3'/'4' device, '5' dir, '6' fifo */
    uint32_t mode;
    uint64_t uid, gid, size;
    int64_t mtime;
} kn_tar_entry_t;

typedef struct kn_tar {
    kn_tar_src_t src;
    uint64_t left;   /* data bytes of the current entry not read yet */
    uint64_t pad;    /* padding after them */
    uint64_t offset; /* bytes consumed from the source */
    bool done;
    kn_tar_entry_t cur; /* the entry kn_tar_next returned last */
} kn_tar_t;

/* Starts reading src. Nothing to free until kn_tar_next is called. */
void kn_tar_init(kn_tar_t *t, kn_tar_src_t src);
/* The next entry: 1 and *e points at it (valid until the next call),
 * 0 at the end of the archive, -1 with err on a malformed archive.
 * Data of the previous entry that was not read is skipped. */
int kn_tar_next(kn_tar_t *t, const kn_tar_entry_t **e, kn_error_t *err);
/* Reads data of the current entry; returns bytes (0 at its end) or -1. */
ssize_t kn_tar_read(kn_tar_t *t, void *buf, size_t n, kn_error_t *err);
/* Frees the current entry's strings. */
void kn_tar_free(kn_tar_t *t);

/* Path rules, exposed for the unit tests.
 * kn_tar_path_clean: a member name made relative to the layer root: leading
 * "./" and "." components and repeated slashes dropped. Absolute names and
 * any ".." component are refused. "" (the root itself) is returned for "."
 * and "./". */
int kn_tar_path_clean(const char *name, char *out, size_t cap, kn_error_t *err);
/* A symlink at clean path `path` pointing at `target`: refused when a
 * relative target climbs above the layer root. Absolute targets are
 * allowed: inside a sandbox they resolve against the image's own root, and
 * the extractor never follows a symlink. */
int kn_tar_symlink_check(const char *path, const char *target, kn_error_t *err);

typedef struct kn_tar_opts {
    bool chown; /* give entries uid_base+uid, gid_base+gid (ids above 65535: 65534) */
    uid_t uid_base;
    gid_t gid_base;
} kn_tar_opts_t;

typedef struct kn_tar_stats {
    uint64_t entries, bytes;
    uint64_t devices_skipped, setid_cleared, whiteouts;
} kn_tar_stats_t;

/* Extracts the whole archive beneath rootfd. Whiteouts are written in
 * overlayfs form for a mount with `userxattr`: `.wh.NAME` becomes a 0/0
 * character device NAME, `.wh..wh..opq` sets user.overlay.opaque=y on its
 * directory. Returns 0, or -1 with err naming the entry. */
int kn_tar_extract(kn_tar_t *t, int rootfd, const kn_tar_opts_t *o, kn_tar_stats_t *st,
                   kn_error_t *err);

#endif
