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
    /* Prepared statements, one per SQL text (the texts are constants):
     * preparing costs more than running these small statements. */
    struct {
        const char *sql;
        sqlite3_stmt *stmt;
    } cache[STMT_CACHE];
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
    " capacity TEXT NOT NULL);";

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
    if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                     &msg) != SQLITE_OK ||
        sqlite3_exec(st->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        kn_error_set(err, EIO, "store: %s: %s", path, msg ? msg : "schema");
        sqlite3_free(msg);
        kn_store_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

void
kn_store_close(kn_store_t *st)
{
    if (!st)
        return;
    for (int i = 0; i < STMT_CACHE; i++)
        sqlite3_finalize(st->cache[i].stmt);
    sqlite3_close(st->db);
    pthread_mutex_destroy(&st->mu);
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

int
kn_store_get(kn_store_t *st, const char *id, kn_store_rec_t *rec, bool *found, kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    int ret = -1;
    *found = false;
    pthread_mutex_lock(&st->mu);
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

/* Runs one UPDATE/DELETE whose first parameters are text (NULL for SQL NULL)
 * or, for int_at > 0, an integer at that position; the id is last. */
static int
exec_update(kn_store_t *st, const char *sql, const char *const *texts, int ntexts, int int_at,
            int64_t ival, const char *id, bool need_row, kn_error_t *err)
{
    sqlite3_stmt *s = NULL;
    int ret = -1;
    pthread_mutex_lock(&st->mu);
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
    ret = 0;
out:
    stmt_put(st, s);
    pthread_mutex_unlock(&st->mu);
    return ret;
}

int
kn_store_set_state(kn_store_t *st, const char *id, const char *state, const char *reason,
                   const char *message, kn_error_t *err)
{
    const char *t[] = {state, reason, message};
    return exec_update(st,
                       "UPDATE sandboxes SET state = ?, reason = ?, message = ?, "
                       "transition_ms = ? WHERE id = ?",
                       t, 3, 4, now_ms(), id, true, err);
}

int
kn_store_set_metadata(kn_store_t *st, const char *id, const char *metadata, kn_error_t *err)
{
    const char *t[] = {metadata};
    return exec_update(st, "UPDATE sandboxes SET metadata = ? WHERE id = ?", t, 1, 0, 0, id, true,
                       err);
}

int
kn_store_set_expires(kn_store_t *st, const char *id, int64_t expires_ms, kn_error_t *err)
{
    return exec_update(st, "UPDATE sandboxes SET expires_ms = ? WHERE id = ?", NULL, 0, 1,
                       expires_ms, id, true, err);
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
    return exec_update(st, "DELETE FROM sandboxes WHERE id = ?", NULL, 0, 0, 0, id, false, err);
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
    return exec_update(st, "DELETE FROM pools WHERE name = ?", NULL, 0, 0, 0, name, false, err);
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
