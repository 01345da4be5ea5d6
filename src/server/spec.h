/* spec.h - the create request: validated once, turned into a kn_config_t.
 *
 * kn_spec_parse() checks a CreateSandboxRequest (untrusted JSON, parsed by
 * jansson) against the spec and what Kennel can honour, and returns the
 * normalized spec the store keeps and the shim reads. kn_spec_config()
 * fills a runtime config from a normalized spec; the server calls it to
 * validate before a shim exists, the shim to spawn. */
#ifndef KN_SPEC_H
#define KN_SPEC_H

#include <jansson.h>

#include "config.h"
#include "error.h"
#include "image.h"
#include "server.h"

/* Mount point of the shim's sandbox directory inside, and execd's socket. */
#define KN_SPEC_RUN_INSIDE "/run/kennel"
#define KN_SPEC_EXECD_SOCK "/run/kennel/execd.sock"
#define KN_SPEC_EXECD_INSIDE "/.kennel/kennel-execd"

/* Returns a new reference, or NULL with err (EINVAL for bad input,
 * EBADMSG for a stored image that does not match its digest). */
json_t *kn_spec_parse(const json_t *req, const kn_server_cfg_t *cfg, kn_error_t *err);

/* A snapshot the request's snapshotId names, resolved by the manager. */
typedef struct kn_spec_snapshot {
    const char *id;
    const char *digest; /* its image, "sha256:HEX" */
} kn_spec_snapshot_t;
json_t *kn_spec_parse_from(const json_t *req, const kn_server_cfg_t *cfg,
                           const kn_spec_snapshot_t *snap, kn_error_t *err);

/* sandbox_dir: host directory bound writable at /run/kennel inside. A
 * stored image is opened and its config applied (env, workdir, user,
 * layers) before the request's own settings; img (may be NULL) keeps it
 * open for the caller (kn_image_close), which holds it in use. */
int kn_spec_config(const json_t *spec, const char *sandbox_dir, const char *execd_path,
                   kn_config_t *out, kn_image_t **img, kn_error_t *err);
/* Checks one metadata key and value against the label rules of the spec. */
int kn_spec_check_label(const char *key, const char *value, kn_error_t *err);
/* The entrypoint as one shell command line, each word single-quoted. Caller frees. */
char *kn_spec_entrypoint_cmd(const json_t *spec);

#endif
