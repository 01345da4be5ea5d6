/* egress.c - see egress.h: policies as JSON, and the shim's side. */
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
#include "util.h"

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
int
kn_egress_canonical(const char *t, char *out, size_t len, const char *field, kn_error_t *err)
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
json_t *
kn_egress_check_rule(const json_t *r, const char *field, kn_error_t *err)
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
    if (kn_egress_canonical(t, target, sizeof target, name, err) < 0)
        return NULL;
    return json_pack("{s:s, s:s}", "action", a, "target", target);
}

/* The policy in the normalized shape {defaultAction, egress}. */
json_t *
kn_egress_check_policy(const json_t *np, kn_error_t *err)
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
        json_t *r = kn_egress_check_rule(v, field, err);
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
    json_t *pol = kn_egress_check_policy(np, err);
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

int
kn_egress_write(const char *dir, const char *name, const json_t *j, kn_error_t *err)
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

json_t *
kn_egress_read(const char *dir, const char *name)
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
        (void)kn_egress_write(dir, KN_EGRESS_POLICY, pol, &err); /* GET falls back to the spec */
    json_decref(pol);
}

int
kn_egress_shim_apply(const char *dir, kn_sandbox_t *sb, kn_error_t *err)
{
    kn_netns_t *n = sb ? kn_sandbox_net(sb) : NULL;
    if (!n)
        return kn_server_error(err, EBUSY, "this sandbox has no network attachment");
    json_t *req = kn_egress_read(dir, KN_EGRESS_REQUEST);
    kn_error_t e = {0};
    json_t *pol = req ? kn_egress_check_policy(req, &e) : NULL;
    json_decref(req);
    if (!pol)
        return kn_server_error(err, EINVAL, "policy request: %s",
                               e.msg[0] ? e.msg : "missing or not JSON");
    kn_net_policy_t p;
    int rc = kn_egress_config(pol, &p, err);
    if (rc == 0)
        rc = kn_net_update(n, &p, err);
    if (rc == 0)
        rc = kn_egress_write(dir, KN_EGRESS_POLICY, pol, err);
    json_decref(pol);
    char rp[PATH_MAX];
    path_of(rp, sizeof rp, dir, KN_EGRESS_REQUEST);
    unlink(rp);
    return rc;
}
