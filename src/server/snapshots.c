/* snapshots.c - see snapshots.h. */
#include "snapshots.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "receipts.h"
#include "sbx_internal.h"
#include "shim.h"

/* A capture copies the whole writable layer: give a big one time. */
#define CAPTURE_TIMEOUT_MS (15 * 60 * 1000)

struct kn_snaps {
    const kn_server_cfg_t *cfg;
    kn_sbx_t *mgr;
    kn_rcpt_t *receipts; /* NULL: receipts are off */
    sqlite3 *db;
    pthread_mutex_t mu; /* the connection, and the count below */
    pthread_cond_t idle;
    int running; /* captures in progress */
};

typedef struct snap_rec {
    char id[40], sandbox_id[40], state[16];
    char *name, *reason, *message, *digest;
    int64_t created_ms, transition_ms;
} snap_rec_t;

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS snapshots ("
    " id TEXT PRIMARY KEY,"
    " sandbox_id TEXT NOT NULL,"
    " name TEXT,"
    " state TEXT NOT NULL,"
    " reason TEXT,"
    " message TEXT,"
    " digest TEXT,"
    " created_ms INTEGER NOT NULL,"
    " transition_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS snapshots_created ON snapshots(created_ms);";

static void
rec_free(snap_rec_t *r)
{
    free(r->name);
    free(r->reason);
    free(r->message);
    free(r->digest);
    memset(r, 0, sizeof *r);
}

static char *
col(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

static void
row(sqlite3_stmt *st, snap_rec_t *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", (const char *)sqlite3_column_text(st, 0) ?: "");
    snprintf(r->sandbox_id, sizeof r->sandbox_id, "%s",
             (const char *)sqlite3_column_text(st, 1) ?: "");
    r->name = col(st, 2);
    snprintf(r->state, sizeof r->state, "%s", (const char *)sqlite3_column_text(st, 3) ?: "");
    r->reason = col(st, 4);
    r->message = col(st, 5);
    r->digest = col(st, 6);
    r->created_ms = sqlite3_column_int64(st, 7);
    r->transition_ms = sqlite3_column_int64(st, 8);
}

#define COLUMNS "id, sandbox_id, name, state, reason, message, digest, created_ms, transition_ms"

static int
db_fail(kn_snaps_t *s, kn_error_t *err, const char *what)
{
    return kn_error_set(err, EIO, "snapshots: %s: %s", what, sqlite3_errmsg(s->db));
}

/* One row by id (the caller holds mu). *found false when there is none. */
static int
get_locked(kn_snaps_t *s, const char *id, snap_rec_t *r, bool *found, kn_error_t *err)
{
    sqlite3_stmt *st = NULL;
    *found = false;
    if (sqlite3_prepare_v2(s->db, "SELECT " COLUMNS " FROM snapshots WHERE id = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return db_fail(s, err, "select");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        row(st, r);
        *found = true;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_fail(s, err, "select");
}

static int
get(kn_snaps_t *s, const char *id, snap_rec_t *r, kn_error_t *err)
{
    bool found;
    pthread_mutex_lock(&s->mu);
    int rc = get_locked(s, id, r, &found, err);
    pthread_mutex_unlock(&s->mu);
    if (rc == 0 && !found)
        return kn_server_error(err, ENOENT, "snapshot %s not found", id);
    return rc;
}

/* Sets state, reason, message (and digest when given), when the row is in
 * state `from` (NULL: any), on db. Returns 1 when a row changed. */
static int
set_state_db(sqlite3 *db, const char *id, const char *from, const char *state, const char *reason,
             const char *message, const char *digest, kn_error_t *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "UPDATE snapshots SET state = ?, reason = ?, message = ?,"
                                " digest = COALESCE(?, digest), transition_ms = ?"
                                " WHERE id = ? AND (? IS NULL OR state = ?)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, message, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, digest, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, kn_sbx_now_ms());
        sqlite3_bind_text(st, 6, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, from, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 8, from, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    int changed = rc == SQLITE_DONE ? sqlite3_changes(db) : 0;
    int ret = rc == SQLITE_DONE
                  ? changed > 0
                  : kn_error_set(err, EIO, "snapshots: update: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return ret;
}

static int
set_state(kn_snaps_t *s, const char *id, const char *from, const char *state, const char *reason,
          const char *message, const char *digest, kn_error_t *err)
{
    pthread_mutex_lock(&s->mu);
    int ret = set_state_db(s->db, id, from, state, reason, message, digest, err);
    pthread_mutex_unlock(&s->mu);
    return ret;
}

/* A state change made in the transaction of its receipt (kn_rcpt_act_end_with). */
typedef struct change {
    const char *id, *from, *state, *reason, *message, *digest;
    bool remove;
} change_t;

static int
remove_row_db(sqlite3 *db, const char *id, kn_error_t *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "DELETE FROM snapshots WHERE id = ?", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    int ret =
        rc == SQLITE_DONE ? 0 : kn_error_set(err, EIO, "snapshots: delete: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return ret;
}

static int
apply_change(sqlite3 *db, void *ctx, kn_error_t *err)
{
    const change_t *c = ctx;
    if (c->remove)
        return remove_row_db(db, c->id, err);
    return set_state_db(db, c->id, c->from, c->state, c->reason, c->message, c->digest, err) < 0
               ? -1
               : 0;
}

static int
remove_row(kn_snaps_t *s, const char *id, kn_error_t *err)
{
    pthread_mutex_lock(&s->mu);
    int ret = remove_row_db(s->db, id, err);
    pthread_mutex_unlock(&s->mu);
    return ret;
}

static int
all(kn_snaps_t *s, snap_rec_t **out, size_t *n, kn_error_t *err)
{
    sqlite3_stmt *st = NULL;
    snap_rec_t *v = NULL;
    size_t cnt = 0, cap = 0;
    int ret = 0;
    pthread_mutex_lock(&s->mu);
    int rc = sqlite3_prepare_v2(
        s->db, "SELECT " COLUMNS " FROM snapshots ORDER BY created_ms DESC, id", -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            snap_rec_t *g = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof *g);
            if (!g) {
                ret = kn_error_set(err, ENOMEM, "snapshots");
                break;
            }
            v = g;
        }
        row(st, &v[cnt++]);
        rc = SQLITE_OK;
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = db_fail(s, err, "list");
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->mu);
    if (ret < 0) {
        for (size_t i = 0; i < cnt; i++)
            rec_free(&v[i]);
        free(v);
        return -1;
    }
    *out = v;
    *n = cnt;
    return 0;
}

static json_t *
to_json(const snap_rec_t *r)
{
    char created[40], trans[40];
    kn_sbx_format_time(r->created_ms, created, sizeof created);
    kn_sbx_format_time(r->transition_ms, trans, sizeof trans);
    json_t *status = json_pack("{s:s, s:s}", "state", r->state, "lastTransitionAt", trans);
    if (r->reason && r->reason[0])
        json_object_set_new(status, "reason", json_string(r->reason));
    if (r->message && r->message[0])
        json_object_set_new(status, "message", json_string(r->message));
    json_t *o = json_pack("{s:s, s:s, s:o, s:s}", "id", r->id, "sandboxId", r->sandbox_id, "status",
                          status, "createdAt", created);
    if (o && r->name)
        json_object_set_new(o, "name", json_string(r->name));
    return o;
}

static bool
id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n >= 40)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)id[i]) && id[i] != '-')
            return false;
    return true;
}

/* --- capture ---------------------------------------------------------------- */

typedef struct job {
    kn_snaps_t *s;
    char id[40], sandbox_id[40];
    char *name;
    kn_rcpt_act_t act; /* its receipts: pending written, outcome to come */
} job_t;

/* The shim's snapshot.json after a capture, for this snapshot. */
static json_t *
capture_result(kn_snaps_t *s, const char *sandbox_id, const char *id, kn_error_t *err)
{
    char dir[PATH_MAX], path[PATH_MAX + 32];
    kn_sbx_run_dir(s->mgr, sandbox_id, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s", dir, KN_SHIM_SNAPSHOT);
    json_t *j = json_load_file(path, 0, NULL);
    const char *got = json_string_value(json_object_get(j, "id"));
    const char *digest = json_string_value(json_object_get(j, "digest"));
    if (!got || strcmp(got, id) || !digest || strncmp(digest, "sha256:", 7)) {
        json_decref(j);
        kn_error_set(err, EIO, "the supervisor reported no result for snapshot %s", id);
        return NULL;
    }
    return j;
}

static void
capture(job_t *j)
{
    kn_snaps_t *s = j->s;
    char dir[PATH_MAX], cmd[64];
    kn_error_t err = {0};
    kn_sbx_run_dir(s->mgr, j->sandbox_id, dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "snapshot %s", j->id);
    json_t *res = NULL;
    if (kn_shim_call(dir, cmd, CAPTURE_TIMEOUT_MS, &err) < 0 ||
        !(res = capture_result(s, j->sandbox_id, j->id, &err))) {
        kn_sbx_log("error", "snapshot failed", j->sandbox_id, err.msg);
        /* The outcome and the Failed state in one transaction. */
        change_t ch = {j->id,   "Creating", "Failed", "snapshot_capture_failed",
                       err.msg, NULL,       false};
        if (kn_rcpt_act_end_with(&j->act, NULL, err.msg, apply_change, &ch) != 0)
            set_state(s, j->id, "Creating", "Failed", "snapshot_capture_failed", err.msg, NULL,
                      &err);
        return;
    }
    const char *digest = json_string_value(json_object_get(res, "digest"));
    char msg[600], note[300] = "";
    if (j->name) {
        /* A name that is an image name also names the image (a later
         * snapshot of the same name moves it, as a tag moves); never over
         * an imported image. */
        kn_error_t terr = {0};
        if (strchr(j->name, '@') == NULL &&
            kn_image_tag(s->cfg->image_store, digest, j->name, true, &terr) == 0)
            snprintf(note, sizeof note, " Image name: %s (and %s:%s).", j->name,
                     KN_SHIM_SNAPSHOT_REPO, j->id);
        else if (terr.code == EEXIST)
            snprintf(note, sizeof note, " The name was not given to the image: %s.", terr.msg);
    }
    snprintf(msg, sizeof msg,
             "Snapshot ready: %lld files, %lld bytes; the sandbox was frozen for %.1f ms. Files "
             "are kept, processes are not.%s",
             (long long)json_integer_value(json_object_get(res, "files")),
             (long long)json_integer_value(json_object_get(res, "bytes")),
             json_number_value(json_object_get(res, "frozenMs")), note);
    /* The outcome and the Ready state in one transaction (without the
     * receipt, a drop, recorded, when it cannot be written: the capture is
     * done either way). */
    json_t *resp = json_pack("{s:s, s:s, s:O, s:O}", "snapshotId", j->id, "digest", digest, "files",
                             json_object_get(res, "files"), "bytes", json_object_get(res, "bytes"));
    change_t ch = {j->id, "Creating", "Ready", "snapshot_ready", msg, digest, false};
    int rc = kn_rcpt_act_end_with(&j->act, resp, resp ? NULL : "out of memory", apply_change, &ch);
    json_decref(resp);
    if (rc != 0 &&
        set_state(s, j->id, "Creating", "Ready", "snapshot_ready", msg, digest, &err) < 0)
        kn_sbx_log("error", "snapshot: cannot mark Ready", j->sandbox_id, err.msg);
    else
        kn_sbx_log("info", "snapshot ready", j->sandbox_id, j->id);
    json_decref(res);
}

static void *
worker(void *arg)
{
    job_t *j = arg;
    kn_snaps_t *s = j->s;
    capture(j);
    free(j->name);
    free(j);
    pthread_mutex_lock(&s->mu);
    s->running--;
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int
check_body(const json_t *body, const char **name, kn_error_t *err)
{
    *name = NULL;
    if (!json_is_object(body))
        return kn_server_error(err, EINVAL,
                               "the body must be a JSON object ({} or {\"name\": ...})");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)body, k, v)
    {
        if (strcmp(k, "name") != 0)
            return kn_server_error(err, EINVAL, "unknown field '%s' (a snapshot takes only name)",
                                   k);
        if (json_is_null(v))
            continue;
        const char *n = json_string_value(v);
        if (!n || !n[0] || strlen(n) != json_string_length(v) || strlen(n) > 255)
            return kn_server_error(err, EINVAL, "name must be a string of 1 to 255 characters");
        for (const char *c = n; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                return kn_server_error(err, EINVAL, "name must not hold control characters");
        *name = n;
    }
    return 0;
}

int
kn_snaps_create(kn_snaps_t *s, const char *sandbox_id, const json_t *body, json_t **out,
                kn_error_t *err)
{
    const char *name;
    if (check_body(body, &name, err) < 0)
        return -1;
    json_t *sb = NULL;
    if (kn_sbx_get(s->mgr, sandbox_id, &sb, err) < 0)
        return -1;
    const char *state = json_string_value(json_object_get(json_object_get(sb, "status"), "state"));
    if (!state || strcmp(state, "Running") != 0) {
        kn_server_error(err, EBUSY, "sandbox %s is %s: a snapshot is taken of a Running sandbox",
                        sandbox_id, state ? state : "in no state");
        json_decref(sb);
        return -1;
    }
    json_decref(sb);
    snap_rec_t r = {0};
    kn_server_new_id(r.id);
    /* Its receipt (docs/receipts.md): pending in the sandbox's chain before
     * anything is done; the capture's outcome goes to that chain and opens
     * the snapshot's own. */
    char resource[96];
    snprintf(resource, sizeof resource, "/v1/sandboxes/%s/snapshots", sandbox_id);
    kn_rcpt_act_t act;
    kn_rcpt_act_init(&act, "io.kennel.snapshot.create", "medium", "kennel:lifecycle", resource,
                     sandbox_id, r.id);
    act.mirror = true;
    if (kn_rcpt_act_begin(s->receipts, &act,
                          name ? json_pack("{s:s}", "name", name) : json_object(), err) < 0)
        return -1;
    snprintf(r.sandbox_id, sizeof r.sandbox_id, "%s", sandbox_id);
    snprintf(r.state, sizeof r.state, "Creating");
    r.created_ms = r.transition_ms = kn_sbx_now_ms();
    r.reason = "snapshot_accepted";
    r.message = "Snapshot creation accepted.";
    r.name = (char *)name;
    job_t *j = calloc(1, sizeof *j);
    if (!j || (name && !(j->name = strdup(name)))) {
        free(j);
        kn_rcpt_act_end(&act, NULL, "out of memory");
        return kn_error_set(err, ENOMEM, "snapshot");
    }
    j->s = s;
    j->act = act;
    memcpy(j->id, r.id, sizeof j->id);
    memcpy(j->sandbox_id, r.sandbox_id, sizeof j->sandbox_id);
    sqlite3_stmt *st = NULL;
    pthread_mutex_lock(&s->mu);
    int rc = sqlite3_prepare_v2(
        s->db, "INSERT INTO snapshots (" COLUMNS ") VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?)", -1, &st,
        NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, r.id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, r.sandbox_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, r.state, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, r.reason, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, r.message, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, r.created_ms);
        sqlite3_bind_int64(st, 8, r.transition_ms);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    int ret = rc == SQLITE_DONE ? 0 : db_fail(s, err, "insert");
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (ret == 0) {
        s->running++;
        if (pthread_create(&t, &a, worker, j) != 0) {
            s->running--;
            ret = kn_error_set(err, EAGAIN, "snapshot worker");
        }
    }
    pthread_attr_destroy(&a);
    pthread_mutex_unlock(&s->mu);
    if (ret < 0) {
        if (rc == SQLITE_DONE) {
            kn_error_t e = {0};
            set_state(s, r.id, NULL, "Failed", "snapshot_capture_failed", err->msg, NULL, &e);
        }
        kn_rcpt_act_end(&j->act, NULL, err->msg);
        free(j->name);
        free(j);
        return -1;
    }
    *out = to_json(&r);
    return *out ? 0 : kn_error_set(err, ENOMEM, "snapshot");
}

int
kn_snaps_get(kn_snaps_t *s, const char *id, json_t **out, kn_error_t *err)
{
    if (!id_ok(id))
        return kn_server_error(err, ENOENT, "snapshot %s not found", id);
    snap_rec_t r;
    if (get(s, id, &r, err) < 0)
        return -1;
    *out = to_json(&r);
    rec_free(&r);
    return *out ? 0 : kn_error_set(err, ENOMEM, "snapshot");
}

static bool
matches(const snap_rec_t *r, const kn_snap_filter_t *f)
{
    if (f->sandbox_id && strcmp(f->sandbox_id, r->sandbox_id))
        return false;
    if (f->name && (!r->name || strcmp(f->name, r->name)))
        return false;
    bool ok = f->n_states == 0;
    for (int i = 0; i < f->n_states && !ok; i++)
        ok = !strcasecmp(f->states[i], r->state);
    return ok;
}

int
kn_snaps_list(kn_snaps_t *s, const kn_snap_filter_t *f, json_t **out, kn_error_t *err)
{
    snap_rec_t *v = NULL;
    size_t n = 0;
    if (all(s, &v, &n, err) < 0)
        return -1;
    json_t *items = json_array();
    long total = 0, first = (f->page - 1) * f->page_size;
    for (size_t i = 0; i < n; i++) {
        if (matches(&v[i], f)) {
            if (total >= first && total < first + f->page_size)
                json_array_append_new(items, to_json(&v[i]));
            total++;
        }
        rec_free(&v[i]);
    }
    free(v);
    long pages = (total + f->page_size - 1) / f->page_size;
    *out = json_pack("{s:o, s:{s:I, s:I, s:I, s:I, s:b}}", "items", items, "pagination", "page",
                     (json_int_t)f->page, "pageSize", (json_int_t)f->page_size, "totalItems",
                     (json_int_t)total, "totalPages", (json_int_t)pages, "hasNextPage",
                     f->page < pages);
    return *out ? 0 : kn_error_set(err, ENOMEM, "snapshots");
}

/* Removes a snapshot's image (and a kennel-snapshot:ID ref left by a
 * capture that finished after its row was given up), then the layers no
 * image uses when the store is not busy. EBUSY while a sandbox runs from it. */
static int
remove_image(kn_snaps_t *s, const snap_rec_t *r, kn_error_t *err)
{
    const char *store = s->cfg->image_store;
    char ref[96];
    snprintf(ref, sizeof ref, KN_SHIM_SNAPSHOT_REPO ":%s", r->id);
    kn_error_t e = {0};
    if (r->digest && kn_image_remove(store, r->digest, &e) < 0 && e.code != ENOENT) {
        if (e.code == EBUSY)
            return kn_server_error(err, EBUSY,
                                   "snapshot %s is in use: a sandbox runs from it (delete that "
                                   "sandbox first)",
                                   r->id);
        return kn_server_error(err, EIO, "snapshot %s: %s", r->id, e.msg);
    }
    kn_error_t e2 = {0};
    char digest[KN_DIGEST_MAX];
    if (kn_image_resolve(store, ref, digest, sizeof digest, &e2) == 0 &&
        kn_image_remove(store, digest, &e2) < 0 && e2.code == EBUSY)
        return kn_server_error(err, EBUSY, "snapshot %s is in use: a sandbox runs from it", r->id);
    size_t freed = 0;
    kn_error_t e3 = {0};
    kn_image_gc(store, &freed, &e3);
    return 0;
}

int
kn_snaps_delete(kn_snaps_t *s, const char *id, kn_error_t *err)
{
    if (!id_ok(id))
        return kn_server_error(err, ENOENT, "snapshot %s not found", id);
    snap_rec_t r;
    if (get(s, id, &r, err) < 0)
        return -1;
    int ret = -1;
    kn_rcpt_act_t act = {0};
    char prev[16];
    snprintf(prev, sizeof prev, "%s", r.state);
    if (!strcmp(r.state, "Creating")) {
        kn_server_error(err, EBUSY, "snapshot %s is still being created and cannot be deleted", id);
        goto out;
    }
    /* Pending in the snapshot's own chain; its success ends that chain. */
    char resource[96];
    snprintf(resource, sizeof resource, "/v1/snapshots/%s", id);
    kn_rcpt_act_init(&act, "io.kennel.snapshot.delete", "high", "kennel:lifecycle", resource,
                     r.sandbox_id, id);
    act.terminal = true;
    if (kn_rcpt_act_begin(s->receipts, &act, NULL, err) < 0)
        goto out;
    int changed = set_state(s, id, prev, "Deleting", "snapshot_delete_requested",
                            "Snapshot deletion requested.", NULL, err);
    if (changed < 0)
        goto out;
    if (changed == 0 && strcmp(prev, "Deleting") != 0) {
        kn_server_error(err, EBUSY, "snapshot %s changed state and cannot be deleted", id);
        goto out;
    }
    if (remove_image(s, &r, err) < 0) {
        kn_error_t e = {0};
        set_state(s, id, "Deleting", prev, r.reason ? r.reason : "", r.message ? r.message : "",
                  NULL, &e);
        goto out;
    }
    /* The row goes in the transaction of the terminal receipt. */
    json_t *resp = json_pack("{s:b}", "deleted", 1);
    change_t ch = {.id = id, .remove = true};
    int rc = resp ? kn_rcpt_act_end_with(&act, resp, NULL, apply_change, &ch) : 1;
    json_decref(resp);
    ret = rc == 0 ? 0 : remove_row(s, id, err);
out:
    if (ret < 0)
        kn_rcpt_act_end(&act, NULL, err->msg);
    rec_free(&r);
    return ret;
}

int
kn_snaps_resolve(kn_snaps_t *s, const char *id, char *digest, size_t len, kn_error_t *err)
{
    if (!id_ok(id))
        return kn_server_error(err, ENOENT, "snapshot %s not found", id);
    snap_rec_t r;
    if (get(s, id, &r, err) < 0)
        return -1;
    int ret = 0;
    if (strcmp(r.state, "Ready") != 0 || !r.digest)
        ret = kn_server_error(err, EBUSY, "snapshot %s is %s, not Ready: it cannot be restored", id,
                              r.state);
    else
        snprintf(digest, len, "%s", r.digest);
    rec_free(&r);
    return ret;
}

/* --- start and stop ---------------------------------------------------------- */

static void
recover(kn_snaps_t *s)
{
    snap_rec_t *v = NULL;
    size_t n = 0;
    kn_error_t err = {0};
    if (all(s, &v, &n, &err) < 0) {
        kn_sbx_log("error", "snapshots: cannot list for recovery", "", err.msg);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        snap_rec_t *r = &v[i];
        char ref[96], digest[KN_DIGEST_MAX];
        snprintf(ref, sizeof ref, KN_SHIM_SNAPSHOT_REPO ":%s", r->id);
        kn_error_t e = {0};
        if (!strcmp(r->state, "Creating") && s->receipts) {
            /* Its receipt was answered "failure" at start-up (the outcome
             * and Ready are one transaction, which did not commit): the
             * capture is discarded so that both say the same. */
            (void)remove_image(s, r, &e);
            set_state(s, r->id, "Creating", "Failed", "snapshot_interrupted",
                      "The server stopped before the snapshot's outcome was recorded; the "
                      "capture was discarded.",
                      NULL, &e);
        } else if (!strcmp(r->state, "Creating")) {
            if (kn_image_resolve(s->cfg->image_store, ref, digest, sizeof digest, &e) == 0)
                set_state(s, r->id, "Creating", "Ready", "snapshot_recovered",
                          "Snapshot stored before the server restarted. Files are kept, "
                          "processes are not.",
                          digest, &e);
            else
                set_state(s, r->id, "Creating", "Failed", "snapshot_interrupted",
                          "The server stopped while the snapshot was being captured.", NULL, &e);
        } else if (!strcmp(r->state, "Deleting")) {
            if (remove_image(s, r, &e) == 0)
                remove_row(s, r->id, &e);
        }
        rec_free(r);
    }
    free(v);
}

int
kn_snaps_open(const kn_server_cfg_t *cfg, kn_sbx_t *mgr, kn_rcpt_t *receipts, kn_snaps_t **out,
              kn_error_t *err)
{
    kn_snaps_t *s = calloc(1, sizeof *s);
    if (!s)
        return kn_error_set(err, ENOMEM, "snapshots");
    s->cfg = cfg;
    s->mgr = mgr;
    s->receipts = receipts;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->idle, NULL);
    int rc =
        sqlite3_open_v2(cfg->db_path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    char *msg = NULL;
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(s->db, 5000);
        rc = sqlite3_exec(s->db, schema, NULL, NULL, &msg);
    }
    if (rc != SQLITE_OK) {
        kn_error_set(err, EIO, "snapshots: %s: %s", cfg->db_path,
                     msg ? msg : (s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc)));
        sqlite3_free(msg);
        kn_snaps_close(s);
        return -1;
    }
    recover(s);
    *out = s;
    return 0;
}

void
kn_snaps_close(kn_snaps_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    while (s->running > 0)
        pthread_cond_wait(&s->idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
    sqlite3_close(s->db);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
