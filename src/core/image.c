/* image.c - use the images in the store: open (and verify) one for a
 * sandbox, apply its config, list, remove and prune. Imports are in
 * image_import.c, the store's building blocks in image_store.c; docs/images.md
 * says what is verified when. */
#include "image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "image_internal.h"
#include "util.h"

void
kn_image_info_free(kn_image_info_t *info)
{
    if (info) {
        kn_image_strv_free(info->names);
        info->names = NULL;
    }
}

bool
kn_image_is_ref(const char *image)
{
    return image && image[0] && image[0] != '/' && strcmp(image, "host") != 0;
}

/* --- using an image ---------------------------------------------------------- */

/* A store blob, re-hashed: a blob changed on disk is refused. */
static json_t *
store_blob_json(int storefd, const char *hex, const char *what, kn_error_t *err)
{
    char path[128];
    snprintf(path, sizeof path, "blobs/sha256/%s", hex);
    size_t len;
    char *buf = kn_image_slurp_at(storefd, path, MAX_JSON, &len, err);
    if (!buf)
        return NULL;
    hex_t got;
    kn_image_sha_hex(buf, len, got);
    json_t *j = NULL;
    if (strcmp(got, hex)) {
        kn_error_set(err, EBADMSG, "the store's %s sha256:%s was modified (it hashes to sha256:%s)",
                     what, hex, got);
    } else {
        json_error_t je;
        if (!(j = json_loadb(buf, len, 0, &je)))
            kn_error_set(err, EINVAL, "%s sha256:%s: %s", what, hex, je.text);
    }
    free(buf);
    return j;
}

json_t *
kn_image_blob_json(int storefd, const char *hex, const char *what, kn_error_t *err)
{
    return store_blob_json(storefd, hex, what, err);
}

static int
verify_layer(int storefd, const char *hex, bool pinned, kn_error_t *err)
{
    char path[128];
    snprintf(path, sizeof path, "layers/sha256/%s/tree", hex);
    size_t len;
    char *want = kn_image_slurp_at(storefd, path, 256, &len, err);
    if (!want)
        return kn_error_prefix(err, "layer sha256:%s is missing from the store", hex);
    want[strcspn(want, "\n")] = '\0';
    int rc = 0;
    if (pinned) {
        snprintf(path, sizeof path, "layers/sha256/%s/fs", hex);
        int fd = kn_image_open_beneath(storefd, path, O_RDONLY | O_DIRECTORY);
        hex_t got;
        uint64_t size;
        if (fd < 0)
            rc = kn_error_set(err, errno, "layer sha256:%s", hex);
        else if (kn_image_tree_digest(fd, got, &size, err) < 0)
            rc = -1;
        else if (strncmp(want, "sha256:", 7) || strcmp(want + 7, got))
            rc = kn_error_set(err, EBADMSG,
                              "layer sha256:%s was modified in the store (its files hash to "
                              "sha256:%s, it was unpacked as %s)",
                              hex, got, want);
        if (fd >= 0)
            close(fd);
    }
    free(want);
    return rc;
}

void
kn_image_close(kn_image_t *img)
{
    if (!img)
        return;
    if (img->lock >= 0)
        close(img->lock);
    free(img->layer_dir);
    kn_image_strv_free(img->layers);
    kn_image_strv_free(img->env);
    kn_image_strv_free(img->entrypoint);
    kn_image_strv_free(img->cmd);
    free(img->workdir);
    free(img->user);
    free(img->base);
    free(img);
}

static int
load_config(kn_image_t *img, json_t *config, kn_error_t *err)
{
    json_t *c = json_object_get(config, "config");
    if (kn_image_strv_from_json(json_object_get(c, "Env"), &img->env, err) < 0 ||
        kn_image_strv_from_json(json_object_get(c, "Entrypoint"), &img->entrypoint, err) < 0 ||
        kn_image_strv_from_json(json_object_get(c, "Cmd"), &img->cmd, err) < 0)
        return -1;
    const char *wd = json_string_value(json_object_get(c, "WorkingDir"));
    const char *user = json_string_value(json_object_get(c, "User"));
    const char *base =
        json_string_value(json_object_get(json_object_get(c, "Labels"), KN_IMAGE_LABEL_BASE));
    if (base && strcmp(base, "host") && (base[0] != '/' || strstr(base, "/..")))
        return kn_error_set(err, EINVAL, "image config: base '%s' is not host or a directory",
                            base);
    if ((wd && wd[0] && !(img->workdir = strdup(wd))) ||
        (user && user[0] && !(img->user = strdup(user))) || (base && !(img->base = strdup(base))))
        return kn_error_set(err, ENOMEM, "image config");
    return 0;
}

static int
open_verified(int storefd, kn_image_t *img, const char *hex, kn_error_t *err)
{
    json_t *man = store_blob_json(storefd, hex, "manifest", err), *config = NULL;
    if (!man)
        return -1;
    int rc = -1;
    if (kn_image_digest_hex(
            json_string_value(json_object_get(json_object_get(man, "config"), "digest")),
            img->config_digest + 7, err) < 0)
        goto out;
    memcpy(img->config_digest, "sha256:", 7);
    if (!(config = store_blob_json(storefd, img->config_digest + 7, "config", err)))
        goto out;
    json_t *diffs = json_object_get(json_object_get(config, "rootfs"), "diff_ids");
    size_t n = json_array_size(diffs);
    if (n == 0 || n > MAX_LAYERS) {
        kn_error_set(err, EINVAL, "image has %zu layers", n);
        goto out;
    }
    if (!(img->layers = calloc(n + 1, sizeof *img->layers))) {
        kn_error_set(err, ENOMEM, "image");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        hex_t lh;
        if (kn_image_digest_hex(json_string_value(json_array_get(diffs, i)), lh, err) < 0 ||
            verify_layer(storefd, lh, img->pinned, err) < 0)
            goto out;
        if (asprintf(&img->layers[i], "%s/fs", lh) < 0) {
            img->layers[i] = NULL;
            kn_error_set(err, ENOMEM, "image");
            goto out;
        }
        img->n_layers++;
    }
    rc = load_config(img, config, err);
out:
    json_decref(man);
    json_decref(config);
    return rc;
}

/* verify: 1 re-hash the layer trees, 0 do not, -1 when the ref pins a digest. */
static int
open_image(const char *store, const char *ref, int verify, kn_image_t **out, kn_error_t *err)
{
    int storefd = kn_image_store_open(store, false, err);
    if (storefd < 0)
        return errno == ENOENT ? kn_error_set(err, ENOENT,
                                              "image '%s' is not in the store (there is no "
                                              "store at %s yet: kennel image import)",
                                              ref, kn_image_store_path(store))
                               : -1;
    kn_image_t *img = calloc(1, sizeof *img);
    if (!img) {
        close(storefd);
        return kn_error_set(err, ENOMEM, "image");
    }
    img->lock = -1;
    hex_t hex;
    char rec[128];
    int rc = -1;
    if (kn_image_ref_resolve(storefd, ref, hex, &img->pinned, err) < 0)
        goto out;
    if (verify >= 0)
        img->pinned = verify;
    snprintf(img->digest, sizeof img->digest, "sha256:%s", hex);
    snprintf(rec, sizeof rec, "images/%s", hex);
    img->lock = kn_image_open_beneath(storefd, rec, O_RDONLY);
    if (img->lock < 0) {
        kn_error_set(err, errno, "image %s is not in the store", img->digest);
        goto out;
    }
    if (flock(img->lock, LOCK_SH) < 0) {
        kn_error_set(err, errno, "lock image");
        goto out;
    }
    size_t len;
    char *body = kn_image_slurp_fd(img->lock, 4096, &len, err);
    if (body) {
        json_t *j = json_loads(body, 0, NULL);
        img->size = (uint64_t)json_integer_value(json_object_get(j, "size"));
        json_decref(j);
        free(body);
    }
    if (open_verified(storefd, img, hex, err) < 0) {
        kn_error_prefix(err, "image %s", ref);
        goto out;
    }
    if (asprintf(&img->layer_dir, "%s/layers/sha256", kn_image_store_path(store)) < 0) {
        img->layer_dir = NULL;
        kn_error_set(err, ENOMEM, "image");
        goto out;
    }
    *out = img;
    img = NULL;
    rc = 0;
out:
    kn_image_close(img);
    close(storefd);
    return rc;
}

int
kn_image_open(const char *store, const char *ref, kn_image_t **out, kn_error_t *err)
{
    return open_image(store, ref, -1, out, err);
}

int
kn_image_open_digest(const char *store, const char *digest, bool verify_trees, kn_image_t **out,
                     kn_error_t *err)
{
    if (strncmp(digest, "sha256:", 7) != 0)
        return kn_error_set(err, EINVAL, "'%s' is not a sha256 digest", digest);
    return open_image(store, digest, verify_trees, out, err);
}

/* The topmost copy of a file in the image's layers (NULL if none, or
 * whited out). Used for /etc/passwd and /etc/group. */
static char *
image_file(const kn_image_t *img, const char *path, kn_error_t *err)
{
    int dfd = open(img->layer_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        kn_error_set(err, errno, "%s", img->layer_dir);
        return NULL;
    }
    char *out = NULL;
    for (size_t i = img->n_layers; i-- > 0;) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", img->layers[i], path);
        int fd = kn_image_open_beneath(dfd, p, O_RDONLY | O_NONBLOCK);
        if (fd < 0)
            continue;
        struct stat st;
        size_t len;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
            out = kn_image_slurp_fd(fd, 1 << 20, &len, err);
        close(fd);
        break; /* found here, or a whiteout here: either way, lower layers are hidden */
    }
    close(dfd);
    return out;
}

/* name or number -> id through a passwd/group file; returns -1 if unknown. */
static long
lookup_id(const char *file, const char *name, long *gid_out)
{
    if (!file)
        return -1;
    size_t nlen = strlen(name);
    for (const char *line = file; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > nlen && !strncmp(line, name, nlen) && line[nlen] == ':') {
            const char *f = line + nlen + 1; /* password */
            f = memchr(f, ':', len - nlen - 1);
            if (!f)
                return -1;
            long id = strtol(f + 1, NULL, 10);
            const char *g = strchr(f + 1, ':');
            if (gid_out && g)
                *gid_out = strtol(g + 1, NULL, 10);
            return id;
        }
        line += len + (end ? 1 : 0);
    }
    return -1;
}

static int
parse_id(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!s[0] || *end || errno || v < 0)
        return -1;
    *out = v;
    return 0;
}

/* USER of the image config: uid, uid:gid, name or name:group. */
static int
apply_user(kn_config_t *cfg, const kn_image_t *img, kn_error_t *err)
{
    char user[256], *group = NULL;
    snprintf(user, sizeof user, "%s", img->user);
    if ((group = strchr(user, ':')))
        *group++ = '\0';
    char *passwd = image_file(img, "etc/passwd", err);
    long uid = -1, gid = -1;
    if (parse_id(user, &uid) < 0) {
        uid = lookup_id(passwd, user, &gid);
    } else {
        char num[32];
        snprintf(num, sizeof num, "%ld", uid);
        /* A numeric user takes its primary group from passwd when listed. */
        for (const char *l = passwd; l && *l;) {
            const char *c1 = strchr(l, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            const char *eol = strchr(l, '\n');
            if (c2 && (!eol || c2 < eol) && !strncmp(c2 + 1, num, strlen(num)) &&
                c2[1 + strlen(num)] == ':') {
                gid = strtol(c2 + 2 + strlen(num), NULL, 10);
                break;
            }
            l = eol ? eol + 1 : l + strlen(l);
        }
    }
    free(passwd);
    if (uid < 0)
        return kn_error_set(err, ENOENT, "user '%s' of the image is not in its /etc/passwd", user);
    if (group) {
        if (parse_id(group, &gid) < 0) {
            char *groups = image_file(img, "etc/group", err);
            gid = lookup_id(groups, group, NULL);
            free(groups);
            if (gid < 0)
                return kn_error_set(err, ENOENT, "group '%s' of the image is not in its /etc/group",
                                    group);
        }
    }
    if (gid < 0)
        gid = 0;
    if (uid > 65535 || gid > 65535)
        return kn_error_set(err, EINVAL, "user '%s' of the image is above 65535", img->user);
    cfg->uid = (uid_t)uid;
    cfg->gid = (gid_t)gid;
    return 0;
}

int
kn_image_apply_config(kn_config_t *cfg, const kn_image_t *img, kn_error_t *err)
{
    char **layers = calloc(img->n_layers + 1, sizeof *layers);
    if (!layers)
        return kn_error_set(err, ENOMEM, "image");
    for (size_t i = 0; i < img->n_layers; i++)
        if (!(layers[i] = strdup(img->layers[i]))) {
            kn_image_strv_free(layers);
            return kn_error_set(err, ENOMEM, "image");
        }
    kn_image_strv_free(cfg->image_layers);
    cfg->image_layers = layers;
    if (kn_config_set_str(&cfg->image_layer_dir, img->layer_dir, err) < 0 ||
        kn_config_set_str(&cfg->image_base, img->base, err) < 0)
        return -1;
    for (char **e = img->env; e && *e; e++)
        if (strchr(*e, '=') && **e != '=' && kn_config_setenv(cfg, *e, err) < 0)
            return kn_error_prefix(err, "image env");
    size_t n = 0;
    for (char **a = img->entrypoint; a && *a; a++)
        n++;
    for (char **a = img->cmd; a && *a; a++)
        n++;
    if (n) {
        char **argv = calloc(n + 1, sizeof *argv);
        if (!argv)
            return kn_error_set(err, ENOMEM, "image");
        n = 0;
        for (char **a = img->entrypoint; a && *a; a++)
            argv[n++] = *a;
        for (char **a = img->cmd; a && *a; a++)
            argv[n++] = *a;
        int rc = kn_config_set_argv(cfg, argv, err);
        free(argv);
        if (rc < 0)
            return -1;
    }
    if (img->workdir) { /* relative to / as docker reads it */
        char wd[PATH_MAX];
        snprintf(wd, sizeof wd, "%s%s", img->workdir[0] == '/' ? "" : "/", img->workdir);
        if (kn_config_set_str(&cfg->cwd, wd, err) < 0)
            return -1;
    }
    /* A profile that names its own user (deny-by-default: 65532) keeps it. */
    if (img->user && cfg->uid == 0 && cfg->gid == 0 && apply_user(cfg, img, err) < 0)
        return -1;
    return 0;
}

/* --- listing and removal ------------------------------------------------------- */

static int
list_refs(int storefd, const char *hex, char ***names)
{
    int fd = openat(storefd, "refs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t n = 0;
    char **v = calloc(1, sizeof *v);
    struct dirent *e;
    while (v && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char buf[128];
        int f = openat(fd, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        ssize_t r = f >= 0 ? kn_image_pread_full(f, buf, sizeof buf - 1, 0) : -1;
        if (f >= 0)
            close(f);
        if (r < 7 + HEXLEN || strncmp(buf + 7, hex, HEXLEN))
            continue;
        char name[300];
        kn_image_ref_unfile(e->d_name, name, sizeof name);
        char **g = realloc(v, (n + 2) * sizeof *g);
        if (!g)
            break;
        v = g;
        v[n++] = strdup(name);
        v[n] = NULL;
    }
    closedir(d);
    *names = v;
    return v ? 0 : -1;
}

int
kn_image_list(const char *store, kn_image_info_t **out, size_t *count, kn_error_t *err)
{
    /* Listing creates nothing: no store (yet) is an empty list. */
    int storefd = kn_image_store_open(store, false, err);
    if (storefd < 0 && errno != ENOENT)
        return -1;
    int fd = storefd < 0 ? -1 : openat(storefd, "images", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        if (storefd >= 0)
            close(storefd);
        *out = NULL;
        *count = 0;
        return 0;
    }
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        close(storefd);
        return kn_error_set(err, errno, "image store");
    }
    kn_image_info_t *v = NULL;
    size_t n = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (!kn_image_is_hex64(e->d_name))
            continue;
        kn_image_info_t *g = realloc(v, (n + 1) * sizeof *g);
        if (!g) {
            rc = kn_error_set(err, ENOMEM, "image list");
            break;
        }
        v = g;
        kn_image_info_t *i = &v[n++];
        memset(i, 0, sizeof *i);
        snprintf(i->digest, sizeof i->digest, "sha256:%s", e->d_name);
        char path[128];
        snprintf(path, sizeof path, "images/%s", e->d_name);
        size_t len;
        kn_error_t ignored = {0};
        char *body = kn_image_slurp_at(storefd, path, 4096, &len, &ignored);
        json_t *j = body ? json_loads(body, 0, NULL) : NULL;
        snprintf(i->config_digest, sizeof i->config_digest, "%s",
                 json_string_value(json_object_get(j, "config")) ?: "");
        snprintf(i->imported, sizeof i->imported, "%s",
                 json_string_value(json_object_get(j, "imported")) ?: "");
        i->size = (uint64_t)json_integer_value(json_object_get(j, "size"));
        i->n_layers = (size_t)json_integer_value(json_object_get(j, "layers"));
        json_decref(j);
        free(body);
        list_refs(storefd, e->d_name, &i->names);
    }
    closedir(d);
    close(storefd);
    if (rc < 0) {
        kn_image_list_free(v, n);
        return -1;
    }
    *out = v;
    *count = n;
    return 0;
}

void
kn_image_list_free(kn_image_info_t *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        kn_image_info_free(&list[i]);
    free(list);
}

/* Removes the image record if nothing holds it open; refs first. */
static int
remove_image(int storefd, const char *hex, bool all_refs, const char *only_ref, kn_error_t *err)
{
    char rec[128];
    snprintf(rec, sizeof rec, "images/%s", hex);
    int fd = kn_image_open_beneath(storefd, rec, O_RDONLY);
    if (fd < 0)
        return kn_error_set(err, errno, "image sha256:%s is not in the store", hex);
    int rc = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        rc = kn_error_set(err, errno == EWOULDBLOCK ? EBUSY : errno,
                          "image sha256:%s is in use by a running sandbox", hex);
        goto out;
    }
    char **names = NULL;
    list_refs(storefd, hex, &names);
    size_t left = 0;
    for (char **n = names; n && *n; n++) {
        char file[PATH_MAX], path[PATH_MAX + 8];
        if (all_refs || !strcmp(*n, only_ref)) {
            kn_image_ref_file(*n, file, sizeof file);
            snprintf(path, sizeof path, "refs/%s", file);
            unlinkat(storefd, path, 0);
        } else {
            left++;
        }
    }
    kn_image_strv_free(names);
    if (!left && unlinkat(storefd, rec, 0) < 0)
        rc = kn_error_set(err, errno, "remove %s", rec);
out:
    close(fd);
    return rc;
}

int
kn_image_remove(const char *store, const char *ref, kn_error_t *err)
{
    int storefd = kn_image_store_open(store, false, err);
    if (storefd < 0)
        return -1;
    hex_t hex;
    bool pinned;
    int rc = kn_image_ref_resolve(storefd, ref, hex, &pinned, err);
    if (rc == 0) {
        char norm[300] = "";
        if (!pinned)
            kn_image_ref_normalize(ref, norm, sizeof norm, err);
        rc = remove_image(storefd, hex, pinned, norm, err);
    }
    close(storefd);
    return rc;
}

/* Adds the blobs and layers of image hex to the live set (a list of hexes). */
static int
mark_live(int storefd, const char *hex, char ***live, size_t *n)
{
    kn_error_t ignored = {0};
    json_t *man = store_blob_json(storefd, hex, "manifest", &ignored);
    hex_t ch;
    const char *cd = json_string_value(json_object_get(json_object_get(man, "config"), "digest"));
    json_t *config = NULL;
    if (cd && kn_image_digest_hex(cd, ch, &ignored) == 0)
        config = store_blob_json(storefd, ch, "config", &ignored);
    json_t *diffs = json_object_get(json_object_get(config, "rootfs"), "diff_ids");
    size_t add = 2 + json_array_size(diffs);
    char **g = realloc(*live, (*n + add) * sizeof *g);
    if (!g) {
        json_decref(man);
        json_decref(config);
        return -1;
    }
    *live = g;
    g[(*n)++] = strdup(hex);
    if (config)
        g[(*n)++] = strdup(ch);
    size_t i;
    json_t *d;
    json_array_foreach(diffs, i, d)
    {
        const char *s = json_string_value(d);
        if (s && strlen(s) == 7 + HEXLEN)
            g[(*n)++] = strdup(s + 7);
    }
    json_decref(man);
    json_decref(config);
    return 0;
}

static bool
in_set(char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] && !strcmp(v[i], s))
            return true;
    return false;
}

/* Removes every entry of dir (beneath the store) that is not live. */
static size_t
sweep(int storefd, const char *dir, char **live, size_t n, bool any_name)
{
    int fd = openat(storefd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    size_t freed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (!any_name && (!kn_image_is_hex64(e->d_name) || in_set(live, n, e->d_name)))
            continue;
        if (kn_image_rm_tree_at(fd, e->d_name) == 0)
            freed++;
    }
    closedir(d);
    return freed;
}

/* images: also remove images no name points at. wait: for the lock
 * (otherwise give up at once, and return 0, when imports run). */
static int
prune(const char *store, bool images, bool wait, size_t *freed, kn_error_t *err)
{
    *freed = 0;
    int storefd = kn_image_store_open(store, false, err);
    if (storefd < 0)
        return errno == ENOENT ? 0 : -1; /* no store: nothing to prune */
    int lock = kn_image_store_lock(storefd, wait ? LOCK_EX : LOCK_EX | LOCK_NB, err);
    if (lock < 0) {
        close(storefd);
        return !wait && err->code == EWOULDBLOCK ? 0 : -1;
    }
    kn_image_info_t *list = NULL;
    size_t n = 0;
    char **live = NULL;
    size_t nlive = 0;
    int rc = kn_image_list(store, &list, &n, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *hex = list[i].digest + 7;
        if (images && (!list[i].names || !list[i].names[0])) {
            kn_error_t busy = {0};
            if (remove_image(storefd, hex, true, "", &busy) == 0) {
                (*freed)++;
                continue;
            }
        }
        if (mark_live(storefd, hex, &live, &nlive) < 0)
            rc = kn_error_set(err, ENOMEM, "prune");
    }
    if (rc == 0) {
        *freed += sweep(storefd, "blobs/sha256", live, nlive, false);
        *freed += sweep(storefd, "layers/sha256", live, nlive, false);
        *freed += sweep(storefd, "tmp", NULL, 0, true);
    }
    for (size_t i = 0; i < nlive; i++)
        free(live[i]);
    free(live);
    kn_image_list_free(list, n);
    close(lock);
    close(storefd);
    return rc;
}

int
kn_image_prune(const char *store, size_t *freed, kn_error_t *err)
{
    return prune(store, true, true, freed, err);
}

int
kn_image_gc(const char *store, size_t *freed, kn_error_t *err)
{
    return prune(store, false, false, freed, err);
}

int
kn_image_resolve(const char *store, const char *ref, char *digest, size_t len, kn_error_t *err)
{
    int storefd = kn_image_store_open(store, false, err);
    if (storefd < 0)
        return -1;
    hex_t hex;
    bool pinned;
    int rc = kn_image_ref_resolve(storefd, ref, hex, &pinned, err);
    if (rc == 0) {
        char rec[128];
        snprintf(rec, sizeof rec, "images/%s", hex);
        if (faccessat(storefd, rec, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
            rc = kn_error_set(err, errno, "image sha256:%s is not in the store", hex);
        else
            snprintf(digest, len, "sha256:%s", hex);
    }
    close(storefd);
    return rc;
}

/* The "source" of an image record ("snapshot" for kn_image_commit's). */
static bool
record_is_snapshot(int storefd, const char *hex)
{
    char path[128];
    snprintf(path, sizeof path, "images/%s", hex);
    size_t len;
    kn_error_t ignored = {0};
    char *body = kn_image_slurp_at(storefd, path, 4096, &len, &ignored);
    json_t *j = body ? json_loads(body, 0, NULL) : NULL;
    const char *src = json_string_value(json_object_get(j, "source"));
    bool snap = src && !strcmp(src, "snapshot");
    json_decref(j);
    free(body);
    return snap;
}

int
kn_image_tag(const char *store, const char *digest, const char *name, bool only_over_snapshots,
             kn_error_t *err)
{
    hex_t hex, cur;
    bool pinned;
    if (kn_image_digest_hex(digest, hex, err) < 0)
        return -1;
    if (strchr(name, '@'))
        return kn_error_set(err, EINVAL, "'%s' is not NAME[:TAG]", name);
    char norm[300];
    if (kn_image_ref_normalize(name, norm, sizeof norm, err) < 0)
        return -1;
    int storefd = kn_image_store_open(store, false, err);
    if (storefd < 0)
        return -1;
    int rc = 0;
    kn_error_t ignored = {0};
    if (only_over_snapshots && kn_image_ref_resolve(storefd, norm, cur, &pinned, &ignored) == 0 &&
        strcmp(cur, hex) && !record_is_snapshot(storefd, cur))
        rc = kn_error_set(err, EEXIST, "%s names an imported image already", norm);
    if (rc == 0)
        rc = kn_image_ref_write(storefd, norm, hex, err);
    close(storefd);
    return rc;
}
