/* chain.c - the action taxonomy and kn_receipt_chain_t, which issues the
 * signed, linked receipts of one chain (receipt.h). */
#include "receipt.h"
#include "internal.h"
#include "jcs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* shared/receipts/action-types.json (taxonomy 0.1.0, which already carries
 * the execd types of ADR-0027). That file is the source of truth; keep this
 * table in step with it. */
static const struct {
    const char *type;
    const char *risk;
} taxonomy[] = {
    {"filesystem.file.create", "low"},
    {"filesystem.file.read", "low"},
    {"filesystem.file.modify", "medium"},
    {"filesystem.file.delete", "high"},
    {"filesystem.file.move", "medium"},
    {"filesystem.directory.create", "low"},
    {"filesystem.directory.delete", "high"},
    {"filesystem.directory.list", "low"},
    {"system.application.launch", "low"},
    {"system.application.control", "medium"},
    {"system.settings.modify", "high"},
    {"system.command.execute", "high"},
    {"system.code.execute", "high"},
    {"system.pty.open", "critical"},
    {"system.pty.close", "high"},
    {"system.browser.navigate", "low"},
    {"system.browser.form_submit", "medium"},
    {"system.browser.authenticate", "high"},
    {"network.egress.observed", "medium"},
    {"communication.email.send", "high"},
    {"communication.email.draft", "medium"},
    {"communication.email.read", "low"},
    {"communication.email.delete", "high"},
    {"communication.message.send", "high"},
    {"communication.calendar.create", "medium"},
    {"communication.calendar.modify", "medium"},
    {"communication.calendar.delete", "high"},
    {"document.file.create", "low"},
    {"document.file.modify", "medium"},
    {"document.file.delete", "high"},
    {"document.file.share", "high"},
    {"document.spreadsheet.modify_cell", "medium"},
    {"document.spreadsheet.modify_formula", "high"},
    {"document.spreadsheet.modify_structure", "medium"},
    {"document.presentation.modify_slide", "medium"},
    {"financial.payment.initiate", "critical"},
    {"financial.payment.authorize", "critical"},
    {"financial.subscription.create", "critical"},
    {"financial.subscription.cancel", "high"},
    {"financial.booking.create", "high"},
    {"financial.booking.cancel", "high"},
    {"data.api.read", "low"},
    {"data.api.write", "medium"},
    {"data.api.delete", "high"},
    {"data.database.query", "low"},
    {"data.database.modify", "high"},
    {"unknown", "medium"},
};

/* Taxonomy domains: a type starting with one of these must be listed above;
 * anything else is a custom type (spec §5.8). */
static const char *const domains[] = {"filesystem.", "system.",    "network.", "communication.",
                                      "document.",   "financial.", "data.",    NULL};

const char *
kn_receipt_taxonomy_risk(const char *action_type)
{
    for (size_t i = 0; action_type && i < sizeof taxonomy / sizeof taxonomy[0]; i++)
        if (!strcmp(taxonomy[i].type, action_type))
            return taxonomy[i].risk;
    return NULL;
}

/* execd routes (method, path with "*" for one segment) and their types;
 * type NULL: not an action. First match wins. */
static const struct {
    const char *method;
    const char *path;
    const char *type;
} execd_routes[] = {
    {"POST", "/command", "system.command.execute"},
    {"POST", "/session/*/run", "system.command.execute"},
    {"POST", "/code", "system.code.execute"},
    {"GET", "/files/download", "filesystem.file.read"},
    {"GET", "/files/info", "filesystem.file.read"},
    {"GET", "/files/search", "filesystem.directory.list"},
    {"POST", "/files/upload", "filesystem.file.create"},
    {"POST", "/files/replace", "filesystem.file.modify"},
    {"POST", "/files/permissions", "filesystem.file.modify"},
    {"POST", "/files/mv", "filesystem.file.move"},
    {"DELETE", "/files", "filesystem.file.delete"},
    {"GET", "/directories/list", "filesystem.directory.list"},
    {"POST", "/directories", "filesystem.directory.create"},
    {"DELETE", "/directories", "filesystem.directory.delete"},
    {"POST", "/pty", "system.pty.open"},
    {"DELETE", "/pty/*", "system.pty.close"},
    /* A PTY's status is not an action; its WebSocket's traffic is hashed
     * into the close receipt (docs/receipts.md). */
    {"GET", "/pty/*", NULL},
    {"GET", "/pty/*/ws", NULL},
    {"GET", "/ping", NULL},
    {"GET", "/metrics", NULL},
    {"GET", "/metrics/watch", NULL},
    {"GET", "/command/status/*", NULL},
    {"GET", "/command/*/logs", NULL},
};

/* Matches path (up to '?' or its end, n bytes) against pattern. */
static bool
route_match(const char *pattern, const char *path, size_t n)
{
    size_t i = 0;
    while (*pattern) {
        if (*pattern == '*') {
            size_t start = i;
            while (i < n && path[i] != '/')
                i++;
            if (i == start)
                return false;
            pattern++;
        } else if (i < n && path[i] == *pattern) {
            i++;
            pattern++;
        } else {
            return false;
        }
    }
    return i == n || (i + 1 == n && path[i] == '/');
}

int
kn_receipt_execd_action_type(const char *method, const char *path, const char **type)
{
    size_t n = strcspn(path, "?#");
    for (size_t i = 0; i < sizeof execd_routes / sizeof execd_routes[0]; i++) {
        if (strcmp(method, execd_routes[i].method) || !route_match(execd_routes[i].path, path, n))
            continue;
        if (!execd_routes[i].type)
            return 1;
        *type = execd_routes[i].type;
        return 0;
    }
    *type = "unknown";
    return 0;
}

static int
risk_rank(const char *risk)
{
    static const char *const levels[] = {"low", "medium", "high", "critical"};
    for (int i = 0; risk && i < 4; i++)
        if (!strcmp(levels[i], risk))
            return i;
    return -1;
}

struct kn_receipt_chain {
    kn_receipt_key_t key;
    json_t *issuer;    /* issuer object, copied into every receipt */
    json_t *principal; /* credentialSubject.principal */
    char *chain_id;
    char *verification_method;
    uint64_t sequence; /* of the last receipt issued */
    char head[KN_RECEIPT_HASH_SIZE];
    bool closed; /* a terminal receipt was issued */
};

/* Checks that every non-NULL string of list (n entries, named by names)
 * is valid UTF-8, as JSON requires: paths and commands from a sandbox need
 * not be, and the caller must encode them first. */
static int
check_utf8(const char *const *list, const char *const *names, size_t n, kn_error_t *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!list[i])
            continue;
        json_t *t = json_string(list[i]);
        if (!t)
            return kn_error_set(err, EILSEQ, "%s is not valid UTF-8", names[i]);
        json_decref(t);
    }
    return 0;
}

/* Sets key to a copy of s in obj when s is not NULL. */
static int
set_opt(json_t *obj, const char *key, const char *s)
{
    if (!s)
        return 0;
    return json_object_set_new(obj, key, json_string(s));
}

kn_receipt_chain_t *
kn_receipt_chain_new(const kn_receipt_chain_config_t *config, const kn_receipt_key_t *key,
                     kn_error_t *err)
{
    if (!config->issuer_id || !*config->issuer_id || !config->principal_id ||
        !*config->principal_id || !config->chain_id || !*config->chain_id) {
        kn_error_set(err, EINVAL,
                     "receipt chain: issuer_id, principal_id and chain_id are required");
        return NULL;
    }
    const char *strs[] = {config->issuer_id,          config->issuer_name,    config->session_id,
                          config->principal_id,       config->principal_type, config->chain_id,
                          config->verification_method};
    const char *names[] = {"issuer_id",      "issuer_name", "session_id",         "principal_id",
                           "principal_type", "chain_id",    "verification_method"};
    if (check_utf8(strs, names, sizeof strs / sizeof strs[0], err) < 0)
        return NULL;
    if (config->runtime && !json_is_object(config->runtime)) {
        kn_error_set(err, EINVAL, "receipt chain: issuer runtime must be a JSON object");
        return NULL;
    }
    kn_receipt_chain_t *c = calloc(1, sizeof *c);
    if (!c) {
        kn_error_set(err, ENOMEM, "receipt chain");
        return NULL;
    }
    memcpy(&c->key, key, sizeof c->key);
    c->issuer = json_pack("{s:s}", "id", config->issuer_id);
    c->principal = json_pack("{s:s}", "id", config->principal_id);
    c->chain_id = strdup(config->chain_id);
    if (config->verification_method)
        c->verification_method = strdup(config->verification_method);
    else if (asprintf(&c->verification_method, "%s#key-1", config->issuer_id) < 0)
        c->verification_method = NULL;
    int bad = !c->issuer || !c->principal || !c->chain_id || !c->verification_method;
    if (!bad) {
        bad |= set_opt(c->issuer, "name", config->issuer_name) < 0;
        bad |= set_opt(c->issuer, "session_id", config->session_id) < 0;
        bad |= set_opt(c->principal, "type", config->principal_type) < 0;
        if (config->runtime)
            bad |= json_object_set_new(c->issuer, "runtime", json_deep_copy(config->runtime)) < 0;
    }
    if (bad) {
        kn_receipt_chain_free(c);
        kn_error_set(err, ENOMEM, "receipt chain");
        return NULL;
    }
    return c;
}

void
kn_receipt_chain_free(kn_receipt_chain_t *chain)
{
    if (!chain)
        return;
    kn_receipt_key_wipe(&chain->key);
    json_decref(chain->issuer);
    json_decref(chain->principal);
    free(chain->chain_id);
    free(chain->verification_method);
    free(chain);
}

uint64_t
kn_receipt_chain_sequence(const kn_receipt_chain_t *chain)
{
    return chain->sequence;
}

const char *
kn_receipt_chain_head(const kn_receipt_chain_t *chain)
{
    return chain->sequence ? chain->head : NULL;
}

int
kn_receipt_chain_resume_at(kn_receipt_chain_t *chain, uint64_t sequence, const char *hash,
                           bool terminal, kn_error_t *err)
{
    if (sequence < 1 || sequence > 9007199254740992ULL || !hash ||
        strlen(hash) != KN_RECEIPT_HASH_SIZE - 1 || strncmp(hash, "sha256:", 7))
        return kn_error_set(err, EINVAL, "resume: bad sequence or hash");
    memcpy(chain->head, hash, KN_RECEIPT_HASH_SIZE);
    chain->sequence = sequence;
    chain->closed = terminal;
    return 0;
}

int
kn_receipt_chain_resume(kn_receipt_chain_t *chain, const json_t *last_receipt, kn_error_t *err)
{
    const json_t *ch = json_object_get(json_object_get(last_receipt, "credentialSubject"), "chain");
    const char *id = json_string_value(json_object_get(ch, "chain_id"));
    const json_t *seq = json_object_get(ch, "sequence");
    double d = json_is_integer(seq) ? (double)json_integer_value(seq) : json_real_value(seq);
    if (!id || !json_is_number(seq) || d < 1 || d > 9007199254740992.0 || d != (double)(uint64_t)d)
        return kn_error_set(err, EINVAL, "resume: not a receipt with chain fields");
    if (strcmp(id, chain->chain_id))
        return kn_error_set(err, EINVAL, "resume: receipt belongs to chain \"%s\", not \"%s\"", id,
                            chain->chain_id);
    if (json_is_true(json_object_get(ch, "terminal")))
        return kn_error_set(err, EPIPE, "resume: chain \"%s\" was closed by a terminal receipt",
                            id);
    char hash[KN_RECEIPT_HASH_SIZE];
    if (kn_receipt_hash(last_receipt, hash, err) < 0)
        return kn_error_prefix(err, "resume");
    memcpy(chain->head, hash, sizeof hash);
    chain->sequence = (uint64_t)d;
    return 0;
}

/* A random RFC 4122 version 4 UUID, lowercase. */
static void
uuid_v4(char out[37])
{
    unsigned char b[16];
    randombytes_buf(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

/* Picks the risk level: the taxonomy default, or the caller's if it is not
 * lower (spec §6: escalate, never downgrade). Custom types must say theirs. */
static const char *
choose_risk(const kn_receipt_action_t *a, kn_error_t *err)
{
    const char *def = kn_receipt_taxonomy_risk(a->type);
    if (!def) {
        for (size_t i = 0; domains[i]; i++)
            if (!strncmp(a->type, domains[i], strlen(domains[i]))) {
                kn_error_set(err, EINVAL, "action type \"%s\" is not in the taxonomy", a->type);
                return NULL;
            }
        if (!strchr(a->type, '.') || risk_rank(a->risk_level) < 0) {
            kn_error_set(err, EINVAL,
                         "custom action type \"%s\" needs a reverse-domain name and a risk level",
                         a->type);
            return NULL;
        }
        return a->risk_level;
    }
    if (!a->risk_level)
        return def;
    if (risk_rank(a->risk_level) < 0) {
        kn_error_set(err, EINVAL, "risk level \"%s\" is not low/medium/high/critical",
                     a->risk_level);
        return NULL;
    }
    if (risk_rank(a->risk_level) < risk_rank(def)) {
        kn_error_set(err, EINVAL, "risk level of %s may not go below %s", a->type, def);
        return NULL;
    }
    return a->risk_level;
}

static int
check_action(const kn_receipt_action_t *a, kn_error_t *err)
{
    const char *status = a->status ? a->status : "success";
    if (!a->type || !*a->type)
        return kn_error_set(err, EINVAL, "action type is required");
    if (strcmp(status, "success") && strcmp(status, "failure") && strcmp(status, "pending"))
        return kn_error_set(err, EINVAL, "outcome status \"%s\" is not success/failure/pending",
                            status);
    if (!strcmp(a->type, "unknown") && (!a->target_system || !*a->target_system))
        return kn_error_set(err, EINVAL, "action type \"unknown\" needs target_system");
    if (a->idempotency_key && !*a->idempotency_key)
        return kn_error_set(err, EINVAL, "idempotency key must not be empty");
    if (a->correlation_id && !*a->correlation_id)
        return kn_error_set(err, EINVAL, "correlation id must not be empty");
    const char *strs[] = {
        a->type,          a->risk_level,      a->target_system, a->target_resource,
        a->error,         a->idempotency_key, a->timestamp,     a->uuid,
        a->correlation_id};
    const char *names[] = {"action type",     "risk level", "target system",
                           "target resource", "error",      "idempotency key",
                           "timestamp",       "uuid",       "correlation id"};
    if (check_utf8(strs, names, sizeof strs / sizeof strs[0], err) < 0)
        return -1;
    if ((a->uuid && strlen(a->uuid) != 36) ||
        (a->timestamp && strlen(a->timestamp) >= KN_TRUST_TIME_SIZE))
        return kn_error_set(err, EINVAL, "uuid must be 36 characters, timestamp ISO 8601");
    if (a->chain_status && (!a->terminal || (strcmp(a->chain_status, "complete") &&
                                             strcmp(a->chain_status, "interrupted"))))
        return kn_error_set(err, EINVAL, "chain status needs terminal and complete/interrupted");
    return 0;
}

/* The action object of a receipt (without signing concerns). */
static json_t *
build_action(const kn_receipt_action_t *a, const char *risk, const char *uuid, const char *when,
             kn_error_t *err)
{
    char id[48], hash[KN_RECEIPT_HASH_SIZE];
    snprintf(id, sizeof id, "act_%s", uuid);
    json_t *action = json_pack("{s:s, s:s, s:s, s:s}", "id", id, "type", a->type, "risk_level",
                               risk, "timestamp", when);
    if (!action) {
        kn_error_set(err, ENOMEM, "receipt action");
        return NULL;
    }
    int bad = 0;
    if (a->target_system || a->target_resource) {
        json_t *target = json_object();
        bad |= !target || set_opt(target, "system", a->target_system) < 0 ||
               set_opt(target, "resource", a->target_resource) < 0 ||
               json_object_set_new(action, "target", target) < 0;
    }
    bad |= set_opt(action, "idempotency_key", a->idempotency_key) < 0;
    if (a->drop_count)
        bad |= json_object_set_new(action, "emitter_metadata",
                                   json_pack("{s:I}", "drop_count", (json_int_t)a->drop_count)) < 0;
    if (bad) {
        json_decref(action);
        kn_error_set(err, ENOMEM, "receipt action");
        return NULL;
    }
    if (a->parameters) {
        if (kn_receipt_hash_json(a->parameters, hash, err) < 0) {
            json_decref(action);
            kn_error_prefix(err, "parameters");
            return NULL;
        }
        if (json_object_set_new(action, "parameters_hash", json_string(hash)) < 0) {
            json_decref(action);
            kn_error_set(err, ENOMEM, "receipt action");
            return NULL;
        }
    }
    return action;
}

static json_t *
build_outcome(const kn_receipt_action_t *a, kn_error_t *err)
{
    char hash[KN_RECEIPT_HASH_SIZE];
    json_t *outcome = json_pack("{s:s}", "status", a->status ? a->status : "success");
    if (!outcome || set_opt(outcome, "error", a->error) < 0) {
        json_decref(outcome);
        kn_error_set(err, ENOMEM, "receipt outcome");
        return NULL;
    }
    if (a->response) {
        if (kn_receipt_hash_json(a->response, hash, err) < 0) {
            json_decref(outcome);
            kn_error_prefix(err, "response");
            return NULL;
        }
        if (json_object_set_new(outcome, "response_hash", json_string(hash)) < 0) {
            json_decref(outcome);
            kn_error_set(err, ENOMEM, "receipt outcome");
            return NULL;
        }
    }
    return outcome;
}

static json_t *
build_chain_fields(const kn_receipt_chain_t *c, const kn_receipt_action_t *a)
{
    json_t *ch = json_pack(
        "{s:I, s:o, s:s}", "sequence", (json_int_t)(c->sequence + 1), "previous_receipt_hash",
        c->sequence ? json_string(c->head) : json_null(), "chain_id", c->chain_id);
    if (ch && a->terminal) {
        if (json_object_set_new(ch, "terminal", json_true()) < 0 ||
            set_opt(ch, "status", a->chain_status) < 0) {
            json_decref(ch);
            return NULL;
        }
    }
    return ch;
}

/* The unsigned receipt for action a as the next one of chain c. */
static json_t *
build_receipt(const kn_receipt_chain_t *c, const kn_receipt_action_t *a, const char *when,
              kn_error_t *err)
{
    char uuid[37], rid[64];
    const char *risk = choose_risk(a, err);
    if (!risk)
        return NULL;
    if (a->uuid)
        snprintf(uuid, sizeof uuid, "%s", a->uuid);
    else
        uuid_v4(uuid);
    snprintf(rid, sizeof rid, "urn:receipt:%s", uuid);
    json_t *action = build_action(a, risk, uuid, when, err);
    if (!action)
        return NULL;
    json_t *outcome = build_outcome(a, err);
    if (!outcome) {
        json_decref(action);
        return NULL;
    }
    json_t *chain = build_chain_fields(c, a);
    json_t *principal = json_deep_copy(c->principal), *issuer = json_deep_copy(c->issuer);
    /* json_pack's "o" steals its references even when it fails. */
    json_t *r =
        json_pack("{s:[s,s], s:s, s:[s,s], s:s, s:o, s:s, s:{s:o, s:o, s:o, s:o}}", "@context",
                  KN_RECEIPT_CONTEXT_VC, KN_RECEIPT_CONTEXT_AR, "id", rid, "type",
                  "VerifiableCredential", "AgentReceipt", "version", KN_RECEIPT_SPEC_VERSION,
                  "issuer", issuer, "issuanceDate", when, "credentialSubject", "principal",
                  principal, "action", action, "outcome", outcome, "chain", chain);
    if (r && a->correlation_id &&
        json_object_set_new(json_object_get(r, "credentialSubject"), "correlation_id",
                            json_string(a->correlation_id)) < 0) {
        json_decref(r);
        r = NULL;
    }
    if (!r)
        kn_error_set(err, ENOMEM, "building receipt");
    return r;
}

/* Builds, signs (with the chain's current key) and links the next receipt.
 * rotation, if not NULL, becomes credentialSubject.keyRotation; it is
 * stolen in every case. */
static json_t *
issue(kn_receipt_chain_t *chain, const kn_receipt_action_t *action, json_t *rotation, char *hash,
      char **text, kn_error_t *err)
{
    char when[KN_TRUST_TIME_SIZE], h[KN_RECEIPT_HASH_SIZE];
    json_t *r = NULL;
    if (chain->closed) {
        kn_error_set(err, EPIPE, "chain \"%s\" is closed by a terminal receipt", chain->chain_id);
        goto fail;
    }
    if (check_action(action, err) < 0 || kn_trust_sodium_init(err) < 0)
        goto fail;
    if (action->timestamp)
        snprintf(when, sizeof when, "%s", action->timestamp);
    else if (kn_trust_now(when, sizeof when, err) < 0)
        goto fail;
    r = build_receipt(chain, action, when, err);
    if (!r)
        goto fail;
    if (rotation) {
        json_t *subject = json_object_get(r, "credentialSubject");
        int rc = json_object_set_new(subject, "keyRotation", rotation);
        rotation = NULL;
        if (rc < 0) {
            kn_error_set(err, ENOMEM, "building key rotation");
            goto fail;
        }
    }
    if (kn_trust_sign_text(r, &chain->key, chain->verification_method, when, h, text, err) < 0)
        goto fail;
    chain->sequence++;
    memcpy(chain->head, h, sizeof h);
    chain->closed = action->terminal;
    if (hash)
        memcpy(hash, h, sizeof h);
    return r;
fail:
    json_decref(rotation);
    json_decref(r);
    return NULL;
}

json_t *
kn_receipt_chain_append(kn_receipt_chain_t *chain, const kn_receipt_action_t *action, char *hash,
                        kn_error_t *err)
{
    return issue(chain, action, NULL, hash, NULL, err);
}

json_t *
kn_receipt_chain_append_text(kn_receipt_chain_t *chain, const kn_receipt_action_t *action,
                             char *hash, char **text, kn_error_t *err)
{
    *text = NULL;
    return issue(chain, action, NULL, hash, text, err);
}

json_t *
kn_receipt_chain_rotate(kn_receipt_chain_t *chain, const kn_receipt_key_t *new_key,
                        const char *timestamp, char *hash, kn_error_t *err)
{
    char mb[KN_RECEIPT_MULTIBASE_KEY_SIZE], old_fp[KN_RECEIPT_HASH_SIZE],
        new_fp[KN_RECEIPT_HASH_SIZE];
    kn_receipt_public_key_encode(new_key->public_key, mb);
    kn_receipt_hash_bytes(chain->key.public_key, KN_RECEIPT_PUBLIC_KEY_SIZE, old_fp);
    kn_receipt_hash_bytes(new_key->public_key, KN_RECEIPT_PUBLIC_KEY_SIZE, new_fp);
    json_t *rotation = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "event_type", "key_rotated",
                                 "new_public_key", mb, "old_key_fingerprint", old_fp,
                                 "new_key_fingerprint", new_fp, "old_algorithm", "ed25519",
                                 "new_algorithm", "ed25519", "signed_with", "old");
    if (!rotation) {
        kn_error_set(err, ENOMEM, "building key rotation");
        return NULL;
    }
    kn_receipt_action_t a = {
        .type = KN_RECEIPT_ROTATION_TYPE, .risk_level = "high", .timestamp = timestamp};
    json_t *r = issue(chain, &a, rotation, hash, NULL, err);
    if (r)
        memcpy(&chain->key, new_key, sizeof chain->key);
    return r;
}
