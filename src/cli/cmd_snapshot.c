/* cmd_snapshot.c - `kennel snapshot`: snapshots of sandboxes on a
 * `kennel serve` (POST /sandboxes/{id}/snapshots, GET and DELETE /snapshots). */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"

static void
usage(FILE *f)
{
    fprintf(f, "usage: kennel snapshot [-s URL] [--json] [--no-wait] SANDBOX [NAME]\n"
               "       kennel snapshot ls [-s URL] [--sandbox ID] [--state STATE] [--json]\n"
               "       kennel snapshot rm [-s URL] SNAPSHOT...\n"
               "Takes a snapshot of a Running sandbox of a `kennel serve`: its files (its\n"
               "writable layer over its image), not its processes. Waits until it is Ready and\n"
               "prints its id. A NAME that is an image name (NAME[:TAG]) also names the image\n"
               "in the server's store, so `kennel run --image NAME` starts from it; every\n"
               "snapshot is the image kennel-snapshot:ID. Restore: kennel create --snapshot ID.\n");
}

static void
print_json(const json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(2));
    puts(text ? text : "{}");
    free(text);
}

/* Ids go into a request line as they are. */
static bool
id_ok(const char *what, const char *id)
{
    size_t n = strlen(id);
    if (n && n < 64 && strspn(id, "abcdefABCDEF0123456789-") == n)
        return true;
    fprintf(stderr, "kennel snapshot: '%s' is not a %s id\n", id, what);
    return false;
}

static int
take(kn_client_t *cl, const char *sandbox, const char *name, bool wait, bool as_json)
{
    char path[256];
    kn_error_t err = {0};
    if (!id_ok("sandbox", sandbox))
        return KN_EXIT_KENNEL;
    json_t *out = NULL, *body = name ? json_pack("{s:s}", "name", name) : json_object();
    snprintf(path, sizeof path, "/v1/sandboxes/%s/snapshots", sandbox);
    int rc = kn_client_call(cl, "POST", path, body, &out, &err);
    json_decref(body);
    if (rc < 0) {
        fprintf(stderr, "kennel snapshot: %s\n", err.msg);
        return KN_EXIT_KENNEL;
    }
    char id[64];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(out, "id")) ?: "");
    snprintf(path, sizeof path, "/v1/snapshots/%s", id);
    struct timespec pause = {0, 20 * 1000 * 1000};
    for (int i = 0; wait && i < 90000; i++) { /* 30 minutes at most */
        const char *st =
            json_string_value(json_object_get(json_object_get(out, "status"), "state"));
        if (!st || strcmp(st, "Creating") != 0)
            break;
        nanosleep(&pause, NULL);
        json_decref(out);
        if (kn_client_call(cl, "GET", path, NULL, &out, &err) < 0) {
            fprintf(stderr, "kennel snapshot: %s\n", err.msg);
            return KN_EXIT_KENNEL;
        }
    }
    const char *st = json_string_value(json_object_get(json_object_get(out, "status"), "state"));
    int ret = wait && (!st || strcmp(st, "Ready")) ? KN_EXIT_KENNEL : 0;
    if (as_json)
        print_json(out);
    else if (ret)
        fprintf(stderr, "kennel snapshot: %s is %s: %s\n", id, st ? st : "?",
                json_string_value(json_object_get(json_object_get(out, "status"), "message"))
                    ?: "");
    else
        puts(id);
    json_decref(out);
    return ret;
}

static int
list(kn_client_t *cl, int argc, char **argv)
{
    static const struct option opts[] = {
        {"sandbox", required_argument, 0, 'S'},
        {"state", required_argument, 0, 't'},
        {"json", no_argument, 0, 'j'},
        {0, 0, 0, 0},
    };
    char path[1024] = "/v1/snapshots?pageSize=1000";
    bool as_json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'j') {
            as_json = true;
            continue;
        }
        if (c != 'S' && c != 't') {
            usage(stderr);
            return KN_EXIT_KENNEL;
        }
        if (strspn(optarg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") !=
            strlen(optarg)) {
            fprintf(stderr, "kennel snapshot ls: '%s' is not an id or a state\n", optarg);
            return KN_EXIT_KENNEL;
        }
        size_t n = strlen(path);
        snprintf(path + n, sizeof path - n, "&%s=%s", c == 'S' ? "sandboxId" : "state", optarg);
    }
    kn_error_t err = {0};
    json_t *out = NULL;
    if (kn_client_call(cl, "GET", path, NULL, &out, &err) < 0) {
        fprintf(stderr, "kennel snapshot ls: %s\n", err.msg);
        return KN_EXIT_KENNEL;
    }
    json_t *items = json_object_get(out, "items");
    if (as_json) {
        print_json(items);
    } else {
        printf("%-36s  %-36s  %-9s  %-24s  %s\n", "SNAPSHOT", "SANDBOX", "STATE", "CREATED",
               "NAME");
        size_t i;
        json_t *x;
        json_array_foreach(items, i, x)
        {
            printf("%-36s  %-36s  %-9s  %-24s  %s\n",
                   json_string_value(json_object_get(x, "id")) ?: "",
                   json_string_value(json_object_get(x, "sandboxId")) ?: "",
                   json_string_value(json_object_get(json_object_get(x, "status"), "state")) ?: "",
                   json_string_value(json_object_get(x, "createdAt")) ?: "",
                   json_string_value(json_object_get(x, "name")) ?: "");
        }
    }
    json_decref(out);
    return 0;
}

static int
remove_all(kn_client_t *cl, int argc, char **argv)
{
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        char path[256];
        kn_error_t err = {0};
        json_t *out = NULL;
        if (!id_ok("snapshot", argv[i])) {
            rc = KN_EXIT_KENNEL;
            continue;
        }
        snprintf(path, sizeof path, "/v1/snapshots/%s", argv[i]);
        if (kn_client_call(cl, "DELETE", path, NULL, &out, &err) < 0) {
            fprintf(stderr, "kennel snapshot rm: %s: %s\n", argv[i], err.msg);
            rc = KN_EXIT_KENNEL;
        }
        json_decref(out);
    }
    return rc;
}

int
kn_cmd_snapshot(int argc, char **argv)
{
    const char *server = kn_client_server_arg(&argc, argv);
    kn_client_t cl;
    kn_error_t err = {0};
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (kn_client_init(&cl, server, &err) < 0) {
        fprintf(stderr, "kennel snapshot: %s\n", err.msg);
        return KN_EXIT_KENNEL;
    }
    if (argc >= 2 && !strcmp(argv[1], "ls"))
        return list(&cl, argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "rm"))
        return remove_all(&cl, argc - 1, argv + 1);
    static const struct option opts[] = {
        {"json", no_argument, 0, 'j'},
        {"no-wait", no_argument, 0, 'n'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    bool as_json = false, wait = true;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j')
            as_json = true;
        else if (c == 'n')
            wait = false;
        else if (c == 'h') {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return KN_EXIT_KENNEL;
        }
    }
    if (optind >= argc || argc - optind > 2) {
        usage(stderr);
        return KN_EXIT_KENNEL;
    }
    return take(&cl, argv[optind], optind + 1 < argc ? argv[optind + 1] : NULL, wait, as_json);
}
