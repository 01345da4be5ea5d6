/* cmd_renew.c - `kennel renew ID SECONDS`: the sandbox expires SECONDS from now. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "client.h"

int
kn_cmd_renew(int argc, char **argv)
{
    const char *server = kn_client_server_arg(&argc, argv);
    char *end = NULL;
    long secs = argc == 3 ? strtol(argv[2], &end, 10) : 0;
    if (argc != 3 || !end || *end || secs < 1 || secs > 100L * 365 * 86400 ||
        strlen(argv[1]) > 128 || strpbrk(argv[1], "/?%")) {
        fprintf(stderr, "usage: kennel renew [-s URL] ID SECONDS\n");
        return KN_EXIT_KENNEL;
    }
    time_t t = time(NULL) + secs;
    struct tm tm;
    char when[40], path[256];
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(path, sizeof path, "/v1/sandboxes/%s/renew-expiration", argv[1]);
    json_t *body = json_pack("{s:s}", "expiresAt", when), *out = NULL;
    kn_client_t cl;
    kn_error_t err = {0};
    int rc = 0;
    if (kn_client_init(&cl, server, &err) < 0 ||
        kn_client_call(&cl, "POST", path, body, &out, &err) < 0) {
        fprintf(stderr, "kennel renew: %s\n", err.msg);
        rc = KN_EXIT_KENNEL;
    } else {
        puts(json_string_value(json_object_get(out, "expiresAt")) ?: when);
    }
    json_decref(body);
    json_decref(out);
    return rc;
}
