/* receipt.c - hashing, signing and verifying Agent Receipts (receipt.h). */
#include "receipt.h"
#include "internal.h"
#include "jcs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <sodium.h>

#define SIGNATURE_SIZE crypto_sign_BYTES

/* ---- small JSON accessors ----------------------------------------------- */

static const char *
str_member(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* A JSON number holding a non-negative integer no larger than 2^53 (the
 * exact range of a double; kn_jcs_parse() reads every number as one). */
static int
u64_value(const json_t *v, uint64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0 || i > (json_int_t)1 << 53)
            return -1;
        *out = (uint64_t)i;
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d)
            return -1;
        *out = (uint64_t)d;
        return 0;
    }
    return -1;
}

static bool
is_hash_tag(const char *s)
{
    if (!s || strncmp(s, "sha256:", 7) != 0 || strlen(s) != 71)
        return false;
    for (const char *p = s + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

static bool
in_list(const char *s, const char *const *list)
{
    for (; s && *list; list++)
        if (!strcmp(s, *list))
            return true;
    return false;
}

/* ---- time and libsodium -------------------------------------------------- */

int
kn_trust_now(char *out, size_t size, kn_error_t *err)
{
    time_t t = time(NULL);
    struct tm tm;
    if (t == (time_t)-1 || !gmtime_r(&t, &tm))
        return kn_error_set(err, errno ? errno : EINVAL, "reading the clock");
    if (strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return kn_error_set(err, ENOBUFS, "formatting the time");
    return 0;
}

/* ---- hashing ------------------------------------------------------------- */

/* OpenSSL's SHA-256 uses the CPU's SHA extensions where it has them: 1.3 us
 * for a 1.5 KB receipt here against libsodium's 5 us, and the server hashes
 * about six such payloads per proxied call. libsodium stays the fallback
 * (both compute the same function). */
void
kn_receipt_hash_bytes(const void *data, size_t len, char *out)
{
    unsigned char digest[crypto_hash_sha256_BYTES];
    unsigned int n = 0;
    if (EVP_Digest(data, len, digest, &n, EVP_sha256(), NULL) != 1 || n != sizeof digest)
        crypto_hash_sha256(digest, data, len);
    memcpy(out, "sha256:", 7);
    sodium_bin2hex(out + 7, KN_RECEIPT_HASH_SIZE - 7, digest, sizeof digest);
}

int
kn_receipt_hash_json(const json_t *value, char *out, kn_error_t *err)
{
    size_t len;
    char *c = kn_jcs_canonicalize(value, &len, err);
    if (!c)
        return -1;
    kn_receipt_hash_bytes(c, len, out);
    free(c);
    return 0;
}

/* Where nulls() is in the receipt: the only places its rule differs. */
typedef enum null_scope {
    SCOPE_TOP,     /* the receipt object */
    SCOPE_ISSUER,  /* issuer */
    SCOPE_SUBJECT, /* credentialSubject */
    SCOPE_CHAIN,   /* credentialSubject.chain */
    SCOPE_OTHER,
} null_scope_t;

static bool
key_is(const char *key, size_t len, const char *name)
{
    return len == strlen(name) && !memcmp(key, name, len);
}

static null_scope_t
child_scope(null_scope_t scope, const char *key, size_t len)
{
    if (scope == SCOPE_TOP && key_is(key, len, "issuer"))
        return SCOPE_ISSUER;
    if (scope == SCOPE_TOP && key_is(key, len, "credentialSubject"))
        return SCOPE_SUBJECT;
    if (scope == SCOPE_SUBJECT && key_is(key, len, "chain"))
        return SCOPE_CHAIN;
    return SCOPE_OTHER;
}

/* Finds, and with drop removes, the null-valued members of every object in
 * v (spec §7.1.1), except the one required-nullable member,
 * credentialSubject.chain.previous_receipt_hash, and anything inside
 * issuer.runtime, which is an opaque JSON literal (ADR-0026). Nulls inside
 * arrays are values, not absent members, and stay. Returns whether there
 * was one (without drop: stops at the first). */
static bool
nulls(json_t *v, null_scope_t scope, bool drop)
{
    bool found = false;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v) && (drop || !found); i++)
            found = nulls(json_array_get(v, i), SCOPE_OTHER, drop) || found;
        return found;
    }
    if (!json_is_object(v))
        return false;
    const char *key;
    size_t len;
    json_t *val;
    void *tmp;
    json_object_keylen_foreach_safe(v, tmp, key, len, val)
    {
        if (!drop && found)
            break;
        if (scope == SCOPE_ISSUER && key_is(key, len, "runtime"))
            continue;
        if (!json_is_null(val)) {
            found = nulls(val, child_scope(scope, key, len), drop) || found;
        } else if (!(scope == SCOPE_CHAIN && key_is(key, len, "previous_receipt_hash"))) {
            found = true;
            if (drop)
                json_object_deln(v, key, len);
        }
    }
    return found;
}

json_t *
kn_receipt_unsigned(const json_t *receipt, kn_error_t *err)
{
    if (!json_is_object(receipt)) {
        kn_error_set(err, EINVAL, "a receipt must be a JSON object");
        return NULL;
    }
    json_t *copy = json_deep_copy(receipt);
    if (!copy) {
        kn_error_set(err, ENOMEM, "copying receipt");
        return NULL;
    }
    json_object_del(copy, "proof");
    nulls(copy, SCOPE_TOP, true);
    return copy;
}

char *
kn_receipt_canonical(const json_t *receipt, size_t *len, kn_error_t *err)
{
    json_t *u = kn_receipt_unsigned(receipt, err);
    if (!u)
        return NULL;
    char *c = kn_jcs_canonicalize(u, len, err);
    json_decref(u);
    if (!c)
        kn_error_prefix(err, "canonical receipt");
    return c;
}

int
kn_receipt_hash(const json_t *receipt, char *out, kn_error_t *err)
{
    size_t len;
    char *c = kn_receipt_canonical(receipt, &len, err);
    if (!c)
        return -1;
    kn_receipt_hash_bytes(c, len, out);
    free(c);
    return 0;
}

/* ---- signing ------------------------------------------------------------- */

int
kn_receipt_sign(json_t *receipt, const kn_receipt_key_t *key, const char *verification_method,
                const char *created, kn_error_t *err)
{
    return kn_trust_sign_hash(receipt, key, verification_method, created, NULL, err);
}

/* The canonical text of the signed receipt from c, the canonical text of
 * the same receipt without its proof (nothing dropped from it), and the
 * proof: "proof" goes before the top-level members whose names sort after
 * it (RFC 8785 order), whose canonical length is computed here. NULL when
 * that does not add up (the caller serializes the receipt itself). */
static char *
splice_proof(const json_t *receipt, const char *c, size_t len, const json_t *proof)
{
    size_t tail = 1, n = 0, after = 0; /* the closing brace */
    const char *key;
    json_t *val;
    kn_error_t e = {0};
    json_object_foreach((json_t *)receipt, key, val)
    {
        if (!strcmp(key, "proof") || kn_jcs_compare_names(key, "proof") < 0)
            continue;
        json_t *k = json_string(key);
        char *ck = k ? kn_jcs_canonicalize(k, &n, &e) : NULL;
        json_decref(k);
        if (!ck)
            return NULL;
        free(ck);
        tail += 1 + n + 1; /* ,"name": */
        char *cv = kn_jcs_canonicalize(val, &n, &e);
        if (!cv)
            return NULL;
        free(cv);
        tail += n;
        after++;
    }
    size_t pn = 0;
    char *cp = kn_jcs_canonicalize(proof, &pn, &e);
    if (!cp || tail >= len || c[len - tail] != (after ? ',' : '}')) {
        free(cp);
        return NULL;
    }
    size_t at = len - tail, add = strlen(",\"proof\":") + pn;
    char *out = malloc(len + add + 1);
    if (out) {
        memcpy(out, c, at);
        memcpy(out + at, ",\"proof\":", 9);
        memcpy(out + at + 9, cp, pn);
        memcpy(out + at + add, c + at, len - at);
        out[len + add] = '\0';
    }
    free(cp);
    return out;
}

int
kn_trust_sign_hash(json_t *receipt, const kn_receipt_key_t *key, const char *verification_method,
                   const char *created, char *hash, kn_error_t *err)
{
    return kn_trust_sign_text(receipt, key, verification_method, created, hash, NULL, err);
}

int
kn_trust_sign_text(json_t *receipt, const kn_receipt_key_t *key, const char *verification_method,
                   const char *created, char *hash, char **text, kn_error_t *err)
{
    char now[KN_TRUST_TIME_SIZE];
    if (!verification_method || !*verification_method)
        return kn_error_set(err, EINVAL, "sign: no verification method");
    if (kn_trust_sodium_init(err) < 0)
        return -1;
    if (!created) {
        if (kn_trust_now(now, sizeof now, err) < 0)
            return -1;
        created = now;
    }
    size_t len;
    /* A receipt without proof and without nulls to drop is its own
     * unsigned form: no copy, and its signed text follows from c. */
    bool plain = json_is_object(receipt) && !json_object_get(receipt, "proof") &&
                 !nulls(receipt, SCOPE_TOP, false);
    char *c =
        plain ? kn_jcs_canonicalize(receipt, &len, err) : kn_receipt_canonical(receipt, &len, err);
    if (!c)
        return -1;
    unsigned char sig[SIGNATURE_SIZE];
    crypto_sign_detached(sig, NULL, (const unsigned char *)c, len, key->secret_key);
    /* The receipt hash covers the same bytes as the signature. */
    if (hash)
        kn_receipt_hash_bytes(c, len, hash);
    char value[1 +
               sodium_base64_ENCODED_LEN(SIGNATURE_SIZE, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    value[0] = 'u';
    sodium_bin2base64(value + 1, sizeof value - 1, sig, sizeof sig,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    json_t *proof = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", KN_RECEIPT_PROOF_TYPE, "created",
                              created, "verificationMethod", verification_method, "proofPurpose",
                              KN_RECEIPT_PROOF_PURPOSE, "proofValue", value);
    if (text)
        *text = plain && proof ? splice_proof(receipt, c, len, proof) : NULL;
    free(c);
    if (!proof || json_object_set_new(receipt, "proof", proof) < 0) {
        if (text) {
            free(*text);
            *text = NULL;
        }
        return kn_error_set(err, ENOMEM, "sign: building proof");
    }
    return 0;
}

/* ---- verification -------------------------------------------------------- */

static const char *const check_names[] = {
    [KN_RECEIPT_VALID] = "valid",
    [KN_RECEIPT_MALFORMED] = "malformed",
    [KN_RECEIPT_BAD_PROOF_TYPE] = "bad_proof_type",
    [KN_RECEIPT_BAD_PROOF_PURPOSE] = "bad_proof_purpose",
    [KN_RECEIPT_BAD_PROOF_VALUE] = "bad_proof_value",
    [KN_RECEIPT_BAD_SIGNATURE] = "bad_signature",
    [KN_RECEIPT_BAD_RESPONSE_HASH] = "bad_response_hash",
    [KN_RECEIPT_CHAIN_EMPTY] = "chain_empty",
    [KN_RECEIPT_CHAIN_ID_MISMATCH] = "chain_id_mismatch",
    [KN_RECEIPT_ISSUER_MISMATCH] = "issuer_mismatch",
    [KN_RECEIPT_AFTER_TERMINAL] = "receipt_after_terminal",
    [KN_RECEIPT_BAD_SEQUENCE] = "bad_sequence",
    [KN_RECEIPT_BAD_GENESIS] = "bad_genesis",
    [KN_RECEIPT_BAD_LINK] = "bad_link",
    [KN_RECEIPT_BAD_KEY_ROTATION] = "bad_key_rotation",
    [KN_RECEIPT_LENGTH_MISMATCH] = "length_mismatch",
    [KN_RECEIPT_FINAL_HASH_MISMATCH] = "final_hash_mismatch",
    [KN_RECEIPT_NOT_TERMINAL] = "not_terminal",
};

const char *
kn_receipt_check_name(kn_receipt_check_t check)
{
    if ((size_t)check < sizeof check_names / sizeof check_names[0] && check_names[check])
        return check_names[check];
    return "unknown_check";
}

/* Records a failed check in verdict (if any) and err; returns -1. */
static int __attribute__((format(printf, 5, 6)))
fail(kn_receipt_verdict_t *verdict, kn_error_t *err, kn_receipt_check_t check, size_t index,
     const char *fmt, ...)
{
    char reason[KN_RECEIPT_REASON_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    if (verdict) {
        verdict->check = check;
        verdict->index = index;
        memcpy(verdict->reason, reason, sizeof reason);
    }
    return kn_error_set(err, 0, "%s: %s", kn_receipt_check_name(check), reason);
}

static const char *const versions[] = {"0.1.0", "0.2.0", "0.2.1", "0.3.0", "0.4.0", "0.5.0", NULL};
static const char *const risk_levels[] = {"low", "medium", "high", "critical", NULL};
static const char *const statuses[] = {"success", "failure", "pending", NULL};
static const char *const chain_statuses[] = {"complete", "interrupted", NULL};

/* Required string members of the objects the schema defines, checked as
 * "<object path>" then its members. */
typedef struct shape_rule {
    const char *object; /* member of credentialSubject, "" for top, "issuer", "proof" */
    const char *members[5];
} shape_rule_t;

static const json_t *
shape_object(const json_t *r, const char *name)
{
    if (!*name)
        return r;
    if (!strcmp(name, "issuer") || !strcmp(name, "proof"))
        return json_object_get(r, name);
    return json_object_get(json_object_get(r, "credentialSubject"), name);
}

/* Spec §4.3 / the JSON schema's required members and the enums a verifier
 * relies on. Identifier formats (urn:receipt:<uuid>, act_<uuid>) are not
 * checked: receipts of 0.1.0-0.2.0 predate them and still verify. */
static kn_receipt_check_t
check_shape(const json_t *r, char *why, size_t size)
{
    static const shape_rule_t rules[] = {
        {"", {"id", "version", "issuanceDate"}},
        {"issuer", {"id"}},
        {"principal", {"id"}},
        {"action", {"id", "type", "risk_level", "timestamp"}},
        {"outcome", {"status"}},
        {"chain", {"chain_id"}},
        {"proof", {"type", "created", "verificationMethod", "proofPurpose", "proofValue"}},
    };
    if (!json_is_object(r))
        return snprintf(why, size, "receipt is not a JSON object"), KN_RECEIPT_MALFORMED;
    const json_t *ctx = json_object_get(r, "@context"), *type = json_object_get(r, "type");
    if (json_array_size(ctx) < 2 || !json_is_string(json_array_get(ctx, 0)) ||
        !json_is_string(json_array_get(ctx, 1)))
        return snprintf(why, size, "@context must list at least two URIs"), KN_RECEIPT_MALFORMED;
    if (json_array_size(type) != 2 ||
        strcmp(json_string_value(json_array_get(type, 0)) ?: "", "VerifiableCredential") ||
        strcmp(json_string_value(json_array_get(type, 1)) ?: "", "AgentReceipt"))
        return snprintf(why, size, "type must be [\"VerifiableCredential\", \"AgentReceipt\"]"),
               KN_RECEIPT_MALFORMED;
    if (!json_is_object(json_object_get(r, "credentialSubject")))
        return snprintf(why, size, "credentialSubject missing"), KN_RECEIPT_MALFORMED;
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        const json_t *o = shape_object(r, rules[i].object);
        if (!json_is_object(o))
            return snprintf(why, size, "%s missing or not an object", rules[i].object),
                   KN_RECEIPT_MALFORMED;
        for (size_t j = 0; j < 5 && rules[i].members[j]; j++)
            if (!json_is_string(json_object_get(o, rules[i].members[j])))
                return snprintf(why, size, "%s%s%s missing or not a string", rules[i].object,
                                *rules[i].object ? "." : "", rules[i].members[j]),
                       KN_RECEIPT_MALFORMED;
    }
    const char *version = str_member(r, "version");
    if (!in_list(version, versions))
        return snprintf(why, size, "unsupported version"), KN_RECEIPT_MALFORMED;
    /* The schema pins the context to the version: v1 up to 0.4.0, v2 from
     * 0.5.0 (which defines issuer.runtime). */
    const char *ar_ctx =
        !strcmp(version, "0.5.0") ? KN_RECEIPT_CONTEXT_AR : "https://agentreceipts.ai/context/v1";
    if (strcmp(json_string_value(json_array_get(ctx, 0)), KN_RECEIPT_CONTEXT_VC) ||
        strcmp(json_string_value(json_array_get(ctx, 1)), ar_ctx))
        return snprintf(why, size, "@context must start with %s, %s for version %s",
                        KN_RECEIPT_CONTEXT_VC, ar_ctx, version),
               KN_RECEIPT_MALFORMED;
    const json_t *cs = json_object_get(r, "credentialSubject");
    const json_t *action = json_object_get(cs, "action"), *chain = json_object_get(cs, "chain");
    if (!in_list(str_member(action, "risk_level"), risk_levels))
        return snprintf(why, size, "action.risk_level not low/medium/high/critical"),
               KN_RECEIPT_MALFORMED;
    if (!in_list(str_member(json_object_get(cs, "outcome"), "status"), statuses))
        return snprintf(why, size, "outcome.status not success/failure/pending"),
               KN_RECEIPT_MALFORMED;
    const char *hashes[][2] = {{"parameters_hash", NULL}, {"response_hash", NULL}};
    hashes[0][1] = str_member(action, "parameters_hash");
    hashes[1][1] = str_member(json_object_get(cs, "outcome"), "response_hash");
    for (size_t i = 0; i < 2; i++)
        if (hashes[i][1] && !is_hash_tag(hashes[i][1]))
            return snprintf(why, size, "%s is not sha256:<64 hex>", hashes[i][0]),
                   KN_RECEIPT_MALFORMED;
    uint64_t seq;
    if (u64_value(json_object_get(chain, "sequence"), &seq) < 0 || seq < 1)
        return snprintf(why, size, "chain.sequence must be an integer >= 1"), KN_RECEIPT_MALFORMED;
    const json_t *prev = json_object_get(chain, "previous_receipt_hash");
    if (!prev || (!json_is_null(prev) && !is_hash_tag(json_string_value(prev))))
        return snprintf(why, size, "chain.previous_receipt_hash must be null or sha256:<hex>"),
               KN_RECEIPT_MALFORMED;
    const json_t *terminal = json_object_get(chain, "terminal");
    if (terminal && !json_is_true(terminal))
        return snprintf(why, size, "chain.terminal, when present, must be true"),
               KN_RECEIPT_MALFORMED;
    const json_t *cstatus = json_object_get(chain, "status");
    if (cstatus && (!terminal || !in_list(json_string_value(cstatus), chain_statuses)))
        return snprintf(why, size, "chain.status needs terminal and complete/interrupted"),
               KN_RECEIPT_MALFORMED;
    /* 0.5.0 receipts: the whole schema (older ones predate its formats). */
    if (!strcmp(version, "0.5.0") && kn_trust_check_schema(r, why, size) < 0)
        return KN_RECEIPT_MALFORMED;
    return KN_RECEIPT_VALID;
}

/* Checks the proof fields and the signature over the canonical bytes of r
 * under public_key; on success also returns the receipt hash. */
static int
check_signature(const json_t *r, const unsigned char *public_key, size_t index,
                kn_receipt_verdict_t *verdict, char *hash, kn_error_t *err)
{
    const json_t *proof = json_object_get(r, "proof");
    const char *ptype = str_member(proof, "type"), *value = str_member(proof, "proofValue");
    if (strcmp(ptype, KN_RECEIPT_PROOF_TYPE) != 0)
        return fail(verdict, err, KN_RECEIPT_BAD_PROOF_TYPE, index,
                    "proof.type is \"%.64s\", not " KN_RECEIPT_PROOF_TYPE, ptype);
    if (strcmp(str_member(proof, "proofPurpose"), KN_RECEIPT_PROOF_PURPOSE) != 0)
        return fail(verdict, err, KN_RECEIPT_BAD_PROOF_PURPOSE, index,
                    "proof.proofPurpose is not " KN_RECEIPT_PROOF_PURPOSE);
    unsigned char sig[SIGNATURE_SIZE + 1];
    size_t siglen = 0;
    if (value[0] != 'u')
        return fail(verdict, err, KN_RECEIPT_BAD_PROOF_VALUE, index,
                    "proofValue is not multibase base64url (prefix 'u')");
    if (sodium_base642bin(sig, sizeof sig, value + 1, strlen(value + 1), NULL, &siglen, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        siglen != SIGNATURE_SIZE)
        return fail(verdict, err, KN_RECEIPT_BAD_PROOF_VALUE, index,
                    "proofValue is not base64url of a 64-byte signature");
    kn_error_t e = {0};
    size_t len;
    char *c = kn_receipt_canonical(r, &len, &e);
    if (!c)
        return fail(verdict, err, KN_RECEIPT_MALFORMED, index, "%s", e.msg);
    int ok = crypto_sign_verify_detached(sig, (const unsigned char *)c, len, public_key) == 0;
    if (ok && hash)
        kn_receipt_hash_bytes(c, len, hash);
    free(c);
    if (!ok)
        return fail(verdict, err, KN_RECEIPT_BAD_SIGNATURE, index,
                    "Ed25519 signature does not verify under the issuer key");
    return 0;
}

/* Validates a keyRotation block signed under active (§7.3.7 step 2); on
 * success writes the incoming key to next. */
static int
check_rotation(const json_t *kr, const unsigned char *active, unsigned char *next, size_t index,
               kn_receipt_verdict_t *verdict, kn_error_t *err)
{
    const char *fields[] = {"event_type",          "new_public_key", "old_key_fingerprint",
                            "new_key_fingerprint", "old_algorithm",  "new_algorithm",
                            "signed_with"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!json_is_string(json_object_get(kr, fields[i])))
            return fail(verdict, err, KN_RECEIPT_BAD_KEY_ROTATION, index, "keyRotation.%s missing",
                        fields[i]);
    if (strcmp(str_member(kr, "event_type"), "key_rotated") ||
        strcmp(str_member(kr, "signed_with"), "old"))
        return fail(verdict, err, KN_RECEIPT_BAD_KEY_ROTATION, index,
                    "keyRotation must be event_type key_rotated, signed_with old");
    if (strcmp(str_member(kr, "old_algorithm"), "ed25519") ||
        strcmp(str_member(kr, "new_algorithm"), "ed25519"))
        return fail(verdict, err, KN_RECEIPT_BAD_KEY_ROTATION, index,
                    "keyRotation algorithm other than ed25519");
    char fp[KN_RECEIPT_HASH_SIZE];
    kn_receipt_hash_bytes(active, KN_RECEIPT_PUBLIC_KEY_SIZE, fp);
    if (strcmp(fp, str_member(kr, "old_key_fingerprint")))
        return fail(verdict, err, KN_RECEIPT_BAD_KEY_ROTATION, index,
                    "old_key_fingerprint is not the active key's");
    unsigned char key[KN_RECEIPT_PUBLIC_KEY_SIZE];
    kn_error_t e = {0};
    if (kn_receipt_public_key_decode(str_member(kr, "new_public_key"), key, &e) < 0)
        return fail(verdict, err, KN_RECEIPT_BAD_KEY_ROTATION, index, "new_public_key: %s", e.msg);
    kn_receipt_hash_bytes(key, sizeof key, fp);
    if (strcmp(fp, str_member(kr, "new_key_fingerprint")))
        return fail(verdict, err, KN_RECEIPT_BAD_KEY_ROTATION, index,
                    "new_key_fingerprint does not match new_public_key");
    memcpy(next, key, sizeof key);
    return 0;
}

static void
verdict_init(kn_receipt_verdict_t *verdict)
{
    if (verdict) {
        memset(verdict, 0, sizeof *verdict);
        verdict->check = KN_RECEIPT_VALID;
        verdict->termination = "unknown";
    }
}

/* One receipt under key, at position index of a chain; hash receives its
 * receipt hash; next the key it hands over (a copy of key if none). */
static int
verify_one(const json_t *r, const unsigned char *key, size_t index, kn_receipt_verdict_t *verdict,
           char *hash, unsigned char *next, kn_error_t *err)
{
    char why[200];
    kn_receipt_check_t c = check_shape(r, why, sizeof why);
    if (c != KN_RECEIPT_VALID)
        return fail(verdict, err, c, index, "%s", why);
    if (check_signature(r, key, index, verdict, hash, err) < 0)
        return -1;
    memcpy(next, key, KN_RECEIPT_PUBLIC_KEY_SIZE);
    const json_t *kr = json_object_get(json_object_get(r, "credentialSubject"), "keyRotation");
    if (kr)
        return check_rotation(kr, key, next, index, verdict, err);
    return 0;
}

int
kn_receipt_verify(const json_t *receipt, const unsigned char *public_key,
                  kn_receipt_verdict_t *verdict, kn_error_t *err)
{
    char hash[KN_RECEIPT_HASH_SIZE];
    unsigned char next[KN_RECEIPT_PUBLIC_KEY_SIZE];
    verdict_init(verdict);
    if (kn_trust_sodium_init(err) < 0)
        return -1;
    if (verdict)
        verdict->count = 1;
    if (verify_one(receipt, public_key, 0, verdict, hash, next, err) < 0)
        return -1;
    if (verdict)
        memcpy(verdict->head, hash, sizeof hash);
    return 0;
}

static bool
is_terminal(const json_t *r)
{
    return json_is_true(json_object_get(
        json_object_get(json_object_get(r, "credentialSubject"), "chain"), "terminal"));
}

static const json_t *
chain_of(const json_t *r)
{
    return json_object_get(json_object_get(r, "credentialSubject"), "chain");
}

/* Chain-level checks of receipt i against receipt 0 and its predecessor
 * (whose hash is prev_hash): §7.3 steps 3-4, §7.3.2, §7.3.4, §7.5. */
static int
check_link(const json_t *receipts, size_t i, const char *prev_hash, kn_receipt_verdict_t *verdict,
           kn_error_t *err)
{
    const json_t *r = json_array_get(receipts, i), *first = json_array_get(receipts, 0);
    const json_t *chain = chain_of(r);
    const char *id = str_member(chain, "chain_id"), *id0 = str_member(chain_of(first), "chain_id");
    if (strcmp(id, id0))
        return fail(verdict, err, KN_RECEIPT_CHAIN_ID_MISMATCH, i,
                    "chain_id \"%.80s\" differs from receipt 0's \"%.80s\"", id, id0);
    const char *iss = str_member(json_object_get(r, "issuer"), "id");
    const char *iss0 = str_member(json_object_get(first, "issuer"), "id");
    if (strcmp(iss, iss0))
        return fail(verdict, err, KN_RECEIPT_ISSUER_MISMATCH, i,
                    "issuer.id \"%.80s\" differs from receipt 0's \"%.80s\"", iss, iss0);
    const json_t *prev_hash_v = json_object_get(chain, "previous_receipt_hash");
    if (i == 0) {
        if (!json_is_null(prev_hash_v))
            return fail(verdict, err, KN_RECEIPT_BAD_GENESIS, 0,
                        "first receipt's previous_receipt_hash is not null");
        return 0;
    }
    const json_t *prev = json_array_get(receipts, i - 1);
    if (is_terminal(prev))
        return fail(verdict, err, KN_RECEIPT_AFTER_TERMINAL, i,
                    "receipt follows the terminal receipt %zu", i - 1);
    uint64_t seq = 0, seq_prev = 0;
    u64_value(json_object_get(chain, "sequence"), &seq);
    u64_value(json_object_get(chain_of(prev), "sequence"), &seq_prev);
    if (seq != seq_prev + 1)
        return fail(verdict, err, KN_RECEIPT_BAD_SEQUENCE, i, "sequence %llu does not follow %llu",
                    (unsigned long long)seq, (unsigned long long)seq_prev);
    const char *link = json_string_value(prev_hash_v);
    if (!link)
        return fail(verdict, err, KN_RECEIPT_BAD_LINK, i,
                    "previous_receipt_hash is null; expected %s", prev_hash);
    if (strcmp(link, prev_hash))
        return fail(verdict, err, KN_RECEIPT_BAD_LINK, i,
                    "previous_receipt_hash %.71s is not receipt %zu's hash %s", link, i - 1,
                    prev_hash);
    return 0;
}

/* Counts idempotency keys carried by more than one receipt (§7.3.6). */
static int
count_duplicate_keys(const json_t *receipts, size_t *out, kn_error_t *err)
{
    json_t *seen = json_object();
    if (!seen)
        return kn_error_set(err, ENOMEM, "idempotency key set");
    size_t dups = 0;
    for (size_t i = 0; i < json_array_size(receipts); i++) {
        const json_t *cs = json_object_get(json_array_get(receipts, i), "credentialSubject");
        const char *k = str_member(json_object_get(cs, "action"), "idempotency_key");
        if (!k || !*k)
            continue;
        json_t *n = json_object_get(seen, k);
        if (n && json_integer_value(n) == 1)
            dups++;
        if (json_object_set_new(seen, k, json_integer(n ? json_integer_value(n) + 1 : 1)) < 0) {
            json_decref(seen);
            return kn_error_set(err, ENOMEM, "idempotency key set");
        }
    }
    json_decref(seen);
    *out = dups;
    return 0;
}

static int
check_expectations(const json_t *receipts, const char *head, const kn_receipt_chain_expect_t *x,
                   kn_receipt_verdict_t *verdict, kn_error_t *err)
{
    size_t n = json_array_size(receipts);
    if (!x)
        return 0;
    if (x->length && x->length != n)
        return fail(verdict, err, KN_RECEIPT_LENGTH_MISMATCH, n,
                    "chain has %zu receipts, expected %zu", n, x->length);
    if (x->final_hash && strcmp(x->final_hash, head))
        return fail(verdict, err, KN_RECEIPT_FINAL_HASH_MISMATCH, n - 1,
                    "last receipt hash %s, expected %.71s", head, x->final_hash);
    if (x->require_terminal && !is_terminal(json_array_get(receipts, n - 1)))
        return fail(verdict, err, KN_RECEIPT_NOT_TERMINAL, n - 1, "last receipt is not terminal");
    return 0;
}

int
kn_receipt_verify_chain(const json_t *receipts, const unsigned char *genesis_key,
                        const kn_receipt_chain_expect_t *expect, kn_receipt_verdict_t *verdict,
                        kn_error_t *err)
{
    unsigned char active[KN_RECEIPT_PUBLIC_KEY_SIZE], next[KN_RECEIPT_PUBLIC_KEY_SIZE];
    char prev_hash[KN_RECEIPT_HASH_SIZE] = "", hash[KN_RECEIPT_HASH_SIZE];
    verdict_init(verdict);
    if (kn_trust_sodium_init(err) < 0)
        return -1;
    if (!json_is_array(receipts))
        return fail(verdict, err, KN_RECEIPT_MALFORMED, 0, "receipts are not a JSON array");
    size_t n = json_array_size(receipts);
    if (verdict)
        verdict->count = n;
    if (n == 0)
        return fail(verdict, err, KN_RECEIPT_CHAIN_EMPTY, 0, "no receipts");
    memcpy(active, genesis_key, sizeof active);
    for (size_t i = 0; i < n; i++) {
        const json_t *r = json_array_get(receipts, i);
        char why[200];
        kn_receipt_check_t c = check_shape(r, why, sizeof why);
        if (c != KN_RECEIPT_VALID) {
            fail(verdict, err, c, i, "%s", why);
            return kn_error_prefix(err, "receipt %zu", i);
        }
        /* Signature last: a link or order break is named as such even when
         * the signature would also fail. */
        if (check_link(receipts, i, prev_hash, verdict, err) < 0 ||
            verify_one(r, active, i, verdict, hash, next, err) < 0)
            return kn_error_prefix(err, "receipt %zu", i);
        memcpy(active, next, sizeof active);
        memcpy(prev_hash, hash, sizeof hash);
    }
    if (check_expectations(receipts, prev_hash, expect, verdict, err) < 0)
        return -1;
    size_t dups = 0;
    if (count_duplicate_keys(receipts, &dups, err) < 0)
        return -1;
    if (verdict) {
        const json_t *last = chain_of(json_array_get(receipts, n - 1));
        if (is_terminal(json_array_get(receipts, n - 1)))
            verdict->termination = !strcmp(str_member(last, "status") ?: "complete", "interrupted")
                                       ? "interrupted"
                                       : "complete";
        verdict->duplicate_keys = dups;
        memcpy(verdict->head, prev_hash, sizeof prev_hash);
    }
    return 0;
}

int
kn_receipt_verify_response(const json_t *receipt, const json_t *response,
                           kn_receipt_verdict_t *verdict, kn_error_t *err)
{
    verdict_init(verdict);
    const json_t *outcome =
        json_object_get(json_object_get(receipt, "credentialSubject"), "outcome");
    const char *want = str_member(outcome, "response_hash");
    if (!want)
        return 1;
    char got[KN_RECEIPT_HASH_SIZE];
    if (kn_receipt_hash_json(response, got, err) < 0)
        return -1;
    if (strcmp(got, want))
        return fail(verdict, err, KN_RECEIPT_BAD_RESPONSE_HASH, 0,
                    "response hashes to %s, receipt says %.71s", got, want);
    return 0;
}
