/* image.h - OCI and docker images in a content-addressed store.
 *
 * The store (default /var/lib/kennel/images, or $KENNEL_STORE, or the
 * `store` argument) holds:
 *   blobs/sha256/HEX    manifests and configs, named by their sha256
 *   layers/sha256/HEX/  one unpacked layer per uncompressed digest (diff_id):
 *                       fs/ (the tree, overlayfs whiteouts) and tree (a
 *                       digest of fs/ taken after unpacking, for pins)
 *   images/HEX          one record per imported image (HEX: its manifest)
 *   refs/NAME           "sha256:HEX" of the image a NAME:TAG points at
 *   tmp/                staging; anything here is garbage after a crash
 * Everything is verified against its digest on import; manifests and
 * configs again on every use; a pinned reference (sha256:D or NAME@sha256:D)
 * also re-hashes its layer trees. See docs/images.md. */
#ifndef KN_IMAGE_H
#define KN_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"

#define KN_IMAGE_STORE_DEFAULT "/var/lib/kennel/images"
#define KN_DIGEST_MAX 72 /* "sha256:" + 64 hex + NUL */
/* Config labels kennel writes on snapshot images. */
#define KN_IMAGE_LABEL_BASE "io.kennel.base"
#define KN_IMAGE_LABEL_SNAPSHOT "io.kennel.snapshot"
#define KN_IMAGE_LABEL_SANDBOX "io.kennel.snapshot.sandbox"

/* An opened image; the store's files stay as they are while it is open
 * (kn_image_remove refuses). Free with kn_image_close. */
typedef struct kn_image {
    char digest[KN_DIGEST_MAX];        /* the manifest's */
    char config_digest[KN_DIGEST_MAX]; /* the config's (docker's image id) */
    bool pinned;                       /* the reference named a digest */
    char *layer_dir;                   /* host path of layers/sha256 */
    char **layers;                     /* "HEX/fs" below layer_dir, bottom first */
    size_t n_layers;
    uint64_t size; /* bytes of the unpacked layers */
    /* From the image config; NULL when the image does not set them. */
    char **env, **entrypoint, **cmd; /* NULL-terminated */
    char *workdir, *user;
    /* A snapshot of a host or rootfs-directory sandbox: "host" or the
     * directory its layers go over (config label io.kennel.base). */
    char *base;
    int lock; /* shared flock on the image record */
} kn_image_t;

typedef struct kn_image_info {
    char digest[KN_DIGEST_MAX];
    char config_digest[KN_DIGEST_MAX];
    uint64_t size; /* bytes unpacked */
    size_t n_layers;
    uint64_t layers_new; /* layers unpacked by this import (the rest were in the store) */
    uint64_t devices_skipped, setid_cleared;
    char imported[32]; /* RFC 3339, UTC */
    char **names;      /* NAME:TAG refs pointing here, NULL-terminated */
} kn_image_info_t;

/* The store to use: store if given, else $KENNEL_STORE, else the default. */
const char *kn_image_store_path(const char *store);

/* True when `image` names a stored image rather than "host" or a rootfs path. */
bool kn_image_is_ref(const char *image);

/* Imports an OCI image layout (directory or tar) or a `docker save` tarball.
 * name (may be NULL: the archive's own name is used if it has one) gets a
 * ref. info (may be NULL) is filled on success; free with kn_image_info_free. */
int kn_image_import(const char *store, const char *path, const char *name, kn_image_info_t *info,
                    kn_error_t *err);
/* Imports a root file system tarball (plain or gzip) as a one-layer image. */
int kn_image_import_rootfs(const char *store, const char *path, const char *name,
                           kn_image_info_t *info, kn_error_t *err);

/* Progress of an import, called on the importing thread every few MiB of
 * each layer blob read and at its end: layer (0-based) of n_layers, bytes
 * of its blob read so far and in all. */
typedef void (*kn_image_progress_fn)(void *arg, size_t layer, size_t n_layers, uint64_t done,
                                     uint64_t total);

typedef struct kn_image_import_opts {
    bool rootfs;                   /* path is a root file system tarball */
    kn_image_progress_fn progress; /* may be NULL */
    void *arg;
} kn_image_import_opts_t;

/* kn_image_import and kn_image_import_rootfs with options (opts may be NULL). */
int kn_image_import_with(const char *store, const char *path, const char *name,
                         const kn_image_import_opts_t *opts, kn_image_info_t *info,
                         kn_error_t *err);

/* Resolves ref (NAME[:TAG], NAME@sha256:D, sha256:D), verifies it (see the
 * top of this file) and holds it open. *out is set only on success. */
int kn_image_open(const char *store, const char *ref, kn_image_t **out, kn_error_t *err);
/* Opens a manifest digest ("sha256:HEX") that the caller resolved (and
 * verified) before; layer trees are re-hashed only when verify_trees. */
int kn_image_open_digest(const char *store, const char *digest, bool verify_trees, kn_image_t **out,
                         kn_error_t *err);
void kn_image_close(kn_image_t *img);

/* Makes cfg run img: its layers become the root; its env is set over the
 * profile's; argv becomes entrypoint+cmd; workdir and user apply. Call it
 * before the request's own settings so that they override the image's. */
int kn_image_apply_config(kn_config_t *cfg, const kn_image_t *img, kn_error_t *err);

/* A snapshot: a sandbox's writable layer on top of the image it ran. */
typedef struct kn_image_commit_opts {
    const char *base;          /* the image the sandbox ran ("sha256:HEX"), or NULL */
    const char *base_root;     /* without base: "host" or the rootfs directory */
    const char *name;          /* NAME[:TAG] to point at the new image, or NULL */
    const char *const *labels; /* "KEY=VALUE" config labels to set; NULL-terminated or NULL */
    const char *comment;       /* its history entry */
} kn_image_commit_opts_t;

typedef struct kn_image_commit_stats {
    uint64_t files, bytes;       /* regular files and their bytes */
    uint64_t whiteouts, opaque;  /* deletions and replaced directories */
    uint64_t skipped;            /* sockets, devices, names the format reserves (.wh.*) */
    uint64_t symlinks_rewritten; /* relative targets above the root made absolute */
} kn_image_commit_stats_t;

/* Makes a new image of upper_fd (the overlayfs upper directory of a
 * sandbox's writable layer, see wlayer.h) over its base: the directory
 * becomes one more layer, stored and verified like an imported one; the
 * base's config is kept (labels added). Nothing is stored unless all of
 * it is (see image_commit.c). The caller freezes the sandbox meanwhile;
 * the process's umask is 022 during the call (single-threaded callers). */
int kn_image_commit(const char *store, int upper_fd, const kn_image_commit_opts_t *o,
                    kn_image_info_t *info, kn_image_commit_stats_t *stats, kn_error_t *err);

/* The manifest digest ref names ("sha256:HEX" into digest), if stored. */
int kn_image_resolve(const char *store, const char *ref, char *digest, size_t len, kn_error_t *err);
/* Points NAME[:TAG] at the image digest names. only_over_snapshots: a
 * name that points at an imported image is left alone (EEXIST). */
int kn_image_tag(const char *store, const char *digest, const char *name, bool only_over_snapshots,
                 kn_error_t *err);

/* Every image in the store. *out is an array of *n entries; free with
 * kn_image_list_free. */
int kn_image_list(const char *store, kn_image_info_t **out, size_t *n, kn_error_t *err);
void kn_image_list_free(kn_image_info_t *list, size_t n);
void kn_image_info_free(kn_image_info_t *info);

/* Removes ref: a NAME:TAG loses its ref (and the image goes when no other
 * name points at it); a digest removes the image and all its names.
 * Refuses while a sandbox holds the image open. Layers stay until prune. */
int kn_image_remove(const char *store, const char *ref, kn_error_t *err);

/* Removes images no name points at (unless open), then layers and blobs no
 * image uses, and staging leftovers. *freed: entries removed. */
int kn_image_prune(const char *store, size_t *freed, kn_error_t *err);
/* Removes only the layers and blobs no image uses (every image stays), and
 * only if no import or commit holds the store right now. */
int kn_image_gc(const char *store, size_t *freed, kn_error_t *err);

#endif
