/* receipts.h - the server's signed receipts (docs/receipts.md).
 *
 * The module owns the host's signing key (a PKCS#8 PEM file of mode 0600,
 * its public keys in a keyring beside it), one receipt chain per sandbox in
 * the store's database, and the rules that turn what the server does into
 * receipts:
 *   - lifecycle changes (create, pause, resume, renew, metadata, delete,
 *     expiry, failure) through the store's hook, in the transaction of the
 *     change itself; before an irreversible step (delete, expiry, pause,
 *     resume) a "pending" receipt is written first (kn_store_intent());
 *   - every proxied execd call: a "pending" receipt before the request is
 *     forwarded (no receipt, no forwarding) and its outcome, paired by
 *     credentialSubject.correlation_id, when the response has passed;
 *   - a terminal receipt when a sandbox ends, after outcomes for whatever
 *     was still pending in its chain.
 * Failures to write a receipt refuse the action (KN_RCPT_ERRNO, HTTP 503);
 * an outcome that cannot be written after the action ran is a drop, counted
 * and recorded in the chain by the protocol's events_dropped receipt. */
#ifndef KN_RECEIPTS_H
#define KN_RECEIPTS_H

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "server.h"
#include "store.h"

/* The errno of "receipts could not be written": an errno no other server
 * path uses, mapped to 503 RECEIPTS::UNAVAILABLE. */
#define KN_RCPT_ERRNO ENOLINK
/* Largest execd request body read before forwarding (execd's own cap). */
#define KN_RCPT_MAX_BODY (8 * 1024 * 1024)

typedef struct kn_rcpt kn_rcpt_t;
typedef struct kn_rcpt_call kn_rcpt_call_t;

/* Loads (or creates) the key, finishes an interrupted key rotation, attaches
 * to the store's hook and closes what a previous server left pending.
 * Called before the sandbox manager adopts anything. */
int kn_rcpt_open(const kn_server_cfg_t *cfg, kn_store_t *store, kn_rcpt_t **out, kn_error_t *err);
void kn_rcpt_close(kn_rcpt_t *r);

/* The principal an API key stands for ("urn:kennel:api-key:<16 hex of its
 * SHA-256>"; without auth "urn:kennel:anonymous"). */
void kn_rcpt_principal(const char *api_key, char *out, size_t size);

/* A lifecycle request in this thread: receipts written while it runs are
 * its (principal, correlation id). end closes a pending receipt the request
 * wrote and did not answer (the action failed, status is the HTTP one). */
void kn_rcpt_request_begin(kn_rcpt_t *r, const char *principal);
void kn_rcpt_request_end(kn_rcpt_t *r, unsigned status);

/* One proxied execd request to a sandbox: NULL with *not_action for
 * requests that are not actions (or when receipts are off). */
kn_rcpt_call_t *kn_rcpt_call_new(kn_rcpt_t *r, const char *sandbox_id, const char *principal,
                                 const char *method, const char *target, const char *content_type,
                                 bool *not_action, kn_error_t *err);
/* Whether the body must be read whole before forwarding (see execd.h). */
bool kn_rcpt_call_reads_body(const kn_rcpt_call_t *c);
void kn_rcpt_call_request_body(kn_rcpt_call_t *c, const char *data, size_t len);
/* The pending receipt, before the request goes to execd. -1 (KN_RCPT_ERRNO
 * or EBUSY for an ended chain): do not forward. */
int kn_rcpt_call_begin(kn_rcpt_call_t *c, kn_error_t *err);
void kn_rcpt_call_response_head(void *call, unsigned status, const char *content_type);
void kn_rcpt_call_response_body(void *call, const char *data, size_t len);
/* The outcome receipt: from the proxy's finish tap (execd's response is
 * complete, its last bytes not yet released) with complete true, or when
 * the request ends without that (client hang-up, execd failure). -1: it
 * could not be written (a drop; the caller cuts the response). A call ends
 * once; later calls do nothing. */
int kn_rcpt_call_end(kn_rcpt_call_t *c, bool complete);
/* The request is over (its completion callback): ends the call (as
 * kn_rcpt_call_end(c, false)) and frees it, or, when its answer went out
 * whole, hands both to the writer thread. */
void kn_rcpt_call_done(kn_rcpt_call_t *c);
/* Waits (up to 5 s) until every call whose response has gone out has its
 * receipt written: readers of receipts call it first. */
void kn_rcpt_settle(kn_rcpt_t *r);
int kn_rcpt_call_finish(void *call);
void kn_rcpt_call_free(kn_rcpt_call_t *c);

/* The WebSocket of a PTY this server opened (GET /pty/{id}/ws): NULL for
 * any other target. kn_rcpt_pty_tap (as the proxy's relay tap) hashes the
 * data frames both ways and notices execd's exit frame, which writes the
 * PTY's close receipt. Freed when the request completes. */
typedef struct kn_rcpt_pty_watch kn_rcpt_pty_watch_t;
kn_rcpt_pty_watch_t *kn_rcpt_pty_watch(kn_rcpt_t *r, const char *sandbox_id, const char *target);
void kn_rcpt_pty_tap(void *ctx, bool from_client, const char *data, size_t len);
void kn_rcpt_pty_watch_free(kn_rcpt_pty_watch_t *w);

/* An action of the server that changes no sandbox row: an egress policy
 * change, a snapshot's capture or deletion. Its "pending" receipt is
 * written before the action is done (begin; -1: do not do it, KN_RCPT_ERRNO,
 * or EBUSY when the chain has ended) and its outcome after (end; a drop,
 * counted and recorded, when it cannot be written). Principal and
 * correlation id are the request's (begin runs in the request's thread);
 * end may run in another thread. The receipts go to the sandbox's chain;
 * with snapshot set, to the snapshot's own chain ("kennel/snapshot/<id>"),
 * or with mirror, the outcome to both (a capture opens the snapshot's
 * chain). With terminal, a successful outcome ends the chain. */
typedef struct kn_rcpt_act {
    kn_rcpt_t *r;
    const char *type, *risk, *system;
    char resource[96];
    char sandbox[40], snapshot[40];
    bool mirror, terminal;
    char principal[96], corr[37];
    json_t *params;
    bool begun;
} kn_rcpt_act_t;

void kn_rcpt_act_init(kn_rcpt_act_t *a, const char *type, const char *risk, const char *system,
                      const char *resource, const char *sandbox_id, const char *snapshot_id);
/* Takes params (NULL: {}); r NULL (receipts off): nothing, 0. */
int kn_rcpt_act_begin(kn_rcpt_t *r, kn_rcpt_act_t *a, json_t *params, kn_error_t *err);
/* error NULL: success. Does nothing unless begin wrote the pending one. */
int kn_rcpt_act_end(kn_rcpt_act_t *a, const json_t *response, const char *error);
/* The same, with the state change the outcome describes: change() runs on
 * the store's connection in the outcome's own transaction, so that both
 * commit or neither does. 1: nothing was done (receipts off, or begin
 * wrote nothing): the caller makes the change itself. -1: the transaction
 * failed, the change is not made and the outcome is a drop (counted and
 * recorded); the caller may make the change without it. */
int kn_rcpt_act_end_with(kn_rcpt_act_t *a, const json_t *response, const char *error,
                         int (*change)(struct sqlite3 *db, void *ctx, kn_error_t *err), void *ctx);

/* Prometheus lines: receipts written, actions refused, drops. */
void kn_rcpt_metrics(kn_rcpt_t *r, char *buf, size_t size);

/* GET /v1/sandboxes/{id}/receipts: receipts with sequence > after, at most
 * limit. ENOENT when the sandbox never had a chain. */
int kn_rcpt_page(kn_rcpt_t *r, const char *sandbox_id, uint64_t after, size_t limit, json_t **out,
                 kn_error_t *err);
/* GET /v1/snapshots/{id}/receipts: the same for a snapshot's chain. */
int kn_rcpt_snapshot_page(kn_rcpt_t *r, const char *snapshot_id, uint64_t after, size_t limit,
                          json_t **out, kn_error_t *err);
/* GET /v1/receipts/keys: the keyring, oldest first; current key marked. */
int kn_rcpt_keys(kn_rcpt_t *r, json_t **out, kn_error_t *err);
/* POST /v1/receipts/rotate: a new key; every open chain gets a keyRotation
 * receipt signed by the old one. */
int kn_rcpt_rotate(kn_rcpt_t *r, json_t **out, kn_error_t *err);
/* GET /v1/receipts: every chain id, in order of its first receipt. */
int kn_rcpt_chains(kn_rcpt_t *r, json_t **out, kn_error_t *err);
/* The chain id of a sandbox's receipts ("kennel/sandbox/<id>"), of a
 * snapshot's ("kennel/snapshot/<id>"). */
void kn_rcpt_chain_id(const char *sandbox_id, char *out, size_t size);
void kn_rcpt_snapshot_chain_id(const char *snapshot_id, char *out, size_t size);

#endif
