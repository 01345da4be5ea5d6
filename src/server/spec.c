/* spec.c - see spec.h. Every rejection names the field and says why. */
#include "spec.h"

#include "wlayer.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "egress.h"

#define MiB (1024.0 * 1024.0)

/* The image a request names: an alias from the config (to "host", a
 * rootfs directory or a reference into the store), "host", or an image of
 * the store (NAME[:TAG], NAME@sha256:D, sha256:D; a pinned digest re-hashes
 * every layer here). kennel.image gets "host", the directory, or the
 * manifest digest, which is what the shim opens; *img (if img) the opened
 * image, for its entrypoint and cmd. */
static int
resolve_image(const kn_server_cfg_t *cfg, const char *uri, json_t *kennel, kn_image_t **img,
              kn_error_t *err)
{
    const char *target = uri;
    for (int i = 0; i < cfg->n_aliases; i++)
        if (!strcmp(cfg->alias_name[i], uri))
            target = cfg->alias_image[i];
    if (!strcmp(target, "host") || target[0] == '/') {
        json_object_set_new(kennel, "image", json_string(target));
        return 0;
    }
    kn_image_t *im = NULL;
    kn_error_t e = {0};
    if (kn_image_open(cfg->image_store, target, &im, &e) < 0) {
        if (e.code == ENOENT)
            return kn_server_error(err, EINVAL,
                                   "image '%s' is not known to this server: it is not \"host\", "
                                   "not a name in imageAliases, and not in the image store %s "
                                   "(kennel image import; names match as imported)",
                                   uri, kn_image_store_path(cfg->image_store));
        if (e.code == EBADMSG)
            return kn_server_error(err, EBADMSG, "image '%s' is refused: %s", uri, e.msg);
        return kn_server_error(err, e.code == EINVAL || e.code == ENOTSUP ? EINVAL : EIO,
                               "image '%s': %s", uri, e.msg);
    }
    json_object_set_new(kennel, "image", json_string(im->digest));
    if (img)
        *img = im;
    else
        kn_image_close(im);
    return 0;
}

/* A string without NUL bytes inside (jansson allows them). */
static const char *
plain_string(const json_t *v)
{
    if (!json_is_string(v))
        return NULL;
    const char *s = json_string_value(v);
    return strlen(s) == json_string_length(v) ? s : NULL;
}

static int
check_string_map(const json_t *m, const char *field, kn_error_t *err)
{
    if (!json_is_object(m))
        return kn_server_error(err, EINVAL, "%s must be an object of strings", field);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)m, k, v)
    {
        if (!plain_string(v))
            return kn_server_error(err, EINVAL, "%s.%s must be a string", field, k);
    }
    return 0;
}

static bool
label_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > 63)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && !((c == '-' || c == '_' || c == '.') && i > 0 && i + 1 < len))
            return false;
    }
    return true;
}

static bool
dns_subdomain_ok(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !((c == '-' || c == '.') && i > 0 && i + 1 < len))
            return false;
    }
    return true;
}

int
kn_spec_check_label(const char *key, const char *value, kn_error_t *err)
{
    const char *slash = strchr(key, '/');
    const char *name = slash ? slash + 1 : key;
    if (slash && !dns_subdomain_ok(key, (size_t)(slash - key)))
        return kn_server_error(err, EINVAL, "metadata key '%s': bad prefix", key);
    if (!label_name_ok(name, strlen(name)))
        return kn_server_error(err, EINVAL,
                               "metadata key '%s' must be at most 63 characters of [A-Za-z0-9-_.], "
                               "starting and ending with a letter or digit",
                               key);
    if (!strncmp(key, "opensandbox.io/", 15))
        return kn_server_error(err, EINVAL,
                               "metadata key '%s': the prefix opensandbox.io/ is reserved", key);
    if (value && value[0] && !label_name_ok(value, strlen(value)))
        return kn_server_error(err, EINVAL,
                               "metadata value of '%s' must be at most 63 characters of "
                               "[A-Za-z0-9-_.], starting and ending with a letter or digit",
                               key);
    return 0;
}

/* Kubernetes quantities: "500m" CPUs, "512Mi" or "1G" bytes. */
static int
parse_quantity(const char *s, bool cpu, double *out)
{
    char *end = NULL;
    if (!s[0] || s[0] == '-' || s[0] == '+' || s[0] == ' ')
        return -1;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return -1;
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {{"", 1},
                 {"m", 1e-3},
                 {"k", 1e3},
                 {"M", 1e6},
                 {"G", 1e9},
                 {"T", 1e12},
                 {"Ki", 1024.0},
                 {"Mi", 1024.0 * 1024},
                 {"Gi", 1024.0 * 1024 * 1024},
                 {"Ti", 1024.0 * 1024 * 1024 * 1024}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].suffix) != 0)
            continue;
        if (!cpu && !strcmp(end, "m"))
            return -1; /* milli-bytes */
        *out = v * units[i].mult;
        return 0;
    }
    return -1;
}

static int
check_limits(const json_t *rl, json_t *kennel, kn_error_t *err)
{
    if (check_string_map(rl, "resourceLimits", err) < 0)
        return -1;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)rl, k, v)
    {
        const char *s = json_string_value(v);
        double q;
        if (!strcmp(k, "cpu")) {
            if (parse_quantity(s, true, &q) < 0 || q < 0.01 || q > 1024)
                return kn_server_error(err, EINVAL,
                                       "resourceLimits.cpu '%s' must be a CPU quantity such as "
                                       "\"500m\" or \"2\" (0.01 to 1024)",
                                       s);
            json_object_set_new(kennel, "cpus", json_real(q));
        } else if (!strcmp(k, "memory")) {
            if (parse_quantity(s, false, &q) < 0 || q < 4 * MiB || q > 1e15)
                return kn_server_error(err, EINVAL,
                                       "resourceLimits.memory '%s' must be a byte quantity such as "
                                       "\"512Mi\" or \"2Gi\", at least 4Mi",
                                       s);
            json_object_set_new(kennel, "memory", json_integer((json_int_t)q));
        } else if (!strcmp(k, "ephemeral-storage")) {
            if (parse_quantity(s, false, &q) < 0 || q < 1 * MiB || q > 1e13)
                return kn_server_error(err, EINVAL,
                                       "resourceLimits.ephemeral-storage '%s' must be a byte "
                                       "quantity of at least 1Mi",
                                       s);
            json_object_set_new(kennel, "rootSize", json_integer((json_int_t)q));
        } else if (!strcmp(k, "pids")) {
            if (parse_quantity(s, false, &q) < 0 || q < 8 || q > 4194304 || q != floor(q))
                return kn_server_error(err, EINVAL, "resourceLimits.pids '%s' must be 8 to 4194304",
                                       s);
            json_object_set_new(kennel, "pids", json_integer((json_int_t)q));
        } else {
            return kn_server_error(err, EINVAL,
                                   "resourceLimits.%s is not supported by Kennel (cpu, memory, "
                                   "ephemeral-storage, pids)",
                                   k);
        }
    }
    return 0;
}

static bool
dns_label_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

static bool
has_dotdot(const char *p)
{
    for (const char *c = p; *c; c++)
        if ((c == p || c[-1] == '/') && c[0] == '.' && c[1] == '.' && (c[2] == '/' || !c[2]))
            return true;
    return false;
}

static int
check_volume(const json_t *vol, size_t i, const kn_server_cfg_t *cfg, json_t *binds,
             kn_error_t *err)
{
    if (!json_is_object(vol))
        return kn_server_error(err, EINVAL, "volumes[%zu] must be an object", i);
    const char *name = plain_string(json_object_get(vol, "name"));
    const char *mount = plain_string(json_object_get(vol, "mountPath"));
    json_t *ro = json_object_get(vol, "readOnly");
    json_t *sub = json_object_get(vol, "subPath");
    json_t *host = json_object_get(vol, "host");
    if (!name || !dns_label_ok(name))
        return kn_server_error(err, EINVAL, "volumes[%zu].name must be a DNS label", i);
    if (!mount || mount[0] != '/' || has_dotdot(mount) || strlen(mount) > 1024)
        return kn_server_error(err, EINVAL, "volumes[%zu].mountPath must be an absolute path", i);
    if (ro && !json_is_boolean(ro))
        return kn_server_error(err, EINVAL, "volumes[%zu].readOnly must be a boolean", i);
    if (sub && (!plain_string(sub) || json_string_value(sub)[0] == '/' ||
                has_dotdot(json_string_value(sub))))
        return kn_server_error(err, EINVAL, "volumes[%zu].subPath must be relative, without '..'",
                               i);
    int backends = !!host + !!json_object_get(vol, "pvc") + !!json_object_get(vol, "ossfs");
    if (backends != 1)
        return kn_server_error(err, EINVAL, "volumes[%zu] needs exactly one backend", i);
    if (!host)
        return kn_server_error(err, EINVAL,
                               "volumes[%zu]: only host volumes are supported by Kennel (not pvc "
                               "or ossfs)",
                               i);
    const char *path = json_is_object(host) ? plain_string(json_object_get(host, "path")) : NULL;
    if (!path || path[0] != '/')
        return kn_server_error(err, EINVAL, "volumes[%zu].host.path must be an absolute path", i);
    char want[PATH_MAX], real[PATH_MAX];
    if (snprintf(want, sizeof want, "%s%s%s", path, sub ? "/" : "",
                 sub ? json_string_value(sub) : "") >= (int)sizeof want)
        return kn_server_error(err, EINVAL, "volumes[%zu]: path too long", i);
    if (!realpath(want, real))
        return kn_server_error(err, EINVAL, "volumes[%zu]: host path %s does not exist", i, want);
    bool allowed = false;
    for (int k = 0; k < cfg->n_host_paths && !allowed; k++) {
        size_t pl = strlen(cfg->host_paths[k]);
        while (pl > 1 && cfg->host_paths[k][pl - 1] == '/')
            pl--;
        allowed =
            !strncmp(real, cfg->host_paths[k], pl) && (real[pl] == '/' || !real[pl] || pl == 1);
    }
    if (!allowed)
        return kn_server_error(err, EINVAL,
                               "volumes[%zu]: host path %s is not under an allowed prefix "
                               "(allowedHostPaths in the server config)",
                               i, real);
    json_array_append_new(binds, json_pack("{s:s, s:s, s:b}", "src", real, "dst", mount, "rw",
                                           !(ro && json_is_true(ro))));
    return 0;
}

static int
check_platform(const json_t *p, kn_error_t *err)
{
    if (json_is_null(p))
        return 0;
    const char *os = json_is_object(p) ? plain_string(json_object_get(p, "os")) : NULL;
    const char *arch = json_is_object(p) ? plain_string(json_object_get(p, "arch")) : NULL;
    if (!os || !arch)
        return kn_server_error(err, EINVAL, "platform needs os and arch");
    struct utsname u;
    uname(&u);
    const char *host_arch = !strcmp(u.machine, "x86_64")    ? "amd64"
                            : !strcmp(u.machine, "aarch64") ? "arm64"
                                                            : u.machine;
    if (strcmp(os, "linux") || strcmp(arch, host_arch))
        return kn_server_error(err, EINVAL,
                               "platform %s/%s cannot be satisfied (this host is linux/%s)", os,
                               arch, host_arch);
    return 0;
}

static int
check_env(const json_t *env, kn_error_t *err)
{
    if (check_string_map(env, "env", err) < 0)
        return -1;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)env, k, v)
    {
        if (!k[0] || strchr(k, '=') || strlen(k) > 1024)
            return kn_server_error(err, EINVAL, "env key '%s' is not a valid variable name", k);
    }
    if (json_object_size(env) > KN_MAX_ENV / 2)
        return kn_server_error(err, EINVAL, "env has more than %d entries", KN_MAX_ENV / 2);
    return 0;
}

static int
check_extensions(const json_t *ext, kn_error_t *err)
{
    if (check_string_map(ext, "extensions", err) < 0)
        return -1;
    /* poolRef itself is resolved by the manager, which knows the pools. */
    const char *renew = json_string_value(json_object_get(ext, "access.renew.extend.seconds"));
    if (renew) {
        char *end = NULL;
        errno = 0;
        long s = strtol(renew, &end, 10);
        if (errno || end == renew || *end || s < 300 || s > 86400)
            return kn_server_error(err, EINVAL,
                                   "extensions.access.renew.extend.seconds must be 300 to 86400");
    }
    return 0;
}

static int
check_entrypoint(const json_t *ep, kn_error_t *err)
{
    if (!json_is_array(ep) || json_array_size(ep) == 0 || json_array_size(ep) > 4096)
        return kn_server_error(err, EINVAL, "entrypoint must be a non-empty array of strings");
    size_t i;
    json_t *w;
    json_array_foreach(ep, i, w)
    {
        if (!plain_string(w))
            return kn_server_error(err, EINVAL, "entrypoint[%zu] must be a string", i);
    }
    if (!json_string_value(json_array_get(ep, 0))[0])
        return kn_server_error(err, EINVAL, "entrypoint[0] must not be empty");
    return 0;
}

/* The image's Entrypoint + Cmd, as a request's entrypoint; NULL if none. */
static json_t *
image_entrypoint(const kn_image_t *img)
{
    json_t *ep = json_array();
    for (char **a = img ? img->entrypoint : NULL; a && *a; a++)
        json_array_append_new(ep, json_string(*a));
    for (char **a = img ? img->cmd : NULL; a && *a; a++)
        json_array_append_new(ep, json_string(*a));
    if (json_array_size(ep) && json_string_value(json_array_get(ep, 0))[0])
        return ep;
    json_decref(ep);
    return NULL;
}

/* Where the sandbox comes from and what it runs: image or snapshot,
 * entrypoint, timeout. snap: a snapshotId the manager resolved, or NULL. */
static int
check_source(const json_t *req, const kn_server_cfg_t *cfg, const kn_spec_snapshot_t *snap,
             json_t *spec, json_t *kennel, kn_error_t *err)
{
    json_t *image = json_object_get(req, "image");
    json_t *sid = json_object_get(req, "snapshotId");
    kn_image_t *img = NULL;
    int rc = -1;
    if (sid && !json_is_null(sid)) {
        if (image && !json_is_null(image))
            return kn_server_error(err, EINVAL, "give either image or snapshotId, not both");
        if (!plain_string(sid) || !json_string_value(sid)[0])
            return kn_server_error(err, EINVAL, "snapshotId must be a non-empty string");
        if (!snap || strcmp(snap->id, json_string_value(sid)))
            return kn_server_error(err, EINVAL, "snapshotId %s was not resolved",
                                   json_string_value(sid));
        json_object_set_new(spec, "snapshotId", json_string(snap->id));
        json_object_set_new(kennel, "image", json_string(snap->digest));
    } else {
        if (!image || json_is_null(image))
            return kn_server_error(err, EINVAL, "image or snapshotId is required");
        const char *uri =
            json_is_object(image) ? plain_string(json_object_get(image, "uri")) : NULL;
        if (!uri || !uri[0])
            return kn_server_error(err, EINVAL, "image.uri must be a non-empty string");
        if (json_object_get(image, "auth") && !json_is_null(json_object_get(image, "auth")))
            return kn_server_error(err, EINVAL,
                                   "image.auth: Kennel pulls from no registry; import the image "
                                   "(kennel image import) and name it without credentials");
        if (resolve_image(cfg, uri, kennel, &img, err) < 0)
            return -1;
        json_object_set_new(spec, "image", json_pack("{s:s}", "uri", uri));
    }
    /* Snapshots of any sandbox go to the store, and are opened from it. */
    json_object_set_new(kennel, "imageStore", json_string(kn_image_store_path(cfg->image_store)));
    if (cfg->wlayer == KN_WLAYER_DISK) {
        json_object_set_new(kennel, "writableLayer", json_string("disk"));
        json_object_set_new(kennel, "layerDir", json_string(cfg->layer_dir));
    }

    /* The request's entrypoint wins; without one, a stored image's
     * Entrypoint + Cmd (as a container runtime does), and a snapshot's
     * default is the spec's. */
    json_t *ep = json_object_get(req, "entrypoint");
    if (ep && !json_is_null(ep)) {
        if (check_entrypoint(ep, err) < 0)
            goto out;
        json_object_set(spec, "entrypoint", ep);
    } else if (snap) {
        json_object_set_new(spec, "entrypoint", json_pack("[s,s,s]", "tail", "-f", "/dev/null"));
    } else if ((ep = image_entrypoint(img))) {
        json_object_set_new(spec, "entrypoint", ep);
    } else {
        kn_server_error(err, EINVAL,
                        img ? "entrypoint is required: the image sets neither Entrypoint nor Cmd"
                            : "entrypoint is required with image");
        goto out;
    }

    json_t *v = json_object_get(req, "timeout");
    if (!v || json_is_null(v)) {
        json_object_set_new(spec, "timeout", json_null());
        rc = 0;
        goto out;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 60)
        kn_server_error(err, EINVAL, "timeout must be an integer of at least 60 (seconds)");
    else if (cfg->max_timeout_s && json_integer_value(v) > cfg->max_timeout_s)
        kn_server_error(err, EINVAL, "timeout must be at most %lld seconds",
                        (long long)cfg->max_timeout_s);
    else if (json_integer_value(v) > 100LL * 365 * 86400)
        kn_server_error(err, EINVAL, "timeout is too large");
    else {
        json_object_set(spec, "timeout", v);
        rc = 0;
    }
out:
    kn_image_close(img);
    return rc;
}

/* What the sandbox gets: limits, environment, metadata, platform, network,
 * volumes, and the options Kennel refuses. */
static int
check_resources(const json_t *req, const kn_server_cfg_t *cfg, json_t *spec, json_t *kennel,
                kn_error_t *err)
{
    json_t *v = json_object_get(req, "resourceLimits");
    if (!v)
        return kn_server_error(err, EINVAL, "resourceLimits is required");
    if (check_limits(v, kennel, err) < 0)
        return -1;
    json_object_set(spec, "resourceLimits", v);
    if ((v = json_object_get(req, "env")) && !json_is_null(v)) {
        if (check_env(v, err) < 0)
            return -1;
        json_object_set(spec, "env", v);
    }
    if ((v = json_object_get(req, "metadata")) && !json_is_null(v)) {
        if (check_string_map(v, "metadata", err) < 0)
            return -1;
        const char *k;
        json_t *mv;
        json_object_foreach(v, k, mv)
        {
            if (kn_spec_check_label(k, json_string_value(mv), err) < 0)
                return -1;
        }
        json_object_set(spec, "metadata", v);
    }
    if (kn_egress_parse(json_object_get(req, "networkPolicy"), cfg, kennel, err) < 0)
        return -1;
    if ((v = json_object_get(req, "platform")) && !json_is_null(v)) {
        if (check_platform(v, err) < 0)
            return -1;
        json_object_set_new(spec, "platform",
                            json_pack("{s:O, s:O}", "os", json_object_get(v, "os"), "arch",
                                      json_object_get(v, "arch")));
    }
    v = json_object_get(req, "secureAccess");
    if (v && !json_is_boolean(v) && !json_is_null(v))
        return kn_server_error(err, EINVAL, "secureAccess must be a boolean");
    if (json_is_true(v))
        return kn_server_error(err, EINVAL,
                               "secureAccess is not supported: endpoints are reached through the "
                               "server proxy with the API key");
    v = json_object_get(req, "credentialProxy");
    if (json_is_object(v) && json_is_true(json_object_get(v, "enabled")))
        return kn_server_error(err, EINVAL, "credentialProxy is not supported yet");
    json_t *binds = json_array();
    json_object_set_new(kennel, "binds", binds);
    if (!(v = json_object_get(req, "volumes")) || json_is_null(v))
        return 0;
    if (!json_is_array(v) || json_array_size(v) > 16)
        return kn_server_error(err, EINVAL, "volumes must be an array of at most 16");
    size_t i;
    json_t *vol;
    json_array_foreach(v, i, vol)
    {
        if (check_volume(vol, i, cfg, binds, err) < 0)
            return -1;
    }
    json_object_set(spec, "volumes", v);
    return 0;
}

static int
check_request(const json_t *req, const kn_server_cfg_t *cfg, const kn_spec_snapshot_t *snap,
              json_t *spec, json_t *kennel, kn_error_t *err)
{
    json_t *ext = json_object_get(req, "extensions");
    if (ext && !json_is_null(ext)) {
        if (check_extensions(ext, err) < 0)
            return -1;
        json_object_set(spec, "extensions", ext);
    }
    if (check_source(req, cfg, snap, spec, kennel, err) < 0)
        return -1;
    return check_resources(req, cfg, spec, kennel, err);
}

json_t *
kn_spec_parse(const json_t *req, const kn_server_cfg_t *cfg, kn_error_t *err)
{
    return kn_spec_parse_from(req, cfg, NULL, err);
}

json_t *
kn_spec_parse_from(const json_t *req, const kn_server_cfg_t *cfg, const kn_spec_snapshot_t *snap,
                   kn_error_t *err)
{
    if (!json_is_object(req)) {
        kn_server_error(err, EINVAL, "the body must be a JSON object");
        return NULL;
    }
    json_t *spec = json_object();
    json_t *kennel = json_object();
    if (!spec || !kennel) {
        json_decref(spec);
        json_decref(kennel);
        kn_error_set(err, ENOMEM, "spec");
        return NULL;
    }
    json_object_set_new(spec, "kennel", kennel);
    if (check_request(req, cfg, snap, spec, kennel, err) < 0) {
        json_decref(spec);
        return NULL;
    }
    return spec;
}

static int
add_env(kn_config_t *c, const char *k, const char *v, kn_error_t *err)
{
    size_t len = strlen(k) + strlen(v) + 2;
    char *kv = malloc(len);
    if (!kv)
        return kn_error_set(err, ENOMEM, "env");
    snprintf(kv, len, "%s=%s", k, v);
    int r = kn_config_setenv(c, kv, err);
    free(kv);
    return r;
}

int
kn_spec_config(const json_t *spec, const char *sandbox_dir, const char *execd_path,
               kn_config_t *out, kn_image_t **img, kn_error_t *err)
{
    kn_image_t *im = NULL;
    kn_config_t c;
    if (kn_profile_load(&c, "default", err) < 0)
        return -1;
    json_t *k = json_object_get(spec, "kennel");
    json_t *v;
    c.service = true;
    /* Expiry is the server's reaper's job; the runtime leaves timeouts to its
     * caller but wants a positive one in the config. */
    c.timeout_ms = UINT64_C(1) << 62;
    c.pids = 1024;
    const char *image = json_string_value(json_object_get(k, "image"));
    if (kn_config_set_str(&c.image, image, err) < 0)
        goto fail;
    if (image && !strncmp(image, "sha256:", 7)) {
        /* Verified when the request was parsed (a pin in full): the
         * manifest and config are re-hashed again on this open. */
        const char *store = json_string_value(json_object_get(k, "imageStore"));
        if (kn_image_open_digest(store, image, false, &im, err) < 0 ||
            kn_image_apply_config(&c, im, err) < 0)
            goto fail;
    }
    if (json_is_string(json_object_get(k, "writableLayer"))) {
        c.wlayer = KN_WLAYER_DISK;
        if (kn_config_set_str(&c.wlayer_dir, json_string_value(json_object_get(k, "layerDir")),
                              err) < 0)
            goto fail;
    }
    if ((v = json_object_get(k, "cpus")))
        c.cpus = json_real_value(v);
    if ((v = json_object_get(k, "memory")))
        c.memory = (uint64_t)json_integer_value(v);
    if ((v = json_object_get(k, "pids")))
        c.pids = (uint32_t)json_integer_value(v);
    if ((v = json_object_get(k, "rootSize")))
        c.root_size = (uint64_t)json_integer_value(v);
    const char *key;
    json_object_foreach(json_object_get(spec, "env"), key, v)
    {
        if (add_env(&c, key, json_string_value(v), err) < 0)
            goto fail;
    }
    if (kn_config_add_bind(&c, sandbox_dir, KN_SPEC_RUN_INSIDE, true, err) < 0 ||
        kn_config_add_bind(&c, execd_path, KN_SPEC_EXECD_INSIDE, false, err) < 0)
        goto fail;
    size_t i;
    json_array_foreach(json_object_get(k, "binds"), i, v)
    {
        if (kn_config_add_bind(&c, json_string_value(json_object_get(v, "src")),
                               json_string_value(json_object_get(v, "dst")),
                               json_is_true(json_object_get(v, "rw")), err) < 0)
            goto fail;
    }
    if ((v = json_object_get(k, "network")) && kn_egress_config(v, &c.net, err) < 0)
        goto fail;
    char *argv[] = {KN_SPEC_EXECD_INSIDE, "--socket", KN_SPEC_EXECD_SOCK, NULL};
    if (kn_config_set_argv(&c, argv, err) < 0 || kn_config_validate(&c, err) < 0)
        goto fail;
    *out = c;
    if (img)
        *img = im;
    else
        kn_image_close(im);
    return 0;
fail:
    kn_image_close(im);
    kn_config_free(&c);
    return -1;
}

char *
kn_spec_entrypoint_cmd(const json_t *spec)
{
    json_t *ep = json_object_get(spec, "entrypoint");
    size_t cap = 1, i;
    json_t *w;
    json_array_foreach(ep, i, w) cap += 4 * json_string_length(w) + 3;
    char *out = malloc(cap), *p = out;
    if (!out)
        return NULL;
    json_array_foreach(ep, i, w)
    {
        if (i)
            *p++ = ' ';
        *p++ = '\'';
        for (const char *s = json_string_value(w); *s; s++) {
            if (*s == '\'') {
                memcpy(p, "'\\''", 4);
                p += 4;
            } else {
                *p++ = *s;
            }
        }
        *p++ = '\'';
    }
    *p = '\0';
    return out;
}
