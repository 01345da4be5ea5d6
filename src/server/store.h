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

#endif
