/* server.h - `kennel serve`: the OpenSandbox lifecycle API over HTTP.
 *
 * The server answers /v1 (and the same routes without the prefix) from the
 * store, asks one detached shim per sandbox to do the work, and proxies
 * /sandboxes/{id}/proxy/{port}/... to the sandbox's execd. Its options are
 * filled from the command line, a JSON config file and the environment. */
#ifndef KN_SERVER_H
#define KN_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "error.h"

#define KN_SERVER_MAX_KEYS 16
#define KN_SERVER_MAX_ALIASES 32
#define KN_SERVER_MAX_HOSTPATHS 16
#define KN_SERVER_MAX_POOLS 8

/* A warm pool: size sandboxes of one image and set of limits kept ready. */
typedef struct kn_server_pool {
    char *name;
    char *image;  /* an image name the API accepts ("host" or an alias) */
    char *limits; /* resourceLimits as a JSON object's text */
    int size;
} kn_server_pool_t;

typedef struct kn_server_cfg {
    char listen_host[64]; /* numeric IPv4 or IPv6 address */
    int listen_port;
    char *db_path;    /* SQLite file */
    char *run_dir;    /* the shims' run directories live under it */
    char *execd_path; /* host path of kennel-execd */
    char *self_path;  /* host path of the lean kennel binary (runs `kennel shim`) */
    char *api_keys[KN_SERVER_MAX_KEYS];
    int n_keys;
    /* Image names the API accepts, mapped to a kennel image ("host", an
     * absolute rootfs directory, or a reference into the image store).
     * "host" always maps to itself; other names are looked up in the store. */
    char *alias_name[KN_SERVER_MAX_ALIASES];
    char *alias_image[KN_SERVER_MAX_ALIASES];
    int n_aliases;
    /* Host-path volumes must resolve under one of these prefixes. */
    char *host_paths[KN_SERVER_MAX_HOSTPATHS];
    int n_host_paths;
    kn_server_pool_t pools[KN_SERVER_MAX_POOLS];
    int n_pools;
    int64_t max_timeout_s; /* 0: no maximum */
    int ready_timeout_ms;  /* create gives up when execd does not answer by then */
    size_t max_body;       /* lifecycle request bodies */
    bool log_requests;
    int max_sandboxes; /* live sandboxes (pool members aside); 0: no limit */
    char *public_host; /* host[:port] put in endpoints; NULL: the request's Host */
    char *image_store; /* the image store (kennel image); NULL: $KENNEL_STORE or the default */
    kn_wlayer_kind_t wlayer; /* sandboxes' writable layer: tmpfs or disk */
    char *layer_dir;         /* where disk-backed layers are made */
    /* Receipts (docs/receipts.md): the signing key's file (NULL: receipts.key
     * beside the database), the issuer id (NULL: did:kennel:<hostname>), and
     * receipts_off for benchmarks only. */
    char *receipts_key;
    char *receipts_issuer;
    bool receipts_off;
    /* Resolver the sandboxes' DNS proxies ask ("ADDR" or "ADDR:PORT"); NULL:
     * the host's own (dnsUpstream, --dns-upstream, KENNEL_DNS_UPSTREAM). */
    char *dns_upstream;
} kn_server_cfg_t;

/* Sets err to an error meant for an API client: the message as given, with
 * no strerror suffix, and code for the HTTP layer's mapping. Returns -1. */
int kn_server_error(kn_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A random (version 4) UUID, the ids of sandboxes and snapshots. */
void kn_server_new_id(char out[40]);

/* Fills defaults. */
void kn_server_cfg_init(kn_server_cfg_t *cfg);
/* Reads a JSON config file into cfg (keys: listen, db, runDir, execd,
 * apiKeys, imageAliases, allowedHostPaths, maxTimeoutSeconds, readyTimeoutMs,
 * maxSandboxes, publicHost, dnsUpstream, pools: [{name, image, resourceLimits, size}],
 * imageStore, writableLayer ("tmpfs" or "disk"), layerDir, receiptsKey,
 * receiptsIssuer, receipts: false). */
int kn_server_cfg_load(kn_server_cfg_t *cfg, const char *path, kn_error_t *err);
void kn_server_cfg_free(kn_server_cfg_t *cfg);
/* writableLayer: "tmpfs" or "disk". */
int kn_server_cfg_set_wlayer(kn_server_cfg_t *cfg, const char *kind, kn_error_t *err);
/* Adds a pool; limits is a JSON object's text, NULL for the SDK's default
 * {"cpu": "1", "memory": "2Gi"}. */
int kn_server_cfg_add_pool(kn_server_cfg_t *cfg, const char *name, const char *image,
                           const char *limits, int size, kn_error_t *err);

/* Serves until SIGTERM or SIGINT. Sandboxes keep running after it returns. */
int kn_server_run(kn_server_cfg_t *cfg, kn_error_t *err);

#endif
