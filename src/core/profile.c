/* profile.c - the built-in profiles and the one place a config is validated. */
#include "config.h"
#include "wlayer.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MiB (1024ULL * 1024ULL)

static const char *const profile_names[] = {"default", "deny-by-default", NULL};

static const char *const default_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/work",
    "LANG=C.UTF-8",
    NULL,
};

const char *const *
kn_profile_names(void)
{
    return profile_names;
}

int
kn_config_set_str(char **field, const char *value, kn_error_t *err)
{
    char *copy = NULL;
    if (value && !(copy = strdup(value)))
        return kn_error_set(err, ENOMEM, "strdup");
    free(*field);
    *field = copy;
    return 0;
}

int
kn_config_set_argv(kn_config_t *cfg, char *const *argv, kn_error_t *err)
{
    size_t n = 0;
    while (argv[n])
        n++;
    char **copy = calloc(n + 1, sizeof *copy);
    if (!copy)
        return kn_error_set(err, ENOMEM, "argv");
    for (size_t i = 0; i < n; i++) {
        if (!(copy[i] = strdup(argv[i]))) {
            for (size_t j = 0; j < i; j++)
                free(copy[j]);
            free(copy);
            return kn_error_set(err, ENOMEM, "argv");
        }
    }
    if (cfg->argv) {
        for (char **a = cfg->argv; *a; a++)
            free(*a);
        free(cfg->argv);
    }
    cfg->argv = copy;
    return 0;
}

int
kn_config_setenv(kn_config_t *cfg, const char *kv, kn_error_t *err)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return kn_error_set(err, EINVAL, "environment entry '%s' is not KEY=VALUE", kv);
    size_t keylen = (size_t)(eq - kv);
    for (size_t i = 0; i < cfg->n_env; i++) {
        if (!strncmp(cfg->env[i], kv, keylen) && cfg->env[i][keylen] == '=') {
            char *copy = strdup(kv);
            if (!copy)
                return kn_error_set(err, ENOMEM, "env");
            free(cfg->env[i]);
            cfg->env[i] = copy;
            return 0;
        }
    }
    if (cfg->n_env + 1 >= KN_MAX_ENV)
        return kn_error_set(err, E2BIG, "more than %d environment entries", KN_MAX_ENV - 1);
    char **grown = realloc(cfg->env, (cfg->n_env + 2) * sizeof *grown);
    if (!grown)
        return kn_error_set(err, ENOMEM, "env");
    cfg->env = grown;
    if (!(cfg->env[cfg->n_env] = strdup(kv)))
        return kn_error_set(err, ENOMEM, "env");
    cfg->env[++cfg->n_env] = NULL;
    return 0;
}

int
kn_config_add_bind(kn_config_t *cfg, const char *src, const char *dst, bool rw, kn_error_t *err)
{
    if (cfg->n_binds >= KN_MAX_BINDS)
        return kn_error_set(err, E2BIG, "more than %d binds", KN_MAX_BINDS);
    kn_bind_t *b = &cfg->binds[cfg->n_binds];
    b->src = strdup(src);
    b->dst = strdup(dst);
    b->rw = rw;
    if (!b->src || !b->dst) {
        free(b->src);
        free(b->dst);
        b->src = b->dst = NULL;
        return kn_error_set(err, ENOMEM, "bind");
    }
    cfg->n_binds++;
    return 0;
}

int
kn_profile_load(kn_config_t *cfg, const char *name, kn_error_t *err)
{
    memset(cfg, 0, sizeof *cfg);
    bool deny = false;
    if (!strcmp(name, "deny-by-default"))
        deny = true;
    else if (strcmp(name, "default") != 0)
        return kn_error_set(err, EINVAL, "unknown profile '%s' (known: default, deny-by-default)",
                            name);

    if (kn_config_set_str(&cfg->profile, name, err) < 0 ||
        kn_config_set_str(&cfg->image, "host", err) < 0 ||
        kn_config_set_str(&cfg->hostname, "kennel", err) < 0)
        goto fail;

    /* Shared by both: every layer on. */
    cfg->net.enabled = false;
    cfg->landlock = true;
    cfg->hide_home = true;
    cfg->nofile = 1024;

    if (!deny) {
        if (kn_config_set_str(&cfg->cwd, "/work", err) < 0)
            goto fail;
        for (const char *const *e = default_env; *e; e++)
            if (kn_config_setenv(cfg, *e, err) < 0)
                goto fail;
        cfg->uid = 0;
        cfg->gid = 0;
        cfg->root_size = 256 * MiB;
        cfg->tmp_size = 128 * MiB;
        cfg->memory = 512 * MiB;
        cfg->pids = 256;
        cfg->cpus = 1.0;
        cfg->timeout_ms = 30 * 1000;
        cfg->fsize = 256 * MiB;
    } else {
        /* ../shared/seeds/deny-by-default-attestation.txt, reproduced:
         * --user 65532:65532 --read-only --tmpfs /tmp:noexec,size=16m
         * --network none --cap-drop ALL --no-new-privileges, socket and
         * execve denied, --pids-limit 64 --memory 256m --memory-swap 256m
         * --cpus 1 --env-file /dev/null, /in ro, /out rw. */
        if (kn_config_set_str(&cfg->cwd, "/", err) < 0)
            goto fail;
        cfg->uid = 65532;
        cfg->gid = 65532;
        cfg->root_readonly = true;
        cfg->root_size = 64 * MiB;
        cfg->tmp_size = 16 * MiB;
        cfg->tmp_noexec = true;
        cfg->in_out = true;
        cfg->memory = 256 * MiB;
        cfg->pids = 64;
        cfg->cpus = 1.0;
        cfg->timeout_ms = 30 * 1000;
        cfg->fsize = 64 * MiB;
        cfg->deny_sockets = true;
        cfg->deny_exec = true;
    }
    return 0;
fail:
    kn_config_free(cfg);
    return -1;
}

int
kn_parse_size(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    uint64_t mult = 1;
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        mult = 1024ULL;
        end++;
        break;
    case 'm':
    case 'M':
        mult = MiB;
        end++;
        break;
    case 'g':
    case 'G':
        mult = 1024ULL * MiB;
        end++;
        break;
    default:
        return -1;
    }
    if (*end == 'b' || *end == 'B' || (*end == 'i' && (end[1] == 'b' || end[1] == 'B')))
        end += (*end == 'i') ? 2 : 1;
    if (*end != '\0')
        return -1;
    if (v > UINT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

static int
check_inside_path(const char *what, const char *p, kn_error_t *err)
{
    if (!p || p[0] != '/')
        return kn_error_set(err, EINVAL, "%s '%s' must be an absolute path inside the sandbox",
                            what, p ? p : "");
    for (const char *c = p; *c; c++) {
        if (c[0] == '/' && c[1] == '.' && c[2] == '.' && (c[3] == '/' || c[3] == '\0'))
            return kn_error_set(err, EINVAL, "%s '%s' must not contain '..'", what, p);
    }
    if (strlen(p) >= PATH_MAX / 2)
        return kn_error_set(err, ENAMETOOLONG, "%s is too long", what);
    return 0;
}

int
kn_config_validate(kn_config_t *cfg, kn_error_t *err)
{
    if (!cfg->argv || !cfg->argv[0] || !cfg->argv[0][0])
        return kn_error_set(err, EINVAL, "no command to run");
    if (!cfg->image || !cfg->image[0])
        return kn_error_set(err, EINVAL, "no image");
    if (cfg->image_base && strcmp(cfg->image_base, "host") != 0 && cfg->image_base[0] != '/')
        return kn_error_set(err, EINVAL, "image '%s': its base '%s' is not host or a directory",
                            cfg->image, cfg->image_base);
    if (cfg->wlayer == KN_WLAYER_DISK && (!cfg->wlayer_dir || cfg->wlayer_dir[0] != '/'))
        return kn_error_set(err, EINVAL,
                            "a disk-backed writable layer needs an absolute directory");
    if (cfg->wlayer == KN_WLAYER_DISK && cfg->root_size < KN_WLAYER_DISK_MIN)
        return kn_error_set(err, EINVAL,
                            "a disk-backed writable layer must be at least %llu MiB (asked: %llu "
                            "bytes)",
                            KN_WLAYER_DISK_MIN >> 20, (unsigned long long)cfg->root_size);
    if (cfg->image_layers) {
        if (!cfg->image_layers[0] || !cfg->image_layer_dir || cfg->image_layer_dir[0] != '/')
            return kn_error_set(err, EINVAL, "image '%s' has no layers", cfg->image);
    } else if (strcmp(cfg->image, "host") != 0) {
        if (cfg->image[0] != '/')
            return kn_error_set(
                err, EINVAL,
                "image '%s' is unknown (use 'host', an absolute rootfs directory or an "
                "imported image)",
                cfg->image);
        char resolved[PATH_MAX];
        if (!realpath(cfg->image, resolved))
            return kn_error_set(err, errno, "image '%s'", cfg->image);
        if (kn_config_set_str(&cfg->image, resolved, err) < 0)
            return -1;
    }
    if (cfg->cwd && check_inside_path("working directory", cfg->cwd, err) < 0)
        return -1;
    if (cfg->cpus < 0 || cfg->cpus > 1024)
        return kn_error_set(err, EINVAL, "cpus must be between 0 and 1024");
    if (cfg->memory && cfg->memory < 4 * MiB)
        return kn_error_set(err, EINVAL, "memory limit must be at least 4 MiB");
    if (cfg->pids && cfg->pids < 2)
        return kn_error_set(err, EINVAL, "pids limit must be at least 2");
    if (cfg->timeout_ms == 0)
        return kn_error_set(err, EINVAL, "timeout must be positive");
    if (cfg->uid > 65535 || cfg->gid > 65535)
        return kn_error_set(err, EINVAL, "uid/gid inside must be below 65536");
    if (cfg->net.enabled && cfg->deny_sockets)
        return kn_error_set(err, EINVAL, "profile '%s' denies sockets: it cannot have a network",
                            cfg->profile);
    for (size_t i = 0; i < cfg->net.n_rules; i++)
        if (kn_net_rule_check(cfg->net.rules[i].target, err) < 0)
            return -1;
    if (cfg->net.n_expose && !cfg->net.enabled)
        cfg->net.enabled = true; /* exposed ports need the relay, not egress */
    for (size_t i = 0; i < cfg->n_binds; i++) {
        kn_bind_t *b = &cfg->binds[i];
        char resolved[PATH_MAX];
        if (check_inside_path("bind destination", b->dst, err) < 0)
            return -1;
        if (!strcmp(b->dst, "/"))
            return kn_error_set(err, EINVAL, "bind destination must not be /");
        if (!realpath(b->src, resolved))
            return kn_error_set(err, errno, "bind source '%s'", b->src);
        if (kn_config_set_str(&b->src, resolved, err) < 0)
            return -1;
    }
    return 0;
}

void
kn_config_free(kn_config_t *cfg)
{
    if (!cfg)
        return;
    free(cfg->profile);
    free(cfg->image);
    free(cfg->image_layer_dir);
    free(cfg->image_base);
    free(cfg->wlayer_dir);
    if (cfg->image_layers)
        for (char **l = cfg->image_layers; *l; l++)
            free(*l);
    free(cfg->image_layers);
    free(cfg->cwd);
    free(cfg->hostname);
    if (cfg->argv)
        for (char **a = cfg->argv; *a; a++)
            free(*a);
    free(cfg->argv);
    for (size_t i = 0; i < cfg->n_env; i++)
        free(cfg->env[i]);
    free(cfg->env);
    for (size_t i = 0; i < cfg->n_binds; i++) {
        free(cfg->binds[i].src);
        free(cfg->binds[i].dst);
    }
    memset(cfg, 0, sizeof *cfg);
}
