/* schema.c - the JSON schema of Agent Receipts v0.5.0
 * (shared/receipts/agent-receipt.schema.json) as code: every object's
 * allowed members (additionalProperties: false), types, formats and
 * patterns, for receipts that say they are version 0.5.0. Older versions
 * predate some formats and keep the lenient shape check of receipt.c. */
#include "internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef enum { T_STR, T_INT, T_BOOL, T_OBJ, T_ANY, T_HASH, T_TIME, T_STRS } type_t;

typedef struct member {
    const char *name;
    type_t type;
    bool required;
} member_t;

static bool
is_int(const json_t *v, double min)
{
    double d = json_is_integer(v) ? (double)json_integer_value(v) : json_real_value(v);
    return json_is_number(v) && d >= min && d == floor(d) && d <= 9007199254740992.0;
}

static bool
hex_run(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
            return false;
    return true;
}

static bool
is_hash(const char *s)
{
    return s && strlen(s) == 71 && !strncmp(s, "sha256:", 7) && hex_run(s + 7, 64);
}

/* 8-4-4-4-12 lowercase hex. */
static bool
is_uuid(const char *s)
{
    static const int groups[] = {8, 4, 4, 4, 12};
    for (int g = 0; g < 5; g++) {
        if (!hex_run(s, (size_t)groups[g]))
            return false;
        s += groups[g];
        if (g < 4 && *s++ != '-')
            return false;
    }
    return *s == '\0';
}

static bool
digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* RFC 3339 date-time (the schema's "format": "date-time"). */
static bool
is_time(const char *s)
{
    if (!s || strlen(s) < 20 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
        !digits(s + 8, 2) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2) || s[13] != ':' ||
        !digits(s + 14, 2) || s[16] != ':' || !digits(s + 17, 2))
        return false;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'Z' || *p == 'z')
        return p[1] == '\0';
    return (*p == '+' || *p == '-') && digits(p + 1, 2) && p[3] == ':' && digits(p + 4, 2) &&
           p[6] == '\0';
}

static bool
is_b64url(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
            return false;
    return true;
}

/* Checks obj against members (allowed: only these unless open). */
static bool
check_object(const json_t *obj, const char *where, const member_t *members, size_t n, bool open,
             char *why, size_t size)
{
    if (!json_is_object(obj))
        return snprintf(why, size, "%s is not an object", where), false;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        size_t i = 0;
        while (i < n && strcmp(members[i].name, k))
            i++;
        if (i == n) {
            if (open)
                continue;
            return snprintf(why, size, "%s has a member the schema does not allow: %s", where, k),
                   false;
        }
        /* An optional member set to null counts as absent (spec §7.1.1: it
         * is dropped before hashing). */
        if (json_is_null(v) && !members[i].required)
            continue;
        bool ok = true;
        switch (members[i].type) {
        case T_STR:
            ok = json_is_string(v);
            break;
        case T_INT:
            ok = is_int(v, 0);
            break;
        case T_BOOL:
            ok = json_is_boolean(v);
            break;
        case T_OBJ:
            ok = json_is_object(v);
            break;
        case T_HASH:
            ok = is_hash(json_string_value(v));
            break;
        case T_TIME:
            ok = is_time(json_string_value(v));
            break;
        case T_STRS: {
            size_t j;
            const json_t *e;
            ok = json_is_array(v) && json_array_size(v) > 0;
            json_array_foreach(v, j, e) ok = ok && json_is_string(e);
            break;
        }
        case T_ANY:
            break;
        }
        if (!ok)
            return snprintf(why, size, "%s.%s has the wrong type or format", where, k), false;
    }
    for (size_t i = 0; i < n; i++)
        if (members[i].required && !json_object_get(obj, members[i].name))
            return snprintf(why, size, "%s.%s is required", where, members[i].name), false;
    return true;
}

#define CHECK(obj, where, list, open)                                                              \
    check_object(obj, where, list, sizeof list / sizeof list[0], open, why, size)

static bool
check_disclosure(const json_t *d, char *why, size_t size)
{
    /* oneOf: a flat map of strings, or the HPKE envelope. */
    bool flat = json_is_object(d);
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)d, k, v) flat = flat && json_is_string(v);
    static const member_t env[] = {
        {"v", T_STR, true}, {"alg", T_STR, true}, {"recipients", T_ANY, true}, {"ct", T_STR, true}};
    static const member_t rec[] = {{"kid", T_STR, true}, {"enc", T_STR, true}};
    char tmp[2];
    bool envelope = check_object(d, "", env, 4, false, tmp, sizeof tmp);
    if (envelope) {
        const json_t *rs = json_object_get(d, "recipients");
        const char *ct = json_string_value(json_object_get(d, "ct"));
        const json_t *r0 = json_array_get(rs, 0);
        const char *enc = json_string_value(json_object_get(r0, "enc"));
        envelope = !strcmp(json_string_value(json_object_get(d, "v")), "1") &&
                   !strcmp(json_string_value(json_object_get(d, "alg")),
                           "hpke-x25519-hkdf-sha256-aes-256-gcm") &&
                   json_array_size(rs) == 1 && check_object(r0, "", rec, 2, false, tmp, 2) &&
                   json_string_length(json_object_get(r0, "kid")) > 0 && enc && strlen(enc) == 43 &&
                   is_b64url(enc, 43) && strlen(ct) >= 24 && strlen(ct) % 4 != 1 &&
                   is_b64url(ct, strlen(ct));
    }
    if (flat == envelope)
        return snprintf(why, size, "action.parameters_disclosure is neither form"), false;
    return true;
}

int
kn_trust_check_schema(const json_t *r, char *why, size_t size)
{
    static const member_t top[] = {
        {"@context", T_ANY, true},          {"id", T_STR, true},     {"type", T_ANY, true},
        {"version", T_STR, true},           {"issuer", T_OBJ, true}, {"issuanceDate", T_TIME, true},
        {"credentialSubject", T_OBJ, true}, {"proof", T_OBJ, true},
    };
    static const member_t issuer[] = {
        {"id", T_STR, true},        {"type", T_STR, false},  {"name", T_STR, false},
        {"operator", T_OBJ, false}, {"model", T_STR, false}, {"session_id", T_STR, false},
        {"runtime", T_OBJ, false},
    };
    static const member_t operator_[] = {{"id", T_STR, true}, {"name", T_STR, true}};
    static const member_t runtime[] = {{"agent_id", T_STR, false}, {"agent_type", T_STR, false}};
    static const member_t subject[] = {
        {"principal", T_OBJ, true},       {"action", T_OBJ, true},
        {"intent", T_OBJ, false},         {"outcome", T_OBJ, true},
        {"authorization", T_OBJ, false},  {"delegation", T_OBJ, false},
        {"chain", T_OBJ, true},           {"keyRotation", T_OBJ, false},
        {"correlation_id", T_STR, false},
    };
    static const member_t principal[] = {{"id", T_STR, true}, {"type", T_STR, false}};
    static const member_t action[] = {
        {"id", T_STR, true},
        {"type", T_STR, true},
        {"risk_level", T_STR, true},
        {"target", T_OBJ, false},
        {"parameters_hash", T_HASH, false},
        {"parameters_disclosure", T_ANY, false},
        {"peer_credential", T_OBJ, false},
        {"emitter_metadata", T_OBJ, false},
        {"timestamp", T_TIME, true},
        {"trusted_timestamp", T_STR, false},
        {"idempotency_key", T_STR, false},
    };
    static const member_t target[] = {{"system", T_STR, false}, {"resource", T_STR, false}};
    static const member_t peer[] = {{"platform", T_STR, true},
                                    {"pid", T_ANY, true},
                                    {"uid", T_INT, false},
                                    {"gid", T_INT, false},
                                    {"exe_path", T_STR, false}};
    static const member_t emitter[] = {{"drop_count", T_INT, false}};
    static const member_t intent[] = {{"conversation_hash", T_HASH, false},
                                      {"prompt_preview", T_STR, false},
                                      {"prompt_preview_truncated", T_BOOL, false},
                                      {"reasoning_hash", T_HASH, false}};
    static const member_t outcome[] = {
        {"status", T_STR, true},
        {"error", T_STR, false},
        {"reversible", T_BOOL, false},
        {"reversal_method", T_STR, false},
        {"reversal_window_seconds", T_INT, false},
        {"reversal_of", T_STR, false},
        {"state_change", T_OBJ, false},
        {"response_hash", T_HASH, false},
    };
    static const member_t state_change[] = {{"before_hash", T_HASH, true},
                                            {"after_hash", T_HASH, true}};
    static const member_t authorization[] = {{"scopes", T_STRS, true},
                                             {"granted_at", T_TIME, true},
                                             {"expires_at", T_TIME, false},
                                             {"grant_ref", T_STR, false}};
    static const member_t delegation[] = {{"parent_chain_id", T_STR, true},
                                          {"parent_receipt_id", T_STR, true},
                                          {"delegator", T_OBJ, true}};
    static const member_t delegator[] = {{"id", T_STR, true}};
    static const member_t chain[] = {{"sequence", T_INT, true},
                                     {"previous_receipt_hash", T_ANY, true},
                                     {"chain_id", T_STR, true},
                                     {"terminal", T_BOOL, false},
                                     {"status", T_STR, false}};
    static const member_t rotation[] = {
        {"event_type", T_STR, true},           {"new_public_key", T_STR, true},
        {"old_key_fingerprint", T_HASH, true}, {"new_key_fingerprint", T_HASH, true},
        {"old_algorithm", T_STR, true},        {"new_algorithm", T_STR, true},
        {"signed_with", T_STR, true},
    };
    static const member_t proof[] = {{"type", T_STR, true},
                                     {"created", T_TIME, true},
                                     {"verificationMethod", T_STR, true},
                                     {"proofPurpose", T_STR, true},
                                     {"proofValue", T_STR, true}};
    if (!CHECK(r, "receipt", top, false))
        return -1;
    const char *id = json_string_value(json_object_get(r, "id"));
    if (strncmp(id, "urn:receipt:", 12) || !is_uuid(id + 12))
        return snprintf(why, size, "id is not urn:receipt:<uuid>"), -1;
    const json_t *iss = json_object_get(r, "issuer");
    if (!CHECK(iss, "issuer", issuer, false) ||
        (json_object_get(iss, "operator") &&
         !CHECK(json_object_get(iss, "operator"), "issuer.operator", operator_, false)) ||
        (json_object_get(iss, "runtime") &&
         !CHECK(json_object_get(iss, "runtime"), "issuer.runtime", runtime, true)))
        return -1;
    const json_t *cs = json_object_get(r, "credentialSubject");
    if (!CHECK(cs, "credentialSubject", subject, true) ||
        !CHECK(json_object_get(cs, "principal"), "principal", principal, false))
        return -1;
    const char *ptype =
        json_string_value(json_object_get(json_object_get(cs, "principal"), "type"));
    if (ptype && strcmp(ptype, "HumanPrincipal") && strcmp(ptype, "OrganizationPrincipal"))
        return snprintf(why, size, "principal.type is not Human/OrganizationPrincipal"), -1;
    const json_t *a = json_object_get(cs, "action");
    if (!CHECK(a, "action", action, false))
        return -1;
    const char *aid = json_string_value(json_object_get(a, "id"));
    if (strncmp(aid, "act_", 4) || !is_uuid(aid + 4))
        return snprintf(why, size, "action.id is not act_<uuid>"), -1;
    const json_t *tg = json_object_get(a, "target");
    if (tg && !CHECK(tg, "action.target", target, false))
        return -1;
    if (!strcmp(json_string_value(json_object_get(a, "type")), "unknown") &&
        !json_is_string(json_object_get(tg, "system")))
        return snprintf(why, size, "action type unknown needs action.target.system"), -1;
    const json_t *pc = json_object_get(a, "peer_credential");
    if (pc && (!CHECK(pc, "action.peer_credential", peer, false) ||
               !is_int(json_object_get(pc, "pid"), -2147483648.0)))
        return snprintf(why, size, "action.peer_credential is malformed"), -1;
    const json_t *em = json_object_get(a, "emitter_metadata");
    if (em && !CHECK(em, "action.emitter_metadata", emitter, false))
        return -1;
    const json_t *ik = json_object_get(a, "idempotency_key");
    if (ik && json_string_length(ik) == 0)
        return snprintf(why, size, "action.idempotency_key is empty"), -1;
    const json_t *pd = json_object_get(a, "parameters_disclosure");
    if (pd && !check_disclosure(pd, why, size))
        return -1;
    const json_t *in = json_object_get(cs, "intent");
    if (in && !CHECK(in, "intent", intent, false))
        return -1;
    const json_t *out = json_object_get(cs, "outcome");
    if (!CHECK(out, "outcome", outcome, false))
        return -1;
    const json_t *sc = json_object_get(out, "state_change");
    if (sc && !CHECK(sc, "outcome.state_change", state_change, false))
        return -1;
    const char *rev = json_string_value(json_object_get(out, "reversal_of"));
    if (rev && (strncmp(rev, "urn:receipt:", 12) || !is_uuid(rev + 12)))
        return snprintf(why, size, "outcome.reversal_of is not urn:receipt:<uuid>"), -1;
    const json_t *au = json_object_get(cs, "authorization");
    if (au && !CHECK(au, "authorization", authorization, false))
        return -1;
    const json_t *dg = json_object_get(cs, "delegation");
    if (dg) {
        const char *pr = json_string_value(json_object_get(dg, "parent_receipt_id"));
        if (!CHECK(dg, "delegation", delegation, false) ||
            !CHECK(json_object_get(dg, "delegator"), "delegation.delegator", delegator, false))
            return -1;
        if (strncmp(pr, "urn:receipt:", 12) || !is_uuid(pr + 12))
            return snprintf(why, size, "delegation.parent_receipt_id is not a receipt id"), -1;
    }
    const json_t *ch = json_object_get(cs, "chain");
    if (!CHECK(ch, "chain", chain, false))
        return -1;
    if (!is_int(json_object_get(ch, "sequence"), 1))
        return snprintf(why, size, "chain.sequence must be an integer >= 1"), -1;
    const json_t *kr = json_object_get(cs, "keyRotation");
    if (kr) {
        const char *pk = json_string_value(json_object_get(kr, "new_public_key"));
        if (!CHECK(kr, "keyRotation", rotation, false))
            return -1;
        if (strcmp(json_string_value(json_object_get(kr, "event_type")), "key_rotated") ||
            strcmp(json_string_value(json_object_get(kr, "signed_with")), "old") || pk[0] != 'u' ||
            strlen(pk) < 2 || !is_b64url(pk + 1, strlen(pk) - 1) ||
            !json_string_length(json_object_get(kr, "old_algorithm")) ||
            !json_string_length(json_object_get(kr, "new_algorithm")))
            return snprintf(why, size, "keyRotation is malformed"), -1;
    }
    const json_t *corr = json_object_get(cs, "correlation_id");
    if (corr && json_string_length(corr) == 0)
        return snprintf(why, size, "correlation_id is empty"), -1;
    const json_t *pf = json_object_get(r, "proof");
    if (!CHECK(pf, "proof", proof, false))
        return -1;
    const char *pv = json_string_value(json_object_get(pf, "proofValue"));
    if (strlen(pv) != 87 || pv[0] != 'u' || !is_b64url(pv + 1, 86))
        return snprintf(why, size, "proof.proofValue is not u + 86 base64url characters"), -1;
    return 0;
}
