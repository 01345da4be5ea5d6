/* receipts.c - see receipts.h. */
#include "receipts.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nettle/sha2.h>
#include <sodium.h>

#include "core/ws.h"
#include "trust/execd.h"
#include "trust/jcs.h"
#include "trust/receipt.h"

#define MAX_DROPS 256
#define MAX_KEYS 64
#define LIFECYCLE "kennel:lifecycle"
#define SANDBOX_CHAINS "kennel/sandbox/"
#define SNAPSHOT_CHAINS "kennel/snapshot/"

/* What the last receipt of a chain says, kept so that the next receipt need
 * not parse it: used only when the store's tail still has that sequence
 * and hash (a rolled-back transaction just makes it miss). */
typedef struct tail_memo {
    char chain[96];
    uint64_t sequence;
    char hash[KN_RECEIPT_HASH_SIZE];
    char issuer[256];
    char principal[160];
    bool ended;
} tail_memo_t;

#define MAX_MEMO 128

typedef struct drop {
    char chain[96];
    uint64_t n;
} drop_t;

struct kn_rcpt {
    kn_store_t *store;
    kn_receipt_key_t key;
    char key_path[PATH_MAX];
    char ring_path[PATH_MAX + 8];
    char issuer[256];
    atomic_long written, refused, dropped, pending_open;
    /* Outcomes that could not be written, per chain: recorded by an
     * events_dropped receipt before the chain's next receipt. */
    pthread_mutex_t mu;
    drop_t drops[MAX_DROPS];
    size_t n_drops;
    /* The transaction in progress (the store's lock serializes them). */
    long tx_written;
    bool tx_failed;
    drop_t tx_cleared;          /* a drop record used by this transaction */
    tail_memo_t memo[MAX_MEMO]; /* under the store's lock */
    size_t memo_next;
    /* What passed through the WebSockets of open PTYs (under pty_mu). */
    pthread_mutex_t pty_mu;
    pthread_cond_t pty_cv; /* an exit frame was seen, a relay ended */
    struct pty_io *ptys;
    /* Calls whose response has gone out and whose receipt is being written
     * (under late_mu): readers of receipts wait for them (kn_rcpt_settle). */
    pthread_mutex_t late_mu;
    pthread_cond_t late_cv;
    long late;
    /* Those calls, queued for the writer thread (under late_mu), so that
     * the connection's thread goes on to its next request at once. */
    kn_rcpt_call_t *q_head, *q_tail;
    pthread_cond_t q_cv;
    pthread_t writer;
    bool writer_on, writer_stop;
};

static tail_memo_t *
memo_find(kn_rcpt_t *r, const char *chain)
{
    for (size_t i = 0; i < MAX_MEMO; i++)
        if (!strcmp(r->memo[i].chain, chain))
            return &r->memo[i];
    return NULL;
}

static void
memo_put(kn_rcpt_t *r, const json_t *receipt, const char *hash)
{
    const json_t *cs = json_object_get(receipt, "credentialSubject");
    const json_t *ch = json_object_get(cs, "chain");
    const char *chain = json_string_value(json_object_get(ch, "chain_id"));
    const char *iss = json_string_value(json_object_get(json_object_get(receipt, "issuer"), "id"));
    const char *pr = json_string_value(json_object_get(json_object_get(cs, "principal"), "id"));
    if (!chain || !iss || !pr || strlen(chain) >= sizeof r->memo[0].chain)
        return;
    tail_memo_t *m = memo_find(r, chain);
    if (!m) {
        m = &r->memo[r->memo_next];
        r->memo_next = (r->memo_next + 1) % MAX_MEMO;
    }
    snprintf(m->chain, sizeof m->chain, "%s", chain);
    m->sequence = (uint64_t)json_integer_value(json_object_get(ch, "sequence"));
    snprintf(m->hash, sizeof m->hash, "%s", hash);
    snprintf(m->issuer, sizeof m->issuer, "%s", iss);
    snprintf(m->principal, sizeof m->principal, "%s", pr);
    m->ended = json_is_true(json_object_get(ch, "terminal"));
}

struct kn_rcpt_call {
    kn_rcpt_t *r;
    kn_execd_capture_t *cap;
    char sandbox[40];
    char principal[96];
    char corr[37];
    bool begun;
    bool pty_open;  /* POST /pty */
    bool pty_close; /* DELETE /pty/{id} of a PTY this server opened */
    char pty_id[64];
    bool intent;          /* begun with an intent, answered by one receipt */
    bool seen;            /* execd's response was complete and has been released */
    kn_rcpt_call_t *next; /* in the writer's queue */
};

/* The lifecycle request this thread serves (receipts.h). */
static __thread struct {
    kn_rcpt_t *r;
    bool active;
    char principal[96];
    char corr[37];
    char intent_sandbox[40];
} ctx;

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

void
kn_rcpt_chain_id(const char *sandbox_id, char *out, size_t size)
{
    snprintf(out, size, SANDBOX_CHAINS "%s", sandbox_id);
}

void
kn_rcpt_snapshot_chain_id(const char *snapshot_id, char *out, size_t size)
{
    snprintf(out, size, SNAPSHOT_CHAINS "%s", snapshot_id);
}

/* Whose chain a receipt goes to: a sandbox's, or a snapshot's (its
 * issuer.runtime names the snapshot and the sandbox it was taken of). */
typedef struct subject {
    char chain_id[96];
    char sandbox[40];  /* "" for a snapshot chain known only by its id */
    char snapshot[40]; /* "" for a sandbox's chain */
} subject_t;

static void
subject_sandbox(subject_t *s, const char *id)
{
    memset(s, 0, sizeof *s);
    snprintf(s->sandbox, sizeof s->sandbox, "%s", id);
    kn_rcpt_chain_id(id, s->chain_id, sizeof s->chain_id);
}

static void
subject_snapshot(subject_t *s, const char *snapshot, const char *sandbox)
{
    memset(s, 0, sizeof *s);
    snprintf(s->snapshot, sizeof s->snapshot, "%s", snapshot);
    snprintf(s->sandbox, sizeof s->sandbox, "%s", sandbox ? sandbox : "");
    kn_rcpt_snapshot_chain_id(snapshot, s->chain_id, sizeof s->chain_id);
}

/* The subject of a stored chain id; false for chains this server does not
 * make. */
static bool
subject_of_chain(subject_t *s, const char *chain_id)
{
    size_t ls = strlen(SANDBOX_CHAINS), ln = strlen(SNAPSHOT_CHAINS);
    if (!strncmp(chain_id, SANDBOX_CHAINS, ls) && chain_id[ls])
        subject_sandbox(s, chain_id + ls);
    else if (!strncmp(chain_id, SNAPSHOT_CHAINS, ln) && chain_id[ln])
        subject_snapshot(s, chain_id + ln, NULL);
    else
        return false;
    return true;
}

void
kn_rcpt_principal(const char *api_key, char *out, size_t size)
{
    if (!api_key || !*api_key) {
        snprintf(out, size, "urn:kennel:anonymous");
        return;
    }
    char h[KN_RECEIPT_HASH_SIZE];
    kn_receipt_hash_bytes(api_key, strlen(api_key), h);
    snprintf(out, size, "urn:kennel:api-key:%.16s", h + 7);
}

static int
tag(kn_error_t *err)
{
    if (err->code != EBUSY)
        err->code = KN_RCPT_ERRNO;
    errno = err->code;
    return -1;
}

/* ---- drops ------------------------------------------------------------- */

static void
drop_add(kn_rcpt_t *r, const char *chain, uint64_t n)
{
    pthread_mutex_lock(&r->mu);
    size_t i = 0;
    while (i < r->n_drops && strcmp(r->drops[i].chain, chain))
        i++;
    if (i == r->n_drops && r->n_drops < MAX_DROPS)
        snprintf(r->drops[r->n_drops++].chain, sizeof r->drops[0].chain, "%s", chain);
    if (i < r->n_drops)
        r->drops[i].n += n;
    pthread_mutex_unlock(&r->mu);
}

/* Takes the drop record of chain (0 when none). */
static uint64_t
drop_take(kn_rcpt_t *r, const char *chain)
{
    uint64_t n = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_drops; i++)
        if (!strcmp(r->drops[i].chain, chain)) {
            n = r->drops[i].n;
            r->drops[i] = r->drops[--r->n_drops];
            break;
        }
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* ---- writing receipts ---------------------------------------------------- */

/* What a transaction of this module carries: its kn_store_run() argument
 * starts with one of these. */
typedef struct step {
    kn_rcpt_t *r;
    void (*on_commit)(struct step *s); /* under the store's lock */
} step_t;

static void tx_finish(kn_rcpt_t *r, bool committed);

static void
step_end(void *arg, bool committed)
{
    step_t *s = arg;
    tx_finish(s->r, committed);
    if (committed && s->on_commit)
        s->on_commit(s);
}

static int
run(kn_rcpt_t *r, int (*fn)(kn_store_tx_t *tx, void *arg, kn_error_t *err), step_t *s,
    kn_error_t *err)
{
    s->r = r;
    return kn_store_run(r->store, fn, step_end, s, err);
}

static void
tx_start(kn_rcpt_t *r)
{
    r->tx_written = 0;
    r->tx_failed = false;
    r->tx_cleared.n = 0;
}

/* After a transaction: count it, or give back what it took. */
static void
tx_finish(kn_rcpt_t *r, bool committed)
{
    if (committed) {
        r->written += r->tx_written;
    } else {
        if (r->tx_cleared.n)
            drop_add(r, r->tx_cleared.chain, r->tx_cleared.n);
    }
    r->tx_written = 0;
    r->tx_cleared.n = 0;
}

/* text: the receipt's canonical text when the signer made it (taken), NULL
 * to make it here. */
static int
insert(kn_rcpt_t *r, kn_store_tx_t *tx, json_t *receipt, const char *hash, char *text,
       kn_error_t *err)
{
    const json_t *cs = json_object_get(receipt, "credentialSubject");
    const json_t *action = json_object_get(cs, "action"), *ch = json_object_get(cs, "chain");
    if (!text)
        text = kn_jcs_canonicalize(receipt, NULL, err);
    if (!text)
        return -1;
    kn_store_receipt_t row = {
        .id = json_string_value(json_object_get(receipt, "id")),
        .chain_id = json_string_value(json_object_get(ch, "chain_id")),
        .sequence = (uint64_t)json_integer_value(json_object_get(ch, "sequence")),
        .action_type = json_string_value(json_object_get(action, "type")),
        .risk_level = json_string_value(json_object_get(action, "risk_level")),
        .status = json_string_value(json_object_get(json_object_get(cs, "outcome"), "status")),
        .timestamp = json_string_value(json_object_get(action, "timestamp")),
        .issuer_id = json_string_value(json_object_get(json_object_get(receipt, "issuer"), "id")),
        .principal_id = json_string_value(json_object_get(json_object_get(cs, "principal"), "id")),
        .receipt_json = text,
        .receipt_hash = hash,
        .previous_receipt_hash = json_string_value(json_object_get(ch, "previous_receipt_hash")),
    };
    int rc = kn_store_tx_add_receipt(tx, &row, err);
    free(text);
    if (rc == 0) {
        r->tx_written++;
        /* The memo changes under both locks: prebuild() reads it under mu. */
        pthread_mutex_lock(&r->mu);
        memo_put(r, receipt, hash);
        pthread_mutex_unlock(&r->mu);
    }
    return rc;
}

/* The chain of a sandbox as the store has it, ready for the next receipt.
 * *chain is NULL (and 0 returned) when there is none and need is false...
 * see append(). */
typedef struct chain_at {
    kn_receipt_chain_t *chain;
    bool exists, ended;
    char chain_id[96];
    char principal[160];
} chain_at_t;

static int
open_chain(kn_rcpt_t *r, kn_store_tx_t *tx, const subject_t *sub, const char *principal,
           chain_at_t *at, kn_error_t *err)
{
    uint64_t seq = 0;
    char hash[KN_RECEIPT_HASH_SIZE] = "", issuer[256];
    char *json = NULL;
    bool found = false;
    json_t *runtime = NULL;
    memset(at, 0, sizeof *at);
    snprintf(at->chain_id, sizeof at->chain_id, "%s", sub->chain_id);
    if (kn_store_tx_tail(tx, at->chain_id, &seq, hash, sizeof hash, &json, &found, err) < 0)
        return -1;
    snprintf(issuer, sizeof issuer, "%s", r->issuer);
    snprintf(at->principal, sizeof at->principal, "%s",
             principal ? principal : "urn:kennel:server");
    /* A snapshot chain known by its id alone takes its runtime from its tail. */
    bool need_runtime = !sub->sandbox[0];
    tail_memo_t *m = found && !need_runtime ? memo_find(r, at->chain_id) : NULL;
    if (m && m->sequence == seq && !strcmp(m->hash, hash)) {
        free(json);
        snprintf(issuer, sizeof issuer, "%s", m->issuer);
        if (!principal)
            snprintf(at->principal, sizeof at->principal, "%s", m->principal);
        at->ended = m->ended;
        at->exists = true;
    } else if (found) {
        json_t *tail = json_loads(json, 0, NULL);
        free(json);
        if (!tail)
            return kn_error_set(err, EINVAL, "the last receipt of %s is not JSON", at->chain_id);
        const json_t *cs = json_object_get(tail, "credentialSubject");
        const char *iss = json_string_value(json_object_get(json_object_get(tail, "issuer"), "id"));
        const char *pr = json_string_value(json_object_get(json_object_get(cs, "principal"), "id"));
        /* One issuer per chain (spec §7.5), whatever the configuration says
         * now; system actions act for whoever acted last. */
        if (iss)
            snprintf(issuer, sizeof issuer, "%s", iss);
        if (!principal && pr)
            snprintf(at->principal, sizeof at->principal, "%s", pr);
        at->ended = json_is_true(json_object_get(json_object_get(cs, "chain"), "terminal"));
        if (need_runtime)
            runtime = json_incref(json_object_get(json_object_get(tail, "issuer"), "runtime"));
        json_decref(tail);
        at->exists = true;
    }
    if (!runtime && sub->snapshot[0])
        runtime = json_pack("{s:s, s:s}", "sandbox_id", sub->sandbox, "snapshot_id", sub->snapshot);
    else if (!runtime)
        runtime = json_pack("{s:s}", "sandbox_id", sub->sandbox);
    kn_receipt_chain_config_t cfg = {.issuer_id = issuer,
                                     .issuer_name = "Kennel",
                                     .runtime = runtime,
                                     .principal_id = at->principal,
                                     .chain_id = at->chain_id};
    at->chain = runtime ? kn_receipt_chain_new(&cfg, &r->key, err) : NULL;
    json_decref(runtime);
    if (!at->chain)
        return -1;
    if (found && kn_receipt_chain_resume_at(at->chain, seq, hash, at->ended, err) < 0) {
        kn_receipt_chain_free(at->chain);
        at->chain = NULL;
        return -1;
    }
    return 0;
}

/* Appends one receipt to the chain of sandbox (and first, when outcomes of
 * it were dropped, the protocol's events_dropped receipt). need_chain:
 * only to an existing chain (*skipped otherwise). A chain that ended is
 * *skipped too; the caller decides whether that is an error. */
static int
append(kn_rcpt_t *r, kn_store_tx_t *tx, const subject_t *sub, const kn_receipt_action_t *a,
       const char *principal, bool need_chain, bool *skipped, kn_error_t *err)
{
    chain_at_t at;
    int ret = -1;
    *skipped = false;
    if (open_chain(r, tx, sub, principal, &at, err) < 0)
        goto out;
    if ((!at.exists && need_chain) || at.ended) {
        *skipped = true;
        ret = 0;
        goto out;
    }
    char hash[KN_RECEIPT_HASH_SIZE];
    uint64_t dropped = drop_take(r, at.chain_id);
    if (dropped) {
        snprintf(r->tx_cleared.chain, sizeof r->tx_cleared.chain, "%s", at.chain_id);
        r->tx_cleared.n = dropped;
        kn_receipt_action_t d = {.type = KN_RECEIPT_DROPPED_TYPE,
                                 .risk_level = "medium",
                                 .target_system = "kennel:receipts",
                                 .drop_count = dropped};
        char *text = NULL;
        json_t *rd = kn_receipt_chain_append_text(at.chain, &d, hash, &text, err);
        int rc = rd ? insert(r, tx, rd, hash, text, err) : -1;
        json_decref(rd);
        if (rc < 0)
            goto out;
    }
    char *text = NULL;
    json_t *rec = kn_receipt_chain_append_text(at.chain, a, hash, &text, err);
    if (!rec)
        goto out;
    ret = insert(r, tx, rec, hash, text, err);
    json_decref(rec);
out:
    kn_receipt_chain_free(at.chain);
    if (ret < 0)
        r->tx_failed = true;
    return ret;
}

/* A receipt built and signed before the store's lock is taken, on the
 * chain's head as the memo has it: inserted only if the store's tail is
 * still that head (else it is built again under the lock). Signing is the
 * largest part of a receipt's cost; outside the lock, the next call's
 * intent need not wait for it. */
typedef struct prebuilt {
    json_t *rec;
    char *text;
    char hash[KN_RECEIPT_HASH_SIZE];
    uint64_t seq;                    /* the head it was built on */
    char head[KN_RECEIPT_HASH_SIZE]; /* its hash */
} prebuilt_t;

static void
prebuilt_free(prebuilt_t *pb)
{
    json_decref(pb->rec);
    free(pb->text);
    memset(pb, 0, sizeof *pb);
}

/* A sandbox chain's next receipt from the memo; false (nothing built) when
 * the memo does not know the chain, it ended, or a drop record must come
 * first: the caller builds it under the lock then. */
static bool
prebuild(kn_rcpt_t *r, const subject_t *sub, const kn_receipt_action_t *a, const char *principal,
         prebuilt_t *pb)
{
    char issuer[256];
    kn_receipt_key_t key;
    bool ok = false;
    memset(pb, 0, sizeof *pb);
    if (sub->snapshot[0] || !principal)
        return false;
    pthread_mutex_lock(&r->mu);
    const tail_memo_t *m = memo_find(r, sub->chain_id);
    bool dropped = false;
    for (size_t i = 0; i < r->n_drops; i++)
        dropped = dropped || !strcmp(r->drops[i].chain, sub->chain_id);
    if (m && !m->ended && !dropped) {
        pb->seq = m->sequence;
        memcpy(pb->head, m->hash, sizeof pb->head);
        snprintf(issuer, sizeof issuer, "%s", m->issuer);
        memcpy(&key, &r->key, sizeof key);
        ok = true;
    }
    pthread_mutex_unlock(&r->mu);
    if (!ok)
        return false;
    kn_error_t err = {0};
    json_t *runtime = json_pack("{s:s}", "sandbox_id", sub->sandbox);
    kn_receipt_chain_config_t cfg = {.issuer_id = issuer,
                                     .issuer_name = "Kennel",
                                     .runtime = runtime,
                                     .principal_id = principal,
                                     .chain_id = sub->chain_id};
    kn_receipt_chain_t *chain = runtime ? kn_receipt_chain_new(&cfg, &key, &err) : NULL;
    json_decref(runtime);
    if (chain && kn_receipt_chain_resume_at(chain, pb->seq, pb->head, false, &err) == 0)
        pb->rec = kn_receipt_chain_append_text(chain, a, pb->hash, &pb->text, &err);
    kn_receipt_chain_free(chain);
    kn_receipt_key_wipe(&key);
    if (!pb->rec || !pb->text) {
        prebuilt_free(pb);
        return false;
    }
    return true;
}

/* Inserts a prebuilt receipt if the chain's head is still the one it was
 * built on (*used); the memo's other fields follow the head. */
static int
insert_prebuilt(kn_rcpt_t *r, kn_store_tx_t *tx, const subject_t *sub, prebuilt_t *pb, bool *used,
                kn_error_t *err)
{
    uint64_t seq = 0;
    char hash[KN_RECEIPT_HASH_SIZE] = "";
    char *json = NULL;
    bool found = false;
    *used = false;
    if (kn_store_tx_tail(tx, sub->chain_id, &seq, hash, sizeof hash, &json, &found, err) < 0)
        return -1;
    free(json);
    if (!found || seq != pb->seq || strcmp(hash, pb->head))
        return 0;
    *used = true;
    char *text = pb->text;
    pb->text = NULL; /* insert takes it */
    int rc = insert(r, tx, pb->rec, pb->hash, text, err);
    if (rc < 0)
        r->tx_failed = true;
    return rc;
}

/* Answers every execd call of a chain begun (its intent written) and not
 * answered by its receipt, with a failure receipt saying why. */
static int
close_intents(kn_rcpt_t *r, kn_store_tx_t *tx, const subject_t *sub, const char *why,
              kn_error_t *err)
{
    char **corrs = NULL, **jsons = NULL;
    size_t n = 0;
    if (kn_store_tx_intents(tx, sub->chain_id, &corrs, &jsons, &n, err) < 0)
        return -1;
    int ret = 0;
    for (size_t i = 0; i < n && ret == 0; i++) {
        json_t *j = json_loads(jsons[i], 0, NULL);
        kn_receipt_action_t a = {
            .type = json_string_value(json_object_get(j, "type")),
            .target_system = json_string_value(json_object_get(j, "system")),
            .target_resource = json_string_value(json_object_get(j, "resource")),
            .status = "failure",
            .error = why,
            .correlation_id = corrs[i],
        };
        const char *principal = json_string_value(json_object_get(j, "principal"));
        bool skipped;
        if (!a.type)
            ret = kn_error_set(err, EINVAL, "an execd call intent of %s has no action type",
                               sub->chain_id);
        else if ((ret = kn_store_tx_intent_del(tx, corrs[i], NULL, err)) == 0)
            ret = append(r, tx, sub, &a, principal, false, &skipped, err);
        json_decref(j);
    }
    kn_store_strings_free(corrs, n);
    kn_store_strings_free(jsons, n);
    return ret;
}

/* Answers every pending receipt of a chain that nothing answered (an execd
 * call in flight, an intent whose action never finished), except the one
 * with correlation id keep, with a failure outcome saying why. */
static int
close_unanswered(kn_rcpt_t *r, kn_store_tx_t *tx, const subject_t *sub, const char *keep,
                 const char *why, kn_error_t *err)
{
    char **corrs = NULL, **jsons = NULL;
    const char *chain_id = sub->chain_id;
    size_t n = 0;
    if (kn_store_tx_unanswered(tx, chain_id, NULL, &corrs, &jsons, &n, err) < 0)
        return -1;
    int ret = 0;
    for (size_t i = 0; i < n && ret == 0; i++) {
        if (keep && !strcmp(corrs[i], keep))
            continue;
        json_t *p = json_loads(jsons[i], 0, NULL);
        const json_t *action = json_object_get(json_object_get(p, "credentialSubject"), "action");
        const json_t *target = json_object_get(action, "target");
        kn_receipt_action_t a = {
            .type = json_string_value(json_object_get(action, "type")),
            .risk_level = json_string_value(json_object_get(action, "risk_level")),
            .target_system = json_string_value(json_object_get(target, "system")),
            .target_resource = json_string_value(json_object_get(target, "resource")),
            .status = "failure",
            .error = why,
            .correlation_id = corrs[i],
        };
        bool skipped;
        if (!a.type)
            ret = kn_error_set(err, EINVAL, "a pending receipt of %s has no action type", chain_id);
        else
            ret = append(r, tx, sub, &a, NULL, true, &skipped, err);
        json_decref(p);
    }
    kn_store_strings_free(corrs, n);
    kn_store_strings_free(jsons, n);
    if (ret == 0)
        ret = close_intents(r, tx, sub, why, err);
    return ret;
}

/* The correlation id of a lifecycle step: this request's, or that of the
 * unanswered pending receipt of the same type (an intent of the reaper or
 * of an earlier server), or a new one. */
static void
step_correlation(kn_rcpt_t *r, kn_store_tx_t *tx, const char *sandbox, const char *type,
                 char out[37])
{
    if (ctx.active && ctx.r == r) {
        memcpy(out, ctx.corr, 37);
        return;
    }
    char chain_id[96], **corrs = NULL, **jsons = NULL;
    size_t n = 0;
    kn_error_t e = {0};
    uuid_v4(out);
    kn_rcpt_chain_id(sandbox, chain_id, sizeof chain_id);
    if (kn_store_tx_unanswered(tx, chain_id, NULL, &corrs, &jsons, &n, &e) < 0)
        return;
    for (size_t i = n; i-- > 0;) {
        char needle[128];
        snprintf(needle, sizeof needle, "\"type\":\"%s\"", type);
        if (strstr(jsons[i], needle) && strlen(corrs[i]) == 36) {
            memcpy(out, corrs[i], 37);
            break;
        }
    }
    kn_store_strings_free(corrs, n);
    kn_store_strings_free(jsons, n);
}

static const char *
principal_now(kn_rcpt_t *r)
{
    return ctx.active && ctx.r == r ? ctx.principal : NULL;
}

/* ---- PTY sessions ---------------------------------------------------------
 *
 * A PTY opened through the proxy (POST /pty) has a row in the store's ptys
 * table, written with its open outcome; the correlation id there pairs the
 * open with the one close receipt that ends it: the exit frame execd sends
 * on its WebSocket, a DELETE (pending, then outcome), or the sandbox's end.
 * What crosses its WebSockets through the server is hashed here: the
 * payloads of data frames, client to sandbox ("input") and back
 * ("output"), each direction as one byte stream; io_hash is the SHA-256 of
 * the JCS text of {"input": sha256(...), "output": sha256(...)}. */

typedef struct pty_io {
    char sandbox[40], pty[64];
    struct sha256_ctx in, out;
    bool partial; /* opened before this server started: earlier I/O is not in it */
    bool exit_seen;
    int exit_code;
    int watchers; /* WebSockets being relayed */
    struct pty_io *next;
} pty_io_t;

/* The entry for (sandbox, pty), made when missing (create; partial then).
 * Under pty_mu. */
static pty_io_t *
pty_io_find(kn_rcpt_t *r, const char *sandbox, const char *pty, bool create, bool partial)
{
    for (pty_io_t *e = r->ptys; e; e = e->next)
        if (!strcmp(e->sandbox, sandbox) && !strcmp(e->pty, pty))
            return e;
    if (!create)
        return NULL;
    pty_io_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    snprintf(e->sandbox, sizeof e->sandbox, "%s", sandbox);
    snprintf(e->pty, sizeof e->pty, "%s", pty);
    sha256_init(&e->in);
    sha256_init(&e->out);
    e->partial = partial;
    e->next = r->ptys;
    r->ptys = e;
    return e;
}

static void
pty_io_drop(kn_rcpt_t *r, const char *sandbox, const char *pty)
{
    pthread_mutex_lock(&r->pty_mu);
    pty_io_t **pp = &r->ptys;
    while (*pp) {
        pty_io_t *e = *pp;
        if (!strcmp(e->sandbox, sandbox) && (!pty || !strcmp(e->pty, pty))) {
            *pp = e->next;
            free(e);
        } else {
            pp = &e->next;
        }
    }
    pthread_mutex_unlock(&r->pty_mu);
}

/* The close receipt's parameters and response for a PTY, from what was
 * seen of it. signal: the close's own (DELETE), or NULL. */
static void
pty_close_payload(kn_rcpt_t *r, const char *sandbox, const char *pty, const char *signal,
                  json_t **params, json_t **response)
{
    unsigned char d[SHA256_DIGEST_SIZE];
    char hin[KN_RECEIPT_HASH_SIZE], hout[KN_RECEIPT_HASH_SIZE], io[KN_RECEIPT_HASH_SIZE];
    pthread_mutex_lock(&r->pty_mu);
    pty_io_t *e = pty_io_find(r, sandbox, pty, false, false);
    struct sha256_ctx a, b;
    if (e) {
        a = e->in;
        b = e->out;
    } else {
        sha256_init(&a);
        sha256_init(&b);
    }
    bool complete = e && !e->partial, seen = e && e->exit_seen;
    int code = e ? e->exit_code : 0;
    pthread_mutex_unlock(&r->pty_mu);
    sha256_digest(&a, sizeof d, d);
    memcpy(hin, "sha256:", 7);
    sodium_bin2hex(hin + 7, sizeof hin - 7, d, sizeof d);
    sha256_digest(&b, sizeof d, d);
    memcpy(hout, "sha256:", 7);
    sodium_bin2hex(hout + 7, sizeof hout - 7, d, sizeof d);
    json_t *both = json_pack("{s:s, s:s}", "input", hin, "output", hout);
    kn_error_t err = {0};
    if (!both || kn_receipt_hash_json(both, io, &err) < 0)
        snprintf(io, sizeof io, "%s", "");
    json_decref(both);
    *params = json_pack("{s:o}", "exit_code", seen ? json_integer(code) : json_null());
    if (*params && signal)
        json_object_set_new(*params, "signal", json_string(signal));
    *response = json_pack("{s:s}", "io_hash", io);
    /* No WebSocket seen, or opened by an earlier server: what passed
     * before this one started is not in the hash, and the receipt says so. */
    if (*response && !complete)
        json_object_set_new(*response, "io_complete", json_false());
}

/* Writes the close receipt of one PTY row (in tx) and removes the row. */
static int
pty_close_tx(kn_rcpt_t *r, kn_store_tx_t *tx, const kn_store_pty_t *row, const char *status,
             const char *error, const char *signal, kn_error_t *err)
{
    json_t *params = NULL, *response = NULL;
    char resource[96];
    snprintf(resource, sizeof resource, "/pty/%s", row->pty_id);
    pty_close_payload(r, row->sandbox_id, row->pty_id, signal, &params, &response);
    kn_receipt_action_t a = {.type = "system.pty.close",
                             .parameters = params,
                             .response = response,
                             .target_system = "opensandbox:execd",
                             .target_resource = resource,
                             .status = status,
                             .error = error,
                             .correlation_id = row->corr};
    subject_t sub;
    bool skipped;
    subject_sandbox(&sub, row->sandbox_id);
    int rc = params && response ? 0 : kn_error_set(err, ENOMEM, "receipts");
    if (rc == 0)
        rc = append(r, tx, &sub, &a, NULL, true, &skipped, err);
    if (rc == 0)
        rc = kn_store_tx_pty_del(tx, row->sandbox_id, row->pty_id, err);
    json_decref(params);
    json_decref(response);
    return rc;
}

/* Closes every PTY of a sandbox that is ending (in the terminal's tx), or
 * with sandbox NULL every close an earlier server left in flight. */
static int
pty_close_all(kn_rcpt_t *r, kn_store_tx_t *tx, const char *sandbox, kn_error_t *err)
{
    kn_store_pty_t *rows = NULL;
    size_t n = 0;
    if (kn_store_tx_ptys(tx, sandbox, sandbox == NULL, &rows, &n, err) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *why = !sandbox          ? "the server stopped before the outcome was observed"
                          : rows[i].closing ? "the sandbox ended before the close was observed"
                                            : "the sandbox ended before the PTY closed";
        rc = pty_close_tx(r, tx, &rows[i], "failure", why, NULL, err);
    }
    free(rows);
    return rc;
}

typedef struct pty_exit_step {
    step_t s;
    const char *sandbox, *pty;
    bool closed;
} pty_exit_step_t;

static int
pty_exit_tx(kn_store_tx_t *tx, void *arg, kn_error_t *err)
{
    pty_exit_step_t *s = arg;
    kn_store_pty_t *rows = NULL;
    size_t n = 0;
    tx_start(s->s.r);
    if (kn_store_tx_ptys(tx, s->sandbox, false, &rows, &n, err) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(rows[i].pty_id, s->pty) && !rows[i].closing) {
            rc = pty_close_tx(s->s.r, tx, &rows[i], "success", NULL, NULL, err);
            s->closed = rc == 0;
            break;
        }
    free(rows);
    return rc;
}

/* execd said the PTY's shell exited (its exit frame passed the relay).
 * That is the sandbox's word, recorded as such; the first one counts. A
 * PTY already closed has no entry any more: later exit frames (a sandbox
 * may send any) cost nothing, not a transaction each. */
static void
pty_exited(kn_rcpt_t *r, const char *sandbox, const char *pty, int code)
{
    pthread_mutex_lock(&r->pty_mu);
    pty_io_t *e = pty_io_find(r, sandbox, pty, false, false);
    bool first = e && !e->exit_seen;
    if (first) {
        e->exit_seen = true;
        e->exit_code = code;
    }
    pthread_cond_broadcast(&r->pty_cv);
    pthread_mutex_unlock(&r->pty_mu);
    if (!first)
        return;
    kn_error_t err = {0};
    pty_exit_step_t st = {.sandbox = sandbox, .pty = pty};
    if (run(r, pty_exit_tx, &st.s, &err) < 0) {
        char chain_id[96];
        kn_rcpt_chain_id(sandbox, chain_id, sizeof chain_id);
        drop_add(r, chain_id, 1);
        r->dropped++;
        fprintf(stderr,
                "{\"level\":\"error\",\"msg\":\"a PTY's close receipt was dropped\","
                "\"sandboxId\":\"%s\",\"detail\":\"%s\"}\n",
                sandbox, err.msg);
        return;
    }
    if (st.closed)
        pty_io_drop(r, sandbox, pty);
}

#define PTY_MAX_TEXT 4096 /* execd's exit frame is far smaller */

struct kn_rcpt_pty_watch {
    kn_rcpt_t *r;
    char sandbox[40], pty[64];
    kn_ws_parser_t from_client, to_client;
    char text[PTY_MAX_TEXT];
    size_t text_len;
    bool text_over;
    int text_op;
};

static int
watch_piece(void *wctx, const kn_ws_frame_t *f, uint64_t off, const uint8_t *data, size_t n,
            bool last, bool from_client)
{
    kn_rcpt_pty_watch_t *w = wctx;
    if (f->opcode >= KN_WS_CLOSE)
        return 0;
    pthread_mutex_lock(&w->r->pty_mu);
    pty_io_t *e = pty_io_find(w->r, w->sandbox, w->pty, false, false); /* none once closed */
    if (e && n)
        sha256_update(from_client ? &e->in : &e->out, n, (const uint8_t *)data);
    pthread_mutex_unlock(&w->r->pty_mu);
    if (from_client)
        return 0;
    /* Text from execd: gathered (small) to see the exit frame. */
    if (f->opcode != KN_WS_CONT && off == 0) {
        w->text_len = 0;
        w->text_over = false;
        w->text_op = f->opcode;
    }
    if (w->text_op != KN_WS_TEXT)
        return 0;
    if (w->text_len + n > sizeof w->text)
        w->text_over = true;
    else {
        memcpy(w->text + w->text_len, data, n);
        w->text_len += n;
    }
    if (last && f->fin && !w->text_over) {
        json_t *o = json_loadb(w->text, w->text_len, 0, NULL);
        const char *type = json_string_value(json_object_get(o, "type"));
        const json_t *code = json_object_get(o, "exit_code");
        if (type && !strcmp(type, "exit") && json_is_integer(code))
            pty_exited(w->r, w->sandbox, w->pty, (int)json_integer_value(code));
        json_decref(o);
    }
    return 0;
}

static int
piece_in(void *wctx, const kn_ws_frame_t *f, uint64_t off, const uint8_t *data, size_t n, bool last)
{
    return watch_piece(wctx, f, off, data, n, last, true);
}

static int
piece_out(void *wctx, const kn_ws_frame_t *f, uint64_t off, const uint8_t *data, size_t n,
          bool last)
{
    return watch_piece(wctx, f, off, data, n, last, false);
}

void
kn_rcpt_pty_tap(void *wctx, bool from_client, const char *data, size_t len)
{
    kn_rcpt_pty_watch_t *w = wctx;
    /* A parser that failed (not WebSocket after all) stops counting; the
     * close receipt then says io_complete false. */
    kn_ws_parser_t *p = from_client ? &w->from_client : &w->to_client;
    if (kn_ws_parse(p, data, len, from_client ? piece_in : piece_out, w) < 0 && p->error &&
        strcmp(p->error, "stopped")) {
        pthread_mutex_lock(&w->r->pty_mu);
        pty_io_t *e = pty_io_find(w->r, w->sandbox, w->pty, false, false);
        if (e)
            e->partial = true;
        pthread_mutex_unlock(&w->r->pty_mu);
        p->error = "stopped";
    }
}

kn_rcpt_pty_watch_t *
kn_rcpt_pty_watch(kn_rcpt_t *r, const char *sandbox_id, const char *target)
{
    if (!r || strncmp(target, "/pty/", 5))
        return NULL;
    const char *id = target + 5;
    size_t il = strcspn(id, "/?#");
    if (il == 0 || il >= 64 || strncmp(id + il, "/ws", 3) || (id[il + 3] && id[il + 3] != '?'))
        return NULL;
    char pty[64];
    memcpy(pty, id, il);
    pty[il] = '\0';
    kn_store_pty_t row;
    bool found = false;
    kn_error_t err = {0};
    if (kn_store_pty_get(r->store, sandbox_id, pty, &row, &found, &err) < 0 || !found)
        return NULL;
    kn_rcpt_pty_watch_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->r = r;
    snprintf(w->sandbox, sizeof w->sandbox, "%s", sandbox_id);
    snprintf(w->pty, sizeof w->pty, "%s", pty);
    kn_ws_parser_init(&w->from_client, 0);
    kn_ws_parser_init(&w->to_client, 0);
    pthread_mutex_lock(&r->pty_mu);
    pty_io_t *e = pty_io_find(r, sandbox_id, pty, true, true);
    if (e)
        e->watchers++;
    pthread_mutex_unlock(&r->pty_mu);
    return w;
}

void
kn_rcpt_pty_watch_free(kn_rcpt_pty_watch_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->r->pty_mu);
    pty_io_t *e = pty_io_find(w->r, w->sandbox, w->pty, false, false);
    if (e && e->watchers > 0)
        e->watchers--;
    pthread_cond_broadcast(&w->r->pty_cv);
    pthread_mutex_unlock(&w->r->pty_mu);
    free(w);
}

/* A DELETE's outcome: execd answers once the attached socket has been sent
 * the exit frame, which the relay (another thread) may not have read yet;
 * it is waited for, briefly, so that the close commits to it. */
static void
pty_wait_exit_frame(kn_rcpt_t *r, const char *sandbox, const char *pty)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    pthread_mutex_lock(&r->pty_mu);
    for (;;) {
        pty_io_t *e = pty_io_find(r, sandbox, pty, false, false);
        if (!e || !e->watchers || e->exit_seen)
            break;
        if (pthread_cond_timedwait(&r->pty_cv, &r->pty_mu, &until) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&r->pty_mu);
}

/* DELETE /pty/{id}: the id, when the target is exactly that. */
static bool
pty_delete_target(const char *method, const char *target, char out[64])
{
    if (strcmp(method, "DELETE") || strncmp(target, "/pty/", 5))
        return false;
    const char *id = target + 5;
    size_t il = strcspn(id, "/?#");
    if (il == 0 || il >= 64 || (id[il] && id[il] != '?'))
        return false;
    memcpy(out, id, il);
    out[il] = '\0';
    return true;
}

/* ---- the store hook: lifecycle receipts ------------------------------------ */

#define T_CREATE "io.kennel.sandbox.create"
#define T_PAUSE "io.kennel.sandbox.pause"
#define T_RESUME "io.kennel.sandbox.resume"
#define T_RENEW "io.kennel.sandbox.renew"
#define T_METADATA "io.kennel.sandbox.metadata.update"
#define T_DELETE "io.kennel.sandbox.delete"
#define T_EXPIRE "io.kennel.sandbox.expire"
#define T_FAIL "io.kennel.sandbox.fail"
#define T_EXIT "io.kennel.sandbox.exit"

static bool
ended(const char *state)
{
    return !strcmp(state, "Failed") || !strcmp(state, "Terminated");
}

static void
format_ms(int64_t ms, char *buf, size_t len)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static int
lifecycle(kn_rcpt_t *r, kn_store_tx_t *tx, const char *id, const char *type, const char *risk,
          json_t *params, json_t *response, const char *status, const char *error, bool terminal,
          const char *chain_status, bool need_chain, const char *corr, kn_error_t *err)
{
    char resource[96];
    snprintf(resource, sizeof resource, "/v1/sandboxes/%s", id);
    kn_receipt_action_t a = {.type = type,
                             .risk_level = risk,
                             .parameters = params,
                             .response = response,
                             .target_system = LIFECYCLE,
                             .target_resource = resource,
                             .status = status,
                             .error = error,
                             .terminal = terminal,
                             .chain_status = chain_status,
                             .correlation_id = corr};
    bool skipped;
    subject_t sub;
    subject_sandbox(&sub, id);
    int rc = append(r, tx, &sub, &a, principal_now(r), need_chain, &skipped, err);
    json_decref(params);
    json_decref(response);
    return rc;
}

static int
terminal_step(kn_rcpt_t *r, kn_store_tx_t *tx, const kn_store_change_t *ch, kn_error_t *err)
{
    const char *id = ch->id;
    char corr[37];
    bool del = ch->op == KN_STORE_OP_DELETE;
    const char *type = T_DELETE;
    if (del) {
        /* A delete outside a request is the reaper's: an expiry. */
        type = ctx.active && ctx.r == r ? T_DELETE : T_EXPIRE;
        step_correlation(r, tx, id, type, corr);
    } else {
        type = !strcmp(ch->state, "Failed") ? T_FAIL : T_EXIT;
        uuid_v4(corr);
    }
    subject_t sub;
    subject_sandbox(&sub, id);
    if (pty_close_all(r, tx, id, err) < 0)
        return -1;
    pty_io_drop(r, id, NULL);
    if (close_unanswered(r, tx, &sub, corr, "the sandbox ended before the outcome was observed",
                         err) < 0)
        return -1;
    if (del)
        return lifecycle(r, tx, id, type, "high", json_object(), json_pack("{s:b}", "deleted", 1),
                         "success", NULL, true, "complete", true, corr, err);
    bool failed = !strcmp(ch->state, "Failed");
    json_t *params =
        json_pack("{s:s, s:s}", "state", ch->state, "reason", ch->reason ? ch->reason : "");
    return lifecycle(r, tx, id, type, failed ? "high" : "medium", params, json_object(),
                     failed ? "failure" : "success",
                     failed ? (ch->reason ? ch->reason : "failed") : NULL, true,
                     failed ? "interrupted" : "complete", true, corr, err);
}

static int
hook(kn_store_tx_t *tx, const kn_store_change_t *ch, void *hctx, kn_error_t *err)
{
    kn_rcpt_t *r = hctx;
    const kn_store_rec_t *b = ch->before;
    char corr[37], when[40];
    int rc = 0;
    tx_start(r);
    /* Pool members are nobody's sandbox: no receipts until one is taken. */
    if (!strcmp(b->state, "Warm"))
        return 0;
    switch (ch->op) {
    case KN_STORE_OP_STATE:
        if (!strcmp(b->state, "Pending") && !strcmp(ch->state, "Running")) {
            json_t *spec = json_loads(b->spec, 0, NULL);
            if (json_object_get(spec, "pool")) { /* a warm member's own start */
                json_decref(spec);
                return 0;
            }
            if (ctx.active && ctx.r == r)
                memcpy(corr, ctx.corr, sizeof corr);
            else
                uuid_v4(corr);
            rc = lifecycle(r, tx, ch->id, T_CREATE, "medium", spec ? spec : json_object(),
                           json_pack("{s:s, s:s}", "id", ch->id, "state", "Running"), "success",
                           NULL, false, NULL, false, corr, err);
        } else if ((!strcmp(b->state, "Running") && !strcmp(ch->state, "Paused")) ||
                   (!strcmp(b->state, "Paused") && !strcmp(ch->state, "Running"))) {
            bool pause = !strcmp(ch->state, "Paused");
            step_correlation(r, tx, ch->id, pause ? T_PAUSE : T_RESUME, corr);
            rc = lifecycle(r, tx, ch->id, pause ? T_PAUSE : T_RESUME, "medium", json_object(),
                           json_pack("{s:s}", "state", ch->state), "success", NULL, false, NULL,
                           true, corr, err);
        } else if (ended(ch->state) && !ended(b->state) && strcmp(b->state, "Pending")) {
            rc = terminal_step(r, tx, ch, err);
        }
        break;
    case KN_STORE_OP_METADATA: {
        json_t *meta = json_loads(ch->metadata, 0, NULL);
        rc = lifecycle(r, tx, ch->id, T_METADATA, "low",
                       json_pack("{s:o}", "metadata", meta ? meta : json_object()), json_object(),
                       "success", NULL, false, NULL, true,
                       ctx.active && ctx.r == r ? ctx.corr : NULL, err);
        break;
    }
    case KN_STORE_OP_EXPIRES:
        if (!strcmp(b->state, "Pending"))
            return 0;
        format_ms(ch->expires_ms, when, sizeof when);
        rc = lifecycle(r, tx, ch->id, T_RENEW, "low", json_pack("{s:s}", "expiresAt", when),
                       json_object(), "success", NULL, false, NULL, true,
                       ctx.active && ctx.r == r ? ctx.corr : NULL, err);
        break;
    case KN_STORE_OP_DELETE:
        if (!strcmp(b->state, "Pending") || ended(b->state))
            return 0; /* never acknowledged, or its chain ended already */
        rc = terminal_step(r, tx, ch, err);
        break;
    case KN_STORE_OP_INTENT: {
        const char *type = !strcmp(ch->intent, "delete")   ? T_DELETE
                           : !strcmp(ch->intent, "expire") ? T_EXPIRE
                           : !strcmp(ch->intent, "pause")  ? T_PAUSE
                                                           : T_RESUME;
        if (!strcmp(b->state, "Pending") || ended(b->state))
            return 0;
        if (ctx.active && ctx.r == r) {
            memcpy(corr, ctx.corr, sizeof corr);
            snprintf(ctx.intent_sandbox, sizeof ctx.intent_sandbox, "%s", ch->id);
        } else {
            uuid_v4(corr);
        }
        bool high = !strcmp(ch->intent, "delete") || !strcmp(ch->intent, "expire");
        rc = lifecycle(r, tx, ch->id, type, high ? "high" : "medium", json_object(), NULL,
                       "pending", NULL, false, NULL, true, corr, err);
        break;
    }
    }
    if (rc < 0) {
        kn_error_prefix(err, "receipts");
        return tag(err);
    }
    return 0;
}

static void
hook_end(void *hctx, bool committed)
{
    kn_rcpt_t *r = hctx;
    if (!committed && (r->tx_written || r->tx_failed))
        r->refused++;
    tx_finish(r, committed);
}

/* ---- requests ------------------------------------------------------------- */

void
kn_rcpt_request_begin(kn_rcpt_t *r, const char *principal)
{
    if (!r)
        return;
    ctx.r = r;
    ctx.active = true;
    snprintf(ctx.principal, sizeof ctx.principal, "%s", principal);
    uuid_v4(ctx.corr);
    ctx.intent_sandbox[0] = '\0';
}

typedef struct fail_intent {
    step_t s;
    unsigned status;
} fail_intent_t;

static int
fail_intent_tx(kn_store_tx_t *tx, void *arg, kn_error_t *err)
{
    fail_intent_t *f = arg;
    kn_rcpt_t *r = f->s.r;
    char chain_id[96], **corrs = NULL, **jsons = NULL, why[96];
    size_t n = 0;
    tx_start(r);
    kn_rcpt_chain_id(ctx.intent_sandbox, chain_id, sizeof chain_id);
    if (kn_store_tx_unanswered(tx, chain_id, ctx.corr, &corrs, &jsons, &n, err) < 0)
        return -1;
    int rc = 0;
    if (n) {
        snprintf(why, sizeof why, "the action failed (HTTP %u)", f->status);
        subject_t sub;
        subject_sandbox(&sub, ctx.intent_sandbox);
        rc = close_unanswered(r, tx, &sub, NULL, why, err);
    }
    kn_store_strings_free(corrs, n);
    kn_store_strings_free(jsons, n);
    return rc;
}

void
kn_rcpt_request_end(kn_rcpt_t *r, unsigned status)
{
    if (!r || !ctx.active)
        return;
    if (ctx.intent_sandbox[0] && (status < 200 || status >= 300)) {
        /* Only this request's intent is open here: close_unanswered() with
         * the request's own correlation id. */
        fail_intent_t f = {.status = status};
        kn_error_t err = {0};
        if (run(r, fail_intent_tx, &f.s, &err) < 0)
            r->dropped++;
    }
    ctx.active = false;
    ctx.r = NULL;
}

/* ---- execd calls ---------------------------------------------------------- */

kn_rcpt_call_t *
kn_rcpt_call_new(kn_rcpt_t *r, const char *sandbox_id, const char *principal, const char *method,
                 const char *target, const char *content_type, bool *not_action, kn_error_t *err)
{
    *not_action = true;
    if (!r)
        return NULL;
    char pty[64];
    kn_store_pty_t row;
    bool pty_close = false;
    if (pty_delete_target(method, target, pty)) {
        /* Only a PTY this server opened has a close to record; any other
         * DELETE goes to execd as it is (which answers 404 for a PTY it
         * does not know). */
        bool found = false;
        if (kn_store_pty_get(r->store, sandbox_id, pty, &row, &found, err) < 0) {
            *not_action = false;
            return NULL;
        }
        if (!found)
            return NULL;
        pty_close = true;
    }
    kn_execd_capture_t *cap = kn_execd_capture_new(method, target, not_action, err);
    if (!cap)
        return NULL;
    kn_rcpt_call_t *c = calloc(1, sizeof *c);
    if (!c) {
        kn_execd_capture_free(cap);
        *not_action = false;
        kn_error_set(err, ENOMEM, "receipts");
        return NULL;
    }
    c->r = r;
    c->cap = cap;
    snprintf(c->sandbox, sizeof c->sandbox, "%s", sandbox_id);
    snprintf(c->principal, sizeof c->principal, "%s", principal);
    uuid_v4(c->corr);
    c->pty_open = !strcmp(kn_execd_capture_type(cap), "system.pty.open");
    if (pty_close) {
        c->pty_close = true;
        snprintf(c->pty_id, sizeof c->pty_id, "%s", pty);
        memcpy(c->corr, row.corr, sizeof c->corr); /* the open's */
    }
    kn_execd_capture_request_type(cap, content_type);
    return c;
}

bool
kn_rcpt_call_reads_body(const kn_rcpt_call_t *c)
{
    return kn_execd_capture_reads_body(c->cap);
}

void
kn_rcpt_call_request_body(kn_rcpt_call_t *c, const char *data, size_t len)
{
    kn_execd_capture_request_body(c->cap, data, len);
}

void
kn_rcpt_call_response_head(void *call, unsigned status, const char *content_type)
{
    kn_rcpt_call_t *c = call;
    kn_execd_capture_response_head(c->cap, status, content_type);
}

void
kn_rcpt_call_response_body(void *call, const char *data, size_t len)
{
    kn_rcpt_call_t *c = call;
    kn_execd_capture_response_body(c->cap, data, len);
}

typedef struct call_step {
    step_t s;
    kn_rcpt_call_t *c;
    kn_receipt_action_t a;
    bool outcome;
    const char *intent; /* the begin of an intent call: its action text */
    bool drop;          /* only the intent goes (its receipt was dropped) */
    prebuilt_t *pre;    /* the receipt, built already (may be unusable) */
} call_step_t;

/* An intent call's begin: refused on an ended chain, else its intent. */
static int
intent_tx(kn_store_tx_t *tx, call_step_t *s, const subject_t *sub, kn_error_t *err)
{
    kn_rcpt_t *r = s->c->r;
    uint64_t seq = 0;
    char hash[KN_RECEIPT_HASH_SIZE] = "";
    char *json = NULL;
    bool found = false, ended = false;
    if (kn_store_tx_tail(tx, sub->chain_id, &seq, hash, sizeof hash, &json, &found, err) < 0)
        return -1;
    /* Whether the chain ended: the memo says when it knows this head. */
    tail_memo_t *m = found ? memo_find(r, sub->chain_id) : NULL;
    if (m && m->sequence == seq && !strcmp(m->hash, hash)) {
        ended = m->ended;
    } else if (found) {
        json_t *tail = json_loads(json, 0, NULL);
        const json_t *ch = json_object_get(json_object_get(tail, "credentialSubject"), "chain");
        ended = json_is_true(json_object_get(ch, "terminal"));
        json_decref(tail);
    }
    free(json);
    if (ended)
        return kn_server_error(err, EBUSY, "sandbox %s has ended (its receipt chain is closed)",
                               s->c->sandbox);
    return kn_store_tx_intent_put(tx, s->c->corr, sub->chain_id, s->intent, err);
}

static int
call_tx(kn_store_tx_t *tx, void *arg, kn_error_t *err)
{
    call_step_t *s = arg;
    bool skipped;
    subject_t sub;
    subject_sandbox(&sub, s->c->sandbox);
    tx_start(s->c->r);
    if (s->intent)
        return intent_tx(tx, s, &sub, err);
    if (s->drop)
        return kn_store_tx_intent_del(tx, s->c->corr, NULL, err);
    if (s->c->intent) {
        /* The receipt answers the intent; without one, something answered
         * the call already (the sandbox's end, with a failure). */
        bool found;
        if (kn_store_tx_intent_del(tx, s->c->corr, &found, err) < 0)
            return -1;
        if (!found)
            return 0;
        bool used = false;
        if (s->pre && s->pre->rec && insert_prebuilt(s->c->r, tx, &sub, s->pre, &used, err) < 0)
            return -1;
        if (used)
            return 0;
    }
    if (append(s->c->r, tx, &sub, &s->a, s->c->principal, false, &skipped, err) < 0)
        return -1;
    if (skipped && !s->outcome)
        return kn_server_error(err, EBUSY, "sandbox %s has ended (its receipt chain is closed)",
                               s->c->sandbox);
    kn_rcpt_call_t *c = s->c;
    if (!skipped && c->pty_open && s->outcome && c->pty_id[0] &&
        kn_store_tx_pty_put(tx, c->sandbox, c->pty_id, c->corr, err) < 0)
        return -1;
    if (!skipped && c->pty_close &&
        (s->outcome ? kn_store_tx_pty_del(tx, c->sandbox, c->pty_id, err)
                    : kn_store_tx_pty_closing(tx, c->sandbox, c->pty_id, err)) < 0)
        return -1;
    /* An outcome after the chain ended: the terminal receipt answered it. */
    return 0;
}

/* A call other than a PTY's open or close: an intent now (no receipt yet:
 * it is cheap, and nothing is forwarded without it), one receipt once the
 * response has gone out. */
static int
begin_intent(kn_rcpt_call_t *c, kn_error_t *err)
{
    char when[40];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    format_ms((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, when, sizeof when);
    json_t *j =
        json_pack("{s:s, s:s?, s:s?, s:s, s:s}", "type", kn_execd_capture_type(c->cap), "system",
                  kn_execd_capture_system(c->cap), "resource", kn_execd_capture_resource(c->cap),
                  "principal", c->principal, "begun", when);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        kn_error_set(err, ENOMEM, "receipts");
        return tag(err);
    }
    call_step_t s = {.c = c, .intent = text};
    int rc = run(c->r, call_tx, &s.s, err);
    free(text);
    if (rc < 0) {
        if (err->code != EBUSY)
            c->r->refused++;
        kn_error_prefix(err, "receipts");
        return tag(err);
    }
    c->intent = true;
    c->begun = true;
    c->r->pending_open++;
    return 0;
}

int
kn_rcpt_call_begin(kn_rcpt_call_t *c, kn_error_t *err)
{
    if (!c->pty_open && !c->pty_close)
        return begin_intent(c, err);
    bool pending = false;
    json_t *params = c->pty_close ? NULL : kn_execd_capture_parameters(c->cap, &pending, err);
    if (!params && !pending && !c->pty_close)
        return tag(err);
    call_step_t s = {.c = c,
                     .a = {.type = kn_execd_capture_type(c->cap),
                           .parameters = params,
                           .target_system = kn_execd_capture_system(c->cap),
                           .target_resource = kn_execd_capture_resource(c->cap),
                           .status = "pending",
                           .correlation_id = c->corr}};
    int rc = run(c->r, call_tx, &s.s, err);
    json_decref(params);
    if (rc < 0) {
        if (err->code != EBUSY)
            c->r->refused++;
        kn_error_prefix(err, "receipts");
        return tag(err);
    }
    c->begun = true;
    c->r->pending_open++;
    return 0;
}

int
kn_rcpt_call_finish(void *call)
{
    kn_rcpt_call_t *c = call;
    if (!c->intent)
        return kn_rcpt_call_end(c, true); /* a PTY's: before the answer goes */
    /* The answer goes out now; its receipt follows at once, when the
     * request completes (kn_rcpt_call_end from the completion callback). */
    if (c->begun && !c->seen) {
        c->seen = true;
        pthread_mutex_lock(&c->r->late_mu);
        c->r->late++;
        pthread_mutex_unlock(&c->r->late_mu);
    }
    return 0;
}

static void *
writer_main(void *arg)
{
    kn_rcpt_t *r = arg;
    pthread_mutex_lock(&r->late_mu);
    for (;;) {
        while (!r->q_head && !r->writer_stop)
            pthread_cond_wait(&r->q_cv, &r->late_mu);
        kn_rcpt_call_t *c = r->q_head;
        if (!c)
            break; /* stopping, and nothing is left */
        r->q_head = c->next;
        if (!r->q_head)
            r->q_tail = NULL;
        pthread_mutex_unlock(&r->late_mu);
        kn_rcpt_call_end(c, true);
        kn_rcpt_call_free(c);
        pthread_mutex_lock(&r->late_mu);
    }
    pthread_mutex_unlock(&r->late_mu);
    return NULL;
}

void
kn_rcpt_call_done(kn_rcpt_call_t *c)
{
    if (!c)
        return;
    kn_rcpt_t *r = c->r;
    if (c->begun && c->seen) {
        pthread_mutex_lock(&r->late_mu);
        bool queued = r->writer_on && !r->writer_stop;
        if (queued) {
            c->next = NULL;
            if (r->q_tail)
                r->q_tail->next = c;
            else
                r->q_head = c;
            r->q_tail = c;
            pthread_cond_signal(&r->q_cv);
        }
        pthread_mutex_unlock(&r->late_mu);
        if (queued)
            return;
    }
    kn_rcpt_call_end(c, false);
    kn_rcpt_call_free(c);
}

void
kn_rcpt_settle(kn_rcpt_t *r)
{
    if (!r)
        return;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&r->late_mu);
    while (r->late > 0)
        if (pthread_cond_timedwait(&r->late_cv, &r->late_mu, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&r->late_mu);
}

int
kn_rcpt_call_end(kn_rcpt_call_t *c, bool complete)
{
    if (!c || !c->begun)
        return 0;
    complete = complete || c->seen;
    kn_error_t err = {0};
    bool pending = false;
    json_t *response = NULL;
    const char *st = "failure";
    char error[256];
    json_t *params = kn_execd_capture_parameters(c->cap, &pending, &err);
    if (!params && pending) /* an upload that did not arrive whole */
        params = NULL;
    int rc = kn_execd_capture_outcome(c->cap, complete, &response, &st, error, sizeof error, &err);
    if (rc == 0 && c->pty_open && !strcmp(st, "success")) {
        const char *id = kn_execd_capture_pty_id(c->cap);
        snprintf(c->pty_id, sizeof c->pty_id, "%s", id ? id : "");
        if (id) {
            pthread_mutex_lock(&c->r->pty_mu);
            (void)pty_io_find(c->r, c->sandbox, id, true, false);
            pthread_mutex_unlock(&c->r->pty_mu);
        }
    }
    if (rc == 0 && c->pty_close) {
        /* The close commits to what the PTY did, not to DELETE's (empty)
         * answer: {"exit_code" (when its exit frame was seen), "signal"} ->
         * {"io_hash"}. */
        json_t *pp = NULL, *pr = NULL;
        if (!strcmp(st, "success"))
            pty_wait_exit_frame(c->r, c->sandbox, c->pty_id);
        pty_close_payload(c->r, c->sandbox, c->pty_id, "SIGHUP", &pp, &pr);
        json_decref(params);
        params = pp;
        if (!strcmp(st, "success")) {
            json_decref(response);
            response = pr;
        } else {
            json_decref(pr);
        }
    }
    if (rc == 0) {
        call_step_t s = {.c = c,
                         .outcome = true,
                         .a = {.type = kn_execd_capture_type(c->cap),
                               .parameters = params,
                               .response = response,
                               .target_system = kn_execd_capture_system(c->cap),
                               .target_resource = kn_execd_capture_resource(c->cap),
                               .status = st,
                               .error = !strcmp(st, "failure") ? error : NULL,
                               .correlation_id = c->corr}};
        prebuilt_t pb;
        subject_t sub;
        subject_sandbox(&sub, c->sandbox);
        if (c->intent && prebuild(c->r, &sub, &s.a, c->principal, &pb))
            s.pre = &pb;
        rc = run(c->r, call_tx, &s.s, &err);
        if (s.pre)
            prebuilt_free(&pb);
    }
    if (rc < 0) {
        /* The action ran: it cannot be refused any more. A drop, recorded in
         * the chain before its next receipt. */
        char chain_id[96];
        kn_rcpt_chain_id(c->sandbox, chain_id, sizeof chain_id);
        drop_add(c->r, chain_id, 1);
        c->r->dropped++;
        /* The drop record accounts for it: the intent goes if it can (else
         * the sandbox's end answers it with a failure). */
        if (c->intent) {
            call_step_t d = {.c = c, .drop = true};
            kn_error_t ignored = {0};
            (void)run(c->r, call_tx, &d.s, &ignored);
        }
        fprintf(stderr,
                "{\"level\":\"error\",\"msg\":\"an outcome receipt was dropped\","
                "\"sandboxId\":\"%s\",\"detail\":\"%s\"}\n",
                c->sandbox, err.msg);
    }
    c->r->pending_open--;
    c->begun = false;
    if (c->seen) {
        pthread_mutex_lock(&c->r->late_mu);
        if (--c->r->late == 0)
            pthread_cond_broadcast(&c->r->late_cv);
        pthread_mutex_unlock(&c->r->late_mu);
    }
    if (c->pty_close)
        pty_io_drop(c->r, c->sandbox, c->pty_id);
    json_decref(params);
    json_decref(response);
    return rc < 0 ? -1 : 0;
}

void
kn_rcpt_call_free(kn_rcpt_call_t *c)
{
    if (!c)
        return;
    kn_execd_capture_free(c->cap);
    free(c);
}

/* ---- server actions that change no sandbox row ------------------------------ */

void
kn_rcpt_act_init(kn_rcpt_act_t *a, const char *type, const char *risk, const char *system,
                 const char *resource, const char *sandbox_id, const char *snapshot_id)
{
    memset(a, 0, sizeof *a);
    a->type = type;
    a->risk = risk;
    a->system = system;
    snprintf(a->resource, sizeof a->resource, "%s", resource);
    snprintf(a->sandbox, sizeof a->sandbox, "%s", sandbox_id ? sandbox_id : "");
    snprintf(a->snapshot, sizeof a->snapshot, "%s", snapshot_id ? snapshot_id : "");
}

typedef struct act_step {
    step_t s;
    kn_rcpt_act_t *a;
    const json_t *response;
    const char *error;
    bool outcome;
    int (*change)(struct sqlite3 *db, void *cctx, kn_error_t *err);
    void *change_ctx;
} act_step_t;

static void
act_subject(const kn_rcpt_act_t *a, bool mirror, subject_t *sub)
{
    if (a->snapshot[0] && (!a->mirror || mirror))
        subject_snapshot(sub, a->snapshot, a->sandbox);
    else
        subject_sandbox(sub, a->sandbox);
}

static int
act_tx(kn_store_tx_t *tx, void *arg, kn_error_t *err)
{
    act_step_t *s = arg;
    kn_rcpt_act_t *a = s->a;
    kn_rcpt_t *r = s->s.r;
    bool fail = s->error != NULL;
    kn_receipt_action_t ra = {.type = a->type,
                              .risk_level = a->risk,
                              .parameters = a->params,
                              .response = s->outcome ? s->response : NULL,
                              .target_system = a->system,
                              .target_resource = a->resource,
                              .status = !s->outcome ? "pending"
                                        : fail      ? "failure"
                                                    : "success",
                              .error = s->error,
                              .terminal = s->outcome && !fail && a->terminal,
                              .chain_status =
                                  s->outcome && !fail && a->terminal ? "complete" : NULL,
                              .correlation_id = a->corr};
    subject_t sub;
    bool skipped;
    tx_start(r);
    act_subject(a, false, &sub);
    /* A snapshot's own chain may begin with its deletion (taken before
     * receipts, or by a server without them); a sandbox's must exist. */
    if (append(r, tx, &sub, &ra, a->principal, !a->snapshot[0] || a->mirror, &skipped, err) < 0)
        return -1;
    if (skipped && !s->outcome)
        return kn_server_error(err, EBUSY, "%s has ended (its receipt chain is closed)",
                               sub.chain_id);
    if (s->outcome && a->mirror) {
        /* The outcome of a capture also opens the snapshot's own chain. */
        act_subject(a, true, &sub);
        if (append(r, tx, &sub, &ra, a->principal, false, &skipped, err) < 0)
            return -1;
    }
    if (s->change && s->change(kn_store_tx_db(tx), s->change_ctx, err) < 0) {
        r->tx_failed = true;
        return -1;
    }
    return 0;
}

int
kn_rcpt_act_begin(kn_rcpt_t *r, kn_rcpt_act_t *a, json_t *params, kn_error_t *err)
{
    a->r = r;
    if (!r) {
        json_decref(params);
        return 0;
    }
    a->params = params ? params : json_object();
    if (!a->params)
        return kn_error_set(err, ENOMEM, "receipts");
    if (ctx.active && ctx.r == r) {
        snprintf(a->principal, sizeof a->principal, "%s", ctx.principal);
        memcpy(a->corr, ctx.corr, sizeof a->corr);
    } else {
        snprintf(a->principal, sizeof a->principal, "urn:kennel:server");
        uuid_v4(a->corr);
    }
    act_step_t s = {.a = a};
    if (run(r, act_tx, &s.s, err) < 0) {
        if (err->code != EBUSY)
            r->refused++;
        json_decref(a->params);
        a->params = NULL;
        kn_error_prefix(err, "receipts");
        return tag(err);
    }
    a->begun = true;
    r->pending_open++;
    return 0;
}

static int
act_end(kn_rcpt_act_t *a, const json_t *response, const char *error,
        int (*change)(struct sqlite3 *db, void *cctx, kn_error_t *err), void *cctx)
{
    kn_rcpt_t *r = a->r;
    if (!r || !a->begun)
        return change ? 1 : 0;
    kn_error_t err = {0};
    act_step_t s = {.a = a,
                    .outcome = true,
                    .response = response,
                    .error = error,
                    .change = change,
                    .change_ctx = cctx};
    int rc = run(r, act_tx, &s.s, &err);
    if (rc < 0) {
        subject_t sub;
        act_subject(a, false, &sub);
        drop_add(r, sub.chain_id, 1);
        r->dropped++;
        fprintf(stderr,
                "{\"level\":\"error\",\"msg\":\"an outcome receipt was dropped\","
                "\"chainId\":\"%s\",\"detail\":\"%s\"}\n",
                sub.chain_id, err.msg);
    }
    r->pending_open--;
    a->begun = false;
    json_decref(a->params);
    a->params = NULL;
    return rc < 0 ? -1 : 0;
}

int
kn_rcpt_act_end(kn_rcpt_act_t *a, const json_t *response, const char *error)
{
    return act_end(a, response, error, NULL, NULL);
}

int
kn_rcpt_act_end_with(kn_rcpt_act_t *a, const json_t *response, const char *error,
                     int (*change)(struct sqlite3 *db, void *cctx, kn_error_t *err), void *cctx)
{
    return act_end(a, response, error, change, cctx);
}

/* ---- keys --------------------------------------------------------------- */

static int
append_ring(const char *path, const unsigned char *pk, kn_error_t *err)
{
    char pem[KN_RECEIPT_PEM_SIZE], mb[KN_RECEIPT_MULTIBASE_KEY_SIZE];
    kn_receipt_public_key_to_pem(pk, pem);
    kn_receipt_public_key_encode(pk, mb);
    /* Already there? */
    FILE *f = fopen(path, "re");
    if (f) {
        char text[MAX_KEYS * KN_RECEIPT_PEM_SIZE * 2];
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[n] = '\0';
        if (strstr(text, pem))
            return 0;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return kn_error_set(err, errno, "keyring %s", path);
    fchmod(fd, 0644);
    char line[KN_RECEIPT_PEM_SIZE + 128];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int len = snprintf(line, sizeof line, "# %s since %04d-%02d-%02dT%02d:%02d:%02dZ\n%s", mb,
                       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                       tm.tm_sec, pem);
    int rc = write(fd, line, (size_t)len) == len && fsync(fd) == 0 ? 0 : -1;
    int e = errno;
    close(fd);
    return rc < 0 ? kn_error_set(err, e, "keyring %s", path) : 0;
}

typedef struct rotate_step {
    step_t s;
    kn_receipt_key_t *next;
    const char *next_path;
    size_t chains;
    int installed; /* errno of installing the new key file, 0 when done */
} rotate_step_t;

/* Committed: the new key signs from now on. Under the store's lock, so that
 * no receipt of a rotated chain is signed with the old key after it. */
static void
rotate_commit(step_t *st)
{
    rotate_step_t *s = (rotate_step_t *)st;
    s->installed = rename(s->next_path, st->r->key_path) < 0 ? errno : 0;
    pthread_mutex_lock(&st->r->mu); /* prebuild() copies the key under mu */
    memcpy(&st->r->key, s->next, sizeof *s->next);
    pthread_mutex_unlock(&st->r->mu);
}

static int
rotate_tx(kn_store_tx_t *tx, void *arg, kn_error_t *err)
{
    rotate_step_t *s = arg;
    kn_rcpt_t *r = s->s.r;
    char **ids = NULL;
    size_t n = 0;
    tx_start(r);
    if (kn_store_tx_chains(tx, false, &ids, &n, err) < 0)
        return -1;
    int ret = 0;
    for (size_t i = 0; i < n && ret == 0; i++) {
        subject_t sub;
        if (!subject_of_chain(&sub, ids[i]))
            continue;
        chain_at_t at;
        char hash[KN_RECEIPT_HASH_SIZE];
        if ((ret = open_chain(r, tx, &sub, NULL, &at, err)) < 0)
            break;
        if (!at.ended) {
            json_t *rec = kn_receipt_chain_rotate(at.chain, s->next, NULL, hash, err);
            ret = rec ? insert(r, tx, rec, hash, NULL, err) : -1;
            json_decref(rec);
            s->chains++;
        }
        kn_receipt_chain_free(at.chain);
    }
    kn_store_strings_free(ids, n);
    return ret;
}

int
kn_rcpt_rotate(kn_rcpt_t *r, json_t **out, kn_error_t *err)
{
    char next_path[PATH_MAX + 8], mb[KN_RECEIPT_MULTIBASE_KEY_SIZE];
    kn_receipt_key_t next;
    snprintf(next_path, sizeof next_path, "%s.next", r->key_path);
    unlink(next_path);
    if (kn_receipt_key_generate(&next, err) < 0 || kn_receipt_key_save(&next, next_path, err) < 0)
        return -1;
    /* The new key is on disk before any chain names it; it replaces the old
     * file only after the rotation receipts are committed (kn_rcpt_open()
     * finishes the rename after a crash in between). */
    rotate_step_t s = {.s.on_commit = rotate_commit, .next = &next, .next_path = next_path};
    int rc = run(r, rotate_tx, &s.s, err);
    if (rc < 0) {
        unlink(next_path);
        kn_receipt_key_wipe(&next);
        return -1;
    }
    kn_receipt_public_key_encode(next.public_key, mb);
    if (s.installed || append_ring(r->ring_path, next.public_key, err) < 0) {
        /* The chains are handed over and the key signs; only its file (or
         * the keyring) is not in place: say so loudly. */
        kn_error_set(err, s.installed ? s.installed : errno,
                     "the rotation is committed but the new key could not be installed as %s "
                     "(it is in %s)",
                     r->key_path, next_path);
        kn_receipt_key_wipe(&next);
        return -1;
    }
    kn_receipt_key_wipe(&next);
    *out = json_pack("{s:s, s:I}", "publicKey", mb, "rotatedChains", (json_int_t)s.chains);
    return *out ? 0 : kn_error_set(err, ENOMEM, "rotate");
}

int
kn_rcpt_keys(kn_rcpt_t *r, json_t **out, kn_error_t *err)
{
    char text[MAX_KEYS * KN_RECEIPT_PEM_SIZE * 2] = "";
    unsigned char keys[MAX_KEYS][KN_RECEIPT_PUBLIC_KEY_SIZE];
    size_t n = 0;
    FILE *f = fopen(r->ring_path, "re");
    if (f) {
        size_t len = fread(text, 1, sizeof text - 1, f);
        text[len] = '\0';
        fclose(f);
    }
    if (kn_receipt_public_keys_from_text(text, keys, MAX_KEYS, &n, err) < 0)
        n = 0;
    json_t *items = json_array();
    for (size_t i = 0; items && i < n; i++) {
        char mb[KN_RECEIPT_MULTIBASE_KEY_SIZE], pem[KN_RECEIPT_PEM_SIZE];
        kn_receipt_public_key_encode(keys[i], mb);
        kn_receipt_public_key_to_pem(keys[i], pem);
        json_array_append_new(items, json_pack("{s:s, s:s, s:b}", "publicKey", mb, "pem", pem,
                                               "current", !memcmp(keys[i], r->key.public_key, 32)));
    }
    *out = json_pack("{s:s, s:o}", "issuer", r->issuer, "keys", items);
    return *out ? 0 : kn_error_set(err, ENOMEM, "keys");
}

/* ---- start-up ------------------------------------------------------------ */

typedef struct recover_step {
    step_t s;
    size_t closed;
} recover_step_t;

static int
recover_tx(kn_store_tx_t *tx, void *arg, kn_error_t *err)
{
    recover_step_t *s = arg;
    kn_rcpt_t *r = s->s.r;
    char **ids = NULL;
    size_t n = 0;
    tx_start(r);
    long before_ptys = r->tx_written;
    if (pty_close_all(r, tx, NULL, err) < 0)
        return -1;
    s->closed += (size_t)(r->tx_written - before_ptys);
    if (kn_store_tx_chains(tx, true, &ids, &n, err) < 0)
        return -1;
    int ret = 0;
    for (size_t i = 0; i < n && ret == 0; i++) {
        subject_t sub;
        if (!subject_of_chain(&sub, ids[i]))
            continue;
        long before = r->tx_written;
        ret = close_unanswered(r, tx, &sub, NULL,
                               "the server stopped before the outcome was observed", err);
        s->closed += (size_t)(r->tx_written - before);
    }
    kn_store_strings_free(ids, n);
    return ret;
}

/* A rotation interrupted between its commit and the key's rename. */
typedef struct next_step {
    step_t s;
    const char *mb;
    bool found;
} next_step_t;

static int
next_tx(kn_store_tx_t *tx, void *arg, kn_error_t *err)
{
    next_step_t *s = arg;
    return kn_store_tx_rotated_to(tx, s->mb, &s->found, err);
}

static int
finish_rotation(kn_rcpt_t *r, kn_error_t *err)
{
    char next_path[PATH_MAX + 8], mb[KN_RECEIPT_MULTIBASE_KEY_SIZE];
    kn_receipt_key_t next;
    snprintf(next_path, sizeof next_path, "%s.next", r->key_path);
    if (access(next_path, F_OK) < 0)
        return 0;
    if (kn_receipt_key_load(&next, next_path, err) < 0)
        return -1;
    kn_receipt_public_key_encode(next.public_key, mb);
    next_step_t s = {.mb = mb};
    if (run(r, next_tx, &s.s, err) < 0)
        return -1;
    int rc = 0;
    if (s.found) {
        if (rename(next_path, r->key_path) < 0)
            rc = kn_error_set(err, errno, "rename %s", next_path);
        else
            rc = append_ring(r->ring_path, next.public_key, err);
    } else {
        unlink(next_path);
    }
    kn_receipt_key_wipe(&next);
    return rc;
}

int
kn_rcpt_open(const kn_server_cfg_t *cfg, kn_store_t *store, kn_rcpt_t **out, kn_error_t *err)
{
    *out = NULL;
    if (cfg->receipts_off)
        return 0;
    kn_rcpt_t *r = calloc(1, sizeof *r);
    if (!r)
        return kn_error_set(err, ENOMEM, "receipts");
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->pty_mu, NULL);
    pthread_cond_init(&r->pty_cv, NULL);
    pthread_mutex_init(&r->late_mu, NULL);
    pthread_cond_init(&r->late_cv, NULL);
    pthread_cond_init(&r->q_cv, NULL);
    r->store = store;
    if (cfg->receipts_key) {
        snprintf(r->key_path, sizeof r->key_path, "%s", cfg->receipts_key);
    } else {
        char db[PATH_MAX];
        snprintf(db, sizeof db, "%s", cfg->db_path);
        snprintf(r->key_path, sizeof r->key_path, "%s/receipts.key", dirname(db));
    }
    snprintf(r->ring_path, sizeof r->ring_path, "%s.pub", r->key_path);
    if (cfg->receipts_issuer) {
        snprintf(r->issuer, sizeof r->issuer, "%s", cfg->receipts_issuer);
    } else {
        char host[128] = "localhost";
        gethostname(host, sizeof host - 1);
        snprintf(r->issuer, sizeof r->issuer, "did:kennel:%s", host);
    }
    recover_step_t rs = {0};
    if (finish_rotation(r, err) < 0 ||
        kn_receipt_key_load_or_create(&r->key, r->key_path, err) < 0 ||
        append_ring(r->ring_path, r->key.public_key, err) < 0) {
        kn_error_prefix(err, "receipts key");
        kn_rcpt_close(r);
        return -1;
    }
    int rc = run(r, recover_tx, &rs.s, err);
    if (rc < 0) {
        kn_error_prefix(err, "receipts: closing what an earlier server left pending");
        kn_rcpt_close(r);
        return -1;
    }
    if (rs.closed)
        fprintf(stderr,
                "{\"level\":\"info\",\"msg\":\"receipts: answered %zu pending receipt(s) an "
                "earlier server left\"}\n",
                rs.closed);
    if ((errno = pthread_create(&r->writer, NULL, writer_main, r)) != 0) {
        kn_error_set(err, errno, "receipts: starting the writer thread");
        kn_rcpt_close(r);
        return -1;
    }
    r->writer_on = true;
    kn_store_set_hook(store, hook, hook_end, r);
    *out = r;
    return 0;
}

void
kn_rcpt_close(kn_rcpt_t *r)
{
    if (!r)
        return;
    if (r->writer_on) {
        /* What is queued is written before the store goes. */
        pthread_mutex_lock(&r->late_mu);
        r->writer_stop = true;
        pthread_cond_signal(&r->q_cv);
        pthread_mutex_unlock(&r->late_mu);
        pthread_join(r->writer, NULL);
        r->writer_on = false;
    }
    if (r->store)
        kn_store_set_hook(r->store, NULL, NULL, NULL);
    kn_receipt_key_wipe(&r->key);
    pthread_mutex_destroy(&r->mu);
    while (r->ptys) {
        pty_io_t *e = r->ptys;
        r->ptys = e->next;
        free(e);
    }
    pthread_mutex_destroy(&r->pty_mu);
    pthread_cond_destroy(&r->pty_cv);
    pthread_mutex_destroy(&r->late_mu);
    pthread_cond_destroy(&r->late_cv);
    pthread_cond_destroy(&r->q_cv);
    free(r);
}

/* ---- API ---------------------------------------------------------------- */

static int
page(kn_rcpt_t *r, const char *what, const char *key, const char *id, const char *chain_id,
     uint64_t after, size_t limit, json_t **out, kn_error_t *err)
{
    char **jsons = NULL;
    size_t n = 0;
    /* A call answered to its client has its receipt in the page too. */
    kn_rcpt_settle(r);
    /* One more than asked: whether there is a next page. */
    if (kn_store_receipts(r->store, chain_id, after, limit + 1, &jsons, &n, err) < 0)
        return -1;
    if (n == 0 && after == 0) {
        kn_store_strings_free(jsons, n);
        return kn_server_error(err, ENOENT, "%s %s has no receipts", what, id);
    }
    bool more = n > limit;
    if (more)
        n = limit;
    json_t *items = json_array();
    uint64_t last = after;
    for (size_t i = 0; items && i < n; i++) {
        json_t *rec = json_loads(jsons[i], 0, NULL);
        json_int_t seq = json_integer_value(json_object_get(
            json_object_get(json_object_get(rec, "credentialSubject"), "chain"), "sequence"));
        if (seq > 0)
            last = (uint64_t)seq;
        json_array_append_new(items, rec ? rec : json_null());
    }
    kn_store_strings_free(jsons, more ? n + 1 : n);
    *out = json_pack("{s:s, s:s, s:o, s:{s:I, s:I, s:b, s:I}}", key, id, "chainId", chain_id,
                     "items", items, "pagination", "after", (json_int_t)after, "limit",
                     (json_int_t)limit, "hasMore", more, "next", (json_int_t)last);
    return *out ? 0 : kn_error_set(err, ENOMEM, "receipts");
}

int
kn_rcpt_page(kn_rcpt_t *r, const char *sandbox_id, uint64_t after, size_t limit, json_t **out,
             kn_error_t *err)
{
    char chain_id[96];
    kn_rcpt_chain_id(sandbox_id, chain_id, sizeof chain_id);
    return page(r, "sandbox", "sandboxId", sandbox_id, chain_id, after, limit, out, err);
}

int
kn_rcpt_snapshot_page(kn_rcpt_t *r, const char *snapshot_id, uint64_t after, size_t limit,
                      json_t **out, kn_error_t *err)
{
    char chain_id[96];
    kn_rcpt_snapshot_chain_id(snapshot_id, chain_id, sizeof chain_id);
    return page(r, "snapshot", "snapshotId", snapshot_id, chain_id, after, limit, out, err);
}

int
kn_rcpt_chains(kn_rcpt_t *r, json_t **out, kn_error_t *err)
{
    char **ids = NULL;
    size_t n = 0;
    if (kn_store_receipt_chains(r->store, &ids, &n, err) < 0)
        return -1;
    json_t *items = json_array();
    for (size_t i = 0; items && i < n; i++)
        json_array_append_new(items, json_string(ids[i]));
    kn_store_strings_free(ids, n);
    *out = json_pack("{s:o}", "chains", items);
    return *out ? 0 : kn_error_set(err, ENOMEM, "receipts");
}

void
kn_rcpt_metrics(kn_rcpt_t *r, char *buf, size_t size)
{
    snprintf(buf, size,
             "# HELP kennel_receipts_total Receipts written.\n"
             "# TYPE kennel_receipts_total counter\nkennel_receipts_total %ld\n"
             "# HELP kennel_receipts_refused_total Actions refused because their receipt could "
             "not be written.\n"
             "# TYPE kennel_receipts_refused_total counter\nkennel_receipts_refused_total %ld\n"
             "# HELP kennel_receipts_dropped_total Outcome receipts that could not be written "
             "after the action ran (recorded later as events_dropped).\n"
             "# TYPE kennel_receipts_dropped_total counter\nkennel_receipts_dropped_total %ld\n"
             "# TYPE kennel_receipts_pending gauge\nkennel_receipts_pending %ld\n",
             r ? (long)r->written : 0L, r ? (long)r->refused : 0L, r ? (long)r->dropped : 0L,
             r ? (long)r->pending_open : 0L);
}
