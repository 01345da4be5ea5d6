/* key.c - Ed25519 receipt signing keys: seeds, key files and PEM. */
#include "receipt.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

/* DER prefixes of the only encodings accepted: PKCS#8 PrivateKeyInfo and
 * SubjectPublicKeyInfo for id-Ed25519 (1.3.101.112, RFC 8410), each followed
 * directly by the 32 key bytes. */
static const unsigned char pkcs8_prefix[] = {0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
                                             0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20};
static const unsigned char spki_prefix[] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                            0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};

int
kn_trust_sodium_init(kn_error_t *err)
{
    if (sodium_init() < 0)
        return kn_error_set(err, EIO, "libsodium initialisation failed");
    return 0;
}

int
kn_receipt_key_from_seed(kn_receipt_key_t *key, const unsigned char *seed, kn_error_t *err)
{
    kn_receipt_key_t k;
    if (kn_trust_sodium_init(err) < 0)
        return -1;
    if (crypto_sign_seed_keypair(k.public_key, k.secret_key, seed) != 0)
        return kn_error_set(err, EINVAL, "deriving Ed25519 key from seed");
    memcpy(key, &k, sizeof k);
    sodium_memzero(&k, sizeof k);
    return 0;
}

int
kn_receipt_key_generate(kn_receipt_key_t *key, kn_error_t *err)
{
    unsigned char seed[KN_RECEIPT_SEED_SIZE];
    if (kn_trust_sodium_init(err) < 0)
        return -1;
    randombytes_buf(seed, sizeof seed);
    int rc = kn_receipt_key_from_seed(key, seed, err);
    sodium_memzero(seed, sizeof seed);
    return rc;
}

void
kn_receipt_key_wipe(kn_receipt_key_t *key)
{
    if (key)
        sodium_memzero(key, sizeof *key);
}

/* Longest key file accepted: a PKCS#8 PEM block is 119 bytes; leave room
 * for comments and CRLF line ends. */
#define KEY_FILE_MAX 4096

int
kn_receipt_key_load(kn_receipt_key_t *key, const char *path, kn_error_t *err)
{
    char buf[KEY_FILE_MAX + 1];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0)
        return kn_error_set(err, errno, "open key file %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return kn_error_set(err, e, "stat key file %s", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return kn_error_set(err, EINVAL, "key file %s is not a regular file", path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return kn_error_set(err, EPERM, "key file %s has mode %03o; it must be 0600 or stricter",
                            path, (unsigned)(st.st_mode & 0777));
    }
    size_t got = 0;
    while (got < sizeof buf - 1) {
        ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            sodium_memzero(buf, sizeof buf);
            return kn_error_set(err, e, "read key file %s", path);
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    int rc;
    if (got == KN_RECEIPT_SEED_SIZE) /* the raw seed files of earlier versions */
        rc = kn_receipt_key_from_seed(key, (const unsigned char *)buf, err);
    else if (got < sizeof buf - 1 && strstr(buf, "-----BEGIN PRIVATE KEY-----"))
        rc = kn_receipt_key_from_pem(key, buf, err);
    else
        rc = kn_error_set(err, EINVAL,
                          "key file %s must hold a PKCS#8 Ed25519 PEM key (or a 32-byte seed)",
                          path);
    sodium_memzero(buf, sizeof buf);
    return rc < 0 ? kn_error_prefix(err, "%s", path) : 0;
}

/* Writes len bytes of data to a new file of mode 0600 (O_EXCL), fsync()ed;
 * removed again when anything fails. */
static int
write_private_file(const char *path, const void *data, size_t len, kn_error_t *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return kn_error_set(err, errno, "create key file %s", path);
    int e = 0;
    /* The umask can only remove bits, but be explicit about the result. */
    if (fchmod(fd, 0600) < 0)
        e = errno;
    size_t done = 0;
    while (!e && done < len) {
        ssize_t n = write(fd, (const char *)data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            e = errno;
        else
            done += (size_t)n;
    }
    if (!e && fsync(fd) < 0)
        e = errno;
    if (close(fd) < 0 && !e)
        e = errno;
    if (e) {
        unlink(path);
        return kn_error_set(err, e, "write key file %s", path);
    }
    return 0;
}

int
kn_receipt_key_save(const kn_receipt_key_t *key, const char *path, kn_error_t *err)
{
    char pem[KN_RECEIPT_PEM_SIZE];
    kn_receipt_key_to_pem(key, pem);
    int rc = write_private_file(path, pem, strlen(pem), err);
    sodium_memzero(pem, sizeof pem);
    return rc;
}

int
kn_receipt_key_load_or_create(kn_receipt_key_t *key, const char *path, kn_error_t *err)
{
    if (kn_receipt_key_load(key, path, err) == 0)
        return 0;
    if (errno != ENOENT)
        return -1;
    kn_receipt_key_t k;
    if (kn_receipt_key_generate(&k, err) < 0)
        return -1;
    if (kn_receipt_key_save(&k, path, err) < 0) {
        kn_receipt_key_wipe(&k);
        /* Lost a race with another creator: use theirs. */
        if (errno == EEXIST)
            return kn_receipt_key_load(key, path, err);
        return -1;
    }
    memcpy(key, &k, sizeof k);
    kn_receipt_key_wipe(&k);
    return 0;
}

/* Decodes the base64 body of a PEM block with the given label into der
 * (at most cap bytes). Returns the decoded length or -1. */
static int
pem_decode(const char *pem, const char *label, unsigned char *der, size_t cap, kn_error_t *err)
{
    char begin[64], end[64];
    snprintf(begin, sizeof begin, "-----BEGIN %s-----", label);
    snprintf(end, sizeof end, "-----END %s-----", label);
    const char *b = strstr(pem, begin);
    if (!b)
        return kn_error_set(err, EINVAL, "no \"%s\" block", begin);
    b += strlen(begin);
    const char *e = strstr(b, end);
    if (!e)
        return kn_error_set(err, EINVAL, "no \"%s\" line", end);
    size_t len;
    if (sodium_base642bin(der, cap, b, (size_t)(e - b), " \t\r\n", &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return kn_error_set(err, EINVAL, "%s: bad base64 or too long", label);
    return (int)len;
}

int
kn_receipt_key_from_pem(kn_receipt_key_t *key, const char *pem, kn_error_t *err)
{
    unsigned char der[128];
    int n = pem_decode(pem, "PRIVATE KEY", der, sizeof der, err);
    if (n < 0)
        return -1;
    int rc;
    if ((size_t)n != sizeof pkcs8_prefix + KN_RECEIPT_SEED_SIZE ||
        memcmp(der, pkcs8_prefix, sizeof pkcs8_prefix) != 0)
        rc = kn_error_set(err, EINVAL, "not a PKCS#8 Ed25519 private key");
    else
        rc = kn_receipt_key_from_seed(key, der + sizeof pkcs8_prefix, err);
    sodium_memzero(der, sizeof der);
    return rc;
}

int
kn_receipt_public_key_from_pem(unsigned char *out, const char *pem, kn_error_t *err)
{
    unsigned char der[128];
    int n = pem_decode(pem, "PUBLIC KEY", der, sizeof der, err);
    if (n < 0)
        return -1;
    if ((size_t)n != sizeof spki_prefix + KN_RECEIPT_PUBLIC_KEY_SIZE ||
        memcmp(der, spki_prefix, sizeof spki_prefix) != 0)
        return kn_error_set(err, EINVAL, "not an SPKI Ed25519 public key");
    memcpy(out, der + sizeof spki_prefix, KN_RECEIPT_PUBLIC_KEY_SIZE);
    return 0;
}

void
kn_receipt_public_key_encode(const unsigned char *public_key, char *out)
{
    out[0] = 'u';
    sodium_bin2base64(out + 1, KN_RECEIPT_MULTIBASE_KEY_SIZE - 1, public_key,
                      KN_RECEIPT_PUBLIC_KEY_SIZE, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

int
kn_receipt_public_key_decode(const char *multibase, unsigned char *out, kn_error_t *err)
{
    unsigned char raw[KN_RECEIPT_PUBLIC_KEY_SIZE];
    size_t len = 0;
    if (multibase[0] != 'u')
        return kn_error_set(err, EINVAL, "public key is not multibase base64url ('u')");
    if (sodium_base642bin(raw, sizeof raw, multibase + 1, strlen(multibase + 1), NULL, &len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        len != sizeof raw)
        return kn_error_set(err, EINVAL, "public key is not base64url of 32 bytes");
    memcpy(out, raw, sizeof raw);
    return 0;
}

/* A PEM block of label around der (at most 48 bytes: one base64 line). */
static void
pem_encode(const char *label, const unsigned char *der, size_t len, char *out)
{
    char b64[80];
    sodium_bin2base64(b64, sizeof b64, der, len, sodium_base64_VARIANT_ORIGINAL);
    snprintf(out, KN_RECEIPT_PEM_SIZE, "-----BEGIN %s-----\n%s\n-----END %s-----\n", label, b64,
             label);
    sodium_memzero(b64, sizeof b64);
}

void
kn_receipt_key_to_pem(const kn_receipt_key_t *key, char *out)
{
    unsigned char der[sizeof pkcs8_prefix + KN_RECEIPT_SEED_SIZE];
    memcpy(der, pkcs8_prefix, sizeof pkcs8_prefix);
    memcpy(der + sizeof pkcs8_prefix, key->secret_key, KN_RECEIPT_SEED_SIZE);
    pem_encode("PRIVATE KEY", der, sizeof der, out);
    sodium_memzero(der, sizeof der);
}

void
kn_receipt_public_key_to_pem(const unsigned char *public_key, char *out)
{
    unsigned char der[sizeof spki_prefix + KN_RECEIPT_PUBLIC_KEY_SIZE];
    memcpy(der, spki_prefix, sizeof spki_prefix);
    memcpy(der + sizeof spki_prefix, public_key, KN_RECEIPT_PUBLIC_KEY_SIZE);
    pem_encode("PUBLIC KEY", der, sizeof der, out);
}

int
kn_receipt_public_keys_from_text(const char *text, unsigned char (*out)[KN_RECEIPT_PUBLIC_KEY_SIZE],
                                 size_t max, size_t *n, kn_error_t *err)
{
    static const char begin[] = "-----BEGIN PUBLIC KEY-----";
    *n = 0;
    const char *p = strstr(text, begin);
    if (!p) {
        /* One multibase key ("u..."), alone on the first line. */
        char line[KN_RECEIPT_MULTIBASE_KEY_SIZE + 2];
        size_t len = strcspn(text + strspn(text, " \t\r\n"), " \t\r\n");
        const char *s = text + strspn(text, " \t\r\n");
        if (len == 0 || len >= sizeof line || max == 0)
            return kn_error_set(err, EINVAL, "no public key (PEM or multibase)");
        memcpy(line, s, len);
        line[len] = '\0';
        if (kn_receipt_public_key_decode(line, out[0], err) < 0)
            return -1;
        *n = 1;
        return 0;
    }
    for (; p; p = strstr(p + 1, begin)) {
        if (*n == max)
            return kn_error_set(err, E2BIG, "more than %zu public keys", max);
        if (kn_receipt_public_key_from_pem(out[*n], p, err) < 0)
            return kn_error_prefix(err, "public key %zu", *n + 1);
        (*n)++;
    }
    return 0;
}
