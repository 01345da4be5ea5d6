/* cmd_inspect.c - `kennel inspect ID...`: print a sandbox as JSON through the lifecycle API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"

int
kn_cmd_inspect(int argc, char **argv)
{
    const char *server = kn_client_server_arg(&argc, argv);
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 2 ? stderr : stdout, "usage: kennel inspect [-s URL] ID...\n");
        return argc < 2 ? KN_EXIT_KENNEL : 0;
    }
    kn_client_t cl;
    kn_error_t err = {0};
    if (kn_client_init(&cl, server, &err) < 0) {
        fprintf(stderr, "kennel inspect: %s\n", err.msg);
        return KN_EXIT_KENNEL;
    }
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        char path[512];
        json_t *out = NULL;
        if (strlen(argv[i]) > 128 || strchr(argv[i], '/') || strchr(argv[i], '?')) {
            fprintf(stderr, "kennel inspect: '%s' is not a sandbox id\n", argv[i]);
            rc = 1;
            continue;
        }
        snprintf(path, sizeof path, "/v1/sandboxes/%s", argv[i]);
        if (kn_client_call(&cl, "GET", path, NULL, &out, &err) < 0) {
            fprintf(stderr, "kennel inspect: %s: %s\n", argv[i], err.msg);
            rc = 1;
            continue;
        }
        char *text = json_dumps(out, JSON_INDENT(2));
        puts(text ? text : "{}");
        free(text);
        json_decref(out);
    }
    return rc;
}
