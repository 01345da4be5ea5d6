/* cmd_serve.c - `kennel serve`: the OpenSandbox lifecycle API server.
 * Parses flags over a config file and the environment, then runs the server. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "server.h"

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: kennel serve [OPTIONS]\n"
            "\n"
            "Serves the OpenSandbox lifecycle API (/v1) and proxies each sandbox's execd at\n"
            "/sandboxes/{id}/proxy/44772/. Sandboxes are owned by detached supervisors\n"
            "(`kennel shim`) and survive a restart of the server, which adopts them again.\n"
            "\n"
            "  -c, --config FILE        JSON config (listen, db, runDir, execd, apiKeys,\n"
            "                           imageAliases, allowedHostPaths, maxTimeoutSeconds,\n"
            "                           readyTimeoutMs, imageStore, writableLayer, layerDir,\n"
            "                           dnsUpstream); flags override it\n"
            "  -l, --listen HOST:PORT   numeric address (default 127.0.0.1:8080)\n"
            "      --db PATH            SQLite file (default /var/lib/kennel/kennel.db)\n"
            "      --run-dir DIR        supervisors' run directories (default /run/kennel)\n"
            "      --execd PATH         kennel-execd binary (default: next to kennel)\n"
            "      --image-alias NAME=IMAGE  accept image NAME as IMAGE (host or a rootfs dir)\n"
            "      --allow-host-path DIR     host volumes may come from under DIR\n"
            "      --max-timeout SECONDS     longest sandbox timeout accepted\n"
            "      --ready-timeout MS        give up a create when execd is silent (30000)\n"
            "      --pool NAME=SIZE     keep SIZE sandboxes ready for creates of image host\n"
            "                           with the SDK's default limits (cpu 1, memory 2Gi);\n"
            "                           other pools: \"pools\" in the config\n"
            "      --max-sandboxes N    refuse creates (409) past N live sandboxes (0: no limit)\n"
            "      --public-host HOST[:PORT]  what endpoints name (default: the request's Host)\n"
            "      --image-store DIR    images that creates may name (default $KENNEL_STORE or\n"
            "                           /var/lib/kennel/images; see kennel image)\n"
            "      --writable-layer tmpfs|disk  where sandboxes' writes go (default tmpfs); disk:\n"
            "                           an ext4 image of ephemeral-storage bytes, reserved\n"
            "      --layer-dir DIR      where disk layers are made (/var/lib/kennel/layers)\n"
            "      --receipts-key PATH  receipts signing key, PKCS#8 PEM, made (0600) if missing\n"
            "                           (default: receipts.key beside the database)\n"
            "      --receipts-issuer ID issuer id of new receipt chains (did:kennel:<host>)\n"
            "      --no-receipts        issue no receipts (for benchmarks only)\n"
            "      --dns-upstream ADDR[:PORT] resolver of the sandboxes' DNS proxies (default:\n"
            "                           KENNEL_DNS_UPSTREAM, else the host's first nameserver)\n"
            "  -q, --quiet              no request log lines\n"
            "\n"
            "API keys: apiKeys in the config, or KENNEL_API_KEY in the environment. Clients\n"
            "send one in the OPEN-SANDBOX-API-KEY header. Without any key the server accepts\n"
            "every request and will only listen on a loopback address.\n"
            "Logs are JSON lines on standard error.\n");
}

static bool
loopback(const char *host)
{
    return !strncmp(host, "127.", 4) || !strcmp(host, "::1");
}

static int
add_str(char **slots, int *n, int max, const char *v)
{
    if (*n >= max || !(slots[*n] = strdup(v)))
        return -1;
    (*n)++;
    return 0;
}

static int
parse(int argc, char **argv, kn_server_cfg_t *cfg)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},
        {"listen", required_argument, 0, 'l'},
        {"db", required_argument, 0, 257},
        {"run-dir", required_argument, 0, 258},
        {"execd", required_argument, 0, 259},
        {"image-alias", required_argument, 0, 260},
        {"allow-host-path", required_argument, 0, 261},
        {"max-timeout", required_argument, 0, 262},
        {"ready-timeout", required_argument, 0, 263},
        {"pool", required_argument, 0, 264},
        {"max-sandboxes", required_argument, 0, 265},
        {"public-host", required_argument, 0, 266},
        {"image-store", required_argument, 0, 300},
        {"writable-layer", required_argument, 0, 301},
        {"layer-dir", required_argument, 0, 302},
        {"receipts-key", required_argument, 0, 267},
        {"receipts-issuer", required_argument, 0, 268},
        {"no-receipts", no_argument, 0, 269},
        {"dns-upstream", required_argument, 0, 303},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    kn_error_t err = {0};
    /* The config file first, so that flags override it. */
    for (int i = 1; i + 1 < argc; i++)
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) &&
            kn_server_cfg_load(cfg, argv[i + 1], &err) < 0) {
            fprintf(stderr, "kennel serve: %s\n", err.msg);
            return KN_EXIT_KENNEL;
        }
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":c:l:qh", opts, NULL)) != -1) {
        char *eq, *colon;
        long v;
        switch (c) {
        case 'c':
            break;
        case 'l':
            colon = strrchr(optarg, ':');
            v = colon ? strtol(colon + 1, NULL, 10) : 0;
            if (!colon || v < 1 || v > 65535 ||
                (size_t)(colon - optarg) >= sizeof cfg->listen_host) {
                fprintf(stderr, "kennel serve: --listen wants HOST:PORT\n");
                return KN_EXIT_KENNEL;
            }
            snprintf(cfg->listen_host, sizeof cfg->listen_host, "%.*s", (int)(colon - optarg),
                     optarg[0] == '[' ? optarg + 1 : optarg);
            cfg->listen_host[strcspn(cfg->listen_host, "]")] = '\0';
            cfg->listen_port = (int)v;
            break;
        case 257:
            free(cfg->db_path);
            cfg->db_path = strdup(optarg);
            break;
        case 258:
            free(cfg->run_dir);
            cfg->run_dir = strdup(optarg);
            break;
        case 259:
            free(cfg->execd_path);
            cfg->execd_path = strdup(optarg);
            break;
        case 260:
            eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1] || cfg->n_aliases >= KN_SERVER_MAX_ALIASES) {
                fprintf(stderr, "kennel serve: --image-alias wants NAME=IMAGE\n");
                return KN_EXIT_KENNEL;
            }
            cfg->alias_name[cfg->n_aliases] = strndup(optarg, (size_t)(eq - optarg));
            cfg->alias_image[cfg->n_aliases++] = strdup(eq + 1);
            break;
        case 261:
            if (optarg[0] != '/' ||
                add_str(cfg->host_paths, &cfg->n_host_paths, KN_SERVER_MAX_HOSTPATHS, optarg) < 0) {
                fprintf(stderr, "kennel serve: --allow-host-path wants an absolute path\n");
                return KN_EXIT_KENNEL;
            }
            break;
        case 262:
        case 263:
            errno = 0;
            v = strtol(optarg, &eq, 10);
            if (errno || *eq || v < 1 || v > 100L * 365 * 86400) {
                fprintf(stderr, "kennel serve: bad number '%s'\n", optarg);
                return KN_EXIT_KENNEL;
            }
            if (c == 262)
                cfg->max_timeout_s = v;
            else
                cfg->ready_timeout_ms = (int)(v > 600000 ? 600000 : v);
            break;
        case 264: {
            eq = strchr(optarg, '=');
            char *end = NULL;
            v = eq ? strtol(eq + 1, &end, 10) : -1;
            char name[64];
            if (!eq || eq == optarg || (size_t)(eq - optarg) >= sizeof name || !end || *end ||
                v < 0) {
                fprintf(stderr, "kennel serve: --pool wants NAME=SIZE\n");
                return KN_EXIT_KENNEL;
            }
            snprintf(name, sizeof name, "%.*s", (int)(eq - optarg), optarg);
            kn_error_t perr = {0};
            if (kn_server_cfg_add_pool(cfg, name, NULL, NULL, (int)v, &perr) < 0) {
                fprintf(stderr, "kennel serve: --pool: %s\n", perr.msg);
                return KN_EXIT_KENNEL;
            }
            break;
        }
        case 265:
            errno = 0;
            v = strtol(optarg, &eq, 10);
            if (errno || *eq || v < 0 || v > 1000000) {
                fprintf(stderr, "kennel serve: bad --max-sandboxes '%s'\n", optarg);
                return KN_EXIT_KENNEL;
            }
            cfg->max_sandboxes = (int)v;
            break;
        case 266:
            free(cfg->public_host);
            cfg->public_host = strdup(optarg);
            break;
        case 300:
        case 302:
            if (optarg[0] != '/') {
                fprintf(stderr, "kennel serve: --%s wants an absolute path\n",
                        c == 300 ? "image-store" : "layer-dir");
                return KN_EXIT_KENNEL;
            }
            free(c == 300 ? cfg->image_store : cfg->layer_dir);
            *(c == 300 ? &cfg->image_store : &cfg->layer_dir) = strdup(optarg);
            break;
        case 301: {
            kn_error_t werr = {0};
            if (kn_server_cfg_set_wlayer(cfg, optarg, &werr) < 0) {
                fprintf(stderr, "kennel serve: --writable-layer: %s\n", werr.msg);
                return KN_EXIT_KENNEL;
            }
            break;
        }
        case 267:
            free(cfg->receipts_key);
            cfg->receipts_key = strdup(optarg);
            break;
        case 268:
            free(cfg->receipts_issuer);
            cfg->receipts_issuer = strdup(optarg);
            break;
        case 269:
            cfg->receipts_off = true;
            break;
        case 303:
            free(cfg->dns_upstream);
            cfg->dns_upstream = strdup(optarg);
            break;
        case 'q':
            cfg->log_requests = false;
            break;
        case 'h':
            usage(stdout);
            return -1;
        case ':':
            fprintf(stderr, "kennel serve: option '%s' needs a value\n", argv[optind - 1]);
            return KN_EXIT_KENNEL;
        default:
            fprintf(stderr, "kennel serve: unknown option '%s'\n", argv[optind - 1]);
            return KN_EXIT_KENNEL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kennel serve: unexpected argument '%s'\n", argv[optind]);
        return KN_EXIT_KENNEL;
    }
    const char *up = getenv("KENNEL_DNS_UPSTREAM");
    if (!cfg->dns_upstream && up && up[0] && !(cfg->dns_upstream = strdup(up)))
        return KN_EXIT_KENNEL;
    const char *key = getenv("KENNEL_API_KEY");
    if (key && key[0] && add_str(cfg->api_keys, &cfg->n_keys, KN_SERVER_MAX_KEYS, key) < 0)
        return KN_EXIT_KENNEL;
    return 0;
}

int
kn_cmd_serve(int argc, char **argv)
{
    kn_server_cfg_t cfg;
    kn_server_cfg_init(&cfg);
    int rc = parse(argc, argv, &cfg);
    if (rc != 0) {
        kn_server_cfg_free(&cfg);
        return rc < 0 ? 0 : rc;
    }
    if (cfg.n_keys == 0) {
        if (!loopback(cfg.listen_host)) {
            fprintf(stderr,
                    "kennel serve: no API key is configured, so the server only listens "
                    "on loopback; set KENNEL_API_KEY or apiKeys to listen on %s\n",
                    cfg.listen_host);
            kn_server_cfg_free(&cfg);
            return KN_EXIT_KENNEL;
        }
        fprintf(stderr, "{\"level\":\"warning\",\"msg\":\"no API key configured: every request "
                        "is accepted; listening on loopback only\"}\n");
    }
    kn_error_t err = {0};
    rc = kn_server_run(&cfg, &err);
    if (rc < 0)
        fprintf(stderr, "kennel serve: %s\n", err.msg);
    kn_server_cfg_free(&cfg);
    return rc < 0 ? KN_EXIT_KENNEL : 0;
}
