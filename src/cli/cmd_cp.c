/* cmd_cp.c - `kennel cp`: copies a file into a sandbox (LOCAL ID:PATH) or out
 * of one (ID:PATH LOCAL) through the server's proxy to execd's files API. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "util.h"

#define CP_MAX (1024L * 1024 * 1024) /* uploads are sent from memory */

/* "ID:PATH" → id and path; 0 when spec is a local path. */
static int
remote(const char *spec, char *id, size_t idlen, const char **path)
{
    const char *colon = strchr(spec, ':');
    if (!colon || colon == spec || colon[1] != '/' || (size_t)(colon - spec) >= idlen ||
        memchr(spec, '/', (size_t)(colon - spec)))
        return 0;
    memcpy(id, spec, (size_t)(colon - spec));
    id[colon - spec] = '\0';
    *path = colon + 1;
    return 1;
}

static void
escape(char *out, size_t cap, const char *s)
{
    size_t n = strlen(out);
    for (; *s && n + 4 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("-._~/", ch))
            out[n++] = (char)ch;
        else
            n += (size_t)snprintf(out + n, cap - n, "%%%02X", ch);
    }
    out[n] = '\0';
}

typedef struct sink {
    int fd;
} sink_t;

/* The body goes to a temporary file that becomes the target only on a 200
 * (an error answer's body is thrown away with it). */
static int
to_file(const char *data, size_t len, void *ctx)
{
    sink_t *s = ctx;
    return kn_write_all(s->fd, data, len);
}

static int
download(kn_client_t *cl, const char *id, const char *path, const char *local)
{
    char target[8192];
    snprintf(target, sizeof target, "/sandboxes/%s/proxy/44772/files/download?path=", id);
    escape(target, sizeof target, path);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.kennel-cp", local);
    sink_t s = {.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (s.fd < 0) {
        fprintf(stderr, "kennel cp: %s: %s\n", tmp, strerror(errno));
        return KN_EXIT_KENNEL;
    }
    kn_error_t err = {0};
    int status = 0;
    int rc = kn_client_stream(cl, "GET", target, NULL, to_file, &s, &status, &err);
    close(s.fd);
    if (rc < 0 || status != 200) {
        unlink(tmp);
        fprintf(stderr, "kennel cp: %s:%s: %s\n", id, path,
                rc < 0          ? err.msg
                : status == 404 ? "no such file"
                                : "download failed");
        return 1;
    }
    if (rename(tmp, local) < 0) {
        fprintf(stderr, "kennel cp: %s: %s\n", local, strerror(errno));
        unlink(tmp);
        return KN_EXIT_KENNEL;
    }
    return 0;
}

static int
upload(kn_client_t *cl, const char *local, const char *id, const char *path)
{
    int fd = open(local, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > CP_MAX) {
        fprintf(stderr, "kennel cp: %s: not a readable regular file of at most 1 GiB\n", local);
        if (fd >= 0)
            close(fd);
        return KN_EXIT_KENNEL;
    }
    json_t *meta = json_pack(
        "{s:s, s:i}", "path", path, "mode",
        (int)(((st.st_mode >> 6) & 7) * 100 + ((st.st_mode >> 3) & 7) * 10 + (st.st_mode & 7)));
    char *mtext = json_dumps(meta, JSON_COMPACT);
    json_decref(meta);
    const char *b = "kennelcpboundary7d3f";
    char head[1024], tail[64];
    int hl = snprintf(head, sizeof head,
                      "--%s\r\nContent-Disposition: form-data; name=\"metadata\"; "
                      "filename=\"metadata\"\r\nContent-Type: application/json\r\n\r\n%s\r\n"
                      "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"file\"\r\n"
                      "Content-Type: application/octet-stream\r\n\r\n",
                      b, mtext ? mtext : "{}", b);
    int tl = snprintf(tail, sizeof tail, "\r\n--%s--\r\n", b);
    free(mtext);
    size_t total = (size_t)hl + (size_t)st.st_size + (size_t)tl;
    char *body = malloc(total);
    if (!body || hl >= (int)sizeof head) {
        free(body);
        close(fd);
        fprintf(stderr, "kennel cp: out of memory\n");
        return KN_EXIT_KENNEL;
    }
    memcpy(body, head, (size_t)hl);
    ssize_t got = kn_read_all(fd, body + hl, (size_t)st.st_size);
    close(fd);
    if (got != st.st_size) {
        free(body);
        fprintf(stderr, "kennel cp: %s: short read\n", local);
        return KN_EXIT_KENNEL;
    }
    memcpy(body + hl + st.st_size, tail, (size_t)tl);
    char target[512], ctype[128];
    snprintf(target, sizeof target, "/sandboxes/%s/proxy/44772/files/upload", id);
    snprintf(ctype, sizeof ctype, "multipart/form-data; boundary=%s", b);
    kn_error_t err = {0};
    int rc = kn_client_raw(cl, "POST", target, ctype, body, total, &err);
    free(body);
    if (rc < 0) {
        fprintf(stderr, "kennel cp: %s:%s: %s\n", id, path, err.msg);
        return 1;
    }
    return 0;
}

int
kn_cmd_cp(int argc, char **argv)
{
    const char *server = kn_client_server_arg(&argc, argv);
    char id[130];
    const char *path = NULL;
    if (argc != 3 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc == 3 ? stdout : stderr,
                "usage: kennel cp [-s URL] LOCAL ID:/PATH   (into a sandbox)\n"
                "       kennel cp [-s URL] ID:/PATH LOCAL   (out of a sandbox)\n");
        return argc == 3 ? 0 : KN_EXIT_KENNEL;
    }
    kn_client_t cl;
    kn_error_t err = {0};
    if (kn_client_init(&cl, server, &err) < 0) {
        fprintf(stderr, "kennel cp: %s\n", err.msg);
        return KN_EXIT_KENNEL;
    }
    if (remote(argv[1], id, sizeof id, &path) &&
        !remote(argv[2], (char[130]){0}, 130, &(const char *){0}))
        return download(&cl, id, path, argv[2]);
    if (remote(argv[2], id, sizeof id, &path) &&
        !remote(argv[1], (char[130]){0}, 130, &(const char *){0}))
        return upload(&cl, argv[1], id, path);
    fprintf(stderr, "kennel cp: exactly one side must be ID:/PATH\n");
    return KN_EXIT_KENNEL;
}
