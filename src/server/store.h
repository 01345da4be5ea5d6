/* store.h - durable sandbox records (SQLite in WAL mode).
 *
 * The store owns the rows the lifecycle API answers from: one per sandbox
 * the server acknowledged or is creating. Runtime facts (is the shim alive,
 * did the sandbox end) live in the shim's run directory; the server copies
 * them here when it sees them. All functions are safe to call from several
 * threads at once. A networked store would implement this same header. */
#ifndef KN_STORE_H
#define KN_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

typedef struct kn_store kn_store_t;

/* One sandbox. Strings are owned by the record; kn_store_rec_free() frees
 * them (not the record itself). Times are Unix milliseconds; 0 = none. */
typedef struct kn_store_rec {
    char id[40];
    int64_t created_ms;
    int64_t expires_ms;
    int64_t transition_ms;
    char state[16];
    char *reason;
    char *message;
    char *spec;     /* the normalized create request, JSON text */
    char *metadata; /* JSON object text */
} kn_store_rec_t;

/* Opens (creating) the database at path. */
int kn_store_open(const char *path, kn_store_t **out, kn_error_t *err);
/* Copies the write-ahead log into the database (a passive checkpoint on a
 * connection of its own), so that no request pays for it; the reaper calls
 * it each pass. */
void kn_store_checkpoint(kn_store_t *st);
void kn_store_close(kn_store_t *st);

int kn_store_insert(kn_store_t *st, const kn_store_rec_t *rec, kn_error_t *err);
/* *found is false (and rec untouched) when there is no such id. */
int kn_store_get(kn_store_t *st, const char *id, kn_store_rec_t *rec, bool *found, kn_error_t *err);
/* Every record, newest first. The caller frees each record and the array. */
int kn_store_list(kn_store_t *st, kn_store_rec_t **recs, size_t *n, kn_error_t *err);
/* Sets state, reason and message and stamps the transition time. Returns
 * -1 with ENOENT when the id is gone. */
int kn_store_set_state(kn_store_t *st, const char *id, const char *state, const char *reason,
                       const char *message, kn_error_t *err);
int kn_store_set_metadata(kn_store_t *st, const char *id, const char *metadata, kn_error_t *err);
int kn_store_set_expires(kn_store_t *st, const char *id, int64_t expires_ms, kn_error_t *err);
/* Takes the oldest row in state "Warm" whose reason is pool_reason and
 * rewrites it from rec (every field but the id, in one statement); *found
 * says whether there was one (rec->id filled). */
int kn_store_claim(kn_store_t *st, const char *pool_reason, kn_store_rec_t *rec, bool *found,
                   kn_error_t *err);
/* Rewrites every field of an existing row from rec. */
int kn_store_update(kn_store_t *st, const kn_store_rec_t *rec, kn_error_t *err);
/* A warm pool made through the API (docs/server.md): template and capacity
 * are JSON text, owned by the record. */
typedef struct kn_store_pool {
    char name[64];
    int64_t created_ms;
    int64_t revision;
    char *template_json;
    char *capacity_json;
} kn_store_pool_t;

/* Inserts (create: EEXIST when the name is taken) or rewrites (ENOENT when
 * missing) one pool. */
int kn_store_pool_put(kn_store_t *st, const kn_store_pool_t *p, bool create, kn_error_t *err);
/* Removing a missing pool is not an error. */
int kn_store_pool_delete(kn_store_t *st, const char *name, kn_error_t *err);
/* Every pool, oldest first; free with kn_store_pool_free(). */
int kn_store_pool_list(kn_store_t *st, kn_store_pool_t **out, size_t *n, kn_error_t *err);
void kn_store_pool_free(kn_store_pool_t *v, size_t n);

/* Removes the row only while it is still "Warm" (*deleted says whether it
 * was): a pool's own removal of a member never races with a claim of it. */
int kn_store_delete_warm(kn_store_t *st, const char *id, bool *deleted, kn_error_t *err);
/* Removing a missing id is not an error. */
int kn_store_delete(kn_store_t *st, const char *id, kn_error_t *err);
void kn_store_rec_free(kn_store_rec_t *rec);

/* ---- receipts -----------------------------------------------------------
 * Signed receipts (docs/receipts.md) live in the same database, in the table
 * shape the Agent Receipts tools read (their SQLite store: id, chain_id,
 * sequence, action_type, risk_level, status, timestamp, issuer_id,
 * principal_id, receipt_json, receipt_hash, previous_receipt_hash; unique on
 * chain and sequence). The receipts module writes them in the transaction of
 * the change they describe: the store calls its hook inside every state,
 * metadata, expiry and delete change (and kn_store_intent()), and
 * kn_store_run() gives it a transaction of its own. All of it is serialized
 * by the store's one connection, so a chain's sequence has no gaps. */

typedef struct kn_store_receipt {
    const char *id;
    const char *chain_id;
    uint64_t sequence;
    const char *action_type;
    const char *risk_level;
    const char *status;
    const char *timestamp;
    const char *issuer_id;
    const char *principal_id;
    const char *receipt_json;
    const char *receipt_hash;
    const char *previous_receipt_hash; /* NULL for a chain's first receipt */
} kn_store_receipt_t;

/* An open transaction, valid during a hook or kn_store_run() callback. */
typedef struct kn_store_tx kn_store_tx_t;

/* The last receipt of a chain: sequence, hash and JSON text (malloc'd; the
 * caller frees it). *found is false when the chain has none. */
int kn_store_tx_tail(kn_store_tx_t *tx, const char *chain_id, uint64_t *sequence, char *hash,
                     size_t hash_size, char **json, bool *found, kn_error_t *err);
int kn_store_tx_add_receipt(kn_store_tx_t *tx, const kn_store_receipt_t *r, kn_error_t *err);
/* Pending receipts of chain_id (status "pending") that no later receipt of
 * the chain answers (same credentialSubject.correlation_id, another status):
 * their correlation ids and receipt JSON texts, in chain order. When corr
 * is not NULL, only that correlation id is looked at. Strings malloc'd. */
int kn_store_tx_unanswered(kn_store_tx_t *tx, const char *chain_id, const char *corr, char ***corrs,
                           char ***jsons, size_t *n, kn_error_t *err);
/* Proxied execd calls in flight (receipts.c): an intent is written, in
 * its own transaction, before the call is forwarded, and deleted in the
 * transaction of the call's receipt. action_json is the module's own. */
int kn_store_tx_intent_put(kn_store_tx_t *tx, const char *corr, const char *chain_id,
                           const char *action_json, kn_error_t *err);
/* *found (may be NULL): whether there was one to delete. */
int kn_store_tx_intent_del(kn_store_tx_t *tx, const char *corr, bool *found, kn_error_t *err);
/* The intents of chain_id, oldest first: correlation ids and action texts. */
int kn_store_tx_intents(kn_store_tx_t *tx, const char *chain_id, char ***corrs, char ***jsons,
                        size_t *n, kn_error_t *err);
/* Chains that have a pending receipt or an intent; chains whose last
 * receipt is not terminal (for a key rotation). */
int kn_store_tx_chains(kn_store_tx_t *tx, bool with_pending, char ***ids, size_t *n,
                       kn_error_t *err);
/* Whether some key-rotation receipt hands its chain to new_public_key
 * (multibase). */
int kn_store_tx_rotated_to(kn_store_tx_t *tx, const char *new_public_key, bool *found,
                           kn_error_t *err);

typedef enum kn_store_op {
    KN_STORE_OP_STATE,
    KN_STORE_OP_METADATA,
    KN_STORE_OP_EXPIRES,
    KN_STORE_OP_DELETE,
    KN_STORE_OP_INTENT,
} kn_store_op_t;

/* A change about to be committed, as the hook sees it. */
typedef struct kn_store_change {
    kn_store_op_t op;
    const char *id;
    const kn_store_rec_t *before;         /* the row before the change */
    const char *state, *reason, *message; /* OP_STATE */
    const char *metadata;                 /* OP_METADATA */
    int64_t expires_ms;                   /* OP_EXPIRES */
    const char *intent;                   /* OP_INTENT: what is about to happen */
} kn_store_change_t;

/* hook runs inside the change's transaction; -1 rolls it back and the change
 * fails with the hook's error. end runs after that transaction (committed or
 * not), still under the store's lock. */
typedef int (*kn_store_hook_fn)(kn_store_tx_t *tx, const kn_store_change_t *change, void *ctx,
                                kn_error_t *err);
typedef void (*kn_store_end_fn)(void *ctx, bool committed);
void kn_store_set_hook(kn_store_t *st, kn_store_hook_fn hook, kn_store_end_fn end, void *ctx);

/* Announces something about to happen to a sandbox (a delete, a pause): the
 * hook records it, in a transaction of its own, before it is done. ENOENT
 * when there is no such row. */
int kn_store_intent(kn_store_t *st, const char *id, const char *what, kn_error_t *err);
/* Runs fn in a transaction (BEGIN IMMEDIATE ... COMMIT, rolled back when fn
 * fails or the commit does); then end (if not NULL), still under the
 * store's lock, with whether it was committed. */
int kn_store_run(kn_store_t *st, int (*fn)(kn_store_tx_t *tx, void *ctx, kn_error_t *err),
                 kn_store_end_fn end, void *ctx, kn_error_t *err);

/* Opens an existing database read-only (verification, export): nothing is
 * created or changed. */
int kn_store_open_readonly(const char *path, kn_store_t **out, kn_error_t *err);
/* Receipts of chain_id with sequence > after, in order, at most limit (0: no
 * limit): JSON texts (each malloc'd) into *jsons, their count in *n. */
int kn_store_receipts(kn_store_t *st, const char *chain_id, uint64_t after, size_t limit,
                      char ***jsons, size_t *n, kn_error_t *err);
/* One row of the receipts table as stored, for a verifier comparing the
 * columns with the receipt they index. Strings malloc'd. */
typedef struct kn_store_receipt_row {
    char *id, *chain_id, *action_type, *risk_level, *status, *timestamp;
    char *receipt_json, *receipt_hash, *previous_receipt_hash;
    int64_t sequence;
} kn_store_receipt_row_t;
int kn_store_receipt_rows(kn_store_t *st, const char *chain_id, kn_store_receipt_row_t **rows,
                          size_t *n, kn_error_t *err);
void kn_store_receipt_rows_free(kn_store_receipt_row_t *rows, size_t n);
/* Every chain id, in order of first receipt. */
int kn_store_receipt_chains(kn_store_t *st, char ***ids, size_t *n, kn_error_t *err);
/* True when a sandbox row with that id exists (a chain whose sandbox is gone
 * must have ended with a terminal receipt). */
int kn_store_has_sandbox(kn_store_t *st, const char *id, bool *found, kn_error_t *err);
/* The same for a snapshot row (snapshots.h keeps them in the same file). */
int kn_store_has_snapshot(kn_store_t *st, const char *id, bool *found, kn_error_t *err);
void kn_store_strings_free(char **v, size_t n);

/* The store's SQLite connection during a transaction: another module's
 * rows (snapshots.c's) change in the same transaction as their receipt. */
struct sqlite3 *kn_store_tx_db(kn_store_tx_t *tx);

/* PTY sessions opened through the proxy: the correlation id that pairs a
 * PTY's open and close receipts, and whether a close (DELETE) is in flight
 * (receipts.c keeps them; a row goes with the PTY's close receipt). */
typedef struct kn_store_pty {
    char sandbox_id[40];
    char pty_id[64];
    char corr[37];
    bool closing;
} kn_store_pty_t;
int kn_store_pty_get(kn_store_t *st, const char *sandbox, const char *pty, kn_store_pty_t *out,
                     bool *found, kn_error_t *err);
int kn_store_tx_pty_put(kn_store_tx_t *tx, const char *sandbox, const char *pty, const char *corr,
                        kn_error_t *err);
int kn_store_tx_pty_closing(kn_store_tx_t *tx, const char *sandbox, const char *pty,
                            kn_error_t *err);
int kn_store_tx_pty_del(kn_store_tx_t *tx, const char *sandbox, const char *pty, kn_error_t *err);
/* The PTYs of a sandbox (NULL: of every sandbox), only those closing if
 * closing_only; *out is malloc'ed. */
int kn_store_tx_ptys(kn_store_tx_t *tx, const char *sandbox, bool closing_only,
                     kn_store_pty_t **out, size_t *n, kn_error_t *err);

#endif
