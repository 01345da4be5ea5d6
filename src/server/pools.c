/* pools.c - warm pools (docs/server.md): members are ordinary shims whose
 * row is in state "Warm" with reason "pool:<name>", hidden from the API
 * until a create claims one. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbx_internal.h"
#include "shim.h"
#include "spec.h"

/* extensions.poolRef names a pool: the request may leave out what the
 * pool's template gives (image, resourceLimits, entrypoint). Returns a new
 * request (or NULL when there is no poolRef) and the pool. */
int
kn_sbx_pool_request(kn_sbx_t *m, const json_t *req, json_t **merged, kn_sbx_pool_t **pool,
                    kn_error_t *err)
{
    *merged = NULL;
    *pool = NULL;
    json_t *ref = json_object_get(json_object_get(req, "extensions"), "poolRef");
    if (!ref)
        return 0;
    if (!json_is_string(ref))
        return kn_server_error(err, EINVAL, "extensions.poolRef must be a string");
    for (int i = 0; i < m->n_pools; i++)
        if (!strcmp(m->pools[i].name, json_string_value(ref)))
            *pool = &m->pools[i];
    if (!*pool)
        return kn_server_error(err, EINVAL, "extensions.poolRef: no pool named '%s'",
                               json_string_value(ref));
    if (json_object_get(req, "snapshotId"))
        return kn_server_error(err, EINVAL, "snapshotId cannot be given with poolRef");
    json_t *r = json_deep_copy(req);
    if (!r)
        return kn_error_set(err, ENOMEM, "poolRef");
    const kn_server_pool_t *cp = NULL;
    for (int i = 0; i < m->cfg->n_pools; i++)
        if (!strcmp(m->cfg->pools[i].name, (*pool)->name))
            cp = &m->cfg->pools[i];
    if (!json_object_get(r, "image") || json_is_null(json_object_get(r, "image")))
        json_object_set_new(r, "image", json_pack("{s:s}", "uri", cp->image));
    if (!json_object_get(r, "resourceLimits") || json_is_null(json_object_get(r, "resourceLimits")))
        json_object_set_new(r, "resourceLimits", json_loads(cp->limits, 0, NULL));
    if (!json_object_get(r, "entrypoint"))
        json_object_set_new(r, "entrypoint", json_pack("[s,s,s]", "tail", "-f", "/dev/null"));
    *merged = r;
    return 0;
}

/* The pool whose members a spec can be served from: same image, limits and
 * (no) volumes, and no environment (execd's environment is fixed when it
 * starts; docs/server.md). */
kn_sbx_pool_t *
kn_sbx_pool_match(kn_sbx_t *m, const json_t *spec, kn_sbx_pool_t *wanted)
{
    if (json_object_size(json_object_get(spec, "env")))
        return NULL;
    json_t *k = json_object_get(spec, "kennel");
    if (wanted)
        return json_equal(k, wanted->kennel) ? wanted : NULL;
    for (int i = 0; i < m->n_pools; i++)
        if (json_equal(k, m->pools[i].kennel))
            return &m->pools[i];
    return NULL;
}

/* Serves a create from a warm member: the request's spec replaces the
 * member's, the shim starts the entrypoint. Returns 1 when served, 0 when
 * the pool had nothing (or the member failed: the caller creates cold). */
int
kn_sbx_claim(kn_sbx_t *m, kn_sbx_pool_t *p, const json_t *spec, json_t **out)
{
    kn_store_rec_t rec = {0};
    kn_error_t err = {0};
    bool found = false;
    /* Claim and mark under one lock, so that the reaper never sees the
     * claimed row Pending and unowned. */
    pthread_mutex_lock(&m->mu);
    int rc = kn_store_claim(m->store, p->reason, rec.id, &found, &err);
    pthread_mutex_unlock(&m->mu);
    if (rc < 0 || !found)
        return 0;
    kn_sbx_creating_mark(m, rec.id, true);
    char dir[PATH_MAX], path[PATH_MAX], tmp[PATH_MAX];
    kn_sbx_run_dir(m, rec.id, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s", dir, KN_SHIM_SPEC);
    snprintf(tmp, sizeof tmp, "%s.new", path);
    int ret = 0;
    rec.created_ms = rec.transition_ms = kn_sbx_now_ms();
    json_t *timeout = json_object_get(spec, "timeout");
    if (json_is_integer(timeout))
        rec.expires_ms = rec.created_ms + json_integer_value(timeout) * 1000;
    snprintf(rec.state, sizeof rec.state, "Pending");
    rec.reason = strdup("provisioning");
    rec.message = strdup("Sandbox is being taken from a warm pool.");
    rec.spec = json_dumps(spec, JSON_COMPACT);
    json_t *meta = json_object_get(spec, "metadata");
    rec.metadata = meta ? json_dumps(meta, JSON_COMPACT) : strdup("{}");
    if (!rec.spec || !rec.metadata || !rec.reason || !rec.message ||
        json_dump_file(spec, tmp, JSON_COMPACT) < 0 || rename(tmp, path) < 0 ||
        kn_store_update(m->store, &rec, &err) < 0 || kn_shim_call(dir, "claim", 10000, &err) < 0 ||
        kn_store_set_state(m->store, rec.id, "Running", "CONTAINER_RUNNING",
                           "Sandbox taken from a warm pool.", &err) < 0) {
        kn_sbx_log("error", "a warm sandbox could not be claimed", rec.id, err.msg);
        kn_error_t e = {0};
        kn_sbx_destroy(m, rec.id, &e);
        goto out;
    }
    snprintf(rec.state, sizeof rec.state, "Running");
    free(rec.reason);
    free(rec.message);
    rec.reason = strdup("CONTAINER_RUNNING");
    rec.message = strdup("Sandbox taken from a warm pool.");
    *out = kn_sbx_to_json(&rec, false);
    ret = *out ? 1 : 0;
    kn_sbx_log("info", "taken from a warm pool", rec.id, p->name);
out:
    kn_sbx_creating_mark(m, rec.id, false);
    kn_store_rec_free(&rec);
    return ret;
}

/* A warm member whose shim is gone is removed (nobody was promised it). */
bool
kn_sbx_warm_gone(kn_sbx_t *m, const kn_store_rec_t *r)
{
    char dir[PATH_MAX];
    kn_sbx_run_dir(m, r->id, dir, sizeof dir);
    if (kn_shim_alive(dir))
        return false;
    kn_error_t e = {0};
    kn_sbx_destroy(m, r->id, &e);
    kn_sbx_log("info", "removed a warm sandbox whose supervisor is gone", r->id, NULL);
    return true;
}

/* Starts the warm members a pool lacks, one at a time (this runs in the
 * reaper's thread). Returns true when some pool is still short. */
bool
kn_sbx_refill(kn_sbx_t *m, const int *warm)
{
    bool short_any = false;
    for (int i = 0; i < m->n_pools; i++) {
        kn_sbx_pool_t *p = &m->pools[i];
        if (warm[i] >= p->size)
            continue;
        short_any = true;
        kn_store_rec_t rec = {0};
        kn_error_t err = {0};
        pthread_mutex_lock(&m->mu);
        p->starting++;
        pthread_mutex_unlock(&m->mu);
        if (kn_sbx_provision(m, p->spec, "Warm", p->reason, "Ready in a warm pool.", &rec, &err) <
            0)
            kn_sbx_log("error", "a warm sandbox failed to start", p->name, err.msg);
        pthread_mutex_lock(&m->mu);
        p->starting--;
        pthread_mutex_unlock(&m->mu);
        kn_store_rec_free(&rec);
    }
    return short_any;
}

int
kn_sbx_pools(kn_sbx_t *m, const char *name, json_t **out, kn_error_t *err)
{
    kn_store_rec_t *recs = NULL;
    size_t n = 0;
    int warm[KN_SERVER_MAX_POOLS] = {0}, taken[KN_SERVER_MAX_POOLS] = {0};
    if (kn_store_list(m->store, &recs, &n, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        json_t *spec = NULL;
        for (int k = 0; k < m->n_pools; k++) {
            if (!strcmp(recs[i].state, "Warm")) {
                warm[k] += recs[i].reason && !strcmp(recs[i].reason, m->pools[k].reason);
                continue;
            }
            if (!spec && !(spec = json_loads(recs[i].spec, 0, NULL)))
                break;
            taken[k] += kn_sbx_pool_match(m, spec, &m->pools[k]) != NULL;
        }
        json_decref(spec);
        kn_store_rec_free(&recs[i]);
    }
    free(recs);
    json_t *items = json_array();
    for (int k = 0; k < m->n_pools; k++) {
        kn_sbx_pool_t *p = &m->pools[k];
        if (name && strcmp(name, p->name) != 0)
            continue;
        json_array_append_new(
            items, json_pack("{s:s, s:{s:i, s:i, s:i, s:i}, s:{s:i, s:i, s:i}, s:O}", "name",
                             p->name, "capacitySpec", "bufferMin", p->size, "bufferMax", p->size,
                             "poolMin", p->size, "poolMax", p->size, "status", "total",
                             warm[k] + taken[k], "allocated", taken[k], "available", warm[k],
                             "template", json_object_get(p->spec, "kennel")));
    }
    if (name && json_array_size(items) == 0) {
        json_decref(items);
        return kn_server_error(err, ENOENT, "pool %s not found", name);
    }
    *out = name ? json_incref(json_array_get(items, 0)) : json_pack("{s:o}", "items", items);
    if (name)
        json_decref(items);
    return *out ? 0 : kn_error_set(err, ENOMEM, "pools");
}

void
kn_sbx_drain_pools(kn_sbx_t *m)
{
    kn_store_rec_t *recs = NULL;
    size_t n = 0;
    kn_error_t err = {0};
    if (kn_store_list(m->store, &recs, &n, &err) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(recs[i].state, "Warm") && kn_sbx_destroy(m, recs[i].id, &err) < 0)
            kn_sbx_log("error", "a warm sandbox could not be removed", recs[i].id, err.msg);
        kn_store_rec_free(&recs[i]);
    }
    free(recs);
}

int
kn_sbx_pools_init(kn_sbx_t *m, kn_error_t *err)
{
    for (int i = 0; i < m->cfg->n_pools; i++) {
        const kn_server_pool_t *cp = &m->cfg->pools[i];
        kn_sbx_pool_t *p = &m->pools[m->n_pools];
        json_t *limits = json_loads(cp->limits, 0, NULL);
        json_t *req =
            json_pack("{s:{s:s}, s:[s,s,s], s:o}", "image", "uri", cp->image, "entrypoint", "tail",
                      "-f", "/dev/null", "resourceLimits", limits ? limits : json_null());
        p->spec = req ? kn_spec_parse(req, m->cfg, err) : NULL;
        json_decref(req);
        if (!p->spec)
            return kn_error_prefix(err, "pool %s", cp->name);
        json_object_del(p->spec, "entrypoint");
        json_object_set_new(p->spec, "pool", json_string(cp->name));
        p->kennel = json_object_get(p->spec, "kennel");
        p->name = cp->name;
        p->size = cp->size;
        snprintf(p->reason, sizeof p->reason, "pool:%s", cp->name);
        m->n_pools++;
    }
    return 0;
}
