/* cmd_create.c - `kennel create`: a sandbox through the lifecycle API. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: kennel create [-s URL] [--image NAME | --snapshot ID]\n"
            "                     [--timeout SECONDS | --no-timeout]\n"
            "                     [--cpu Q] [--memory Q] [-e KEY=VALUE]... [--meta KEY=VALUE]...\n"
            "                     [--pool NAME] [--json] [-- ENTRYPOINT...]\n"
            "Creates a sandbox on a `kennel serve` (KENNEL_SERVER, OPEN_SANDBOX_API_KEY) and\n"
            "prints its id once execd inside answers. Defaults: image host, timeout 600,\n"
            "cpu 1, memory 2Gi, entrypoint tail -f /dev/null (with --image NAME of the\n"
            "server's store: the image's entrypoint and cmd when none is given).\n");
}

static int
add_kv(json_t *obj, const char *kv, const char *what)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) {
        fprintf(stderr, "kennel create: %s '%s' is not KEY=VALUE\n", what, kv);
        return -1;
    }
    char *key = strndup(kv, (size_t)(eq - kv));
    json_object_set_new(obj, key, json_string(eq + 1));
    free(key);
    return 0;
}

int
kn_cmd_create(int argc, char **argv)
{
    static const struct option opts[] = {
        {"image", required_argument, 0, 'i'},   {"snapshot", required_argument, 0, 'S'},
        {"timeout", required_argument, 0, 't'}, {"no-timeout", no_argument, 0, 'T'},
        {"cpu", required_argument, 0, 'c'},     {"memory", required_argument, 0, 'm'},
        {"env", required_argument, 0, 'e'},     {"meta", required_argument, 0, 'M'},
        {"pool", required_argument, 0, 'p'},    {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
    };
    const char *server = kn_client_server_arg(&argc, argv);
    json_t *env = json_object(), *meta = json_object(), *limits = json_object();
    json_t *req = json_pack("{s:{s:s}, s:i}", "image", "uri", "host", "timeout", 600);
    bool as_json = false, image_given = false;
    int rc = KN_EXIT_KENNEL, c;
    json_object_set_new(limits, "cpu", json_string("1"));
    json_object_set_new(limits, "memory", json_string("2Gi"));
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+e:h", opts, NULL)) != -1) {
        switch (c) {
        case 'i':
            json_object_set_new(req, "image", json_pack("{s:s}", "uri", optarg));
            image_given = strcmp(optarg, "host") != 0;
            break;
        case 'S':
            json_object_del(req, "image");
            json_object_set_new(req, "snapshotId", json_string(optarg));
            break;
        case 't':
            json_object_set_new(req, "timeout", json_integer(atoll(optarg)));
            break;
        case 'T':
            json_object_del(req, "timeout");
            break;
        case 'c':
            json_object_set_new(limits, "cpu", json_string(optarg));
            break;
        case 'm':
            json_object_set_new(limits, "memory", json_string(optarg));
            break;
        case 'e':
            if (add_kv(env, optarg, "-e") < 0)
                goto out;
            break;
        case 'M':
            if (add_kv(meta, optarg, "--meta") < 0)
                goto out;
            break;
        case 'p':
            json_object_set_new(req, "extensions", json_pack("{s:s}", "poolRef", optarg));
            break;
        case 'j':
            as_json = true;
            break;
        case 'h':
            usage(stdout);
            rc = 0;
            goto out;
        default:
            usage(stderr);
            goto out;
        }
    }
    json_t *ep = json_array();
    for (int i = optind; i < argc; i++)
        if (strcmp(argv[i], "--") != 0 || i != optind)
            json_array_append_new(ep, json_string(argv[i]));
    /* No entrypoint: a named image's own (the server applies it), else
     * the SDK's default. */
    if (json_array_size(ep) == 0 && !image_given && !json_object_get(req, "snapshotId")) {
        json_t *dflt = json_pack("[s,s,s]", "tail", "-f", "/dev/null");
        json_array_extend(ep, dflt);
        json_decref(dflt);
    }
    if (json_array_size(ep))
        json_object_set_new(req, "entrypoint", ep);
    else
        json_decref(ep);
    json_object_set(req, "resourceLimits", limits);
    json_object_set(req, "env", env);
    json_object_set(req, "metadata", meta);
    kn_client_t cl;
    kn_error_t err = {0};
    json_t *out = NULL;
    if (kn_client_init(&cl, server, &err) < 0 ||
        kn_client_call(&cl, "POST", "/v1/sandboxes", req, &out, &err) < 0) {
        fprintf(stderr, "kennel create: %s\n", err.msg);
        goto out;
    }
    if (as_json) {
        char *text = json_dumps(out, JSON_INDENT(2));
        puts(text ? text : "{}");
        free(text);
    } else {
        puts(json_string_value(json_object_get(out, "id")));
    }
    json_decref(out);
    rc = 0;
out:
    json_decref(req);
    json_decref(env);
    json_decref(meta);
    json_decref(limits);
    return rc;
}
