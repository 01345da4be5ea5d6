/* image_internal.h - what the image module's files share (image_store.c:
 * digests, store paths, refs and tree digests; image_import.c: imports;
 * image.c: using, listing and removing images). Not for other modules. */
#ifndef KN_IMAGE_INTERNAL_H
#define KN_IMAGE_INTERNAL_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"
#include "image.h"
#include "tar.h"

#define MAX_JSON (4u << 20) /* manifests, configs, index.json */
#define MAX_LAYERS 120      /* overlayfs stacks at most 128 lower layers */
#define IOBUF (1u << 17)
#define HEXLEN 64

typedef char hex_t[HEXLEN + 1];

/* sha256 through OpenSSL's EVP (it uses the CPU's SHA extensions where
 * they exist: hashing is most of an import's work). A context that could
 * not be allocated yields an empty digest, which never matches. */
typedef struct sha {
    EVP_MD_CTX *c;
} sha_t;

void kn_image_sha_init(sha_t *h);
void kn_image_sha_update(sha_t *h, const void *d, size_t n);
void kn_image_sha_free(sha_t *h);
void kn_image_sha_final_hex(sha_t *h, char *out);
/* One-shot sha256 of a small buffer, as hex (libsodium: no set-up cost). */
void kn_image_sha_hex(const void *data, size_t len, char *out);
bool kn_image_is_hex64(const char *s);
/* "sha256:HEX" -> HEX; other algorithms are refused by name. */
int kn_image_digest_hex(const char *digest, char *hex, kn_error_t *err);
int kn_image_openat2(int dfd, const char *path, int flags, uint64_t resolve);
/* Opens a name beneath dfd: no symlinks, no escapes. */
int kn_image_open_beneath(int dfd, const char *path, int flags);
ssize_t kn_image_pread_full(int fd, void *buf, size_t n, uint64_t off);
/* Reads all of fd (at most cap bytes) into a NUL-terminated buffer. */
char *kn_image_slurp_fd(int fd, size_t cap, size_t *len, kn_error_t *err);
char *kn_image_slurp_at(int dfd, const char *path, size_t cap, size_t *len, kn_error_t *err);
void kn_image_random_name(const char *prefix, char *out, size_t cap);
/* Writes data to dir/name atomically (through tmp/ and rename). */
int kn_image_write_atomic(int storefd, const char *dir, const char *name, const void *data,
                          size_t len, kn_error_t *err);
/* Removes dfd/name and everything below it, never following a symlink. */
int kn_image_rm_tree_at(int dfd, const char *name);
void kn_image_strv_free(char **v);
/* A JSON array of strings as a NULL-terminated vector; NULL if absent. */
int kn_image_strv_from_json(json_t *a, char ***out, kn_error_t *err);
/* Opens (creating) the store; its path must be usable as an overlayfs
 * option, so no ',', ':' or newline, and it must not be the root. */
int kn_image_store_open(const char *store, bool create, kn_error_t *err);
/* Imports take the store's lock shared, prune takes it exclusively, so a
 * layer that an import has just unpacked is never pruned before its image
 * record is written. */
int kn_image_store_lock(int storefd, int how, kn_error_t *err);
/* NAME[:TAG] -> NAME:TAG (":latest" added); refs/ keeps '/' as "%2F". */
int kn_image_ref_normalize(const char *name, char *out, size_t cap, kn_error_t *err);
void kn_image_ref_file(const char *norm, char *out, size_t cap);
void kn_image_ref_unfile(const char *file, char *out, size_t cap);
int kn_image_ref_write(int storefd, const char *name, const char *hex, kn_error_t *err);
/* Resolves a reference to the image's manifest hex; *pinned when it named a digest. */
int kn_image_ref_resolve(int storefd, const char *ref, char *hex, bool *pinned, kn_error_t *err);
int kn_image_tree_digest(int fsfd, char *hex, uint64_t *size, kn_error_t *err);

/* A new image's config and manifest, as written to the store. */
typedef struct kn_image_blobs {
    json_t *config;
    const char *config_raw, *manifest_raw;
    size_t config_len, manifest_len;
    hex_t config_hex, manifest_hex;
} kn_image_blobs_t;

/* Stores the blobs, the image record (extra: more record fields, may be
 * NULL) and the ref name (may be NULL); fills info. */
int kn_image_store_image(int storefd, const kn_image_blobs_t *b, const char *name, json_t *extra,
                         kn_image_info_t *info, kn_error_t *err);
/* Unpacks the uncompressed layer tar that src yields into the store as any
 * imported layer is (staged in tmp/, renamed into layers/ when whole; the
 * tar reader's rules apply). diff_hex: its sha256; tar_bytes: its size.
 * info counts a new layer, skipped devices and cleared setuid bits. */
int kn_image_store_layer(int storefd, kn_tar_src_t src, char *diff_hex, uint64_t *tar_bytes,
                         kn_image_info_t *info, kn_error_t *err);
/* A store blob, re-hashed against its name, as JSON. */
json_t *kn_image_blob_json(int storefd, const char *hex, const char *what, kn_error_t *err);
/* Host architecture in OCI's words. */
const char *kn_image_host_arch(void);
/* UTC now, RFC 3339 (seconds). */
void kn_image_now(char *out, size_t cap);

#endif
