/* cmd_exec.c - `kennel exec ID -- CMD...`: runs a command in a sandbox through
 * the server's proxy to its execd, streaming its output as it comes; exits
 * with the command's status. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "ptyc.h"
#include "util.h"

typedef struct stream {
    char *buf;
    size_t len, cap;
    int exit_code; /* -1 until a terminal event */
    char error[256];
} stream_t;

/* One event of execd's stream: a JSON object. */
static void
event(stream_t *st, const char *text, size_t len)
{
    json_t *ev = json_loadb(text, len, 0, NULL);
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *t = json_string_value(json_object_get(ev, "text"));
    if (!type) {
        json_decref(ev);
        return;
    }
    if ((!strcmp(type, "stdout") || !strcmp(type, "stderr")) && t) {
        int fd = type[3] == 'o' ? STDOUT_FILENO : STDERR_FILENO;
        /* Events are lines without their terminator; "\n" is an empty line. */
        if (strcmp(t, "\n") != 0)
            kn_write_all(fd, t, strlen(t));
        kn_write_all(fd, "\n", 1);
    } else if (!strcmp(type, "execution_complete")) {
        st->exit_code = 0;
    } else if (!strcmp(type, "error")) {
        json_t *e = json_object_get(ev, "error");
        const char *v = json_string_value(json_object_get(e, "evalue"));
        char *end = NULL;
        long code = v ? strtol(v, &end, 10) : -1;
        st->exit_code = (v && *v && !*end && code >= 0 && code < 256) ? (int)code : 1;
        if (!v || *end)
            snprintf(st->error, sizeof st->error, "%s: %s",
                     json_string_value(json_object_get(e, "ename")) ?: "error", v ? v : "");
    }
    json_decref(ev);
}

static int
on_data(const char *data, size_t len, void *ctx)
{
    stream_t *st = ctx;
    if (st->len + len > st->cap) {
        size_t nc = st->cap ? st->cap * 2 : 65536;
        while (nc < st->len + len)
            nc *= 2;
        char *g = realloc(st->buf, nc);
        if (!g)
            return -1;
        st->buf = g;
        st->cap = nc;
    }
    memcpy(st->buf + st->len, data, len);
    st->len += len;
    /* Events end with a blank line. */
    size_t start = 0;
    for (size_t i = 0; i + 1 < st->len; i++) {
        if (st->buf[i] == '\n' && st->buf[i + 1] == '\n') {
            event(st, st->buf + start, i - start);
            start = i + 2;
            i++;
        }
    }
    memmove(st->buf, st->buf + start, st->len - start);
    st->len -= start;
    return 0;
}

static char *
shell_join(int argc, char **argv)
{
    if (argc == 1)
        return strdup(argv[0]); /* one argument: a shell command line as given */
    size_t cap = 1;
    for (int i = 0; i < argc; i++)
        cap += 4 * strlen(argv[i]) + 3;
    char *out = malloc(cap), *p = out;
    if (!out)
        return NULL;
    for (int i = 0; i < argc; i++) {
        if (i)
            *p++ = ' ';
        *p++ = '\'';
        for (const char *s = argv[i]; *s; s++) {
            if (*s == '\'') {
                memcpy(p, "'\\''", 4);
                p += 4;
            } else {
                *p++ = *s;
            }
        }
        *p++ = '\'';
    }
    *p = '\0';
    return out;
}

int
kn_cmd_exec(int argc, char **argv)
{
    static const struct option opts[] = {
        {"env", required_argument, 0, 'e'},
        {"workdir", required_argument, 0, 'w'},
        {"timeout", required_argument, 0, 'T'},
        {"tty", no_argument, 0, 't'},
        {"interactive", no_argument, 0, 'i'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *server = kn_client_server_arg(&argc, argv);
    json_t *body = json_pack("{s:b}", "background", 0), *envs = json_object();
    int c, rc = KN_EXIT_KENNEL;
    bool tty = false;
    const char *cwd = NULL;
    stream_t st = {.exit_code = -1};
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+e:w:T:tih", opts, NULL)) != -1) {
        const char *eq;
        switch (c) {
        case 'e':
            if (!(eq = strchr(optarg, '=')) || eq == optarg) {
                fprintf(stderr, "kennel exec: -e '%s' is not KEY=VALUE\n", optarg);
                goto out;
            }
            char *key = strndup(optarg, (size_t)(eq - optarg));
            json_object_set_new(envs, key, json_string(eq + 1));
            free(key);
            break;
        case 'w':
            json_object_set_new(body, "cwd", json_string(optarg));
            cwd = optarg;
            break;
        case 'T':
            json_object_set_new(body, "timeout", json_integer(atoll(optarg) * 1000));
            break;
        case 't':
            tty = true;
            break;
        case 'i': /* docker's habit: stdin is always passed on */
            break;
        case 'h':
            printf(
                "usage: kennel exec [-s URL] [-e KEY=VALUE]... [-w DIR] [-T SECONDS] ID -- CMD...\n"
                "       kennel exec -t [-s URL] [-w DIR] ID [-- CMD...]\n"
                "One CMD argument is a shell command line; several are quoted word by word.\n"
                "-t runs it (or, without CMD, the sandbox's shell) in a terminal: execd's /pty\n"
                "over a WebSocket, this terminal raw and its size passed on; the session is\n"
                "deleted when it ends; the exit status is the remote one.\n");
            rc = 0;
            goto out;
        default:
            fprintf(stderr,
                    "usage: kennel exec [-s URL] [-e K=V]... [-w DIR] [-T S] [-t] ID -- CMD...\n");
            goto out;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "kennel exec: no sandbox id\n");
        goto out;
    }
    const char *id = argv[optind++];
    if (optind < argc && !strcmp(argv[optind], "--"))
        optind++;
    if (optind >= argc && !tty) {
        fprintf(stderr, "kennel exec: nothing to run\n");
        goto out;
    }
    if (strlen(id) > 128 || strpbrk(id, "/?%")) {
        fprintf(stderr, "kennel exec: '%s' is not a sandbox id\n", id);
        goto out;
    }
    if (tty) {
        if (json_object_size(envs)) {
            fprintf(stderr, "kennel exec: -e does not go with -t (a PTY takes no env)\n");
            goto out;
        }
        char *line = optind < argc ? shell_join(argc - optind, argv + optind) : NULL;
        kn_client_t tc;
        kn_error_t terr = {0};
        int code =
            kn_client_init(&tc, server, &terr) < 0 ? -1 : kn_ptyc_run(&tc, id, line, cwd, &terr);
        free(line);
        if (code < 0)
            fprintf(stderr, "kennel exec: %s\n", terr.msg);
        rc = code < 0 ? KN_EXIT_KENNEL : code;
        goto out;
    }
    char *cmd = shell_join(argc - optind, argv + optind);
    json_object_set_new(body, "command", json_string(cmd ? cmd : ""));
    free(cmd);
    json_object_set(body, "envs", envs);
    char path[256];
    snprintf(path, sizeof path, "/sandboxes/%s/proxy/44772/command", id);
    kn_client_t cl;
    kn_error_t err = {0};
    int status = 0;
    if (kn_client_init(&cl, server, &err) < 0 ||
        kn_client_stream(&cl, "POST", path, body, on_data, &st, &status, &err) < 0) {
        fprintf(stderr, "kennel exec: %s\n", err.msg);
        goto out;
    }
    if (status != 200) {
        json_t *e = json_loadb(st.buf ? st.buf : "", st.len, 0, NULL);
        const char *msg = json_string_value(json_object_get(e, "message"));
        fprintf(stderr, "kennel exec: %s (HTTP %d)\n", msg ? msg : "failed", status);
        json_decref(e);
        goto out;
    }
    if (st.len)
        event(&st, st.buf, st.len); /* a last event without its blank line */
    if (st.error[0])
        fprintf(stderr, "kennel exec: %s\n", st.error);
    rc = st.exit_code < 0 ? KN_EXIT_KENNEL : st.exit_code;
out:
    free(st.buf);
    json_decref(body);
    json_decref(envs);
    return rc;
}
