/* store.c - the SQLite store. See store.h.
 *
 * One connection serialized by a mutex: the server's writes are small and
 * rare next to the work of a create, and WAL keeps readers of other
 * processes (operators, `sqlite3`) from blocking it. */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STMT_CACHE 32

struct kn_store {
    sqlite3 *db;
    pthread_mutex_t mu;
    kn_store_hook_fn hook;
    kn_store_end_fn end;
    void *hook_ctx;
    /* A second connection that only checkpoints the WAL, off the request
     * path (kn_store_checkpoint()); the main one never does. */
    sqlite3 *ckpt;
    pthread_mutex_t ckpt_mu;
    /* Statements of the receipts' hot path, prepared once (under mu). */
    sqlite3_stmt *cached[8];
    /* The sandboxes' and pools' statements, one per SQL text (the texts are
     * constants): preparing costs more than running these small ones. */
    struct {
        const char *sql;
        sqlite3_stmt *stmt;
    } cache[STMT_CACHE];
};

enum { Q_BEGIN, Q_COMMIT, Q_ROLLBACK, Q_TAIL, Q_INSERT, Q_INTENT_PUT, Q_INTENT_DEL, Q_COUNT };
static const char *const cached_sql[Q_COUNT] = {
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    "SELECT sequence, receipt_hash, receipt_json FROM receipts WHERE chain_id = ? ORDER BY "
    "sequence DESC LIMIT 1",
    "INSERT INTO receipts (id, chain_id, sequence, action_type, risk_level, status, timestamp, "
    "issuer_id, principal_id, receipt_json, receipt_hash, previous_receipt_hash) VALUES "
    "(?,?,?,?,?,?,?,?,?,?,?,?)",
    "INSERT INTO intents (correlation_id, chain_id, action_json) VALUES (?,?,?)",
    "DELETE FROM intents WHERE correlation_id = ?",
};

/* A cached statement, reset and ready (the caller holds mu). */
static sqlite3_stmt *
cached(kn_store_t *st, int q)
{
    sqlite3_stmt *s = st->cached[q];
    if (!s && sqlite3_prepare_v3(st->db, cached_sql[q], -1, SQLITE_PREPARE_PERSISTENT,
                                 &st->cached[q], NULL) != SQLITE_OK)
        return NULL;
    s = st->cached[q];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Runs a cached statement without results (BEGIN, COMMIT, ROLLBACK). */
static int
run_cached(kn_store_t *st, int q, kn_error_t *err)
{
    sqlite3_stmt *s = cached(st, q);
    int rc = s ? sqlite3_step(s) : SQLITE_ERROR;
    if (s)
        sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return kn_error_set(err, EIO, "store: %s: %s", cached_sql[q], sqlite3_errmsg(st->db));
    return 0;
}

struct kn_store_tx {
    kn_store_t *st;
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS sandboxes ("
    " id TEXT PRIMARY KEY,"
    " created_ms INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL DEFAULT 0,"
    " transition_ms INTEGER NOT NULL,"
    " state TEXT NOT NULL,"
    " reason TEXT,"
    " message TEXT,"
    " spec TEXT NOT NULL,"
    " metadata TEXT NOT NULL DEFAULT '{}');"
    "CREATE INDEX IF NOT EXISTS sandboxes_created ON sandboxes(created_ms);"
    "CREATE INDEX IF NOT EXISTS sandboxes_warm ON sandboxes(state, reason, created_ms);"
    "CREATE TABLE IF NOT EXISTS pools ("
    " name TEXT PRIMARY KEY,"
    " created_ms INTEGER NOT NULL,"
    " revision INTEGER NOT NULL DEFAULT 1,"
    " template TEXT NOT NULL,"
    " capacity TEXT NOT NULL);"
    /* The Agent Receipts store's table, column for column. */
    "CREATE TABLE IF NOT EXISTS receipts ("
    " id TEXT PRIMARY KEY,"
    " chain_id TEXT NOT NULL,"
    " sequence INTEGER NOT NULL,"
    " action_type TEXT NOT NULL,"
    " risk_level TEXT NOT NULL,"
    " status TEXT NOT NULL,"
    " timestamp TEXT NOT NULL,"
    " issuer_id TEXT NOT NULL,"
    " principal_id TEXT,"
    " receipt_json TEXT NOT NULL,"
    " receipt_hash TEXT NOT NULL,"
    " previous_receipt_hash TEXT,"
    " created_at TEXT DEFAULT CURRENT_TIMESTAMP);"
    "CREATE UNIQUE INDEX IF NOT EXISTS idx_receipts_chain ON receipts(chain_id, sequence);"
    /* The Go store also indexes action_type, risk_level and timestamp for
     * its query filters. Nothing of Kennel queries by them, and each index
     * is one more page written per receipt, two receipts per proxied call
     * (docs/decisions.md): they are not made, and dropped from older files. */
    /* PTY sessions opened through the proxy (receipts.c). */
    "CREATE TABLE IF NOT EXISTS ptys ("
    " sandbox_id TEXT NOT NULL,"
    " pty_id TEXT NOT NULL,"
    " correlation_id TEXT NOT NULL,"
    " closing INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (sandbox_id, pty_id));"
    /* Proxied execd calls begun and not yet answered by their receipt
     * (receipts.c): written before the call is forwarded, removed in the
     * transaction of its receipt; a row left over is a call whose outcome
     * nobody saw. */
    "CREATE TABLE IF NOT EXISTS intents ("
    " correlation_id TEXT PRIMARY KEY,"
    " chain_id TEXT NOT NULL,"
    " action_json TEXT NOT NULL) WITHOUT ROWID;"
    "DROP INDEX IF EXISTS idx_receipts_action;"
    "DROP INDEX IF EXISTS idx_receipts_risk;"
    "DROP INDEX IF EXISTS idx_receipts_timestamp;";

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Under st->mu. A statement from the cache (or newly prepared); give it back
 * with stmt_put(). */
static int
stmt_get(kn_store_t *st, const char *sql, sqlite3_stmt **out)
{
    int free_slot = -1;
    for (int i = 0; i < STMT_CACHE; i++) {
        if (st->cache[i].sql == sql) {
            *out = st->cache[i].stmt;
            return SQLITE_OK;
        }
        if (!st->cache[i].sql && free_slot < 0)
            free_slot = i;
    }
    int rc = sqlite3_prepare_v2(st->db, sql, -1, out, NULL);
    if (rc == SQLITE_OK && free_slot >= 0) {
        st->cache[free_slot].sql = sql;
        st->cache[free_slot].stmt = *out;
    }
    return rc;
}

static void
stmt_put(kn_store_t *st, sqlite3_stmt *s)
{
    if (!s)
        return;
    for (int i = 0; i < STMT_CACHE; i++)
        if (st->cache[i].stmt == s) {
            sqlite3_reset(s);
            sqlite3_clear_bindings(s);
            return;
        }
    stmt_put(st, s);
}

static int
db_error(kn_store_t *st, kn_error_t *err, const char *what)
{
    return kn_error_set(err, EIO, "store: %s: %s", what, sqlite3_errmsg(st->db));
}

int
kn_store_open(const char *path, kn_store_t **out, kn_error_t *err)
{
    kn_store_t *st = calloc(1, sizeof *st);
    if (!st)
        return kn_error_set(err, ENOMEM, "store");
    pthread_mutex_init(&st->mu, NULL);
    pthread_mutex_init(&st->ckpt_mu, NULL);
    /* SQLite opens its files with O_CLOEXEC where the platform has it. */
    int rc = sqlite3_open_v2(
        path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        kn_error_set(err, EIO, "store: open %s: %s", path,
                     st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        kn_store_close(st);
        return -1;
    }
    sqlite3_busy_timeout(st->db, 5000);
    char *msg = NULL;
    if (sqlite3_exec(st->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                     "PRAGMA wal_autocheckpoint=0;",
                     NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(st->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        kn_error_set(err, EIO, "store: %s: %s", path, msg ? msg : "schema");
        sqlite3_free(msg);
        kn_store_close(st);
        return -1;
    }
    if (sqlite3_open_v2(path, &st->ckpt, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        kn_error_set(err, EIO, "store: open %s for checkpoints", path);
        kn_store_close(st);
        return -1;
    }
    sqlite3_busy_timeout(st->ckpt, 1000);
    *out = st;
    return 0;
}

void
kn_store_checkpoint(kn_store_t *st)
{
    if (!st->ckpt)
        return;
    pthread_mutex_lock(&st->ckpt_mu);
    /* PASSIVE: copies what no reader needs without blocking the writer. */
    sqlite3_wal_checkpoint_v2(st->ckpt, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    pthread_mutex_unlock(&st->ckpt_mu);
}

int
kn_store_open_readonly(const char *path, kn_store_t **out, kn_error_t *err)
{
    kn_store_t *st = calloc(1, sizeof *st);
    if (!st)
        return kn_error_set(err, ENOMEM, "store");
    pthread_mutex_init(&st->mu, NULL);
    pthread_mutex_init(&st->ckpt_mu, NULL);
    int rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        kn_error_set(err, rc == SQLITE_CANTOPEN ? ENOENT : EIO, "store: open %s: %s", path,
                     st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        kn_store_close(st);
        return -1;
    }
    sqlite3_busy_timeout(st->db, 5000);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(st->db, "SELECT 1 FROM receipts LIMIT 1", -1, &q, NULL) != SQLITE_OK) {
        kn_error_set(err, EINVAL, "store: %s has no receipts table: %s", path,
                     sqlite3_errmsg(st->db));
        sqlite3_finalize(q);
        kn_store_close(st);
        return -1;
    }
    sqlite3_finalize(q);
    *out = st;
    return 0;
}

void
kn_store_set_hook(kn_store_t *st, kn_store_hook_fn hook, kn_store_end_fn end, void *ctx)
{
    pthread_mutex_lock(&st->mu);
    st->hook = hook;
    st->end = end;
    st->hook_ctx = ctx;
    pthread_mutex_unlock(&st->mu);
}

void
kn_store_close(kn_store_t *st)
{
    if (!st)
        return;
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(st->cached[i]);
    for (int i = 0; i < STMT_CACHE; i++)
        sqlite3_finalize(st->cache[i].stmt);
    sqlite3_close(st->db);
    sqlite3_close(st->ckpt);
    pthread_mutex_destroy(&st->mu);
    pthread_mutex_destroy(&st->ckpt_mu);
    free(st);
}

void
kn_store_rec_free(kn_store_rec_t *rec)
{
    if (!rec)
        return;
    free(rec->reason);
    free(rec->message);
    free(rec->spec);
    free(rec->metadata);
    rec->reason = rec->message = rec->spec = rec->metadata = NULL;
}

static char *
col_dup(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? strdup((const char *)t) : NULL;
}

static int
row_to_rec(sqlite3_stmt *s, kn_store_rec_t *rec)
{
    memset(rec, 0, sizeof *rec);
    const unsigned char *id = sqlite3_column_text(s, 0);
    const unsigned char *state = sqlite3_column_text(s, 4);
    snprintf(rec->id, sizeof rec->id, "%s", id ? (const char *)id : "");
    rec->created_ms = sqlite3_column_int64(s, 1);
    rec->expires_ms = sqlite3_column_int64(s, 2);
    rec->transition_ms = sqlite3_column_int64(s, 3);
    snprintf(rec->state, sizeof rec->state, "%s", state ? (const char *)state : "");
    rec->reason = col_dup(s, 5);
    rec->message = col_dup(s, 6);
    rec->spec = col_dup(s, 7);
    rec->metadata = col_dup(s, 8);
    if (!rec->spec || !rec->metadata) {
        kn_store_rec_free(rec);
        return -1;
    }
    return 0;
}

#define COLUMNS "id, created_ms, expires_ms, transition_ms, state, reason, message, spec, metadata"

int
kn_store_insert(kn_store_t *st, const kn_store_rec_t *rec, kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    int ret = -1;
    pthread_mutex_lock(&st->mu);
    if (stmt_get(st, "INSERT INTO sandboxes (" COLUMNS ") VALUES (?,?,?,?,?,?,?,?,?)", &s) !=
        SQLITE_OK) {
        db_error(st, err, "insert");
        goto out;
    }
    sqlite3_bind_text(s, 1, rec->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, rec->created_ms);
    sqlite3_bind_int64(s, 3, rec->expires_ms);
    sqlite3_bind_int64(s, 4, rec->transition_ms);
    sqlite3_bind_text(s, 5, rec->state, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, rec->reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, rec->message, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, rec->spec, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 9, rec->metadata ? rec->metadata : "{}", -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE) {
        db_error(st, err, "insert");
        goto out;
    }
    ret = 0;
out:
    stmt_put(st, s);
    pthread_mutex_unlock(&st->mu);
    return ret;
}

static int get_locked(kn_store_t *st, const char *id, kn_store_rec_t *rec, bool *found,
                      kn_error_t *err);

int
kn_store_get(kn_store_t *st, const char *id, kn_store_rec_t *rec, bool *found, kn_error_t *err)
{
    pthread_mutex_lock(&st->mu);
    int ret = get_locked(st, id, rec, found, err);
    pthread_mutex_unlock(&st->mu);
    return ret;
}

int
kn_store_list(kn_store_t *st, kn_store_rec_t **recs, size_t *n, kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    kn_store_rec_t *v = NULL;
    size_t len = 0, cap = 0;
    int ret = -1;
    pthread_mutex_lock(&st->mu);
    if (stmt_get(st, "SELECT " COLUMNS " FROM sandboxes ORDER BY created_ms DESC, id", &s) !=
        SQLITE_OK) {
        db_error(st, err, "list");
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 16;
            kn_store_rec_t *g = realloc(v, nc * sizeof *g);
            if (!g) {
                kn_error_set(err, ENOMEM, "store: list");
                goto out;
            }
            v = g;
            cap = nc;
        }
        if (row_to_rec(s, &v[len]) < 0) {
            kn_error_set(err, ENOMEM, "store: list");
            goto out;
        }
        len++;
    }
    if (rc != SQLITE_DONE) {
        db_error(st, err, "list");
        goto out;
    }
    *recs = v;
    *n = len;
    v = NULL;
    len = 0;
    ret = 0;
out:
    for (size_t i = 0; i < len; i++)
        kn_store_rec_free(&v[i]);
    free(v);
    stmt_put(st, s);
    pthread_mutex_unlock(&st->mu);
    return ret;
}

/* Reads one row inside the current transaction (the caller holds mu). */
static int
get_locked(kn_store_t *st, const char *id, kn_store_rec_t *rec, bool *found, kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    int ret = -1;
    *found = false;
    if (stmt_get(st, "SELECT " COLUMNS " FROM sandboxes WHERE id = ?", &s) != SQLITE_OK) {
        db_error(st, err, "get");
        goto out;
    }
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        if (row_to_rec(s, rec) < 0) {
            kn_error_set(err, ENOMEM, "store: get");
            goto out;
        }
        *found = true;
    } else if (rc != SQLITE_DONE) {
        db_error(st, err, "get");
        goto out;
    }
    ret = 0;
out:
    stmt_put(st, s);
    return ret;
}

/* Runs one UPDATE/DELETE (sql; NULL for an intent, which changes nothing)
 * whose first parameters are text (NULL for SQL NULL) or, for int_at > 0,
 * an integer at that position; the id is last. With a hook set, the change
 * runs in a transaction with the hook (which sees the row before). */
static int
exec_update(kn_store_t *st, const char *sql, const char *const *texts, int ntexts, int int_at,
            int64_t ival, const char *id, bool need_row, const kn_store_change_t *ch,
            kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    kn_store_rec_t before = {0};
    bool have_before = false, in_tx = false, hooked = false;
    int ret = -1;
    pthread_mutex_lock(&st->mu);
    if (st->hook) {
        if (run_cached(st, Q_BEGIN, err) < 0)
            goto out;
        in_tx = true;
        if (get_locked(st, id, &before, &have_before, err) < 0)
            goto out;
    }
    if (!sql) {
        if (!have_before && !st->hook) {
            bool found = false;
            if (get_locked(st, id, &before, &found, err) < 0)
                goto out;
            have_before = found;
        }
        if (!have_before) {
            kn_error_set(err, ENOENT, "sandbox %s not found", id);
            goto out;
        }
    } else {
        if (stmt_get(st, sql, &s) != SQLITE_OK) {
            db_error(st, err, "update");
            goto out;
        }
        int p = 1;
        for (int i = 0; i < ntexts; i++, p++) {
            if (p == int_at)
                sqlite3_bind_int64(s, p++, ival);
            sqlite3_bind_text(s, p, texts[i], -1, SQLITE_STATIC);
        }
        if (p == int_at)
            sqlite3_bind_int64(s, p++, ival);
        sqlite3_bind_text(s, p, id, -1, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_DONE) {
            db_error(st, err, "update");
            goto out;
        }
        if (need_row && sqlite3_changes(st->db) == 0) {
            kn_error_set(err, ENOENT, "sandbox %s not found", id);
            goto out;
        }
    }
    if (st->hook && have_before) {
        kn_store_tx_t tx = {st};
        kn_store_change_t seen = *ch;
        seen.id = id;
        seen.before = &before;
        hooked = true;
        if (st->hook(&tx, &seen, st->hook_ctx, err) < 0)
            goto out;
    }
    if (in_tx) {
        if (run_cached(st, Q_COMMIT, err) < 0)
            goto out;
        in_tx = false;
    }
    ret = 0;
out:
    stmt_put(st, s);
    if (in_tx) {
        kn_error_t ignored = {0};
        run_cached(st, Q_ROLLBACK, &ignored);
    }
    if (hooked && st->end)
        st->end(st->hook_ctx, ret == 0);
    if (have_before)
        kn_store_rec_free(&before);
    pthread_mutex_unlock(&st->mu);
    return ret;
}

int
kn_store_set_state(kn_store_t *st, const char *id, const char *state, const char *reason,
                   const char *message, kn_error_t *err)
{
    const char *t[] = {state, reason, message};
    kn_store_change_t ch = {
        .op = KN_STORE_OP_STATE, .state = state, .reason = reason, .message = message};
    return exec_update(st,
                       "UPDATE sandboxes SET state = ?, reason = ?, message = ?, "
                       "transition_ms = ? WHERE id = ?",
                       t, 3, 4, now_ms(), id, true, &ch, err);
}

int
kn_store_set_metadata(kn_store_t *st, const char *id, const char *metadata, kn_error_t *err)
{
    const char *t[] = {metadata};
    kn_store_change_t ch = {.op = KN_STORE_OP_METADATA, .metadata = metadata};
    return exec_update(st, "UPDATE sandboxes SET metadata = ? WHERE id = ?", t, 1, 0, 0, id, true,
                       &ch, err);
}

int
kn_store_set_expires(kn_store_t *st, const char *id, int64_t expires_ms, kn_error_t *err)
{
    kn_store_change_t ch = {.op = KN_STORE_OP_EXPIRES, .expires_ms = expires_ms};
    return exec_update(st, "UPDATE sandboxes SET expires_ms = ? WHERE id = ?", NULL, 0, 1,
                       expires_ms, id, true, &ch, err);
}

int
kn_store_intent(kn_store_t *st, const char *id, const char *what, kn_error_t *err)
{
    kn_store_change_t ch = {.op = KN_STORE_OP_INTENT, .intent = what};
    return exec_update(st, NULL, NULL, 0, 0, 0, id, true, &ch, err);
}

int
kn_store_claim(kn_store_t *st, const char *pool_reason, kn_store_rec_t *rec, bool *found,
               kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    int ret = -1;
    *found = false;
    pthread_mutex_lock(&st->mu);
    if (stmt_get(st,
                 "UPDATE sandboxes SET created_ms = ?, expires_ms = ?, transition_ms = ?, "
                 "state = ?, reason = ?, message = ?, spec = ?, metadata = ? WHERE id = "
                 "(SELECT id FROM sandboxes WHERE state = 'Warm' AND reason = ? "
                 "ORDER BY created_ms, id LIMIT 1) RETURNING id",
                 &s) != SQLITE_OK) {
        db_error(st, err, "claim");
        goto out;
    }
    sqlite3_bind_int64(s, 1, rec->created_ms);
    sqlite3_bind_int64(s, 2, rec->expires_ms);
    sqlite3_bind_int64(s, 3, rec->transition_ms);
    sqlite3_bind_text(s, 4, rec->state, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, rec->reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, rec->message, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, rec->spec, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, rec->metadata ? rec->metadata : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 9, pool_reason, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        snprintf(rec->id, sizeof rec->id, "%s", t ? (const char *)t : "");
        *found = t != NULL;
        rc = sqlite3_step(s);
    }
    if (rc != SQLITE_DONE) {
        db_error(st, err, "claim");
        *found = false;
        goto out;
    }
    ret = 0;
out:
    stmt_put(st, s);
    pthread_mutex_unlock(&st->mu);
    return ret;
}

int
kn_store_update(kn_store_t *st, const kn_store_rec_t *rec, kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    int ret = -1;
    pthread_mutex_lock(&st->mu);
    if (stmt_get(st,
                 "UPDATE sandboxes SET created_ms = ?, expires_ms = ?, transition_ms = ?, "
                 "state = ?, reason = ?, message = ?, spec = ?, metadata = ? WHERE id = ?",
                 &s) != SQLITE_OK) {
        db_error(st, err, "update");
        goto out;
    }
    sqlite3_bind_int64(s, 1, rec->created_ms);
    sqlite3_bind_int64(s, 2, rec->expires_ms);
    sqlite3_bind_int64(s, 3, rec->transition_ms);
    sqlite3_bind_text(s, 4, rec->state, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, rec->reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, rec->message, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, rec->spec, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, rec->metadata ? rec->metadata : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 9, rec->id, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE) {
        db_error(st, err, "update");
        goto out;
    }
    if (sqlite3_changes(st->db) == 0) {
        kn_error_set(err, ENOENT, "sandbox %s not found", rec->id);
        goto out;
    }
    ret = 0;
out:
    stmt_put(st, s);
    pthread_mutex_unlock(&st->mu);
    return ret;
}

int
kn_store_delete(kn_store_t *st, const char *id, kn_error_t *err)
{
    kn_store_change_t ch = {.op = KN_STORE_OP_DELETE};
    return exec_update(st, "DELETE FROM sandboxes WHERE id = ?", NULL, 0, 0, 0, id, false, &ch,
                       err);
}

int
kn_store_pool_put(kn_store_t *st, const kn_store_pool_t *p, bool create, kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    int ret = -1;
    pthread_mutex_lock(&st->mu);
    const char *sql = create ? "INSERT INTO pools (name, created_ms, revision, template, capacity) "
                               "VALUES (?,?,?,?,?)"
                             : "UPDATE pools SET created_ms = ?2, revision = ?3, template = ?4, "
                               "capacity = ?5 WHERE name = ?1";
    if (stmt_get(st, sql, &s) != SQLITE_OK) {
        db_error(st, err, "pool");
        goto out;
    }
    sqlite3_bind_text(s, 1, p->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, p->created_ms);
    sqlite3_bind_int64(s, 3, p->revision);
    sqlite3_bind_text(s, 4, p->template_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, p->capacity_json, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_CONSTRAINT) {
        kn_error_set(err, EEXIST, "pool %s exists", p->name);
        goto out;
    }
    if (rc != SQLITE_DONE) {
        db_error(st, err, "pool");
        goto out;
    }
    if (!create && sqlite3_changes(st->db) == 0) {
        kn_error_set(err, ENOENT, "pool %s not found", p->name);
        goto out;
    }
    ret = 0;
out:
    stmt_put(st, s);
    pthread_mutex_unlock(&st->mu);
    return ret;
}

int
kn_store_pool_delete(kn_store_t *st, const char *name, kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    int ret = -1;
    pthread_mutex_lock(&st->mu);
    if (stmt_get(st, "DELETE FROM pools WHERE name = ?", &s) != SQLITE_OK) {
        db_error(st, err, "pool");
        goto out;
    }
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE) {
        db_error(st, err, "pool");
        goto out;
    }
    ret = 0;
out:
    stmt_put(st, s);
    pthread_mutex_unlock(&st->mu);
    return ret;
}

int
kn_store_pool_list(kn_store_t *st, kn_store_pool_t **out, size_t *n, kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    kn_store_pool_t *v = NULL;
    size_t len = 0;
    int ret = -1, rc;
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&st->mu);
    if (stmt_get(st,
                 "SELECT name, created_ms, revision, template, capacity FROM pools "
                 "ORDER BY created_ms, name",
                 &s) != SQLITE_OK) {
        db_error(st, err, "pools");
        goto out;
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        kn_store_pool_t *g = realloc(v, (len + 1) * sizeof *g);
        if (!g) {
            kn_error_set(err, ENOMEM, "pools");
            goto out;
        }
        v = g;
        kn_store_pool_t *p = &v[len++];
        memset(p, 0, sizeof *p);
        const unsigned char *name = sqlite3_column_text(s, 0);
        snprintf(p->name, sizeof p->name, "%s", name ? (const char *)name : "");
        p->created_ms = sqlite3_column_int64(s, 1);
        p->revision = sqlite3_column_int64(s, 2);
        p->template_json = col_dup(s, 3);
        p->capacity_json = col_dup(s, 4);
        if (!p->template_json || !p->capacity_json) {
            kn_error_set(err, ENOMEM, "pools");
            goto out;
        }
    }
    if (rc != SQLITE_DONE) {
        db_error(st, err, "pools");
        goto out;
    }
    *out = v;
    *n = len;
    v = NULL;
    len = 0;
    ret = 0;
out:
    kn_store_pool_free(v, len);
    stmt_put(st, s);
    pthread_mutex_unlock(&st->mu);
    return ret;
}

void
kn_store_pool_free(kn_store_pool_t *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].template_json);
        free(v[i].capacity_json);
    }
    free(v);
}

int
kn_store_delete_warm(kn_store_t *st, const char *id, bool *deleted, kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    int ret = -1;
    *deleted = false;
    pthread_mutex_lock(&st->mu);
    if (stmt_get(st, "DELETE FROM sandboxes WHERE id = ? AND state = 'Warm'", &s) != SQLITE_OK) {
        db_error(st, err, "delete");
        goto out;
    }
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE) {
        db_error(st, err, "delete");
        goto out;
    }
    *deleted = sqlite3_changes(st->db) > 0;
    ret = 0;
out:
    stmt_put(st, s);
    pthread_mutex_unlock(&st->mu);
    return ret;
}

/* ---- receipts ---- */

int
kn_store_run(kn_store_t *st, int (*fn)(kn_store_tx_t *tx, void *ctx, kn_error_t *err),
             kn_store_end_fn end, void *ctx, kn_error_t *err)
{
    int ret = -1;
    pthread_mutex_lock(&st->mu);
    if (run_cached(st, Q_BEGIN, err) < 0)
        goto out;
    kn_store_tx_t tx = {st};
    if (fn(&tx, ctx, err) < 0 || run_cached(st, Q_COMMIT, err) < 0) {
        kn_error_t ignored = {0};
        run_cached(st, Q_ROLLBACK, &ignored);
        goto out;
    }
    ret = 0;
out:
    if (end)
        end(ctx, ret == 0);
    pthread_mutex_unlock(&st->mu);
    return ret;
}

int
kn_store_tx_tail(kn_store_tx_t *tx, const char *chain_id, uint64_t *sequence, char *hash,
                 size_t hash_size, char **json, bool *found, kn_error_t *err)
{
    kn_store_t *st = tx->st;
    sqlite3_stmt *s = NULL;
    int ret = -1;
    *found = false;
    if (!(s = cached(st, Q_TAIL))) {
        db_error(st, err, "receipts tail");
        goto out;
    }
    sqlite3_bind_text(s, 1, chain_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const unsigned char *h = sqlite3_column_text(s, 1), *j = sqlite3_column_text(s, 2);
        *sequence = (uint64_t)sqlite3_column_int64(s, 0);
        snprintf(hash, hash_size, "%s", h ? (const char *)h : "");
        *json = j ? strdup((const char *)j) : NULL;
        if (!*json) {
            kn_error_set(err, ENOMEM, "receipts tail");
            goto out;
        }
        *found = true;
    } else if (rc != SQLITE_DONE) {
        db_error(st, err, "receipts tail");
        goto out;
    }
    ret = 0;
out:
    if (s)
        sqlite3_reset(s);
    return ret;
}

int
kn_store_tx_add_receipt(kn_store_tx_t *tx, const kn_store_receipt_t *r, kn_error_t *err)
{
    kn_store_t *st = tx->st;
    sqlite3_stmt *s = NULL;
    int ret = -1;
    if (!(s = cached(st, Q_INSERT))) {
        db_error(st, err, "insert receipt");
        goto out;
    }
    const char *t[] = {r->id,           r->chain_id,     NULL,
                       r->action_type,  r->risk_level,   r->status,
                       r->timestamp,    r->issuer_id,    r->principal_id,
                       r->receipt_json, r->receipt_hash, r->previous_receipt_hash};
    for (int i = 0; i < 12; i++)
        if (i == 2)
            sqlite3_bind_int64(s, 3, (sqlite3_int64)r->sequence);
        else
            sqlite3_bind_text(s, i + 1, t[i], -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE) {
        db_error(st, err, "insert receipt");
        goto out;
    }
    ret = 0;
out:
    if (s)
        sqlite3_reset(s);
    return ret;
}

static int collect_strings(kn_store_t *st, sqlite3_stmt *s, char ***out, size_t *n,
                           kn_error_t *err);

/* Columns 0 and 1 of every row of a prepared statement, as two arrays of
 * malloc'd strings (NULL for a NULL column). */
static int
collect_pairs(kn_store_t *st, sqlite3_stmt *s, char ***a, char ***b, size_t *n, const char *what,
              kn_error_t *err)
{
    char **c = NULL, **t = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **g1 = realloc(c, nc * sizeof *g1);
            if (g1)
                c = g1;
            char **g2 = g1 ? realloc(t, nc * sizeof *g2) : NULL;
            if (g2)
                t = g2;
            if (!g1 || !g2) {
                kn_store_strings_free(c, len);
                kn_store_strings_free(t, len);
                return kn_error_set(err, ENOMEM, "%s", what);
            }
            cap = nc;
        }
        c[len] = col_dup(s, 0);
        t[len] = col_dup(s, 1);
        len++;
    }
    if (rc != SQLITE_DONE) {
        kn_store_strings_free(c, len);
        kn_store_strings_free(t, len);
        return db_error(st, err, what);
    }
    *a = c;
    *b = t;
    *n = len;
    return 0;
}

int
kn_store_tx_unanswered(kn_store_tx_t *tx, const char *chain_id, const char *corr, char ***corrs,
                       char ***types, size_t *n, kn_error_t *err)
/* (types: the receipts' JSON texts) */
{
    kn_store_t *st = tx->st;
    sqlite3_stmt *s = NULL;
    int ret = -1;
    /* One pass over the chain: the groups of one correlation id in which
     * every receipt is still pending. */
    if (sqlite3_prepare_v2(
            st->db,
            "SELECT c, receipt_json FROM (SELECT json_extract(receipt_json, "
            "'$.credentialSubject.correlation_id') AS c, receipt_json, MIN(sequence) AS first, "
            "SUM(status != 'pending') AS answers FROM receipts WHERE chain_id = ?1 GROUP BY c) "
            "WHERE c IS NOT NULL AND answers = 0 AND (?2 IS NULL OR c = ?2) ORDER BY first",
            -1, &s, NULL) != SQLITE_OK) {
        db_error(st, err, "unanswered receipts");
        goto out;
    }
    sqlite3_bind_text(s, 1, chain_id, -1, SQLITE_STATIC);
    if (corr)
        sqlite3_bind_text(s, 2, corr, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 2);
    if (collect_pairs(st, s, corrs, types, n, "unanswered receipts", err) < 0)
        goto out;
    ret = 0;
out:
    sqlite3_finalize(s);
    return ret;
}

int
kn_store_tx_chains(kn_store_tx_t *tx, bool with_pending, char ***ids, size_t *n, kn_error_t *err)
{
    kn_store_t *st = tx->st;
    sqlite3_stmt *s = NULL;
    const char *sql =
        with_pending
            ? "SELECT chain_id FROM receipts WHERE status = 'pending' UNION "
              "SELECT chain_id FROM intents"
            : "SELECT r.chain_id FROM receipts r JOIN (SELECT chain_id, MAX(sequence) AS m FROM "
              "receipts GROUP BY chain_id) t ON r.chain_id = t.chain_id AND r.sequence = t.m "
              "WHERE json_extract(r.receipt_json, '$.credentialSubject.chain.terminal') IS NOT 1";
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        db_error(st, err, "receipt chains");
        sqlite3_finalize(s);
        return -1;
    }
    int ret = collect_strings(st, s, ids, n, err);
    sqlite3_finalize(s);
    return ret;
}

int
kn_store_tx_intent_put(kn_store_tx_t *tx, const char *corr, const char *chain_id,
                       const char *action_json, kn_error_t *err)
{
    kn_store_t *st = tx->st;
    sqlite3_stmt *s = cached(st, Q_INTENT_PUT);
    if (!s)
        return db_error(st, err, "call intent");
    sqlite3_bind_text(s, 1, corr, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, chain_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, action_json, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : db_error(st, err, "call intent");
}

int
kn_store_tx_intent_del(kn_store_tx_t *tx, const char *corr, bool *found, kn_error_t *err)
{
    kn_store_t *st = tx->st;
    sqlite3_stmt *s = cached(st, Q_INTENT_DEL);
    if (!s)
        return db_error(st, err, "call intent");
    sqlite3_bind_text(s, 1, corr, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_error(st, err, "call intent");
    if (found)
        *found = sqlite3_changes(st->db) > 0;
    return 0;
}

int
kn_store_tx_intents(kn_store_tx_t *tx, const char *chain_id, char ***corrs, char ***jsons,
                    size_t *n, kn_error_t *err)
{
    kn_store_t *st = tx->st;
    sqlite3_stmt *s = NULL;
    *corrs = *jsons = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT correlation_id, action_json FROM intents WHERE chain_id = ? "
                           "ORDER BY json_extract(action_json, '$.begun'), correlation_id",
                           -1, &s, NULL) != SQLITE_OK) {
        sqlite3_finalize(s);
        return db_error(st, err, "call intents");
    }
    sqlite3_bind_text(s, 1, chain_id, -1, SQLITE_STATIC);
    int ret = collect_pairs(st, s, corrs, jsons, n, "call intents", err);
    sqlite3_finalize(s);
    return ret;
}

int
kn_store_tx_rotated_to(kn_store_tx_t *tx, const char *new_public_key, bool *found, kn_error_t *err)
{
    kn_store_t *st = tx->st;
    sqlite3_stmt *s = NULL;
    *found = false;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT 1 FROM receipts WHERE json_extract(receipt_json, "
                           "'$.credentialSubject.keyRotation.new_public_key') = ? LIMIT 1",
                           -1, &s, NULL) != SQLITE_OK) {
        db_error(st, err, "rotation lookup");
        sqlite3_finalize(s);
        return -1;
    }
    sqlite3_bind_text(s, 1, new_public_key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(st, err, "rotation lookup");
    *found = rc == SQLITE_ROW;
    return 0;
}

void
kn_store_strings_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* Collects column 0 of every row of a prepared statement as strings. */
static int
collect_strings(kn_store_t *st, sqlite3_stmt *s, char ***out, size_t *n, kn_error_t *err)
{
    char **v = NULL;
    size_t len = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **g = realloc(v, nc * sizeof *g);
            if (!g)
                goto oom;
            v = g;
            cap = nc;
        }
        const unsigned char *t = sqlite3_column_text(s, 0);
        if (!(v[len] = strdup(t ? (const char *)t : "")))
            goto oom;
        len++;
    }
    if (rc != SQLITE_DONE) {
        kn_store_strings_free(v, len);
        return db_error(st, err, "receipts");
    }
    *out = v;
    *n = len;
    return 0;
oom:
    kn_store_strings_free(v, len);
    return kn_error_set(err, ENOMEM, "receipts");
}

int
kn_store_receipts(kn_store_t *st, const char *chain_id, uint64_t after, size_t limit, char ***jsons,
                  size_t *n, kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    int ret = -1;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db,
                           "SELECT receipt_json FROM receipts WHERE chain_id = ? AND sequence > ? "
                           "ORDER BY sequence LIMIT ?",
                           -1, &s, NULL) != SQLITE_OK) {
        db_error(st, err, "receipts");
        goto out;
    }
    sqlite3_bind_text(s, 1, chain_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)(after > INT64_MAX ? INT64_MAX : after));
    sqlite3_bind_int64(s, 3, limit ? (sqlite3_int64)limit : -1);
    ret = collect_strings(st, s, jsons, n, err);
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return ret;
}

int
kn_store_receipt_chains(kn_store_t *st, char ***ids, size_t *n, kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    int ret = -1;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db,
                           "SELECT chain_id FROM receipts GROUP BY chain_id ORDER BY MIN(rowid)",
                           -1, &s, NULL) != SQLITE_OK) {
        db_error(st, err, "receipt chains");
        goto out;
    }
    ret = collect_strings(st, s, ids, n, err);
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return ret;
}

void
kn_store_receipt_rows_free(kn_store_receipt_row_t *rows, size_t n)
{
    for (size_t i = 0; rows && i < n; i++) {
        kn_store_receipt_row_t *r = &rows[i];
        free(r->id);
        free(r->chain_id);
        free(r->action_type);
        free(r->risk_level);
        free(r->status);
        free(r->timestamp);
        free(r->receipt_json);
        free(r->receipt_hash);
        free(r->previous_receipt_hash);
    }
    free(rows);
}

int
kn_store_receipt_rows(kn_store_t *st, const char *chain_id, kn_store_receipt_row_t **rows,
                      size_t *n, kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    kn_store_receipt_row_t *v = NULL;
    size_t len = 0, cap = 0;
    int ret = -1, rc;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db,
                           "SELECT id, chain_id, sequence, action_type, risk_level, status, "
                           "timestamp, receipt_json, receipt_hash, previous_receipt_hash FROM "
                           "receipts WHERE chain_id = ? ORDER BY sequence",
                           -1, &s, NULL) != SQLITE_OK) {
        db_error(st, err, "receipt rows");
        goto out;
    }
    sqlite3_bind_text(s, 1, chain_id, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 64;
            kn_store_receipt_row_t *g = realloc(v, nc * sizeof *g);
            if (!g) {
                kn_error_set(err, ENOMEM, "receipt rows");
                goto out;
            }
            v = g;
            cap = nc;
        }
        kn_store_receipt_row_t *r = &v[len++];
        memset(r, 0, sizeof *r);
        r->id = col_dup(s, 0);
        r->chain_id = col_dup(s, 1);
        r->sequence = sqlite3_column_int64(s, 2);
        r->action_type = col_dup(s, 3);
        r->risk_level = col_dup(s, 4);
        r->status = col_dup(s, 5);
        r->timestamp = col_dup(s, 6);
        r->receipt_json = col_dup(s, 7);
        r->receipt_hash = col_dup(s, 8);
        r->previous_receipt_hash = col_dup(s, 9);
        if (!r->receipt_json) {
            kn_error_set(err, EINVAL, "receipt row %lld of %s has no receipt_json",
                         (long long)r->sequence, chain_id);
            goto out;
        }
    }
    if (rc != SQLITE_DONE) {
        db_error(st, err, "receipt rows");
        goto out;
    }
    *rows = v;
    *n = len;
    v = NULL;
    len = 0;
    ret = 0;
out:
    kn_store_receipt_rows_free(v, len);
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return ret;
}

static int has_row(kn_store_t *st, const char *sql, const char *id, bool *found, kn_error_t *err);

int
kn_store_has_sandbox(kn_store_t *st, const char *id, bool *found, kn_error_t *err)
{
    return has_row(st, "SELECT 1 FROM sandboxes WHERE id = ?", id, found, err);
}

int
kn_store_has_snapshot(kn_store_t *st, const char *id, bool *found, kn_error_t *err)
{
    /* The table is snapshots.c's, in the same file. */
    return has_row(st, "SELECT 1 FROM snapshots WHERE id = ?", id, found, err);
}

static int
has_row(kn_store_t *st, const char *sql, const char *id, bool *found, kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    int ret = -1;
    *found = false;
    pthread_mutex_lock(&st->mu);
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        db_error(st, err, "row lookup");
        goto out;
    }
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        db_error(st, err, "row lookup");
        goto out;
    }
    *found = rc == SQLITE_ROW;
    ret = 0;
out:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->mu);
    return ret;
}

/* ---- PTY sessions ------------------------------------------------------- */

/* Runs sql with up to three text arguments (NULL binds NULL) and collects
 * the rows as kn_store_pty_t (columns sandbox_id, pty_id, correlation_id,
 * closing); out NULL for statements that return nothing. Lock held. */
static int
pty_sql(kn_store_t *st, const char *sql, const char *a1, const char *a2, const char *a3,
        kn_store_pty_t **out, size_t *n, kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    kn_store_pty_t *v = NULL;
    size_t len = 0, cap = 0;
    int ret = -1, rc;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        db_error(st, err, "pty sessions");
        goto out;
    }
    const char *args[3] = {a1, a2, a3};
    for (int i = 0; i < 3 && i < sqlite3_bind_parameter_count(s); i++)
        if (args[i])
            sqlite3_bind_text(s, i + 1, args[i], -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (!out)
            continue;
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 8;
            kn_store_pty_t *g = realloc(v, nc * sizeof *g);
            if (!g) {
                kn_error_set(err, ENOMEM, "pty sessions");
                goto out;
            }
            v = g;
            cap = nc;
        }
        kn_store_pty_t *e = &v[len++];
        memset(e, 0, sizeof *e);
        const unsigned char *t;
        if ((t = sqlite3_column_text(s, 0)))
            snprintf(e->sandbox_id, sizeof e->sandbox_id, "%s", (const char *)t);
        if ((t = sqlite3_column_text(s, 1)))
            snprintf(e->pty_id, sizeof e->pty_id, "%s", (const char *)t);
        if ((t = sqlite3_column_text(s, 2)))
            snprintf(e->corr, sizeof e->corr, "%s", (const char *)t);
        e->closing = sqlite3_column_int(s, 3) != 0;
    }
    if (rc != SQLITE_DONE) {
        db_error(st, err, "pty sessions");
        goto out;
    }
    if (out) {
        *out = v;
        *n = len;
        v = NULL;
    }
    ret = 0;
out:
    free(v);
    sqlite3_finalize(s);
    return ret;
}

#define PTY_COLS "SELECT sandbox_id, pty_id, correlation_id, closing FROM ptys "

int
kn_store_pty_get(kn_store_t *st, const char *sandbox, const char *pty, kn_store_pty_t *out,
                 bool *found, kn_error_t *err)
{
    kn_store_pty_t *v = NULL;
    size_t n = 0;
    pthread_mutex_lock(&st->mu);
    int rc = pty_sql(st, PTY_COLS "WHERE sandbox_id = ?1 AND pty_id = ?2", sandbox, pty, NULL, &v,
                     &n, err);
    pthread_mutex_unlock(&st->mu);
    *found = rc == 0 && n > 0;
    if (*found)
        *out = v[0];
    free(v);
    return rc;
}

int
kn_store_tx_pty_put(kn_store_tx_t *tx, const char *sandbox, const char *pty, const char *corr,
                    kn_error_t *err)
{
    return pty_sql(tx->st,
                   "INSERT OR REPLACE INTO ptys (sandbox_id, pty_id, correlation_id) "
                   "VALUES (?1, ?2, ?3)",
                   sandbox, pty, corr, NULL, NULL, err);
}

int
kn_store_tx_pty_closing(kn_store_tx_t *tx, const char *sandbox, const char *pty, kn_error_t *err)
{
    return pty_sql(tx->st, "UPDATE ptys SET closing = 1 WHERE sandbox_id = ?1 AND pty_id = ?2",
                   sandbox, pty, NULL, NULL, NULL, err);
}

int
kn_store_tx_pty_del(kn_store_tx_t *tx, const char *sandbox, const char *pty, kn_error_t *err)
{
    return pty_sql(tx->st, "DELETE FROM ptys WHERE sandbox_id = ?1 AND pty_id = ?2", sandbox, pty,
                   NULL, NULL, NULL, err);
}

int
kn_store_tx_ptys(kn_store_tx_t *tx, const char *sandbox, bool closing_only, kn_store_pty_t **out,
                 size_t *n, kn_error_t *err)
{
    *out = NULL;
    *n = 0;
    if (sandbox)
        return pty_sql(tx->st,
                       closing_only ? PTY_COLS
                           "WHERE sandbox_id = ?1 AND closing = 1 ORDER BY rowid"
                                    : PTY_COLS "WHERE sandbox_id = ?1 ORDER BY rowid",
                       sandbox, NULL, NULL, out, n, err);
    return pty_sql(tx->st,
                   closing_only ? PTY_COLS "WHERE closing = 1 ORDER BY rowid"
                                : PTY_COLS "ORDER BY rowid",
                   NULL, NULL, NULL, out, n, err);
}

struct sqlite3 *
kn_store_tx_db(kn_store_tx_t *tx)
{
    return tx->st->db;
}
