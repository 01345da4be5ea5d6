/* snapshots.h - the lifecycle spec's snapshots: POST /sandboxes/{id}/snapshots,
 * GET /snapshots (sandboxId, name, state filters; pages), GET and DELETE
 * /snapshots/{id}, and the snapshotId of a create.
 *
 * A snapshot is a row of its own table in the server's SQLite file (its own
 * connection: the sandbox store is not touched) and, once Ready, an image of
 * the image store named kennel-snapshot:<id> (shim.h): the sandbox's
 * writable layer on top of the image it ran (kn_image_commit), captured by
 * the sandbox's shim while the sandbox is frozen. Files are kept; processes
 * are not. States: Creating -> Ready | Failed; Deleting while a delete
 * runs. Errors follow sandboxes.h: EINVAL 400, ENOENT 404, EBUSY 409. */
#ifndef KN_SNAPSHOTS_H
#define KN_SNAPSHOTS_H

#include <jansson.h>

#include "error.h"
#include "sandboxes.h"
#include "server.h"

typedef struct kn_snaps kn_snaps_t;

#define KN_SNAP_MAX_STATES 16

typedef struct kn_snap_filter {
    const char *sandbox_id;                 /* NULL: any */
    const char *name;                       /* NULL: any */
    const char *states[KN_SNAP_MAX_STATES]; /* OR, case-insensitive */
    int n_states;
    long page, page_size;
} kn_snap_filter_t;

/* Opens (creating) the table and settles what an earlier server left:
 * captures it did not finish become Failed (Ready when their image was
 * stored after all), deletes it did not finish are finished. */
struct kn_rcpt;
/* receipts: where snapshot actions get their receipts (receipts.h), NULL
 * for none. */
int kn_snaps_open(const kn_server_cfg_t *cfg, kn_sbx_t *mgr, struct kn_rcpt *receipts,
                  kn_snaps_t **out, kn_error_t *err);
/* Waits for captures in progress, then frees s. */
void kn_snaps_close(kn_snaps_t *s);

/* 202: a Snapshot in state Creating; the capture runs in the background.
 * body: {} or {"name": "..."}; 409 unless the sandbox is Running. */
int kn_snaps_create(kn_snaps_t *s, const char *sandbox_id, const json_t *body, json_t **out,
                    kn_error_t *err);
int kn_snaps_get(kn_snaps_t *s, const char *id, json_t **out, kn_error_t *err);
int kn_snaps_list(kn_snaps_t *s, const kn_snap_filter_t *f, json_t **out, kn_error_t *err);
/* 409 while Creating, or while a sandbox runs from it. */
int kn_snaps_delete(kn_snaps_t *s, const char *id, kn_error_t *err);
/* The image of a Ready snapshot, for a create's snapshotId (ENOENT
 * unknown, EBUSY not Ready). */
int kn_snaps_resolve(kn_snaps_t *s, const char *id, char *digest, size_t len, kn_error_t *err);

#endif
