/* sandboxes.h - the lifecycle operations behind the /v1/sandboxes routes.
 *
 * The manager owns the store and the run directories. Every operation
 * returns -1 with an errno that says what kind of failure it is, which the
 * HTTP layer turns into a status in one place: EINVAL bad input (400),
 * ENOENT unknown sandbox (404), EBUSY wrong state (409), anything else 500.
 * JSON results are new references the caller releases. */
#ifndef KN_SANDBOXES_H
#define KN_SANDBOXES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "server.h"
#include "spec.h"

typedef struct kn_sbx kn_sbx_t;

#define KN_SBX_MAX_STATES 16
#define KN_SBX_MAX_META 32

typedef struct kn_sbx_filter {
    const char *states[KN_SBX_MAX_STATES]; /* OR, case-insensitive */
    int n_states;
    char *meta_key[KN_SBX_MAX_META]; /* AND; owned by the caller */
    char *meta_val[KN_SBX_MAX_META];
    int n_meta;
    long page, page_size;
} kn_sbx_filter_t;

/* Opens the store, then adopts the shims that outlived an earlier server:
 * acknowledged sandboxes whose shim lives are kept; the rest is cleaned. */
int kn_sbx_open(const kn_server_cfg_t *cfg, kn_sbx_t **out, kn_error_t *err);
/* The same, calling on_store (when not NULL) once the store is open and
 * before anything is adopted (the receipts module attaches there). */
typedef struct kn_store kn_store_t;
int kn_sbx_open_with(const kn_server_cfg_t *cfg,
                     int (*on_store)(kn_store_t *st, void *ctx, kn_error_t *err), void *ctx,
                     kn_sbx_t **out, kn_error_t *err);
void kn_sbx_close(kn_sbx_t *m);

int kn_sbx_create(kn_sbx_t *m, const json_t *req, json_t **out, kn_error_t *err);
/* A create whose snapshotId the caller resolved (snapshots.h). */
int kn_sbx_create_from(kn_sbx_t *m, const json_t *req, const kn_spec_snapshot_t *snap, json_t **out,
                       kn_error_t *err);
int kn_sbx_get(kn_sbx_t *m, const char *id, json_t **out, kn_error_t *err);
int kn_sbx_list(kn_sbx_t *m, const kn_sbx_filter_t *f, json_t **out, kn_error_t *err);
int kn_sbx_delete(kn_sbx_t *m, const char *id, const char *reason, kn_error_t *err);
int kn_sbx_pause(kn_sbx_t *m, const char *id, bool pause, kn_error_t *err);
int kn_sbx_renew(kn_sbx_t *m, const char *id, const json_t *body, json_t **out, kn_error_t *err);
int kn_sbx_patch_metadata(kn_sbx_t *m, const char *id, const json_t *patch, json_t **out,
                          kn_error_t *err);
/* Fails unless the sandbox exists (ENOENT). */
int kn_sbx_exists(kn_sbx_t *m, const char *id, kn_error_t *err);
/* Where to reach a Running sandbox's execd, and the pid namespace (as
 * readlink shows it) its execd must live in. EBUSY when paused or ended. */
int kn_sbx_execd(kn_sbx_t *m, const char *id, char *sock, size_t socklen, char *pidns, size_t nslen,
                 kn_error_t *err);
/* The run directory of a sandbox whose shim serves it (Running or Paused):
 * where its control socket and policy files are. EBUSY otherwise. */
int kn_sbx_live_dir(kn_sbx_t *m, const char *id, char *dir, size_t len, kn_error_t *err);
/* The diagnostics API: kind "logs" or "events"; scope "container" (execd's
 * output), "runtime" or "lifecycle" (the supervisor's record), or "all".
 * Inline text, the newest 64 KiB. EINVAL for an unknown scope. */
int kn_sbx_diagnostics(kn_sbx_t *m, const char *id, const char *kind, const char *scope,
                       json_t **out, kn_error_t *err);
/* One pass of the reaper: expires sandboxes past their time and picks up
 * what the shims recorded. Returns milliseconds until the next expiry
 * (capped at max_wait_ms). */
int kn_sbx_reap(kn_sbx_t *m, int max_wait_ms);
/* The warm pools (all, or the one named), in the shape of OpenSandbox's
 * pool API: name, capacitySpec, status {total, allocated, available,
 * revision}, createdAt, and Kennel's template and fromConfig. */
int kn_sbx_pools(kn_sbx_t *m, const char *name, json_t **out, kn_error_t *err);
/* /v1/pools (docs/server.md, the shape of OpenSandbox's pool API): create
 * {name, template, capacitySpec} (EEXIST for a taken name), update
 * {capacitySpec}, delete (its warm members go). Kept in the store. Pools
 * from the config are read-only (EBUSY). */
int kn_sbx_pool_create(kn_sbx_t *m, const json_t *body, json_t **out, kn_error_t *err);
int kn_sbx_pool_update(kn_sbx_t *m, const char *name, const json_t *body, json_t **out,
                       kn_error_t *err);
int kn_sbx_pool_delete(kn_sbx_t *m, const char *name, kn_error_t *err);
/* Ends every warm pool member (a graceful shutdown: the pools are the
 * server's own; the users' sandboxes keep running). */
void kn_sbx_drain_pools(kn_sbx_t *m);
/* Counts by state, for /metrics: calls fn for each state present. */
void kn_sbx_count_states(kn_sbx_t *m, void (*fn)(const char *state, long n, void *ctx), void *ctx);

/* RFC 3339 with milliseconds, UTC ("2026-01-02T03:04:05.678Z"). */
void kn_sbx_format_time(int64_t ms, char *buf, size_t len);
/* Parses RFC 3339 (with a zone); -1 when it is not one. */
int kn_sbx_parse_time(const char *s, int64_t *ms);

#endif
