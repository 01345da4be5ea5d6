/* receipt.h - Agent Receipts v0.5.0: signed, hash-chained records of what
 * was done inside a sandbox (shared/receipts/spec-v0.5.0.md).
 *
 * A receipt is a W3C VC-shaped JSON object. Its hash and its Ed25519
 * signature both cover the RFC 8785 canonical bytes (jcs.h) of the receipt
 * with "proof" removed and null-valued optional members dropped (spec
 * §7.1.1); the hash is "sha256:<64 lowercase hex>", the signature goes into
 * proof.proofValue as multibase "u" + base64url without padding.
 *
 * This module owns: keys (a 32-byte Ed25519 seed in a 0600 file), hashing,
 * signing, verification of one receipt and of a chain (naming the first
 * break), the action taxonomy, and kn_receipt_chain_t, which issues the
 * receipts of one chain. It does not store receipts (the server does) and
 * does not resolve DIDs: verifiers are handed the issuer's public key.
 *
 * Ownership: json_t results are new references the caller json_decref()s;
 * char * results are malloc'd and the caller free()s; input json_t values
 * are borrowed and never modified unless the function says so. Out
 * parameters are written only on success, except verdicts, which say why a
 * verification failed. Functions that can fail take
 * kn_error_t *err last and return -1 (or NULL). Not thread-safe per object:
 * callers serialize use of one kn_receipt_chain_t. */
#ifndef KN_RECEIPT_H
#define KN_RECEIPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/error.h"

#define KN_RECEIPT_SPEC_VERSION "0.5.0"
#define KN_RECEIPT_CONTEXT_VC "https://www.w3.org/ns/credentials/v2"
#define KN_RECEIPT_CONTEXT_AR "https://agentreceipts.ai/context/v2"
#define KN_RECEIPT_PROOF_TYPE "Ed25519Signature2020"
#define KN_RECEIPT_PROOF_PURPOSE "assertionMethod"

/* "sha256:" + 64 hex digits + NUL. */
#define KN_RECEIPT_HASH_SIZE 72
#define KN_RECEIPT_SEED_SIZE 32
#define KN_RECEIPT_PUBLIC_KEY_SIZE 32
/* Multibase ("u" + base64url, no padding) of a 32-byte key, plus NUL. */
#define KN_RECEIPT_MULTIBASE_KEY_SIZE 45

/* ---- keys ---------------------------------------------------------------- */

/* An Ed25519 key pair. The secret half is libsodium's 64-byte form (seed
 * followed by the public key). Wipe with kn_receipt_key_wipe() when done. */
typedef struct kn_receipt_key {
    unsigned char public_key[KN_RECEIPT_PUBLIC_KEY_SIZE];
    unsigned char secret_key[64];
} kn_receipt_key_t;

/* Derives the key pair of a 32-byte seed (RFC 8032 private key). */
int kn_receipt_key_from_seed(kn_receipt_key_t *key, const unsigned char *seed, kn_error_t *err);
/* A fresh key pair from the system CSPRNG. */
int kn_receipt_key_generate(kn_receipt_key_t *key, kn_error_t *err);
/* Reads a key file: a PKCS#8 PEM Ed25519 private key (as the protocol and
 * `openssl genpkey -algorithm ed25519` store them) or, from earlier Kennel
 * versions, exactly 32 raw seed bytes. A regular file (symlinks are refused),
 * not readable or writable by group or others. */
int kn_receipt_key_load(kn_receipt_key_t *key, const char *path, kn_error_t *err);
/* Writes key as PKCS#8 PEM to a new file of mode 0600; fails with EEXIST
 * rather than replacing an existing file. The file is fsync()ed. */
int kn_receipt_key_save(const kn_receipt_key_t *key, const char *path, kn_error_t *err);
/* kn_receipt_key_load(), or when path does not exist, generate and save. */
int kn_receipt_key_load_or_create(kn_receipt_key_t *key, const char *path, kn_error_t *err);
/* Reads a PKCS#8 "-----BEGIN PRIVATE KEY-----" Ed25519 key (the format of
 * the Agent Receipts test vectors and of `openssl genpkey -algorithm
 * ed25519`). */
int kn_receipt_key_from_pem(kn_receipt_key_t *key, const char *pem, kn_error_t *err);
/* Reads an SPKI "-----BEGIN PUBLIC KEY-----" Ed25519 key into out[32]. */
int kn_receipt_public_key_from_pem(unsigned char *out, const char *pem, kn_error_t *err);
/* Size of the PEM text kn_receipt_key_to_pem() and
 * kn_receipt_public_key_to_pem() write (NUL included, with room). */
#define KN_RECEIPT_PEM_SIZE 160
/* PKCS#8 "PRIVATE KEY" PEM of key (one base64 line). Wipe out after use. */
void kn_receipt_key_to_pem(const kn_receipt_key_t *key, char *out);
/* SPKI "PUBLIC KEY" PEM of a raw public key. */
void kn_receipt_public_key_to_pem(const unsigned char *public_key, char *out);
/* Every SPKI PEM block in text (a keyring: several blocks, any text between
 * them), or one multibase "u..." key when text has no PEM block. At most max
 * keys go to out; *n receives how many. */
int kn_receipt_public_keys_from_text(const char *text,
                                     unsigned char (*out)[KN_RECEIPT_PUBLIC_KEY_SIZE], size_t max,
                                     size_t *n, kn_error_t *err);
/* Multibase "u" base64url form of a raw public key (keyRotation's encoding);
 * out must hold KN_RECEIPT_MULTIBASE_KEY_SIZE bytes. */
void kn_receipt_public_key_encode(const unsigned char *public_key, char *out);
/* Inverse of kn_receipt_public_key_encode(); out receives 32 bytes. */
int kn_receipt_public_key_decode(const char *multibase, unsigned char *out, kn_error_t *err);
/* Zeroes the key (also the public half). */
void kn_receipt_key_wipe(kn_receipt_key_t *key);

/* ---- hashing and signing --------------------------------------------------- */

/* "sha256:<hex>" of len bytes at data. Cannot fail. */
void kn_receipt_hash_bytes(const void *data, size_t len, char *out);
/* "sha256:<hex>" of the canonical JSON of value: the form of
 * action.parameters_hash and outcome.response_hash. out holds
 * KN_RECEIPT_HASH_SIZE bytes. */
int kn_receipt_hash_json(const json_t *value, char *out, kn_error_t *err);
/* The signing input of receipt: a deep copy without "proof", with every
 * null-valued member dropped except credentialSubject.chain.
 * previous_receipt_hash (required-nullable) and anything inside
 * issuer.runtime (an opaque open container, ADR-0026). */
json_t *kn_receipt_unsigned(const json_t *receipt, kn_error_t *err);
/* Canonical bytes of kn_receipt_unsigned(receipt); caller frees. */
char *kn_receipt_canonical(const json_t *receipt, size_t *len, kn_error_t *err);
/* The receipt hash: "sha256:<hex>" of kn_receipt_canonical(). This is what
 * the next receipt's chain.previous_receipt_hash holds. */
int kn_receipt_hash(const json_t *receipt, char *out, kn_error_t *err);
/* Signs receipt in place: replaces its "proof" with an
 * Ed25519Signature2020 proof by key. created is the ISO 8601 proof time
 * (NULL: now, UTC, whole seconds). */
int kn_receipt_sign(json_t *receipt, const kn_receipt_key_t *key, const char *verification_method,
                    const char *created, kn_error_t *err);

/* ---- verification ---------------------------------------------------------- */

typedef enum kn_receipt_check {
    KN_RECEIPT_VALID = 0,
    KN_RECEIPT_MALFORMED,           /* required field missing or mistyped (spec §4.3) */
    KN_RECEIPT_BAD_PROOF_TYPE,      /* proof.type is not Ed25519Signature2020 */
    KN_RECEIPT_BAD_PROOF_PURPOSE,   /* proof.proofPurpose is not assertionMethod */
    KN_RECEIPT_BAD_PROOF_VALUE,     /* proofValue is not "u" + base64url of 64 bytes */
    KN_RECEIPT_BAD_SIGNATURE,       /* Ed25519 check failed: tampered or wrong key */
    KN_RECEIPT_BAD_RESPONSE_HASH,   /* response body does not match outcome.response_hash */
    KN_RECEIPT_CHAIN_EMPTY,         /* no receipts to verify */
    KN_RECEIPT_CHAIN_ID_MISMATCH,   /* chain.chain_id differs from receipt 0's (§7.3.4) */
    KN_RECEIPT_ISSUER_MISMATCH,     /* issuer.id differs from receipt 0's (§7.5) */
    KN_RECEIPT_AFTER_TERMINAL,      /* a receipt follows a terminal one (§7.3.2) */
    KN_RECEIPT_BAD_SEQUENCE,        /* sequence is not the previous + 1 (§7.3 step 3) */
    KN_RECEIPT_BAD_GENESIS,         /* receipt 0's previous_receipt_hash is not null */
    KN_RECEIPT_BAD_LINK,            /* previous_receipt_hash is not the previous hash */
    KN_RECEIPT_BAD_KEY_ROTATION,    /* keyRotation fields invalid (§7.3.7) */
    KN_RECEIPT_LENGTH_MISMATCH,     /* expected_length given and not met (§7.3.1) */
    KN_RECEIPT_FINAL_HASH_MISMATCH, /* expected_final_hash given and not met */
    KN_RECEIPT_NOT_TERMINAL,        /* require_terminal given, last receipt not terminal */
} kn_receipt_check_t;

#define KN_RECEIPT_REASON_SIZE 256

/* What a verification found. For a chain, index is the 0-based position of
 * the receipt at which the chain first breaks; receipts before it verified. */
typedef struct kn_receipt_verdict {
    kn_receipt_check_t check;
    size_t index;
    char reason[KN_RECEIPT_REASON_SIZE];
    /* Chains only. */
    size_t count;                    /* receipts in the input */
    size_t duplicate_keys;           /* idempotency keys seen more than once: a warning (§7.3.6) */
    const char *termination;         /* "complete", "interrupted" or "unknown" (§7.3.3), static */
    char head[KN_RECEIPT_HASH_SIZE]; /* hash of the last receipt when valid */
} kn_receipt_verdict_t;

/* Short stable name of a check ("bad_signature", ...), static. */
const char *kn_receipt_check_name(kn_receipt_check_t check);

/* Verifies one receipt under public_key (32 bytes): shape, proof fields and
 * the signature (spec §7.8 steps 1 and 3; trusted timestamps are not
 * checked). Returns 0 when valid; -1 when invalid, with err and (if not
 * NULL) verdict saying why, or when verification could not run (ENOMEM). */
int kn_receipt_verify(const json_t *receipt, const unsigned char *public_key,
                      kn_receipt_verdict_t *verdict, kn_error_t *err);

/* Optional out-of-band witnesses for a chain (§7.3.1). Zero/NULL: unchecked. */
typedef struct kn_receipt_chain_expect {
    size_t length;
    const char *final_hash;
    bool require_terminal;
} kn_receipt_chain_expect_t;

/* Verifies receipts (a JSON array, in chain order) as one chain: every
 * receipt as kn_receipt_verify() under the active key (genesis_key, then the
 * key each valid keyRotation hands over), one chain_id and one issuer, no
 * receipt after a terminal one, sequence +1 each step, receipt 0 with a null
 * previous_receipt_hash and every other one linked to its predecessor's
 * hash. expect may be NULL. Returns 0 when the chain is valid; -1 with the
 * first break in verdict (index, check, reason) and err. */
int kn_receipt_verify_chain(const json_t *receipts, const unsigned char *genesis_key,
                            const kn_receipt_chain_expect_t *expect, kn_receipt_verdict_t *verdict,
                            kn_error_t *err);

/* Checks a disclosed response body against outcome.response_hash. Returns
 * 0 when it matches, 1 when the receipt commits to no response, -1 on a
 * mismatch (KN_RECEIPT_BAD_RESPONSE_HASH in verdict) or error. */
int kn_receipt_verify_response(const json_t *receipt, const json_t *response,
                               kn_receipt_verdict_t *verdict, kn_error_t *err);

/* ---- taxonomy ---------------------------------------------------------------- */

/* Default risk level ("low", "medium", "high", "critical") of a taxonomy
 * action type (shared/receipts/action-types.json, including the ADR-0027
 * execd types), or NULL when the type is not in the taxonomy. Static. */
const char *kn_receipt_taxonomy_risk(const char *action_type);

/* Classifies one request the server proxies to execd (OpenSandbox execd
 * routes, shared/API-NOTES.md b.1, mapped as ADR-0027 maps its endpoints).
 * path is the request path; a query string is ignored. Returns 0 and sets
 * *type to a taxonomy type (static), or "unknown" for a route with no
 * mapping (the receipt then needs target_system, e.g. "execd:POST /x");
 * returns 1 for requests that are not actions and get no receipt (health,
 * metrics, reading back a command's status or logs). */
int kn_receipt_execd_action_type(const char *method, const char *path, const char **type);

/* ---- issuing a chain ---------------------------------------------------------- */

/* Who issues the chain and on whose behalf. Strings are copied. */
typedef struct kn_receipt_chain_config {
    const char *issuer_id;           /* required: DID/URI of this Kennel host */
    const char *issuer_name;         /* optional issuer.name */
    const char *session_id;          /* optional issuer.session_id */
    const json_t *runtime;           /* optional issuer.runtime object (deep-copied) */
    const char *verification_method; /* optional; default "<issuer_id>#key-1" */
    const char *principal_id;        /* required: who the sandbox acts for */
    const char *principal_type;      /* optional: HumanPrincipal / OrganizationPrincipal */
    const char *chain_id;            /* required: one chain per sandbox */
} kn_receipt_chain_config_t;

/* One action to record. Only type is required. Borrowed for the call.
 * Strings must be valid UTF-8 (EILSEQ otherwise): encode sandbox paths or
 * commands that are not before passing them. */
typedef struct kn_receipt_action {
    const char *type;            /* taxonomy type, or a reverse-domain custom type */
    const char *risk_level;      /* NULL: taxonomy default; may raise, never lower it */
    const json_t *parameters;    /* hashed into action.parameters_hash; NULL: omitted */
    const json_t *response;      /* hashed into outcome.response_hash; NULL: omitted */
    const char *target_system;   /* action.target.system (required for "unknown") */
    const char *target_resource; /* action.target.resource */
    const char *status;          /* "success" (NULL), "failure" or "pending" */
    const char *error;           /* outcome.error, with status "failure" */
    const char *idempotency_key; /* action.idempotency_key; non-empty when set */
    const char *correlation_id;  /* credentialSubject.correlation_id: pairs the
                                    receipts of one logical action (a pending
                                    one and its outcome); non-empty when set */
    uint64_t drop_count;         /* > 0: action.emitter_metadata.drop_count (the
                                    protocol's events_dropped receipts) */
    bool terminal;               /* last receipt of the chain (chain.terminal) */
    const char *chain_status;    /* with terminal: "complete" or "interrupted" */
    const char *timestamp;       /* NULL: now, UTC; used for all three times */
    const char *uuid;            /* NULL: random v4; receipt and action id (tests) */
} kn_receipt_action_t;

typedef struct kn_receipt_chain kn_receipt_chain_t;

/* A new chain (next receipt: sequence 1, previous hash null). The key is
 * copied and wiped by kn_receipt_chain_free(). */
kn_receipt_chain_t *kn_receipt_chain_new(const kn_receipt_chain_config_t *config,
                                         const kn_receipt_key_t *key, kn_error_t *err);
/* Continues a chain after its last stored receipt: checks its chain_id and
 * that it is not terminal, then takes its sequence and hash. */
int kn_receipt_chain_resume(kn_receipt_chain_t *chain, const json_t *last_receipt, kn_error_t *err);
/* The same from what a store keeps beside a receipt: its sequence and its
 * receipt hash (not recomputed; a wrong one breaks the next link, which a
 * verifier then reports). A terminal last receipt closes the chain. */
int kn_receipt_chain_resume_at(kn_receipt_chain_t *chain, uint64_t sequence, const char *hash,
                               bool terminal, kn_error_t *err);
/* Action type of the protocol's synthetic receipt that records events an
 * issuer could not record (ADR-0010's events_dropped), with
 * action.emitter_metadata.drop_count. */
#define KN_RECEIPT_DROPPED_TYPE "agent_receipts.events_dropped"
/* Builds, signs and links the next receipt. Returns the signed receipt (a
 * new reference; serialize it with kn_jcs_canonicalize() for storage) and,
 * if hash is not NULL, its receipt hash. The chain advances only on
 * success; after a terminal receipt it refuses (EPIPE). */
json_t *kn_receipt_chain_append(kn_receipt_chain_t *chain, const kn_receipt_action_t *action,
                                char *hash, kn_error_t *err);
/* The same, also giving *text: the signed receipt's canonical text (what
 * kn_jcs_canonicalize() would make of it, malloc'd), built from the bytes
 * that were signed; NULL when it could not be (serialize it then). */
json_t *kn_receipt_chain_append_text(kn_receipt_chain_t *chain, const kn_receipt_action_t *action,
                                     char *hash, char **text, kn_error_t *err);
/* Action type of key-rotation receipts (the protocol's rotation example). */
#define KN_RECEIPT_ROTATION_TYPE "agent.key.rotate"

/* Hands the chain over to new_key (spec §7.3.7): issues a receipt carrying
 * credentialSubject.keyRotation, signed with the current (outgoing) key,
 * then signs every later receipt with new_key (copied). timestamp as in
 * kn_receipt_action_t. Returns the receipt as kn_receipt_chain_append()
 * does. Verifiers given the genesis key follow the rotation on their own. */
json_t *kn_receipt_chain_rotate(kn_receipt_chain_t *chain, const kn_receipt_key_t *new_key,
                                const char *timestamp, char *hash, kn_error_t *err);
/* Sequence of the last receipt issued (0 before the first). */
uint64_t kn_receipt_chain_sequence(const kn_receipt_chain_t *chain);
/* Hash of the last receipt issued, or NULL before the first. Borrowed. */
const char *kn_receipt_chain_head(const kn_receipt_chain_t *chain);
/* Frees the chain and wipes its key copy. NULL is a no-op. */
void kn_receipt_chain_free(kn_receipt_chain_t *chain);

#endif
