/* egress.c - see egress.h. */
#include "egress.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "netpolicy_internal.h"
#include "shim.h"
#include "util.h"

#define ENFORCEMENT "dns+nft"

/* ---- policies as JSON ---- */

/* A string without NUL bytes inside (jansson allows them). */
static const char *
plain(const json_t *v)
{
    if (!json_is_string(v))
        return NULL;
    const char *s = json_string_value(v);
    return strlen(s) == json_string_length(v) ? s : NULL;
}

/* The canonical form of a target, for matching PATCH and DELETE targets
 * with the rules in force: names in lower case without the trailing dot,
 * CIDRs with their host bits cleared. */
static int
canonical(const char *t, char *out, size_t len, const char *field, kn_error_t *err)
{
    kn_error_t e;
    if (strlen(t) >= sizeof((kn_net_rule_t *)0)->target || kn_net_rule_check(t, &e) < 0)
        return kn_server_error(err, EINVAL,
                               "%s '%.200s' is neither a domain, a wildcard domain "
                               "(*.example.com) nor an IPv4 address or CIDR",
                               field, t);
    uint32_t a;
    int pl;
    if (kn_net_parse_cidr(t, &a, &pl) == 0) {
        if (strchr(t, '/'))
            snprintf(out, len, "%u.%u.%u.%u/%d", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255,
                     pl);
        else
            snprintf(out, len, "%s", t);
        return 0;
    }
    size_t n = strlen(t);
    if (n && t[n - 1] == '.')
        n--;
    if (n >= len)
        n = len - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (t[i] >= 'A' && t[i] <= 'Z') ? (char)(t[i] - 'A' + 'a') : t[i];
    out[n] = '\0';
    return 0;
}

/* Checks one NetworkRule {action, target} (no other field) and returns it
 * normalized, or NULL with err. */
static json_t *
check_rule(const json_t *r, const char *field, kn_error_t *err)
{
    if (!json_is_object(r)) {
        kn_server_error(err, EINVAL, "%s must be an object {action, target}", field);
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)r, k, v)
    {
        if (strcmp(k, "action") && strcmp(k, "target")) {
            kn_server_error(err, EINVAL, "%s.%.64s is not a field of a rule (action, target)",
                            field, k);
            return NULL;
        }
    }
    const char *a = plain(json_object_get(r, "action"));
    const char *t = plain(json_object_get(r, "target"));
    if (!a || (strcmp(a, "allow") && strcmp(a, "deny"))) {
        kn_server_error(err, EINVAL, "%s.action must be allow or deny", field);
        return NULL;
    }
    char name[64], target[256];
    snprintf(name, sizeof name, "%s.target", field);
    if (!t) {
        kn_server_error(err, EINVAL, "%s must be a string", name);
        return NULL;
    }
    if (canonical(t, target, sizeof target, name, err) < 0)
        return NULL;
    return json_pack("{s:s, s:s}", "action", a, "target", target);
}

/* The policy in the normalized shape {defaultAction, egress}. */
static json_t *
check_policy(const json_t *np, kn_error_t *err)
{
    if (!json_is_object(np)) {
        kn_server_error(err, EINVAL, "networkPolicy must be an object {defaultAction, egress}");
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)np, k, v)
    {
        if (strcmp(k, "defaultAction") && strcmp(k, "egress")) {
            kn_server_error(err, EINVAL,
                            "networkPolicy.%.64s is not a field of NetworkPolicy (defaultAction, "
                            "egress)",
                            k);
            return NULL;
        }
    }
    json_t *def = json_object_get(np, "defaultAction");
    const char *d = json_is_null(def) ? "deny" : plain(def);
    if (!d || (strcmp(d, "allow") && strcmp(d, "deny"))) {
        kn_server_error(err, EINVAL, "networkPolicy.defaultAction must be allow or deny");
        return NULL;
    }
    json_t *eg = json_object_get(np, "egress");
    if (eg && !json_is_array(eg) && !json_is_null(eg)) {
        kn_server_error(err, EINVAL, "networkPolicy.egress must be an array of rules");
        return NULL;
    }
    if (json_array_size(eg) > KN_MAX_NET_RULES) {
        kn_server_error(err, EINVAL, "networkPolicy.egress has more than %d rules",
                        KN_MAX_NET_RULES);
        return NULL;
    }
    json_t *rules = json_array();
    size_t i;
    json_array_foreach(eg, i, v)
    {
        char field[48];
        snprintf(field, sizeof field, "networkPolicy.egress[%zu]", i);
        json_t *r = check_rule(v, field, err);
        if (!r) {
            json_decref(rules);
            return NULL;
        }
        json_array_append_new(rules, r);
    }
    return json_pack("{s:s, s:o}", "defaultAction", d, "egress", rules);
}

int
kn_egress_parse(const json_t *np, const kn_server_cfg_t *cfg, json_t *kennel, kn_error_t *err)
{
    if (!np || json_is_null(np))
        return 0; /* no networkPolicy: a namespace with only lo, as always */
    json_t *pol = check_policy(np, err);
    if (!pol)
        return -1;
    if (cfg->dns_upstream && cfg->dns_upstream[0]) {
        struct sockaddr_in sa;
        kn_error_t e;
        if (kn_dns_upstream_parse(cfg->dns_upstream, &sa, &e) < 0) {
            json_decref(pol);
            return kn_server_error(err, EIO, "the server's dnsUpstream: %s", e.msg);
        }
        json_object_set_new(pol, "dnsUpstream", json_string(cfg->dns_upstream));
    }
    json_object_set_new(kennel, "network", pol);
    return 0;
}

int
kn_egress_config(const json_t *net, kn_net_policy_t *out, kn_error_t *err)
{
    memset(out, 0, sizeof *out);
    out->enabled = true;
    out->default_allow =
        !strcmp(json_string_value(json_object_get(net, "defaultAction")) ?: "", "allow");
    const char *up = json_string_value(json_object_get(net, "dnsUpstream"));
    if (up && snprintf(out->dns_upstream, sizeof out->dns_upstream, "%s", up) >=
                  (int)sizeof out->dns_upstream)
        return kn_server_error(err, EINVAL, "dnsUpstream is too long");
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(net, "egress"), i, r)
    {
        const char *t = json_string_value(json_object_get(r, "target"));
        if (i >= KN_MAX_NET_RULES || !t || strlen(t) >= sizeof out->rules[0].target)
            return kn_server_error(err, EINVAL, "network policy: bad rule %zu", i);
        out->rules[i].allow =
            !strcmp(json_string_value(json_object_get(r, "action")) ?: "", "allow");
        snprintf(out->rules[i].target, sizeof out->rules[i].target, "%s", t);
        out->n_rules = i + 1;
    }
    return 0;
}

/* ---- files of the run directory ---- */

static void
path_of(char *buf, size_t len, const char *dir, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

static int
write_json(const char *dir, const char *name, const json_t *j, kn_error_t *err)
{
    char tmp[PATH_MAX], dst[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    path_of(dst, sizeof dst, dir, name);
    if (json_dump_file(j, tmp, JSON_COMPACT) < 0 || chmod(tmp, 0600) < 0 || rename(tmp, dst) < 0) {
        int e = errno;
        unlink(tmp);
        return kn_error_set(err, e ? e : EIO, "write %s", dst);
    }
    return 0;
}

static json_t *
read_json(const char *dir, const char *name)
{
    char p[PATH_MAX];
    path_of(p, sizeof p, dir, name);
    return json_load_file(p, JSON_REJECT_DUPLICATES, NULL);
}

/* ---- shim side ---- */

void
kn_egress_shim_started(const char *dir, const json_t *spec)
{
    const json_t *net = json_object_get(json_object_get(spec, "kennel"), "network");
    if (!net)
        return;
    json_t *pol = json_pack("{s:O, s:O}", "defaultAction", json_object_get(net, "defaultAction"),
                            "egress", json_object_get(net, "egress"));
    kn_error_t err;
    if (pol)
        (void)write_json(dir, KN_EGRESS_POLICY, pol, &err); /* GET falls back to the spec */
    json_decref(pol);
}

int
kn_egress_shim_apply(const char *dir, kn_sandbox_t *sb, kn_error_t *err)
{
    kn_netns_t *n = sb ? kn_sandbox_net(sb) : NULL;
    if (!n)
        return kn_server_error(err, EBUSY, "this sandbox has no network attachment");
    json_t *req = read_json(dir, KN_EGRESS_REQUEST);
    kn_error_t e = {0};
    json_t *pol = req ? check_policy(req, &e) : NULL;
    json_decref(req);
    if (!pol)
        return kn_server_error(err, EINVAL, "policy request: %s",
                               e.msg[0] ? e.msg : "missing or not JSON");
    kn_net_policy_t p;
    int rc = kn_egress_config(pol, &p, err);
    if (rc == 0)
        rc = kn_net_update(n, &p, err);
    if (rc == 0)
        rc = write_json(dir, KN_EGRESS_POLICY, pol, err);
    json_decref(pol);
    char rp[PATH_MAX];
    path_of(rp, sizeof rp, dir, KN_EGRESS_REQUEST);
    unlink(rp);
    return rc;
}

/* ---- server side ---- */

static const char *
mode_of(const json_t *pol)
{
    bool allow = !strcmp(json_string_value(json_object_get(pol, "defaultAction")) ?: "", "allow");
    if (json_array_size(json_object_get(pol, "egress")) > 0)
        return "enforcing";
    return allow ? "allow_all" : "deny_all";
}

static enum MHD_Result
status_reply(struct MHD_Connection *c, kn_req_t *r, const json_t *pol, const char *enforcement,
             const char *reason)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:O}", "status", "ok", "mode", mode_of(pol),
                          "enforcementMode", enforcement, "policy", pol);
    if (j && reason)
        json_object_set_new(j, "reason", json_string(reason));
    return kn_http_json(c, r, 200, j);
}

/* The egress API's own errors are plain text in the spec; Kennel answers
 * with its usual JSON {code, message}, which the SDK reads best. */
static enum MHD_Result
fail(struct MHD_Connection *c, kn_req_t *r, const kn_error_t *err)
{
    return kn_http_fail(c, r, err);
}

/* PATCH: incoming rules first (the first of a target wins), then the rules
 * in force whose target the patch does not name. */
static json_t *
patched(const json_t *cur, const json_t *body, kn_error_t *err)
{
    if (!json_is_array(body) || json_array_size(body) == 0) {
        kn_server_error(err, EINVAL,
                        "the body must be a non-empty array of rules "
                        "[{\"action\": \"allow\", \"target\": \"example.com\"}]");
        return NULL;
    }
    json_t *rules = json_array();
    size_t i, j;
    json_t *v, *w;
    json_array_foreach(body, i, v)
    {
        char field[32];
        snprintf(field, sizeof field, "rule[%zu]", i);
        json_t *rule = check_rule(v, field, err);
        if (!rule) {
            json_decref(rules);
            return NULL;
        }
        bool dup = false;
        json_array_foreach(rules, j, w) dup |=
            json_equal(json_object_get(w, "target"), json_object_get(rule, "target"));
        if (dup)
            json_decref(rule);
        else
            json_array_append_new(rules, rule);
    }
    size_t incoming = json_array_size(rules);
    json_array_foreach(json_object_get(cur, "egress"), i, v)
    {
        bool named = false;
        for (j = 0; j < incoming && !named; j++)
            named = json_equal(json_object_get(json_array_get(rules, j), "target"),
                               json_object_get(v, "target"));
        if (!named)
            json_array_append(rules, v);
    }
    return json_pack("{s:O, s:o}", "defaultAction", json_object_get(cur, "defaultAction"), "egress",
                     rules);
}

/* DELETE: the rules whose target the body names are removed (idempotent). */
static json_t *
removed(const json_t *cur, const json_t *body, kn_error_t *err)
{
    if (!json_is_array(body) || json_array_size(body) == 0) {
        kn_server_error(err, EINVAL,
                        "the body must be a non-empty array of targets "
                        "[\"bad.example.com\"]");
        return NULL;
    }
    size_t n = json_array_size(body), i, j;
    char(*targets)[256] = calloc(n, sizeof *targets);
    if (!targets) {
        kn_error_set(err, ENOMEM, "policy");
        return NULL;
    }
    json_t *v;
    json_array_foreach(body, i, v)
    {
        char field[32];
        snprintf(field, sizeof field, "target[%zu]", i);
        const char *t = plain(v);
        if (!t) {
            kn_server_error(err, EINVAL, "%s must be a string", field);
            free(targets);
            return NULL;
        }
        if (canonical(t, targets[i], sizeof targets[i], field, err) < 0) {
            free(targets);
            return NULL;
        }
    }
    json_t *rules = json_array();
    json_array_foreach(json_object_get(cur, "egress"), i, v)
    {
        const char *t = json_string_value(json_object_get(v, "target")) ?: "";
        bool named = false;
        for (j = 0; j < n && !named; j++)
            named = !strcmp(targets[j], t);
        if (!named)
            json_array_append(rules, v);
    }
    free(targets);
    return json_pack("{s:O, s:o}", "defaultAction", json_object_get(cur, "defaultAction"), "egress",
                     rules);
}

/* The policy in force: what the shim recorded, else the create request's. */
static json_t *
current(const char *dir)
{
    json_t *pol = read_json(dir, KN_EGRESS_POLICY);
    if (pol)
        return pol;
    json_t *spec = read_json(dir, KN_SHIM_SPEC);
    json_t *net = json_object_get(json_object_get(spec, "kennel"), "network");
    if (net)
        pol = json_pack("{s:O, s:O}", "defaultAction", json_object_get(net, "defaultAction"),
                        "egress", json_object_get(net, "egress"));
    json_decref(spec);
    return pol;
}

/* Every change of a sandbox's policy passes here, once it is in force.
 * Receipts (DESIGN §6) sign it at this call site: the sandbox, the
 * request, the policy before and after. Today it is logged. */
static void
policy_changed(kn_req_t *r, const char *id, const json_t *before, const json_t *after)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char when[40];
    kn_sbx_format_time((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, when, sizeof when);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:O, s:O}", "ts", when, "level", "info", "msg",
                          "egress policy changed", "sandboxId", id, "requestId", r->rid, "before",
                          before, "after", after);
    char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (line)
        fprintf(stderr, "%s\n", line);
    free(line);
    json_decref(j);
}

static json_t *
parse_body(kn_req_t *r, kn_error_t *err)
{
    if (!r->len) {
        kn_server_error(err, EINVAL, "a JSON body is required");
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        kn_server_error(err, EINVAL, "invalid JSON at line %d column %d: %s", je.line, je.column,
                        je.text);
    return j;
}

static enum MHD_Result
change(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r, const char *dir, bool patch)
{
    (void)s;
    kn_error_t err = {0};
    json_t *body = parse_body(r, &err);
    if (!body)
        return fail(c, r, &err);
    char lp[PATH_MAX];
    path_of(lp, sizeof lp, dir, KN_EGRESS_LOCK);
    int lock = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lock < 0 || flock(lock, LOCK_EX) < 0) {
        kn_error_set(&err, errno, "lock %s", lp);
        json_decref(body);
        if (lock >= 0)
            close(lock);
        return fail(c, r, &err);
    }
    enum MHD_Result ret;
    json_t *cur = current(dir), *next = NULL;
    if (!cur) {
        kn_server_error(&err, EBUSY,
                        "sandbox %s was created without networkPolicy: its network namespace has "
                        "only loopback and cannot be given egress later (create it with "
                        "networkPolicy {\"defaultAction\": \"deny\"} to change rules at run time)",
                        r->sandbox_id);
        ret = fail(c, r, &err);
    } else if (!(next = patch ? patched(cur, body, &err) : removed(cur, body, &err))) {
        ret = fail(c, r, &err);
    } else if (json_array_size(json_object_get(next, "egress")) > KN_MAX_NET_RULES) {
        kn_server_error(&err, EINVAL, "the policy would have more than %d rules", KN_MAX_NET_RULES);
        ret = fail(c, r, &err);
    } else if (write_json(dir, KN_EGRESS_REQUEST, next, &err) < 0 ||
               kn_shim_call(dir, "policy", 15000, &err) < 0) {
        kn_error_prefix(&err, "apply the policy");
        if (err.code == EBUSY || err.code == EINVAL)
            err.code = EIO; /* the request was valid: the sandbox failed to apply it */
        ret = fail(c, r, &err);
    } else {
        json_t *now = current(dir);
        policy_changed(r, r->sandbox_id, cur, now ? now : next);
        ret = status_reply(c, r, now ? now : next, ENFORCEMENT, NULL);
        json_decref(now);
    }
    json_decref(next);
    json_decref(cur);
    json_decref(body);
    close(lock);
    return ret;
}

enum MHD_Result
kn_egress_route(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r, const char *method,
                const char *rest)
{
    kn_error_t err = {0};
    char path[256];
    size_t n = strcspn(rest, "?");
    snprintf(path, sizeof path, "%.*s", (int)(n < sizeof path ? n : sizeof path - 1), rest);
    while (strlen(path) > 1 && path[strlen(path) - 1] == '/')
        path[strlen(path) - 1] = '\0';
    char dir[PATH_MAX];
    if (kn_sbx_live_dir(s->mgr, r->sandbox_id, dir, sizeof dir, &err) < 0)
        return fail(c, r, &err);
    if (!strncmp(path, "/credential-vault", 17) && (!path[17] || path[17] == '/'))
        return kn_http_error(c, r, 501, "NOT_IMPLEMENTED",
                             "the Credential Vault needs a TLS-terminating proxy that injects "
                             "credentials; Kennel does not terminate the sandbox's TLS");
    if (strcmp(path, "/policy") != 0)
        return kn_http_error(c, r, 404, "NOT_FOUND",
                             "the egress port serves /policy (GET, PATCH, DELETE)");
    if (!strcmp(method, "PATCH") || !strcmp(method, "DELETE"))
        return change(s, c, r, dir, !strcmp(method, "PATCH"));
    if (strcmp(method, "GET") != 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "method %.16s is not allowed on /policy (GET, PATCH, DELETE)",
                 method);
        return kn_http_error(c, r, 405, "METHOD_NOT_ALLOWED", msg);
    }
    char lp[PATH_MAX];
    path_of(lp, sizeof lp, dir, KN_EGRESS_LOCK);
    int lock = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lock >= 0)
        flock(lock, LOCK_SH);
    json_t *pol = current(dir);
    if (lock >= 0)
        close(lock);
    enum MHD_Result ret;
    if (pol) {
        ret = status_reply(c, r, pol, ENFORCEMENT, NULL);
    } else {
        pol = json_pack("{s:s, s:[]}", "defaultAction", "deny", "egress");
        ret = status_reply(c, r, pol, "none",
                           "created without networkPolicy: the sandbox's network namespace has "
                           "only loopback, and nothing leaves it");
    }
    json_decref(pol);
    return ret;
}
