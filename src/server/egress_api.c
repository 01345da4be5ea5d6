/* egress_api.c - see egress_api.h: the egress API, answered by the server. */
#include "egress_api.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "egress.h"
#include "netpolicy.h"
#include "receipts.h"
#include "shim.h"

#define ENFORCEMENT "dns+nft"

static void
path_of(char *buf, size_t len, const char *dir, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

/* A string without NUL bytes inside (jansson allows them). */
static const char *
plain(const json_t *v)
{
    if (!json_is_string(v))
        return NULL;
    const char *s = json_string_value(v);
    return strlen(s) == json_string_length(v) ? s : NULL;
}

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
        json_t *rule = kn_egress_check_rule(v, field, err);
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
        if (kn_egress_canonical(t, targets[i], sizeof targets[i], field, err) < 0) {
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
    json_t *pol = kn_egress_read(dir, KN_EGRESS_POLICY);
    if (pol)
        return pol;
    json_t *spec = kn_egress_read(dir, KN_SHIM_SPEC);
    json_t *net = json_object_get(json_object_get(spec, "kennel"), "network");
    if (net)
        pol = json_pack("{s:O, s:O}", "defaultAction", json_object_get(net, "defaultAction"),
                        "egress", json_object_get(net, "egress"));
    json_decref(spec);
    return pol;
}

/* Every change of a sandbox's policy passes here, once it is in force: a
 * log line with the policy before and after (the receipts of change() sign
 * the request and the policy after). */
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

/* The receipt of a policy change (docs/receipts.md): system.settings.modify
 * in the sandbox's chain; parameters the method and the request body,
 * response the policy in force after. */
static int
receipt_begin(kn_srv_t *s, kn_req_t *r, bool patch, const json_t *body, kn_rcpt_act_t *a,
              kn_error_t *err)
{
    kn_rcpt_act_init(a, "system.settings.modify", "high", "kennel:egress", "/policy", r->sandbox_id,
                     NULL);
    return kn_rcpt_act_begin(
        s->receipts, a, json_pack("{s:s, s:O}", "method", patch ? "PATCH" : "DELETE", "body", body),
        err);
}

static enum MHD_Result
change(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r, const char *dir, bool patch)
{
    kn_rcpt_act_t act = {0};
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
    } else if (receipt_begin(s, r, patch, body, &act, &err) < 0) {
        ret = fail(c, r, &err); /* no receipt, no change */
    } else if (kn_egress_write(dir, KN_EGRESS_REQUEST, next, &err) < 0 ||
               kn_shim_call(dir, "policy", 15000, &err) < 0) {
        kn_error_prefix(&err, "apply the policy");
        if (err.code == EBUSY || err.code == EINVAL)
            err.code = EIO; /* the request was valid: the sandbox failed to apply it */
        kn_rcpt_act_end(&act, NULL, err.msg);
        ret = fail(c, r, &err);
    } else {
        json_t *now = current(dir);
        json_t *resp = json_pack("{s:O}", "policy", now ? now : next);
        /* The outcome is written before the answer goes out; if it cannot
         * be, the change stands (it is done) and the drop is recorded. */
        kn_rcpt_act_end(&act, resp, NULL);
        json_decref(resp);
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
