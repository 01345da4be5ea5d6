/* server.c - `kennel serve`: options, the daemon, the reaper, shutdown. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"
#include "image.h"
#include "wlayer.h"
#include "receipts.h"

void *kn_http_uri_log(void *cls, const char *uri, struct MHD_Connection *c);
void kn_http_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                       enum MHD_RequestTerminationCode toe);
enum MHD_Result kn_http_access(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **req_cls);

void
kn_server_cfg_init(kn_server_cfg_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->listen_host, sizeof cfg->listen_host, "127.0.0.1");
    cfg->listen_port = 8080;
    cfg->ready_timeout_ms = 30000;
    cfg->max_body = 1024 * 1024;
    cfg->log_requests = true;
}

void
kn_server_cfg_free(kn_server_cfg_t *cfg)
{
    free(cfg->db_path);
    free(cfg->run_dir);
    free(cfg->execd_path);
    free(cfg->self_path);
    free(cfg->public_host);
    free(cfg->image_store);
    free(cfg->layer_dir);
    free(cfg->receipts_key);
    free(cfg->receipts_issuer);
    free(cfg->dns_upstream);
    for (int i = 0; i < cfg->n_keys; i++)
        free(cfg->api_keys[i]);
    for (int i = 0; i < cfg->n_aliases; i++) {
        free(cfg->alias_name[i]);
        free(cfg->alias_image[i]);
    }
    for (int i = 0; i < cfg->n_host_paths; i++)
        free(cfg->host_paths[i]);
    for (int i = 0; i < cfg->n_pools; i++) {
        free(cfg->pools[i].name);
        free(cfg->pools[i].image);
        free(cfg->pools[i].limits);
    }
    memset(cfg, 0, sizeof *cfg);
}

static int
set_str(char **field, const char *v, kn_error_t *err)
{
    char *c = strdup(v);
    if (!c)
        return kn_error_set(err, ENOMEM, "config");
    free(*field);
    *field = c;
    return 0;
}

int
kn_server_cfg_add_pool(kn_server_cfg_t *cfg, const char *name, const char *image,
                       const char *limits, int size, kn_error_t *err)
{
    if (cfg->n_pools == KN_SERVER_MAX_POOLS)
        return kn_server_error(err, EINVAL, "at most %d pools", KN_SERVER_MAX_POOLS);
    if (!name[0] || strlen(name) > 63 || size < 0 || size > 1000)
        return kn_server_error(err, EINVAL, "pool '%s': a name and a size of 0 to 1000", name);
    for (int i = 0; i < cfg->n_pools; i++)
        if (!strcmp(cfg->pools[i].name, name))
            return kn_server_error(err, EINVAL, "pool '%s' is given twice", name);
    kn_server_pool_t *p = &cfg->pools[cfg->n_pools];
    p->name = strdup(name);
    p->image = strdup(image ? image : "host");
    p->limits = strdup(limits ? limits : "{\"cpu\":\"1\",\"memory\":\"2Gi\"}");
    p->size = size;
    cfg->n_pools++;
    if (!p->name || !p->image || !p->limits)
        return kn_error_set(err, ENOMEM, "pool");
    return 0;
}

int
kn_server_cfg_set_wlayer(kn_server_cfg_t *cfg, const char *kind, kn_error_t *err)
{
    if (kind && !strcmp(kind, "tmpfs"))
        cfg->wlayer = KN_WLAYER_TMPFS;
    else if (kind && !strcmp(kind, "disk"))
        cfg->wlayer = KN_WLAYER_DISK;
    else
        return kn_server_error(err, EINVAL, "writableLayer must be \"tmpfs\" or \"disk\"");
    return 0;
}

int
kn_server_cfg_load(kn_server_cfg_t *cfg, const char *path, kn_error_t *err)
{
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je), *v;
    if (!j)
        return kn_error_set(err, EINVAL, "%s:%d: %s", path, je.line, je.text);
    int ret = -1;
    const char *s, *k;
    size_t i;
    if (!json_is_object(j)) {
        kn_error_set(err, EINVAL, "%s: not a JSON object", path);
        goto out;
    }
    if ((s = json_string_value(json_object_get(j, "listen")))) {
        char *colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof cfg->listen_host) {
            kn_error_set(err, EINVAL, "%s: listen must be HOST:PORT", path);
            goto out;
        }
        snprintf(cfg->listen_host, sizeof cfg->listen_host, "%.*s", (int)(colon - s), s);
        cfg->listen_port = atoi(colon + 1);
    }
    if ((s = json_string_value(json_object_get(j, "db"))) && set_str(&cfg->db_path, s, err) < 0)
        goto out;
    if ((s = json_string_value(json_object_get(j, "runDir"))) && set_str(&cfg->run_dir, s, err) < 0)
        goto out;
    if ((s = json_string_value(json_object_get(j, "execd"))) &&
        set_str(&cfg->execd_path, s, err) < 0)
        goto out;
    json_array_foreach(json_object_get(j, "apiKeys"), i, v)
    {
        if (!json_string_value(v) || !json_string_value(v)[0] ||
            cfg->n_keys == KN_SERVER_MAX_KEYS) {
            kn_error_set(err, EINVAL, "%s: apiKeys must be at most %d non-empty strings", path,
                         KN_SERVER_MAX_KEYS);
            goto out;
        }
        cfg->api_keys[cfg->n_keys++] = strdup(json_string_value(v));
    }
    json_object_foreach(json_object_get(j, "imageAliases"), k, v)
    {
        if (!json_string_value(v) || cfg->n_aliases == KN_SERVER_MAX_ALIASES) {
            kn_error_set(err, EINVAL, "%s: imageAliases must map names to images", path);
            goto out;
        }
        cfg->alias_name[cfg->n_aliases] = strdup(k);
        cfg->alias_image[cfg->n_aliases++] = strdup(json_string_value(v));
    }
    json_array_foreach(json_object_get(j, "allowedHostPaths"), i, v)
    {
        if (!json_string_value(v) || json_string_value(v)[0] != '/' ||
            cfg->n_host_paths == KN_SERVER_MAX_HOSTPATHS) {
            kn_error_set(err, EINVAL, "%s: allowedHostPaths must be absolute paths", path);
            goto out;
        }
        cfg->host_paths[cfg->n_host_paths++] = strdup(json_string_value(v));
    }
    json_array_foreach(json_object_get(j, "pools"), i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name"));
        json_t *size = json_object_get(v, "size"), *lim = json_object_get(v, "resourceLimits");
        if (!name || !json_is_integer(size) || (lim && !json_is_object(lim))) {
            kn_server_error(err, EINVAL,
                            "%s: pools[%zu] needs name, size and optionally image "
                            "and resourceLimits",
                            path, i);
            goto out;
        }
        char *limits = lim ? json_dumps(lim, JSON_COMPACT) : NULL;
        int rc = kn_server_cfg_add_pool(cfg, name, json_string_value(json_object_get(v, "image")),
                                        limits, (int)json_integer_value(size), err);
        free(limits);
        if (rc < 0)
            goto out;
    }
    if ((v = json_object_get(j, "maxTimeoutSeconds")))
        cfg->max_timeout_s = json_integer_value(v);
    if ((v = json_object_get(j, "maxSandboxes")))
        cfg->max_sandboxes = (int)json_integer_value(v);
    if ((s = json_string_value(json_object_get(j, "publicHost"))) &&
        set_str(&cfg->public_host, s, err) < 0)
        goto out;
    if ((s = json_string_value(json_object_get(j, "dnsUpstream"))) &&
        set_str(&cfg->dns_upstream, s, err) < 0)
        goto out;
    if ((v = json_object_get(j, "readyTimeoutMs")))
        cfg->ready_timeout_ms = (int)json_integer_value(v);
    if ((s = json_string_value(json_object_get(j, "imageStore"))) &&
        set_str(&cfg->image_store, s, err) < 0)
        goto out;
    if ((s = json_string_value(json_object_get(j, "layerDir"))) &&
        set_str(&cfg->layer_dir, s, err) < 0)
        goto out;
    if ((v = json_object_get(j, "writableLayer")) &&
        kn_server_cfg_set_wlayer(cfg, json_string_value(v), err) < 0) {
        kn_error_prefix(err, "%s", path);
        goto out;
    }
    if ((s = json_string_value(json_object_get(j, "receiptsKey"))) &&
        set_str(&cfg->receipts_key, s, err) < 0)
        goto out;
    if ((s = json_string_value(json_object_get(j, "receiptsIssuer"))) &&
        set_str(&cfg->receipts_issuer, s, err) < 0)
        goto out;
    if ((v = json_object_get(j, "receipts")))
        cfg->receipts_off = json_is_false(v);
    ret = 0;
out:
    json_decref(j);
    return ret;
}

typedef struct reaper {
    kn_sbx_t *mgr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
} reaper_t;

static void *
reap_loop(void *arg)
{
    reaper_t *rp = arg;
    pthread_mutex_lock(&rp->mu);
    while (!rp->stop) {
        pthread_mutex_unlock(&rp->mu);
        int wait = kn_sbx_reap(rp->mgr, 1000);
        pthread_mutex_lock(&rp->mu);
        if (wait > 1000)
            wait = 1000;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)wait * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        if (!rp->stop)
            pthread_cond_timedwait(&rp->cv, &rp->mu, &ts);
    }
    pthread_mutex_unlock(&rp->mu);
    return NULL;
}

static int
fill_paths(kn_server_cfg_t *cfg, kn_error_t *err)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return kn_error_set(err, errno, "readlink /proc/self/exe");
    self[n] = '\0';
    const char *dir = dirname(self);
    char path[PATH_MAX + 16];
    if (!cfg->self_path) {
        /* Shims run from the lean `kennel` binary beside this one (no
         * HTTP server or SQLite in every supervisor's address space). */
        snprintf(path, sizeof path, "%s/kennel", dir);
        if (set_str(&cfg->self_path, path, err) < 0)
            return -1;
    }
    if (access(cfg->self_path, X_OK) < 0)
        return kn_error_set(err, errno, "kennel (runs the shims) at %s", cfg->self_path);
    if (!cfg->execd_path) {
        snprintf(path, sizeof path, "%s/kennel-execd", dir);
        if (set_str(&cfg->execd_path, path, err) < 0)
            return -1;
    }
    if (access(cfg->execd_path, X_OK) < 0)
        return kn_error_set(err, errno, "kennel-execd at %s", cfg->execd_path);
    if (!cfg->run_dir && set_str(&cfg->run_dir, "/run/kennel", err) < 0)
        return -1;
    if (!cfg->db_path && set_str(&cfg->db_path, "/var/lib/kennel/kennel.db", err) < 0)
        return -1;
    if (!cfg->image_store && set_str(&cfg->image_store, kn_image_store_path(NULL), err) < 0)
        return -1;
    if (!cfg->layer_dir && set_str(&cfg->layer_dir, KN_LAYER_DIR_DEFAULT, err) < 0)
        return -1;
    if (cfg->image_store[0] != '/' || cfg->layer_dir[0] != '/')
        return kn_server_error(err, EINVAL, "imageStore and layerDir must be absolute paths");
    return 0;
}

/* Up to 4096 connections (MHD_OPTION_CONNECTION_LIMIT), each proxied one
 * with a second descriptor to execd: the usual soft limit of 1024 is too
 * few. Raised to the hard limit (at most 65536); the shims inherit it. */
static void
raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Per-connection memory of libmicrohttpd (request head, buffers): a
 * request head over about this much gets 431. At most 32 KiB, libmicrohttpd
 * takes it from malloc; above, it maps and unmaps it for every connection,
 * and that (the unmap's TLB shootdown across CPUs, the new pages' faults)
 * made a proxied GET /ping about 50 us slower (0.42 against 0.37 ms p50,
 * six interleaved runs of 3,000; docs/benchmarks.md). */
#define KN_CONN_MEMORY (32 * 1024)

static struct MHD_Daemon *
start_daemon(kn_srv_t *s, kn_error_t *err)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG | MHD_ALLOW_UPGRADE;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, s->cfg->listen_host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)s->cfg->listen_port);
        len = sizeof *a4;
    } else if (inet_pton(AF_INET6, s->cfg->listen_host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)s->cfg->listen_port);
        len = sizeof *a6;
        flags |= MHD_USE_IPv6;
    } else {
        kn_error_set(err, EINVAL, "listen address '%s' is not a numeric IP address",
                     s->cfg->listen_host);
        return NULL;
    }
    (void)len;
    /* No MHD_OPTION_LISTENING_ADDRESS_REUSE: it sets SO_REUSEPORT, and a
     * second server on a taken port would then start without a word and
     * have the kernel split the clients between the two. MHD's default
     * (SO_REUSEADDR) still lets a restarted server take its port at once. */
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)s->cfg->listen_port, NULL, NULL, kn_http_access, s, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_URI_LOG_CALLBACK, kn_http_uri_log, s,
        MHD_OPTION_NOTIFY_COMPLETED, kn_http_completed, s, MHD_OPTION_CONNECTION_TIMEOUT, 120U,
        MHD_OPTION_CONNECTION_LIMIT, 4096U, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)KN_CONN_MEMORY, MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 * 1024), MHD_OPTION_END);
    if (!d)
        kn_error_set(err, EADDRINUSE, "cannot listen on %s:%d", s->cfg->listen_host,
                     s->cfg->listen_port);
    return d;
}

/* The store is open and nothing is adopted yet: receipts attach here, so
 * that what adoption changes has its receipts too. */
static int
attach_receipts(kn_store_t *store, void *arg, kn_error_t *err)
{
    kn_srv_t *s = arg;
    return kn_rcpt_open(s->cfg, store, &s->receipts, err);
}

int
kn_server_run(kn_server_cfg_t *cfg, kn_error_t *err)
{
    kn_srv_t s = {.cfg = cfg};
    reaper_t rp = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    pthread_t reaper;
    bool reaping = false;
    int ret = -1;
    if (fill_paths(cfg, err) < 0)
        return -1;
    /* Specs hold the request's environment, which may hold secrets: files
     * the server and its shims make are private unless made otherwise. */
    umask(077);
    raise_fd_limit();
    /* Every thread inherits this mask; the main thread takes the signals. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (kn_sbx_open_with(cfg, attach_receipts, &s, &s.mgr, err) < 0 ||
        kn_snaps_open(cfg, s.mgr, s.receipts, &s.snaps, err) < 0)
        goto out;
    rp.mgr = s.mgr;
    if (pthread_create(&reaper, NULL, reap_loop, &rp) != 0) {
        kn_error_set(err, EAGAIN, "reaper thread");
        goto out;
    }
    reaping = true;
    if (!(s.daemon = start_daemon(&s, err)))
        goto out;
    fprintf(stderr,
            "{\"level\":\"info\",\"msg\":\"serving\",\"listen\":\"%s:%d\",\"db\":\"%s\","
            "\"runDir\":\"%s\",\"auth\":%s,\"receipts\":%s}\n",
            cfg->listen_host, cfg->listen_port, cfg->db_path, cfg->run_dir,
            cfg->n_keys ? "true" : "false", s.receipts ? "true" : "false");
    int sig = 0;
    while (sigwait(&stop, &sig) != 0 || sig == SIGHUP)
        ;
    fprintf(stderr,
            "{\"level\":\"info\",\"msg\":\"signal %d: stopping; sandboxes keep running, "
            "warm pools are drained\"}\n",
            sig);
    ret = 0;
out:
    kn_proxy_shutdown();
    if (s.daemon)
        MHD_stop_daemon(s.daemon);
    if (reaping) {
        pthread_mutex_lock(&rp.mu);
        rp.stop = true;
        pthread_cond_signal(&rp.cv);
        pthread_mutex_unlock(&rp.mu);
        pthread_join(reaper, NULL);
    }
    if (s.mgr && ret == 0)
        kn_sbx_drain_pools(s.mgr);
    kn_snaps_close(s.snaps);   /* after the captures in progress */
    kn_rcpt_close(s.receipts); /* detaches from the store first */
    kn_sbx_close(s.mgr);
    return ret;
}
