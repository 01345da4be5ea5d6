/* cmd_image.c - `kennel image`: import, list, inspect and remove images in
 * the content-addressed store (src/core/image.h). */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "image.h"

static void
usage(FILE *f)
{
    fprintf(f, "usage: kennel image [--store DIR] COMMAND ...\n"
               "\n"
               "  import FILE|DIR [--name NAME:TAG] [--rootfs]\n"
               "                    an OCI image layout (directory or tar) or a `docker save`\n"
               "                    tarball; with --rootfs, a root file system tarball\n"
               "  ls                the images and their names\n"
               "  inspect NAME      digest, size and config (env, entrypoint, cmd, workdir, user)\n"
               "  rm NAME...        remove names; an image goes with its last name (refused\n"
               "                    while a sandbox uses it)\n"
               "  prune             remove unnamed images and unused layers and blobs\n"
               "\n"
               "NAME is NAME[:TAG], NAME@sha256:DIGEST or sha256:DIGEST. The store is\n"
               "--store, else $KENNEL_STORE, else " KN_IMAGE_STORE_DEFAULT ".\n");
}

static void
human(uint64_t b, char *out, size_t cap)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

/* On a terminal, one line that updates for each large layer blob. */
static void
progress(void *arg, size_t layer, size_t n_layers, uint64_t done, uint64_t total)
{
    if (total < (16u << 20))
        return;
    fprintf(stderr, "\rlayer %zu/%zu: %5.1f / %.1f MiB", layer + 1, n_layers,
            (double)done / 1048576.0, (double)total / 1048576.0);
    if (done == total)
        fputc('\n', stderr);
}

static int
cmd_import(const char *store, int argc, char **argv)
{
    static const struct option opts[] = {
        {"name", required_argument, 0, 'n'}, {"rootfs", no_argument, 0, 'r'}, {0, 0, 0, 0}};
    const char *name = NULL;
    bool rootfs = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
        if (c == 'n')
            name = optarg;
        else if (c == 'r')
            rootfs = true;
        else
            return KN_EXIT_KENNEL;
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "kennel image import: give one FILE or DIR\n");
        return KN_EXIT_KENNEL;
    }
    kn_error_t err = {0};
    kn_image_info_t info = {0};
    kn_image_import_opts_t o = {.rootfs = rootfs,
                                .progress = isatty(STDERR_FILENO) ? progress : NULL};
    int rc = kn_image_import_with(store, argv[optind], name, &o, &info, &err);
    if (rc < 0) {
        fprintf(stderr, "kennel: %s\n", err.msg);
        return KN_EXIT_KENNEL;
    }
    char size[32];
    human(info.size, size, sizeof size);
    printf("imported %s (%zu layers, %llu new, %s)\n", info.digest, info.n_layers,
           (unsigned long long)info.layers_new, size);
    if (info.names && info.names[0])
        printf("name %s\n", info.names[0]);
    if (info.devices_skipped)
        printf("skipped %llu device nodes\n", (unsigned long long)info.devices_skipped);
    if (info.setid_cleared)
        printf("cleared setuid/setgid on %llu files\n", (unsigned long long)info.setid_cleared);
    kn_image_info_free(&info);
    return 0;
}

static int
cmd_ls(const char *store)
{
    kn_error_t err = {0};
    kn_image_info_t *list;
    size_t n;
    if (kn_image_list(store, &list, &n, &err) < 0) {
        fprintf(stderr, "kennel: %s\n", err.msg);
        return KN_EXIT_KENNEL;
    }
    printf("%-40s %-19s %6s %10s  %s\n", "NAME", "DIGEST", "LAYERS", "SIZE", "IMPORTED");
    for (size_t i = 0; i < n; i++) {
        char size[32];
        human(list[i].size, size, sizeof size);
        char **names = list[i].names;
        size_t k = 0;
        do {
            printf("%-40s %-19.19s %6zu %10s  %s\n", names && names[k] ? names[k] : "<none>",
                   list[i].digest, list[i].n_layers, size, list[i].imported);
        } while (names && names[k] && names[++k]);
    }
    kn_image_list_free(list, n);
    return 0;
}

static json_t *
strv_json(char **v)
{
    if (!v)
        return json_null();
    json_t *a = json_array();
    for (; *v; v++)
        json_array_append_new(a, json_string(*v));
    return a;
}

static int
cmd_inspect(const char *store, const char *ref)
{
    kn_error_t err = {0};
    kn_image_t *img;
    if (kn_image_open(store, ref, &img, &err) < 0) {
        fprintf(stderr, "kennel: %s\n", err.msg);
        return KN_EXIT_KENNEL;
    }
    json_t *layers = json_array();
    for (size_t i = 0; i < img->n_layers; i++) {
        char d[KN_DIGEST_MAX];
        snprintf(d, sizeof d, "sha256:%.64s", img->layers[i]);
        json_array_append_new(layers, json_string(d));
    }
    json_t *o =
        json_pack("{s:s,s:s,s:I,s:o,s:{s:o,s:o,s:o,s:s?,s:s?}}", "digest", img->digest, "config",
                  img->config_digest, "size", (json_int_t)img->size, "layers", layers, "configured",
                  "env", strv_json(img->env), "entrypoint", strv_json(img->entrypoint), "cmd",
                  strv_json(img->cmd), "workdir", img->workdir, "user", img->user);
    char *s = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    if (s)
        puts(s);
    free(s);
    json_decref(o);
    kn_image_close(img);
    return s ? 0 : KN_EXIT_KENNEL;
}

int
kn_cmd_image(int argc, char **argv)
{
    const char *store = NULL;
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--store") && i + 1 < argc) {
            store = argv[i + 1];
            i += 2;
        } else if (!strncmp(argv[i], "--store=", 8)) {
            store = argv[i++] + 8;
        } else {
            fprintf(stderr, "kennel image: unknown option '%s'\n", argv[i]);
            return KN_EXIT_KENNEL;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return KN_EXIT_KENNEL;
    }
    const char *sub = argv[i];
    int sargc = argc - i;
    char **sargv = argv + i;
    if (!strcmp(sub, "import"))
        return cmd_import(store, sargc, sargv);
    if (!strcmp(sub, "ls") || !strcmp(sub, "list"))
        return cmd_ls(store);
    if (!strcmp(sub, "inspect") && sargc == 2)
        return cmd_inspect(store, sargv[1]);
    if ((!strcmp(sub, "rm") || !strcmp(sub, "remove")) && sargc >= 2) {
        int rc = 0;
        for (int k = 1; k < sargc; k++) {
            kn_error_t err = {0};
            if (kn_image_remove(store, sargv[k], &err) < 0) {
                fprintf(stderr, "kennel: %s\n", err.msg);
                rc = KN_EXIT_KENNEL;
            } else {
                printf("removed %s\n", sargv[k]);
            }
        }
        return rc;
    }
    if (!strcmp(sub, "prune") && sargc == 1) {
        kn_error_t err = {0};
        size_t freed = 0;
        if (kn_image_prune(store, &freed, &err) < 0) {
            fprintf(stderr, "kennel: %s\n", err.msg);
            return KN_EXIT_KENNEL;
        }
        printf("removed %zu entries\n", freed);
        return 0;
    }
    usage(stderr);
    return KN_EXIT_KENNEL;
}
