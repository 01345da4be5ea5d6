/* cmd_receipts.c - `kennel receipts verify|public-key`: check a receipt chain
 * exported from the server (a JSON array or JSON lines) and print the
 * verification key of a host key file. The work is done by src/trust. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "trust/jcs.h"
#include "trust/receipt.h"

#define EXIT_INVALID 1

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: kennel receipts verify KEY-OPTION [OPTIONS] FILE\n"
            "       kennel receipts public-key KEYFILE\n"
            "\n"
            "verify checks every signature and link of one receipt chain and names the\n"
            "first break. FILE (\"-\" for stdin) holds a JSON array of receipts or one\n"
            "receipt per line, in chain order.\n"
            "\n"
            "key (one of):\n"
            "  --public-key uKEY        issuer public key, multibase base64url\n"
            "  --public-key-file FILE   file with that string or a PEM public key\n"
            "  --key FILE               the host's 32-byte seed file (mode 0600)\n"
            "options:\n"
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

/* Public key from a file holding "u..." or an SPKI PEM block. */
static int
public_key_file(const char *path, unsigned char *pk, kn_error_t *err)
{
    size_t len;
    char *text = read_all(path, &len, err);
    if (!text)
        return -1;
    int rc;
    if (strstr(text, "-----BEGIN PUBLIC KEY-----")) {
        rc = kn_receipt_public_key_from_pem(pk, text, err);
    } else {
        text[strcspn(text, " \t\r\n")] = '\0';
        rc = kn_receipt_public_key_decode(text, pk, err);
    }
    free(text);
    return rc < 0 ? kn_error_prefix(err, "%s", path) : 0;
}

typedef struct verify_args {
    unsigned char public_key[KN_RECEIPT_PUBLIC_KEY_SIZE];
    kn_receipt_chain_expect_t expect;
    const char *path;
} verify_args_t;

/* Parses `verify` options into a. Returns 0 to go on, or an exit status + 1
 * (so --help, which exits 0, is distinguishable). */
static int
parse_verify_args(int argc, char **argv, verify_args_t *a)
{
    static const struct option opts[] = {
        {"public-key", required_argument, NULL, 'p'},
        {"public-key-file", required_argument, NULL, 'f'},
        {"key", required_argument, NULL, 'k'},
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
            rc = kn_receipt_public_key_decode(optarg, a->public_key, &err);
            have_key++;
            break;
        case 'f':
            rc = public_key_file(optarg, a->public_key, &err);
            have_key++;
            break;
        case 'k':
            rc = kn_receipt_key_load(&key, optarg, &err);
            if (rc == 0)
                memcpy(a->public_key, key.public_key, sizeof a->public_key);
            kn_receipt_key_wipe(&key);
            have_key++;
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
    if (!rc && (have_key != 1 || optind != argc - 1))
        rc = kn_error_set(&err, 0, "%s",
                          have_key != 1 ? "give exactly one key option" : "give one FILE");
    if (rc) {
        fprintf(stderr, "kennel receipts verify: %s\n", err.msg);
        return KN_EXIT_KENNEL + 1;
    }
    a->path = argv[optind];
    return 0;
}

static int
cmd_verify(int argc, char **argv)
{
    verify_args_t a = {0};
    kn_error_t err = {0};
    int rc = parse_verify_args(argc, argv, &a);
    if (rc)
        return rc - 1;
    size_t len;
    char *text = read_all(a.path, &len, &err);
    json_t *receipts = text ? parse_receipts(text, len, &err) : NULL;
    free(text);
    if (!receipts) {
        fprintf(stderr, "kennel receipts verify: %s: %s\n", a.path, err.msg);
        return KN_EXIT_KENNEL;
    }
    kn_receipt_verdict_t v;
    rc = kn_receipt_verify_chain(receipts, a.public_key, &a.expect, &v, &err);
    const char *chain_id = json_string_value(json_object_get(
        json_object_get(json_object_get(json_array_get(receipts, 0), "credentialSubject"), "chain"),
        "chain_id"));
    if (rc < 0 && v.check == KN_RECEIPT_VALID) { /* could not verify at all */
        fprintf(stderr, "kennel receipts verify: %s: %s\n", a.path, err.msg);
        rc = KN_EXIT_KENNEL;
    } else if (rc < 0) {
        printf("INVALID %s: chain %s breaks at receipt %zu of %zu: %s: %s\n", a.path,
               chain_id ? chain_id : "?", v.index, v.count, kn_receipt_check_name(v.check),
               v.reason);
        rc = EXIT_INVALID;
    } else {
        printf("OK %s: chain %s, %zu receipts, head %s, termination %s\n", a.path, chain_id,
               v.count, v.head, v.termination);
        if (v.duplicate_keys)
            printf("warning: %zu idempotency key(s) appear on more than one receipt (retries?)\n",
                   v.duplicate_keys);
    }
    json_decref(receipts);
    return rc;
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
    if (!strcmp(argv[1], "public-key"))
        return cmd_public_key(argc - 1, argv + 1);
    fprintf(stderr, "kennel receipts: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return KN_EXIT_KENNEL;
}
