/* cmd_logs.c - `kennel logs ID`: a sandbox's diagnostics (execd's output and
 * its supervisor's record) through the lifecycle API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"

int
kn_cmd_logs(int argc, char **argv)
{
    const char *server = kn_client_server_arg(&argc, argv);
    const char *scope = "all";
    const char *id = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: kennel logs [-s URL] [--scope container|runtime|all] ID\n");
            return 0;
        } else if (!strcmp(argv[i], "--scope") && i + 1 < argc) {
            scope = argv[++i];
        } else if (!id) {
            id = argv[i];
        } else {
            id = NULL;
            break;
        }
    }
    if (!id || strlen(id) > 128 || strpbrk(id, "/?%&") || strpbrk(scope, "/?%&#")) {
        fprintf(stderr, "usage: kennel logs [-s URL] [--scope container|runtime|all] ID\n");
        return KN_EXIT_KENNEL;
    }
    char path[512];
    snprintf(path, sizeof path, "/v1/sandboxes/%s/diagnostics/logs?scope=%s", id, scope);
    kn_client_t cl;
    kn_error_t err = {0};
    json_t *out = NULL;
    if (kn_client_init(&cl, server, &err) < 0 ||
        kn_client_call(&cl, "GET", path, NULL, &out, &err) < 0) {
        fprintf(stderr, "kennel logs: %s\n", err.msg);
        return KN_EXIT_KENNEL;
    }
    fputs(json_string_value(json_object_get(out, "content")) ?: "", stdout);
    json_decref(out);
    return 0;
}
