/* pools.c - warm pools (docs/server.md): members are ordinary shims whose
 * row is in state "Warm" with reason "pool:<name>", hidden from the API
 * until a create claims one. Pools come from the server's config (read-only
 * through the API) and from /v1/pools (kept in the store's pools table, so
 * that they outlive a restart). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sbx_internal.h"
#include "shim.h"
#include "spec.h"

#define SDK_LIMITS "{\"cpu\":\"1\",\"memory\":\"2Gi\"}"

/* --- the pool list (under m->mu) ----------------------------------------- */

static void
pool_free(kn_sbx_pool_t *p)
{
    if (!p)
        return;
    json_decref(p->template);
    json_decref(p->spec);
    free(p);
}

void
kn_sbx_pool_put(kn_sbx_t *m, kn_sbx_pool_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&m->mu);
    bool last = --p->refs == 0;
    pthread_mutex_unlock(&m->mu);
    if (last)
        pool_free(p);
}

/* The pool named, with a reference, or NULL. */
static kn_sbx_pool_t *
pool_get(kn_sbx_t *m, const char *name)
{
    kn_sbx_pool_t *found = NULL;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n_pools && !found; i++)
        if (!strcmp(m->pools[i]->name, name)) {
            found = m->pools[i];
            found->refs++;
        }
    pthread_mutex_unlock(&m->mu);
    return found;
}

/* Every pool, each with a reference; release with pools_put(). */
static int
pools_snapshot(kn_sbx_t *m, kn_sbx_pool_t **out)
{
    pthread_mutex_lock(&m->mu);
    int n = m->n_pools;
    for (int i = 0; i < n; i++) {
        out[i] = m->pools[i];
        out[i]->refs++;
    }
    pthread_mutex_unlock(&m->mu);
    return n;
}

static void
pools_put(kn_sbx_t *m, kn_sbx_pool_t **v, int n)
{
    for (int i = 0; i < n; i++)
        kn_sbx_pool_put(m, v[i]);
}

/* --- validation ------------------------------------------------------------ */

/* A DNS label, as the reference's pool names (and a run of the reason
 * column "pool:<name>"). */
static int
check_name(const char *name, kn_error_t *err)
{
    size_t n = name ? strlen(name) : 0;
    bool ok =
        n > 0 && n <= 63 && isalnum((unsigned char)name[0]) && isalnum((unsigned char)name[n - 1]);
    for (size_t i = 0; ok && i < n; i++)
        ok = (islower((unsigned char)name[i]) || isdigit((unsigned char)name[i]) || name[i] == '-');
    if (!ok)
        return kn_server_error(err, EINVAL,
                               "pool name must be 1 to 63 lowercase letters, digits and '-', "
                               "starting and ending with a letter or digit");
    return 0;
}

static int
cap_field(const json_t *cap, const char *key, int *out, kn_error_t *err)
{
    json_t *v = json_object_get(cap, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > KN_SBX_POOL_LIMIT)
        return kn_server_error(err, EINVAL, "capacitySpec.%s must be an integer from 0 to %d", key,
                               KN_SBX_POOL_LIMIT);
    *out = (int)json_integer_value(v);
    return 0;
}

static int
check_capacity(const json_t *cap, kn_sbx_pool_t *p, kn_error_t *err)
{
    if (!json_is_object(cap))
        return kn_server_error(err, EINVAL,
                               "capacitySpec must be an object {bufferMax, bufferMin, poolMax, "
                               "poolMin}");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)cap, k, v)
    {
        if (strcmp(k, "bufferMax") && strcmp(k, "bufferMin") && strcmp(k, "poolMax") &&
            strcmp(k, "poolMin"))
            return kn_server_error(err, EINVAL, "capacitySpec.%s is not a capacity field", k);
    }
    if (cap_field(cap, "bufferMax", &p->buffer_max, err) < 0 ||
        cap_field(cap, "bufferMin", &p->buffer_min, err) < 0 ||
        cap_field(cap, "poolMax", &p->pool_max, err) < 0 ||
        cap_field(cap, "poolMin", &p->pool_min, err) < 0)
        return -1;
    if (p->buffer_min > p->buffer_max)
        return kn_server_error(err, EINVAL, "capacitySpec: bufferMin is larger than bufferMax");
    if (p->pool_min > p->pool_max)
        return kn_server_error(err, EINVAL, "capacitySpec: poolMin is larger than poolMax");
    if (p->buffer_max > p->pool_max)
        return kn_server_error(err, EINVAL, "capacitySpec: bufferMax is larger than poolMax");
    return 0;
}

/* A pool from its template and capacity (both as given), or NULL with err
 * (EINVAL for what the caller got wrong). */
static kn_sbx_pool_t *
pool_new(kn_sbx_t *m, const char *name, const json_t *tmpl, const json_t *cap, kn_error_t *err)
{
    if (check_name(name, err) < 0)
        return NULL;
    if (!json_is_object(tmpl)) {
        kn_server_error(err, EINVAL,
                        "template must be an object {image, resourceLimits, entrypoint}");
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)tmpl, k, v)
    {
        if (strcmp(k, "image") && strcmp(k, "resourceLimits") && strcmp(k, "entrypoint")) {
            kn_server_error(err, EINVAL,
                            "template.%s is not supported (a Kennel pool template has image, "
                            "resourceLimits and entrypoint)",
                            k);
            return NULL;
        }
    }
    kn_sbx_pool_t *p = calloc(1, sizeof *p);
    json_t *req = json_object();
    if (!p || !req) {
        kn_error_set(err, ENOMEM, "pool");
        goto fail;
    }
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->reason, sizeof p->reason, "pool:%s", name);
    if (check_capacity(cap, p, err) < 0)
        goto fail;
    /* Members are made from a create request of the template, validated
     * exactly as a create is. */
    json_t *img = json_object_get(tmpl, "image");
    json_object_set_new(req, "image", img ? json_incref(img) : json_pack("{s:s}", "uri", "host"));
    json_t *lim = json_object_get(tmpl, "resourceLimits");
    json_object_set_new(req, "resourceLimits",
                        lim ? json_incref(lim) : json_loads(SDK_LIMITS, 0, NULL));
    json_t *ep = json_object_get(tmpl, "entrypoint");
    json_object_set_new(req, "entrypoint",
                        ep ? json_incref(ep) : json_pack("[s,s,s]", "tail", "-f", "/dev/null"));
    p->spec = kn_spec_parse(req, m->cfg, err);
    if (!p->spec) {
        kn_error_prefix(err, "template");
        goto fail;
    }
    p->template = json_deep_copy(req);
    json_object_del(p->spec, "entrypoint");
    json_object_set_new(p->spec, "pool", json_string(name));
    p->kennel = json_object_get(p->spec, "kennel");
    if (!p->template) {
        kn_error_set(err, ENOMEM, "pool");
        goto fail;
    }
    p->filling = true;
    p->refs = 1;
    json_decref(req);
    return p;
fail:
    json_decref(req);
    pool_free(p);
    return NULL;
}

static json_t *
capacity_json(const kn_sbx_pool_t *p)
{
    return json_pack("{s:i, s:i, s:i, s:i}", "bufferMax", p->buffer_max, "bufferMin", p->buffer_min,
                     "poolMax", p->pool_max, "poolMin", p->pool_min);
}

/* Adds p to the list (taking its reference). EEXIST for a taken name. */
static int
pool_add(kn_sbx_t *m, kn_sbx_pool_t *p, kn_error_t *err)
{
    int ret = 0;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n_pools && ret == 0; i++)
        if (!strcmp(m->pools[i]->name, p->name))
            ret = kn_server_error(err, EEXIST, "pool %s already exists", p->name);
    if (ret == 0 && m->n_pools == KN_SBX_MAX_POOLS)
        ret = kn_server_error(err, ENOSPC, "this server has %d pools already (the most it keeps)",
                              KN_SBX_MAX_POOLS);
    if (ret == 0)
        m->pools[m->n_pools++] = p;
    pthread_mutex_unlock(&m->mu);
    return ret;
}

/* --- claims ---------------------------------------------------------------- */

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
    kn_sbx_pool_t *p = pool_get(m, json_string_value(ref));
    if (!p)
        return kn_server_error(err, EINVAL, "extensions.poolRef: no pool named '%s'",
                               json_string_value(ref));
    if (json_object_get(req, "snapshotId")) {
        kn_sbx_pool_put(m, p);
        return kn_server_error(err, EINVAL, "snapshotId cannot be given with poolRef");
    }
    json_t *r = json_deep_copy(req);
    if (!r) {
        kn_sbx_pool_put(m, p);
        return kn_error_set(err, ENOMEM, "poolRef");
    }
    static const char *const from_template[] = {"image", "resourceLimits", "entrypoint"};
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_object_get(r, from_template[i]);
        if (!v || json_is_null(v))
            json_object_set(r, from_template[i], json_object_get(p->template, from_template[i]));
    }
    *merged = r;
    *pool = p;
    return 0;
}

/* The pool whose members a spec can be served from: same image, limits and
 * (no) volumes. The request's env, entrypoint, metadata and timeout are
 * given to the member when it is claimed. */
kn_sbx_pool_t *
kn_sbx_pool_match(kn_sbx_t *m, const json_t *spec, kn_sbx_pool_t *wanted)
{
    json_t *k = json_object_get(spec, "kennel");
    kn_sbx_pool_t *found = NULL;
    pthread_mutex_lock(&m->mu);
    if (wanted) {
        found = json_equal(k, wanted->kennel) ? wanted : NULL;
    } else {
        for (int i = 0; i < m->n_pools && !found; i++)
            if (json_equal(k, m->pools[i]->kennel))
                found = m->pools[i];
    }
    if (found)
        found->refs++;
    pthread_mutex_unlock(&m->mu);
    return found;
}

/* Serves a create from a warm member: one store write takes the member and
 * gives its row the request (Pending, so that a server that dies before the
 * answer leaves a row the next one settles), the shim gets the request over
 * its control socket and hands execd the env and entrypoint, and a second
 * write makes it Running. Returns 1 when served, 0 when the pool had
 * nothing (or the member failed: the caller creates cold). */
int
kn_sbx_claim(kn_sbx_t *m, kn_sbx_pool_t *p, const json_t *spec, json_t **out)
{
    kn_store_rec_t rec = {0};
    kn_error_t err = {0};
    bool found = false;
    int ret = 0;
    json_t *claimed = json_deep_copy(spec);
    if (!claimed)
        return 0;
    json_object_set_new(claimed, "fromPool", json_string(p->name));
    rec.created_ms = rec.transition_ms = kn_sbx_now_ms();
    json_t *timeout = json_object_get(spec, "timeout");
    if (json_is_integer(timeout))
        rec.expires_ms = rec.created_ms + json_integer_value(timeout) * 1000;
    snprintf(rec.state, sizeof rec.state, "Pending");
    rec.reason = strdup("provisioning");
    rec.message = strdup("Sandbox is being taken from a warm pool.");
    rec.spec = json_dumps(claimed, JSON_COMPACT);
    json_t *meta = json_object_get(spec, "metadata");
    rec.metadata = meta ? json_dumps(meta, JSON_COMPACT) : strdup("{}");
    json_decref(claimed);
    if (!rec.spec || !rec.metadata || !rec.reason || !rec.message)
        goto out;
    /* Claim and mark under one lock, so that the reaper never sees the
     * claimed row Pending and unowned. */
    pthread_mutex_lock(&m->mu);
    int rc = kn_store_claim(m->store, p->reason, &rec, &found, &err);
    pthread_mutex_unlock(&m->mu);
    if (rc < 0 || !found)
        goto out;
    kn_sbx_creating_mark(m, rec.id, true);
    char dir[PATH_MAX];
    kn_sbx_run_dir(m, rec.id, dir, sizeof dir);
    /* The shim starts the entrypoint when this connection closes: after the
     * row says Running, not while this answer competes for the CPUs. */
    int conn = -1;
    int sent = kn_shim_send(dir, "claim", rec.spec, strlen(rec.spec), 10000, &conn, &err);
    if (sent == 0)
        sent = kn_store_set_state(m->store, rec.id, "Running", "CONTAINER_RUNNING",
                                  "Sandbox taken from a warm pool.", &err);
    if (conn >= 0)
        close(conn);
    if (sent < 0) {
        kn_sbx_log("error", "a warm sandbox could not be claimed", rec.id, err.msg);
        kn_error_t e = {0};
        kn_sbx_destroy(m, rec.id, &e);
        kn_sbx_creating_mark(m, rec.id, false);
        goto out;
    }
    kn_sbx_creating_mark(m, rec.id, false);
    snprintf(rec.state, sizeof rec.state, "Running");
    free(rec.reason);
    free(rec.message);
    rec.reason = strdup("CONTAINER_RUNNING");
    rec.message = strdup("Sandbox taken from a warm pool.");
    *out = kn_sbx_to_json(&rec, false);
    ret = *out ? 1 : 0;
    kn_sbx_log("info", "taken from a warm pool", rec.id, p->name);
out:
    kn_store_rec_free(&rec);
    return ret;
}

/* --- members --------------------------------------------------------------- */

static bool
pool_exists(kn_sbx_t *m, const char *reason)
{
    bool found = false;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n_pools && !found; i++)
        found = !strcmp(m->pools[i]->reason, reason);
    pthread_mutex_unlock(&m->mu);
    return found;
}

/* Removes a member that is still Warm in the store: its row goes first, in
 * one statement that a claim cannot interleave with (the list the caller
 * looked at may be older than a claim). False when it was taken meanwhile. */
static bool
remove_warm(kn_sbx_t *m, const char *id, const char *why)
{
    bool deleted = false;
    kn_error_t e = {0};
    if (kn_store_delete_warm(m->store, id, &deleted, &e) < 0 || !deleted)
        return false;
    if (kn_sbx_destroy(m, id, &e) < 0)
        kn_sbx_log("error", "a warm sandbox could not be removed", id, e.msg);
    else
        kn_sbx_log("info", why, id, NULL);
    return true;
}

bool
kn_sbx_warm_gone(kn_sbx_t *m, const kn_store_rec_t *r)
{
    char dir[PATH_MAX];
    kn_sbx_run_dir(m, r->id, dir, sizeof dir);
    const char *why = NULL;
    json_t *st = NULL;
    if (!kn_shim_alive(dir)) {
        why = "removed a warm sandbox whose supervisor is gone";
    } else if (!r->reason || !pool_exists(m, r->reason)) {
        why = "removed a warm sandbox of a pool that is gone";
    } else {
        /* A claim the shim took, whose create no server finished (an
         * earlier one died): nobody was promised it. */
        st = kn_shim_state(dir);
        const char *s = json_string_value(json_object_get(st, "state"));
        if (s && strcmp(s, "Warm") != 0)
            why = "removed a warm sandbox claimed by a create that never finished";
        json_decref(st);
    }
    return why && remove_warm(m, r->id, why);
}

static bool
terminal(const char *state)
{
    return !strcmp(state, "Terminated") || !strcmp(state, "Failed");
}

/* Live sandboxes a pool's members became (its "allocated"). */
static bool
allocated_from(const kn_store_rec_t *r, const char *name)
{
    if (terminal(r->state) || !strcmp(r->state, "Warm") || !strstr(r->spec, "\"fromPool\""))
        return false;
    json_t *spec = json_loads(r->spec, 0, NULL);
    const char *from = json_string_value(json_object_get(spec, "fromPool"));
    bool yes = from && !strcmp(from, name);
    json_decref(spec);
    return yes;
}

typedef struct counts {
    int warm, allocated;
    const char *oldest_warm; /* id */
} counts_t;

static counts_t
count(const kn_sbx_pool_t *p, const kn_store_rec_t *recs, size_t n)
{
    counts_t c = {0};
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(recs[i].state, "Warm")) {
            if (recs[i].reason && !strcmp(recs[i].reason, p->reason)) {
                c.warm++;
                c.oldest_warm = recs[i].id; /* the list is newest first */
            }
        } else if (allocated_from(&recs[i], p->name)) {
            c.allocated++;
        }
    }
    return c;
}

/* How many warm members p should have now (under mu: filling changes). */
static int
target(kn_sbx_pool_t *p, counts_t c)
{
    if (c.warm < p->buffer_min)
        p->filling = true;
    int want = p->filling ? p->buffer_max : c.warm;
    if (want > p->buffer_max)
        want = p->buffer_max;
    if (want < p->pool_min - c.allocated)
        want = p->pool_min - c.allocated;
    if (want > p->pool_max - c.allocated)
        want = p->pool_max - c.allocated;
    if (want < 0)
        want = 0;
    if (c.warm >= want)
        p->filling = false;
    return want;
}

/* Starts the warm members a pool lacks and ends those it has too many of,
 * one at a time (this runs in the reaper's thread). Returns true when some
 * pool is not yet at its target. */
bool
kn_sbx_refill(kn_sbx_t *m, const kn_store_rec_t *recs, size_t n)
{
    kn_sbx_pool_t *v[KN_SBX_MAX_POOLS];
    int np = pools_snapshot(m, v);
    bool more = false;
    for (int i = 0; i < np; i++) {
        kn_sbx_pool_t *p = v[i];
        counts_t c = count(p, recs, n);
        pthread_mutex_lock(&m->mu);
        int want = target(p, c);
        pthread_mutex_unlock(&m->mu);
        kn_error_t err = {0};
        if (c.warm > want && c.oldest_warm) {
            more |= c.warm - 1 > want;
            remove_warm(m, c.oldest_warm, "removed a warm sandbox past its pool's capacity");
            continue;
        }
        if (c.warm >= want)
            continue;
        more = true;
        kn_store_rec_t rec = {0};
        if (kn_sbx_provision(m, p->spec, "Warm", p->reason, "Ready in a warm pool.", &rec, &err) <
            0)
            kn_sbx_log("error", "a warm sandbox failed to start", p->name, err.msg);
        kn_store_rec_free(&rec);
    }
    pools_put(m, v, np);
    return more;
}

/* --- the API ----------------------------------------------------------------- */

static json_t *
pool_json(const kn_sbx_pool_t *p, const kn_store_rec_t *recs, size_t n)
{
    counts_t c = count(p, recs, n);
    char created[40], rev[24];
    kn_sbx_format_time(p->created_ms, created, sizeof created);
    snprintf(rev, sizeof rev, "%lld", (long long)p->revision);
    return json_pack("{s:s, s:o, s:{s:i, s:i, s:i, s:s}, s:s, s:O, s:b}", "name", p->name,
                     "capacitySpec", capacity_json(p), "status", "total", c.warm + c.allocated,
                     "allocated", c.allocated, "available", c.warm, "revision", rev, "createdAt",
                     created, "template", p->template, "fromConfig", p->config);
}

int
kn_sbx_pools(kn_sbx_t *m, const char *name, json_t **out, kn_error_t *err)
{
    kn_store_rec_t *recs = NULL;
    size_t n = 0;
    kn_sbx_pool_t *v[KN_SBX_MAX_POOLS];
    if (kn_store_list(m->store, &recs, &n, err) < 0)
        return -1;
    int np = pools_snapshot(m, v);
    json_t *items = json_array();
    for (int k = 0; k < np; k++)
        if (!name || !strcmp(name, v[k]->name))
            json_array_append_new(items, pool_json(v[k], recs, n));
    pools_put(m, v, np);
    for (size_t i = 0; i < n; i++)
        kn_store_rec_free(&recs[i]);
    free(recs);
    if (name && json_array_size(items) == 0) {
        json_decref(items);
        return kn_server_error(err, ENOENT, "pool %s not found", name);
    }
    *out = name ? json_incref(json_array_get(items, 0)) : json_pack("{s:o}", "items", items);
    if (name)
        json_decref(items);
    return *out ? 0 : kn_error_set(err, ENOMEM, "pools");
}

static int
pool_save(kn_sbx_t *m, const kn_sbx_pool_t *p, bool create, kn_error_t *err)
{
    kn_store_pool_t sp = {.created_ms = p->created_ms, .revision = p->revision};
    snprintf(sp.name, sizeof sp.name, "%s", p->name);
    json_t *cap = capacity_json(p);
    sp.template_json = json_dumps(p->template, JSON_COMPACT);
    sp.capacity_json = cap ? json_dumps(cap, JSON_COMPACT) : NULL;
    json_decref(cap);
    int rc = sp.template_json && sp.capacity_json ? kn_store_pool_put(m->store, &sp, create, err)
                                                  : kn_error_set(err, ENOMEM, "pool");
    free(sp.template_json);
    free(sp.capacity_json);
    return rc;
}

static int
one_pool(kn_sbx_t *m, const char *name, json_t **out, kn_error_t *err)
{
    return kn_sbx_pools(m, name, out, err);
}

int
kn_sbx_pool_create(kn_sbx_t *m, const json_t *body, json_t **out, kn_error_t *err)
{
    if (!json_is_object(body))
        return kn_server_error(err, EINVAL, "the body must be {name, template, capacitySpec}");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)body, k, v)
    {
        if (strcmp(k, "name") && strcmp(k, "template") && strcmp(k, "capacitySpec"))
            return kn_server_error(err, EINVAL, "%s is not a field of a pool", k);
    }
    const char *name = json_string_value(json_object_get(body, "name"));
    if (!name)
        return kn_server_error(err, EINVAL, "name is required (a string)");
    json_t *tmpl = json_object_get(body, "template");
    if (!tmpl)
        return kn_server_error(err, EINVAL, "template is required");
    kn_sbx_pool_t *p = pool_new(m, name, tmpl, json_object_get(body, "capacitySpec"), err);
    if (!p)
        return -1;
    p->created_ms = kn_sbx_now_ms();
    p->revision = 1;
    kn_sbx_pool_t *old = pool_get(m, name);
    if (old) {
        kn_sbx_pool_put(m, old);
        pool_free(p);
        return kn_server_error(err, EEXIST, "pool %s already exists", name);
    }
    /* The row first: the name is unique there too, and a pool that could not
     * be kept is not made. */
    if (pool_save(m, p, true, err) < 0) {
        pool_free(p);
        if (err->code == EEXIST)
            return kn_server_error(err, EEXIST, "pool %s already exists", name);
        return -1;
    }
    if (pool_add(m, p, err) < 0) {
        kn_error_t e = {0};
        kn_store_pool_delete(m->store, name, &e);
        pool_free(p);
        return -1;
    }
    kn_sbx_log("info", "pool created", "", name);
    return one_pool(m, name, out, err);
}

int
kn_sbx_pool_update(kn_sbx_t *m, const char *name, const json_t *body, json_t **out, kn_error_t *err)
{
    kn_sbx_pool_t *p = pool_get(m, name);
    if (!p)
        return kn_server_error(err, ENOENT, "pool %s not found", name);
    int ret = -1;
    kn_sbx_pool_t tmp = *p;
    if (p->config) {
        kn_server_error(err, EBUSY, "pool %s comes from the server's config; change it there",
                        name);
        goto out;
    }
    const char *k;
    json_t *v;
    if (!json_is_object(body)) {
        kn_server_error(err, EINVAL, "the body must be {capacitySpec}");
        goto out;
    }
    json_object_foreach((json_t *)body, k, v)
    {
        if (strcmp(k, "capacitySpec")) {
            kn_server_error(err, EINVAL,
                            "%s cannot be changed (only capacitySpec; delete and create the "
                            "pool for another template)",
                            k);
            goto out;
        }
    }
    if (check_capacity(json_object_get(body, "capacitySpec"), &tmp, err) < 0)
        goto out;
    tmp.revision = p->revision + 1;
    if (pool_save(m, &tmp, false, err) < 0)
        goto out;
    pthread_mutex_lock(&m->mu);
    p->buffer_min = tmp.buffer_min;
    p->buffer_max = tmp.buffer_max;
    p->pool_min = tmp.pool_min;
    p->pool_max = tmp.pool_max;
    p->revision = tmp.revision;
    p->filling = true;
    pthread_mutex_unlock(&m->mu);
    kn_sbx_log("info", "pool capacity changed", "", name);
    ret = one_pool(m, name, out, err);
out:
    kn_sbx_pool_put(m, p);
    return ret;
}

int
kn_sbx_pool_delete(kn_sbx_t *m, const char *name, kn_error_t *err)
{
    kn_sbx_pool_t *p = NULL;
    int ret = 0;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n_pools; i++) {
        if (strcmp(m->pools[i]->name, name) != 0)
            continue;
        if (m->pools[i]->config) {
            ret = kn_server_error(err, EBUSY,
                                  "pool %s comes from the server's config; remove it there", name);
        } else {
            p = m->pools[i];
            m->pools[i] = m->pools[--m->n_pools];
        }
        break;
    }
    pthread_mutex_unlock(&m->mu);
    if (ret < 0)
        return -1;
    if (!p)
        return kn_server_error(err, ENOENT, "pool %s not found", name);
    kn_error_t e = {0};
    if (kn_store_pool_delete(m->store, name, &e) < 0)
        kn_sbx_log("error", "a deleted pool's row could not be removed", "", e.msg);
    /* Its warm members go; sandboxes already taken from it are the users'. */
    kn_store_rec_t *recs = NULL;
    size_t n = 0;
    if (kn_store_list(m->store, &recs, &n, &e) == 0) {
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(recs[i].state, "Warm") && recs[i].reason &&
                !strcmp(recs[i].reason, p->reason))
                remove_warm(m, recs[i].id, "removed a warm sandbox of a deleted pool");
            kn_store_rec_free(&recs[i]);
        }
        free(recs);
    }
    kn_sbx_log("info", "pool deleted", "", name);
    kn_sbx_pool_put(m, p);
    return 0;
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
        if (!strcmp(recs[i].state, "Warm"))
            remove_warm(m, recs[i].id, "removed a warm sandbox (the server stops)");
        kn_store_rec_free(&recs[i]);
    }
    free(recs);
}

/* Config pools first (they win a name), then the API's from the store. */
int
kn_sbx_pools_init(kn_sbx_t *m, kn_error_t *err)
{
    for (int i = 0; i < m->cfg->n_pools; i++) {
        const kn_server_pool_t *cp = &m->cfg->pools[i];
        json_t *tmpl = json_pack("{s:{s:s}, s:o}", "image", "uri", cp->image, "resourceLimits",
                                 json_loads(cp->limits, 0, NULL));
        /* size N: N ready at all times, however many were taken. */
        json_t *cap = json_pack("{s:i, s:i, s:i, s:i}", "bufferMax", cp->size, "bufferMin",
                                cp->size, "poolMax", KN_SBX_POOL_LIMIT, "poolMin", 0);
        kn_sbx_pool_t *p = tmpl && cap ? pool_new(m, cp->name, tmpl, cap, err) : NULL;
        json_decref(tmpl);
        json_decref(cap);
        if (!p)
            return err->msg[0] ? kn_error_prefix(err, "pool %s", cp->name)
                               : kn_error_set(err, ENOMEM, "pool");
        p->config = true;
        p->created_ms = kn_sbx_now_ms();
        p->revision = 1;
        if (pool_add(m, p, err) < 0) {
            pool_free(p);
            return -1;
        }
    }
    kn_store_pool_t *rows = NULL;
    size_t n = 0;
    if (kn_store_pool_list(m->store, &rows, &n, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        kn_error_t e = {0};
        json_t *tmpl = json_loads(rows[i].template_json, 0, NULL);
        json_t *cap = json_loads(rows[i].capacity_json, 0, NULL);
        kn_sbx_pool_t *p = pool_new(m, rows[i].name, tmpl, cap, &e);
        json_decref(tmpl);
        json_decref(cap);
        if (p) {
            p->created_ms = rows[i].created_ms;
            p->revision = rows[i].revision;
        }
        if (!p || pool_add(m, p, &e) < 0) {
            /* A pool this server can no longer make (an alias gone, a name
             * now in the config) is kept in the store and said. */
            kn_sbx_log("error", "a pool from the store is not served", rows[i].name, e.msg);
            pool_free(p);
        }
    }
    kn_store_pool_free(rows, n);
    return 0;
}

void
kn_sbx_pools_free(kn_sbx_t *m)
{
    for (int i = 0; i < m->n_pools; i++)
        pool_free(m->pools[i]);
    m->n_pools = 0;
}
