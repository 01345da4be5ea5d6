/* sbx_internal.h - what the sandbox manager (sandboxes.c) and its warm
 * pools (pools.c) share. Not for other modules: they use sandboxes.h. */
#ifndef KN_SBX_INTERNAL_H
#define KN_SBX_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "sandboxes.h"
#include "server.h"
#include "store.h"

/* At most this many pools (from the config and the API together). */
#define KN_SBX_MAX_POOLS 64
/* Largest capacity figure a pool takes. */
#define KN_SBX_POOL_LIMIT 1000

/* A warm pool (docs/server.md): members are ordinary shims whose row is in
 * state "Warm" with reason "pool:<name>", hidden from the API until a
 * create claims one. Pools live in kn_sbx.pools under mu; a pointer used
 * outside mu holds a reference (kn_sbx_pool_get/put). */
typedef struct kn_sbx_pool {
    char name[64];
    char reason[80];
    json_t *template; /* as given: image, resourceLimits, entrypoint */
    json_t *spec;     /* the members' spec: no entrypoint, "pool": name */
    json_t *kennel;   /* what a request must resolve to, to be served */
    int buffer_min, buffer_max, pool_min, pool_max;
    bool filling; /* below bufferMin at some point: fill up to bufferMax */
    bool config;  /* from the server's config: read-only through the API */
    int64_t created_ms;
    int64_t revision;
    int refs; /* under mu */
} kn_sbx_pool_t;

struct kn_sbx {
    const kn_server_cfg_t *cfg;
    kn_store_t *store;
    /* Ids this process is creating: a Pending row outside this set was left
     * by an earlier server and is settled by the reaper. Also guards pools. */
    pthread_mutex_t mu;
    kn_sbx_pool_t *pools[KN_SBX_MAX_POOLS];
    int n_pools;
    char (*creating)[40];
    size_t n_creating, cap_creating;
};

/* sandboxes.c */
int64_t kn_sbx_now_ms(void);
void kn_sbx_run_dir(const kn_sbx_t *m, const char *id, char *buf, size_t len);
/* Marks (on) or unmarks an id as being created by this process. */
void kn_sbx_creating_mark(kn_sbx_t *m, const char *id, bool on);
json_t *kn_sbx_to_json(const kn_store_rec_t *r, bool with_image);
/* Ends a sandbox's shim (if any) and removes its run directory and row. */
int kn_sbx_destroy(kn_sbx_t *m, const char *id, kn_error_t *err);
/* Makes a sandbox from a parsed spec: run directory, row (Pending), shim;
 * then the row goes to state/reason/message. rec is filled (caller frees). */
int kn_sbx_provision(kn_sbx_t *m, const json_t *spec, const char *state, const char *reason,
                     const char *message, kn_store_rec_t *rec, kn_error_t *err);
/* One JSON log line on standard error. */
void kn_sbx_log(const char *level, const char *msg, const char *id, const char *detail);

/* pools.c */
int kn_sbx_pools_init(kn_sbx_t *m, kn_error_t *err);
void kn_sbx_pools_free(kn_sbx_t *m);
void kn_sbx_pool_put(kn_sbx_t *m, kn_sbx_pool_t *p);
/* extensions.poolRef: a new request completed from the pool's template
 * (NULL without poolRef) and the pool (a reference). EINVAL for an unknown
 * pool. */
int kn_sbx_pool_request(kn_sbx_t *m, const json_t *req, json_t **merged, kn_sbx_pool_t **pool,
                        kn_error_t *err);
/* The pool a spec can be served from (wanted: only that one), with a
 * reference, or NULL. */
kn_sbx_pool_t *kn_sbx_pool_match(kn_sbx_t *m, const json_t *spec, kn_sbx_pool_t *wanted);
/* 1 when a warm member now serves spec (*out filled), 0 to create cold. */
int kn_sbx_claim(kn_sbx_t *m, kn_sbx_pool_t *p, const json_t *spec, json_t **out);
/* A warm member whose shim is gone, or was claimed by a create that never
 * finished, or whose pool is gone, is removed; true then. */
bool kn_sbx_warm_gone(kn_sbx_t *m, const kn_store_rec_t *r);
/* Tops pools up to their capacity and trims them, one member per pool per
 * call (recs: the whole store); true while one is not at its target. */
bool kn_sbx_refill(kn_sbx_t *m, const kn_store_rec_t *recs, size_t n);

#endif
