/* cmd_receipts.c - `kennel receipts verify|export|pubkey|rotate|public-key`:
 * check receipt chains (an export or the server's database), export them as
 * JSON lines, print the verification keys, rotate the server's key. The
 * cryptography is src/trust's; the database is read through store.h. */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "store.h"
#include "trust/jcs.h"
#include "trust/receipt.h"

#define EXIT_INVALID 1
#define MAX_KEYS 64

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: kennel receipts verify [KEY-OPTION] [OPTIONS] [--chain ID] FILE|DB\n"
            "       kennel receipts export [--chain ID] [--db PATH | -s SERVER]\n"
            "       kennel receipts pubkey [--key FILE | --keyring FILE | -s SERVER]\n"
            "       kennel receipts rotate [-s SERVER]\n"
            "       kennel receipts public-key KEYFILE\n"
            "\n"
            "verify checks every receipt's schema and signature, the sequence and every\n"
            "link of each chain, and names the first break. FILE (\"-\": stdin) holds JSON\n"
            "lines or a JSON array of receipts (each chain contiguous, in order); DB is the\n"
            "server's SQLite file, whose rows are also checked against their receipts and\n"
            "whose chains must end with a terminal receipt once their sandbox (snapshot) is\n"
            "gone.\n"
            "\n"
            "key (one of; default for a DB: the keyring receipts.key.pub beside it):\n"
            "  --public-key uKEY        issuer public key, multibase base64url\n"
            "  --public-key-file FILE   a PEM public key, a keyring of several, or uKEY\n"
            "  --key FILE               the host's private key file (mode 0600)\n"
            "options:\n"
            "  --chain ID               only this chain (chain, sandbox or snapshot id)\n"
            "  --expect-length N        the chain must have N receipts\n"
            "  --expect-head HASH       the last receipt must hash to HASH\n"
            "  --require-terminal       the last receipt must close the chain\n"
            "\n"
            "exit status: 0 valid, 1 invalid, %d usage or I/O error\n",
            KN_EXIT_KENNEL);
}

/* Reads all of path ("-": stdin) into a malloc'd NUL-terminated buffer. */
static char *
read_all(const char *path, size_t *len, kn_error_t *err)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rbe") : stdin;
    if (!f) {
        kn_error_set(err, errno, "open %s", path);
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 4096) {
            char *p = realloc(buf, cap ? cap * 2 : 65536);
            if (!p) {
                free(buf);
                buf = NULL;
                kn_error_set(err, ENOMEM, "read %s", path);
                break;
            }
            buf = p;
            cap = cap ? cap * 2 : 65536;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                free(buf);
                buf = NULL;
                kn_error_set(err, EIO, "read %s", path);
            }
            break;
        }
    }
    if (f != stdin)
        fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

/* A JSON array of receipts, one receipt object, or JSON lines. */
static json_t *
parse_receipts(const char *text, size_t len, kn_error_t *err)
{
    kn_error_t whole = {0};
    json_t *v = kn_jcs_parse(text, len, &whole);
    if (v && json_is_array(v))
        return v;
    if (v && json_is_object(v)) {
        json_t *arr = json_array();
        if (!arr || json_array_append_new(arr, v) < 0) {
            json_decref(arr);
            kn_error_set(err, ENOMEM, "receipts");
            return NULL;
        }
        return arr;
    }
    json_decref(v);
    json_t *arr = json_array();
    size_t line = 0;
    for (const char *p = text; arr && p < text + len;) {
        const char *nl = memchr(p, '\n', (size_t)(text + len - p));
        const char *end = nl ? nl : text + len;
        line++;
        const char *q = p;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\r'))
            q++;
        if (q < end) {
            json_t *r = kn_jcs_parse(p, (size_t)(end - p), err);
            if (!r || !json_is_object(r) || json_array_append_new(arr, r) < 0) {
                if (r && !json_is_object(r)) {
                    json_decref(r);
                    kn_error_set(err, EINVAL, "not a receipt object");
                }
                kn_error_prefix(err, "line %zu (neither a JSON array nor JSON lines)", line);
                json_decref(arr);
                return NULL;
            }
        }
        p = end + 1;
    }
    if (!arr)
        kn_error_set(err, ENOMEM, "receipts");
    return arr;
}

typedef struct verify_args {
    unsigned char keys[MAX_KEYS][KN_RECEIPT_PUBLIC_KEY_SIZE];
    size_t n_keys;
    kn_receipt_chain_expect_t expect;
    const char *chain;
    const char *path;
} verify_args_t;

/* Keys from a file holding PEM blocks (a keyring) or one "u..." key. */
static int
keys_file(const char *path, verify_args_t *a, kn_error_t *err)
{
    size_t len;
    char *text = read_all(path, &len, err);
    if (!text)
        return -1;
    int rc = kn_receipt_public_keys_from_text(text, a->keys, MAX_KEYS, &a->n_keys, err);
    free(text);
    return rc < 0 ? kn_error_prefix(err, "%s", path) : 0;
}

static bool
is_sqlite(const char *path)
{
    char head[16] = "";
    FILE *f = strcmp(path, "-") ? fopen(path, "rbe") : NULL;
    if (!f)
        return false;
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    return n == 16 && !memcmp(head, "SQLite format 3", 16);
}

/* Parses `verify` options into a. Returns 0 to go on, or an exit status + 1
 * (so --help, which exits 0, is distinguishable). */
static int
parse_verify_args(int argc, char **argv, verify_args_t *a)
{
    static const struct option opts[] = {
        {"public-key", required_argument, NULL, 'p'},
        {"public-key-file", required_argument, NULL, 'f'},
        {"key", required_argument, NULL, 'k'},
        {"chain", required_argument, NULL, 'c'},
        {"expect-length", required_argument, NULL, 'n'},
        {"expect-head", required_argument, NULL, 'H'},
        {"require-terminal", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    kn_error_t err = {0};
    int have_key = 0, c, rc = 0;
    optind = 1; /* the CLI runs one command per process; tests call it twice */
    while (!rc && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        kn_receipt_key_t key;
        char *end;
        switch (c) {
        case 'p':
            rc = kn_receipt_public_key_decode(optarg, a->keys[0], &err);
            a->n_keys = 1;
            have_key++;
            break;
        case 'f':
            rc = keys_file(optarg, a, &err);
            have_key++;
            break;
        case 'k':
            rc = kn_receipt_key_load(&key, optarg, &err);
            if (rc == 0)
                memcpy(a->keys[0], key.public_key, KN_RECEIPT_PUBLIC_KEY_SIZE);
            a->n_keys = 1;
            kn_receipt_key_wipe(&key);
            have_key++;
            break;
        case 'c':
            a->chain = optarg;
            break;
        case 'n':
            errno = 0;
            a->expect.length = strtoul(optarg, &end, 10);
            if (errno || *end || !a->expect.length)
                rc = kn_error_set(&err, EINVAL, "bad --expect-length '%s'", optarg);
            break;
        case 'H':
            a->expect.final_hash = optarg;
            break;
        case 't':
            a->expect.require_terminal = true;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return KN_EXIT_KENNEL + 1;
        }
    }
    if (!rc && (have_key > 1 || optind != argc - 1))
        rc = kn_error_set(&err, 0, "%s",
                          have_key > 1 ? "give at most one key option" : "give one FILE or DB");
    if (!rc && !have_key) {
        /* A database: the server keeps its keyring beside it. */
        char dir[PATH_MAX], ring[PATH_MAX + 32];
        if (!is_sqlite(argv[optind])) {
            rc = kn_error_set(&err, 0, "give a key option (--public-key-file ...)");
        } else {
            snprintf(dir, sizeof dir, "%s", argv[optind]);
            snprintf(ring, sizeof ring, "%s/receipts.key.pub", dirname(dir));
            rc = keys_file(ring, a, &err);
            if (rc == 0)
                fprintf(stderr, "kennel receipts verify: keys from %s\n", ring);
        }
    }
    if (rc) {
        fprintf(stderr, "kennel receipts verify: %s\n", err.msg);
        return KN_EXIT_KENNEL + 1;
    }
    a->path = argv[optind];
    return 0;
}

static const char *
chain_of(const json_t *r)
{
    return json_string_value(json_object_get(
        json_object_get(json_object_get(r, "credentialSubject"), "chain"), "chain_id"));
}

/* --chain takes a chain id, a sandbox id or a snapshot id. */
static bool
chain_wanted(const verify_args_t *a, const char *chain)
{
    if (!a->chain)
        return true;
    if (!chain)
        return false;
    if (!strcmp(a->chain, chain))
        return true;
    return (!strncmp(chain, "kennel/sandbox/", 15) && !strcmp(chain + 15, a->chain)) ||
           (!strncmp(chain, "kennel/snapshot/", 16) && !strcmp(chain + 16, a->chain));
}

/* Verifies one chain under the key of the keyring that signed its first
 * receipt (later keys come from its keyRotation receipts). Prints one line;
 * returns 0 valid, EXIT_INVALID, or KN_EXIT_KENNEL. */
static int
verify_one_chain(const verify_args_t *a, const char *where, const char *chain_id,
                 const json_t *receipts, const kn_receipt_chain_expect_t *expect)
{
    kn_receipt_verdict_t v;
    kn_error_t err = {0};
    size_t genesis = 0;
    for (size_t k = 0; k < a->n_keys; k++) {
        kn_receipt_verdict_t v0;
        kn_error_t e0 = {0};
        if (kn_receipt_verify(json_array_get(receipts, 0), a->keys[k], &v0, &e0) == 0) {
            genesis = k;
            break;
        }
    }
    int rc = kn_receipt_verify_chain(receipts, a->keys[genesis], expect, &v, &err);
    if (rc < 0 && v.check == KN_RECEIPT_VALID) { /* could not verify at all */
        fprintf(stderr, "kennel receipts verify: %s: %s\n", where, err.msg);
        return KN_EXIT_KENNEL;
    }
    if (rc < 0) {
        const json_t *bad = json_array_get(receipts, v.index);
        const char *id = json_string_value(json_object_get(bad, "id"));
        printf("INVALID %s: chain %s breaks at receipt %zu of %zu (id %s): %s: %s\n", where,
               chain_id ? chain_id : "?", v.index, v.count, id ? id : "?",
               kn_receipt_check_name(v.check), v.reason);
        return EXIT_INVALID;
    }
    printf("OK %s: chain %s, %zu receipts, head %s, termination %s\n", where, chain_id, v.count,
           v.head, v.termination);
    if (v.duplicate_keys)
        printf("warning: %zu idempotency key(s) appear on more than one receipt (retries?)\n",
               v.duplicate_keys);
    return 0;
}

static int
worst(int a, int b)
{
    return a == KN_EXIT_KENNEL || b == KN_EXIT_KENNEL ? KN_EXIT_KENNEL : a > b ? a : b;
}

/* A file: consecutive receipts of one chain_id form a chain; a chain id
 * met again after another chain is an error, never stitched. */
static int
verify_file(const verify_args_t *a)
{
    kn_error_t err = {0};
    size_t len;
    char *text = read_all(a->path, &len, &err);
    json_t *receipts = text ? parse_receipts(text, len, &err) : NULL;
    free(text);
    if (!receipts) {
        fprintf(stderr, "kennel receipts verify: %s: %s\n", a->path, err.msg);
        return KN_EXIT_KENNEL;
    }
    int ret = 0;
    size_t chains = 0, n = json_array_size(receipts);
    json_t *seen = json_object();
    for (size_t i = 0; i < n;) {
        const char *id = chain_of(json_array_get(receipts, i));
        size_t j = i + 1;
        while (j < n && id && chain_of(json_array_get(receipts, j)) &&
               !strcmp(id, chain_of(json_array_get(receipts, j))))
            j++;
        if (id && json_object_get(seen, id)) {
            printf("INVALID %s: chain %s breaks at receipt %zu: chain_id_mismatch: its "
                   "receipts are not contiguous\n",
                   a->path, id, i);
            ret = worst(ret, EXIT_INVALID);
        } else if (chain_wanted(a, id)) {
            json_t *part = json_array();
            for (size_t k = i; k < j; k++)
                json_array_append(part, json_array_get(receipts, k));
            ret = worst(ret, verify_one_chain(a, a->path, id, part, &a->expect));
            json_decref(part);
            chains++;
        }
        if (id)
            json_object_set_new(seen, id, json_true());
        i = j;
    }
    json_decref(seen);
    json_decref(receipts);
    if (!chains && !ret) {
        fprintf(stderr, "kennel receipts verify: %s: no %s\n", a->path,
                a->chain ? "such chain" : "receipts");
        return KN_EXIT_KENNEL;
    }
    return ret;
}

/* A row must index its receipt faithfully: the columns the protocol's
 * tools query by are checked against the receipt they describe. */
static int
check_rows(const verify_args_t *a, const char *chain, const kn_store_receipt_row_t *rows, size_t n,
           json_t *receipts)
{
    for (size_t i = 0; i < n; i++) {
        const json_t *r = json_array_get(receipts, i);
        const json_t *cs = json_object_get(r, "credentialSubject");
        const json_t *act = json_object_get(cs, "action");
        const json_t *ch = json_object_get(cs, "chain");
        char hash[KN_RECEIPT_HASH_SIZE] = "";
        kn_error_t err = {0};
        kn_receipt_hash(r, hash, &err);
        const char *prev = json_string_value(json_object_get(ch, "previous_receipt_hash"));
        const char *why = NULL;
        if (!r)
            why = "receipt_json is not JSON";
        else if (json_integer_value(json_object_get(ch, "sequence")) != rows[i].sequence &&
                 json_real_value(json_object_get(ch, "sequence")) != (double)rows[i].sequence)
            why = "the sequence column differs from the receipt's";
        else if (strcmp(rows[i].id ? rows[i].id : "",
                        json_string_value(json_object_get(r, "id")) ?: ""))
            why = "the id column differs from the receipt's";
        else if (strcmp(rows[i].receipt_hash ? rows[i].receipt_hash : "", hash))
            why = "the receipt_hash column is not the receipt's hash";
        else if (strcmp(rows[i].previous_receipt_hash ? rows[i].previous_receipt_hash : "",
                        prev ? prev : ""))
            why = "the previous_receipt_hash column differs from the receipt's";
        else if (strcmp(rows[i].action_type ? rows[i].action_type : "",
                        json_string_value(json_object_get(act, "type")) ?: "") ||
                 strcmp(rows[i].risk_level ? rows[i].risk_level : "",
                        json_string_value(json_object_get(act, "risk_level")) ?: ""))
            why = "the action_type or risk_level column differs from the receipt's";
        if (why) {
            printf("INVALID %s: chain %s breaks at receipt %zu of %zu (id %s): bad_row: %s\n",
                   a->path, chain, i, n, rows[i].id ? rows[i].id : "?", why);
            return EXIT_INVALID;
        }
    }
    return 0;
}

static int
verify_db(const verify_args_t *a)
{
    kn_store_t *st = NULL;
    kn_error_t err = {0};
    char **chains = NULL;
    size_t nc = 0;
    if (kn_store_open_readonly(a->path, &st, &err) < 0 ||
        kn_store_receipt_chains(st, &chains, &nc, &err) < 0) {
        fprintf(stderr, "kennel receipts verify: %s\n", err.msg);
        kn_store_close(st);
        return KN_EXIT_KENNEL;
    }
    int ret = 0;
    size_t done = 0;
    for (size_t c = 0; c < nc; c++) {
        if (!chain_wanted(a, chains[c]))
            continue;
        done++;
        kn_store_receipt_row_t *rows = NULL;
        size_t n = 0;
        if (kn_store_receipt_rows(st, chains[c], &rows, &n, &err) < 0) {
            fprintf(stderr, "kennel receipts verify: %s\n", err.msg);
            ret = worst(ret, KN_EXIT_KENNEL);
            continue;
        }
        json_t *receipts = json_array();
        for (size_t i = 0; i < n; i++) {
            kn_error_t e = {0};
            json_t *r = kn_jcs_parse(rows[i].receipt_json, strlen(rows[i].receipt_json), &e);
            json_array_append_new(receipts, r ? r : json_null());
        }
        /* A chain whose sandbox (snapshot) is gone has ended: it must say so. */
        kn_receipt_chain_expect_t expect = a->expect;
        bool found = true;
        if ((!strncmp(chains[c], "kennel/sandbox/", 15) &&
             kn_store_has_sandbox(st, chains[c] + 15, &found, &err) == 0 && !found) ||
            (!strncmp(chains[c], "kennel/snapshot/", 16) &&
             kn_store_has_snapshot(st, chains[c] + 16, &found, &err) == 0 && !found))
            expect.require_terminal = true;
        int rc = check_rows(a, chains[c], rows, n, receipts);
        if (rc == 0)
            rc = verify_one_chain(a, a->path, chains[c], receipts, &expect);
        ret = worst(ret, rc);
        json_decref(receipts);
        kn_store_receipt_rows_free(rows, n);
    }
    kn_store_strings_free(chains, nc);
    kn_store_close(st);
    if (!done && !ret) {
        fprintf(stderr, "kennel receipts verify: %s: no %s\n", a->path,
                a->chain ? "such chain" : "receipts");
        return KN_EXIT_KENNEL;
    }
    return ret;
}

static int
cmd_verify(int argc, char **argv)
{
    verify_args_t a = {0};
    int rc = parse_verify_args(argc, argv, &a);
    if (rc)
        return rc - 1;
    return is_sqlite(a.path) ? verify_db(&a) : verify_file(&a);
}

/* ---- export -------------------------------------------------------------- */

static int
export_server(const char *server, const char *chain)
{
    kn_client_t cl;
    kn_error_t err = {0};
    json_t *out = NULL;
    if (kn_client_init(&cl, server, &err) < 0)
        goto fail;
    json_t *ids = json_array();
    if (chain) {
        json_array_append_new(ids, json_string(chain));
    } else {
        if (kn_client_call(&cl, "GET", "/v1/receipts", NULL, &out, &err) < 0)
            goto fail;
        json_array_extend(ids, json_object_get(out, "chains"));
        json_decref(out);
    }
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        const char *id = json_string_value(v), *kind = "sandboxes";
        if (!strncmp(id, "kennel/sandbox/", 15)) {
            id += 15;
        } else if (!strncmp(id, "kennel/snapshot/", 16)) {
            id += 16;
            kind = "snapshots";
        }
        uint64_t after = 0;
        for (;;) {
            char path[256];
            snprintf(path, sizeof path, "/v1/%s/%s/receipts?after=%llu&limit=500", kind, id,
                     (unsigned long long)after);
            if (kn_client_call(&cl, "GET", path, NULL, &out, &err) < 0) {
                json_decref(ids);
                goto fail;
            }
            size_t k;
            json_t *r;
            json_array_foreach(json_object_get(out, "items"), k, r)
            {
                char *line = kn_jcs_canonicalize(r, NULL, &err);
                if (line)
                    printf("%s\n", line);
                free(line);
            }
            const json_t *pg = json_object_get(out, "pagination");
            bool more = json_is_true(json_object_get(pg, "hasMore"));
            after = (uint64_t)json_integer_value(json_object_get(pg, "next"));
            json_decref(out);
            if (!more)
                break;
        }
    }
    json_decref(ids);
    return 0;
fail:
    fprintf(stderr, "kennel receipts export: %s\n", err.msg);
    return KN_EXIT_KENNEL;
}

static int
export_db(const char *db, const char *chain)
{
    kn_store_t *st = NULL;
    kn_error_t err = {0};
    char **chains = NULL, **rows = NULL;
    size_t nc = 0, n = 0;
    if (kn_store_open_readonly(db, &st, &err) < 0 ||
        kn_store_receipt_chains(st, &chains, &nc, &err) < 0)
        goto fail;
    verify_args_t a = {.chain = chain};
    for (size_t c = 0; c < nc; c++) {
        if (!chain_wanted(&a, chains[c]))
            continue;
        if (kn_store_receipts(st, chains[c], 0, 0, &rows, &n, &err) < 0)
            goto fail;
        for (size_t i = 0; i < n; i++)
            printf("%s\n", rows[i]);
        kn_store_strings_free(rows, n);
        rows = NULL;
    }
    kn_store_strings_free(chains, nc);
    kn_store_close(st);
    return 0;
fail:
    fprintf(stderr, "kennel receipts export: %s\n", err.msg);
    kn_store_strings_free(chains, nc);
    kn_store_close(st);
    return KN_EXIT_KENNEL;
}

static int
cmd_export(int argc, char **argv)
{
    const char *server = kn_client_server_arg(&argc, argv), *db = NULL, *chain = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--chain") && i + 1 < argc)
            chain = argv[++i];
        else if (!strcmp(argv[i], "--db") && i + 1 < argc)
            db = argv[++i];
        else {
            usage(stderr);
            return KN_EXIT_KENNEL;
        }
    }
    if (db && server) {
        fprintf(stderr, "kennel receipts export: give --db or -s, not both\n");
        return KN_EXIT_KENNEL;
    }
    return db ? export_db(db, chain) : export_server(server, chain);
}

/* ---- keys ---------------------------------------------------------------- */

static int
cmd_pubkey(int argc, char **argv)
{
    const char *server = kn_client_server_arg(&argc, argv);
    kn_error_t err = {0};
    char pem[KN_RECEIPT_PEM_SIZE];
    if (argc == 3 && !strcmp(argv[1], "--key")) {
        kn_receipt_key_t key;
        if (kn_receipt_key_load(&key, argv[2], &err) < 0) {
            fprintf(stderr, "kennel receipts pubkey: %s\n", err.msg);
            return KN_EXIT_KENNEL;
        }
        kn_receipt_public_key_to_pem(key.public_key, pem);
        kn_receipt_key_wipe(&key);
        fputs(pem, stdout);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "--keyring")) {
        verify_args_t a = {0};
        if (keys_file(argv[2], &a, &err) < 0) {
            fprintf(stderr, "kennel receipts pubkey: %s\n", err.msg);
            return KN_EXIT_KENNEL;
        }
        for (size_t i = 0; i < a.n_keys; i++) {
            kn_receipt_public_key_to_pem(a.keys[i], pem);
            fputs(pem, stdout);
        }
        return 0;
    }
    if (argc != 1) {
        usage(stderr);
        return KN_EXIT_KENNEL;
    }
    kn_client_t cl;
    json_t *out = NULL;
    if (kn_client_init(&cl, server, &err) < 0 ||
        kn_client_call(&cl, "GET", "/v1/receipts/keys", NULL, &out, &err) < 0) {
        fprintf(stderr, "kennel receipts pubkey: %s\n", err.msg);
        return KN_EXIT_KENNEL;
    }
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(out, "keys"), i, k)
    {
        printf("# %s%s\n%s", json_string_value(json_object_get(k, "publicKey")),
               json_is_true(json_object_get(k, "current")) ? " (current)" : "",
               json_string_value(json_object_get(k, "pem")));
    }
    json_decref(out);
    return 0;
}

static int
cmd_rotate(int argc, char **argv)
{
    const char *server = kn_client_server_arg(&argc, argv);
    kn_client_t cl;
    kn_error_t err = {0};
    json_t *out = NULL;
    if (argc != 1) {
        usage(stderr);
        return KN_EXIT_KENNEL;
    }
    if (kn_client_init(&cl, server, &err) < 0 ||
        kn_client_call(&cl, "POST", "/v1/receipts/rotate", NULL, &out, &err) < 0) {
        fprintf(stderr, "kennel receipts rotate: %s\n", err.msg);
        return KN_EXIT_KENNEL;
    }
    printf("new key %s; %lld open chain(s) handed over\n",
           json_string_value(json_object_get(out, "publicKey")),
           (long long)json_integer_value(json_object_get(out, "rotatedChains")));
    json_decref(out);
    return 0;
}

static int
cmd_public_key(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        usage(argc == 2 && !strcmp(argv[1], "--help") ? stdout : stderr);
        return argc == 2 && !strcmp(argv[1], "--help") ? 0 : KN_EXIT_KENNEL;
    }
    kn_receipt_key_t key;
    kn_error_t err = {0};
    if (kn_receipt_key_load(&key, argv[1], &err) < 0) {
        fprintf(stderr, "kennel receipts public-key: %s\n", err.msg);
        return KN_EXIT_KENNEL;
    }
    char mb[KN_RECEIPT_MULTIBASE_KEY_SIZE];
    kn_receipt_public_key_encode(key.public_key, mb);
    kn_receipt_key_wipe(&key);
    printf("%s\n", mb);
    return 0;
}

int
kn_cmd_receipts(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? KN_EXIT_KENNEL : 0;
    }
    if (!strcmp(argv[1], "verify"))
        return cmd_verify(argc - 1, argv + 1);
    if (!strcmp(argv[1], "export"))
        return cmd_export(argc - 1, argv + 1);
    if (!strcmp(argv[1], "pubkey"))
        return cmd_pubkey(argc - 1, argv + 1);
    if (!strcmp(argv[1], "rotate"))
        return cmd_rotate(argc - 1, argv + 1);
    if (!strcmp(argv[1], "public-key"))
        return cmd_public_key(argc - 1, argv + 1);
    fprintf(stderr, "kennel receipts: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return KN_EXIT_KENNEL;
}
