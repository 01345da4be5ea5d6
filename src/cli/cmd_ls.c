/* cmd_ls.c - `kennel ls`: the sandboxes of a `kennel serve`. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"

/* Appends a %-escaped copy of s (RFC 3986 unreserved characters kept). */
static void
escape(char *out, size_t cap, const char *s)
{
    size_t n = strlen(out);
    for (; *s && n + 4 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("-._~", ch))
            out[n++] = (char)ch;
        else
            n += (size_t)snprintf(out + n, cap - n, "%%%02X", ch);
    }
    out[n] = '\0';
}

int
kn_cmd_ls(int argc, char **argv)
{
    static const struct option opts[] = {
        {"state", required_argument, 0, 'S'},
        {"meta", required_argument, 0, 'M'},
        {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *server = kn_client_server_arg(&argc, argv);
    char path[4096] = "/v1/sandboxes?pageSize=1000", meta[2048] = "";
    bool as_json = false;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'S':
            strncat(path, "&state=", sizeof path - strlen(path) - 1);
            escape(path, sizeof path, optarg);
            break;
        case 'M':
            if (meta[0])
                strncat(meta, "&", sizeof meta - strlen(meta) - 1);
            strncat(meta, optarg, sizeof meta - strlen(meta) - 1);
            break;
        case 'j':
            as_json = true;
            break;
        case 'h':
            printf("usage: kennel ls [-s URL] [--state STATE]... [--meta KEY=VALUE]... [--json]\n");
            return 0;
        default:
            fprintf(stderr,
                    "usage: kennel ls [-s URL] [--state STATE]... [--meta K=V]... [--json]\n");
            return KN_EXIT_KENNEL;
        }
    }
    if (meta[0]) {
        strncat(path, "&metadata=", sizeof path - strlen(path) - 1);
        escape(path, sizeof path, meta);
    }
    kn_client_t cl;
    kn_error_t err = {0};
    json_t *out = NULL;
    if (kn_client_init(&cl, server, &err) < 0 ||
        kn_client_call(&cl, "GET", path, NULL, &out, &err) < 0) {
        fprintf(stderr, "kennel ls: %s\n", err.msg);
        return KN_EXIT_KENNEL;
    }
    if (as_json) {
        char *text = json_dumps(json_object_get(out, "items"), JSON_INDENT(2));
        puts(text ? text : "[]");
        free(text);
        json_decref(out);
        return 0;
    }
    printf("%-36s  %-10s  %-24s  %-24s  %s\n", "ID", "STATE", "CREATED", "EXPIRES", "METADATA");
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(out, "items"), i, s)
    {
        char *m = json_dumps(json_object_get(s, "metadata"), JSON_COMPACT);
        const char *exp = json_string_value(json_object_get(s, "expiresAt"));
        printf("%-36s  %-10s  %-24s  %-24s  %s\n", json_string_value(json_object_get(s, "id")),
               json_string_value(json_object_get(json_object_get(s, "status"), "state")),
               json_string_value(json_object_get(s, "createdAt")), exp ? exp : "-", m ? m : "{}");
        free(m);
    }
    json_decref(out);
    return 0;
}
