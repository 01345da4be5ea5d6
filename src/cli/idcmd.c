#include "idcmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"

int
kn_idcmd_run(int argc, char **argv, const char *name, const char *method, const char *suffix)
{
    const char *server = kn_client_server_arg(&argc, argv);
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 2 ? stderr : stdout, "usage: kennel %s [-s URL] ID...\n", name);
        return argc < 2 ? KN_EXIT_KENNEL : 0;
    }
    kn_client_t cl;
    kn_error_t err = {0};
    if (kn_client_init(&cl, server, &err) < 0) {
        fprintf(stderr, "kennel %s: %s\n", name, err.msg);
        return KN_EXIT_KENNEL;
    }
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        char path[512];
        json_t *out = NULL;
        if (strlen(argv[i]) > 128 || strchr(argv[i], '/') || strchr(argv[i], '?')) {
            fprintf(stderr, "kennel %s: '%s' is not a sandbox id\n", name, argv[i]);
            rc = 1;
            continue;
        }
        snprintf(path, sizeof path, "/v1/sandboxes/%s%s", argv[i], suffix);
        if (kn_client_call(&cl, method, path, NULL, &out, &err) < 0) {
            fprintf(stderr, "kennel %s: %s: %s\n", name, argv[i], err.msg);
            rc = 1;
            continue;
        }
        puts(argv[i]);
        json_decref(out);
    }
    return rc;
}
