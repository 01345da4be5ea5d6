/* ptyc.c - see ptyc.h. */
#include "ptyc.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/ws.h"
#include "util.h"

#define HEAD_MAX 16384
#define TEXT_MAX 65536
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

typedef struct session {
    int sock;
    int exit_code; /* -1 until the exit frame */
    bool closed;   /* a close frame came */
    int channel;   /* the binary message being read: its first byte; -1 before it */
    uint64_t skip; /* bytes of it still to drop (a replay's offset) */
    char text[TEXT_MAX];
    size_t text_len;
    bool text_over;
    int op; /* the message's opcode */
} session_t;

static int
send_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* One masked frame (RFC 6455 5.3: a client masks everything it sends). */
static int
send_frame(int fd, int opcode, int prefix, const void *data, size_t n)
{
    uint8_t h[KN_WS_MAX_HEADER + 4];
    size_t total = n + (prefix >= 0);
    size_t hl = kn_ws_header(h, opcode, total);
    h[1] |= 0x80;
    uint8_t mask[4];
    if (getrandom(mask, sizeof mask, 0) != sizeof mask)
        return -1;
    memcpy(h + hl, mask, 4);
    hl += 4;
    uint8_t *buf = malloc(hl + total);
    if (!buf)
        return -1;
    memcpy(buf, h, hl);
    size_t at = 0;
    if (prefix >= 0)
        buf[hl + at++] = (uint8_t)prefix;
    memcpy(buf + hl + at, data, n);
    for (size_t i = 0; i < total; i++)
        buf[hl + i] ^= mask[i & 3];
    int rc = send_all(fd, buf, hl + total);
    free(buf);
    return rc;
}

static int
send_json(int fd, json_t *o /* stolen */)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s)
        return -1;
    int rc = send_frame(fd, KN_WS_TEXT, -1, s, strlen(s));
    free(s);
    return rc;
}

static void
send_size(int fd)
{
    struct winsize ws;
    if ((ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 || ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0) &&
        ws.ws_col && ws.ws_row)
        (void)send_json(fd, json_pack("{s:s, s:i, s:i}", "type", "resize", "cols", ws.ws_col,
                                      "rows", ws.ws_row));
}

static void
on_text(session_t *s)
{
    json_t *o = json_loadb(s->text, s->text_len, 0, NULL);
    const char *type = json_string_value(json_object_get(o, "type"));
    if (type && !strcmp(type, "exit") && json_is_integer(json_object_get(o, "exit_code")))
        s->exit_code = (int)json_integer_value(json_object_get(o, "exit_code"));
    else if (type && !strcmp(type, "error")) {
        const char *m = json_string_value(json_object_get(o, "error"));
        const char *c = json_string_value(json_object_get(o, "code"));
        fprintf(stderr, "\r\nkennel exec: %s%s%s\r\n", c ? c : "error", m ? ": " : "", m ? m : "");
    }
    json_decref(o);
}

static int
piece(void *ctx, const kn_ws_frame_t *f, uint64_t off, const uint8_t *d, size_t n, bool last)
{
    session_t *s = ctx;
    if (f->opcode == KN_WS_CLOSE) {
        s->closed |= last;
        return 0;
    }
    if (f->opcode == KN_WS_PING)
        return last ? send_frame(s->sock, KN_WS_PONG, -1, d, n) : 0;
    if (f->opcode == KN_WS_PONG)
        return 0;
    if (f->opcode != KN_WS_CONT && off == 0) {
        s->op = f->opcode;
        s->channel = -1;
        s->text_len = 0;
        s->text_over = false;
    }
    if (s->op == KN_WS_TEXT) {
        if (s->text_len + n > sizeof s->text)
            s->text_over = true;
        else {
            memcpy(s->text + s->text_len, d, n);
            s->text_len += n;
        }
        if (last && f->fin && !s->text_over)
            on_text(s);
        return 0;
    }
    while (n) {
        if (s->channel < 0) {
            s->channel = d[0];
            s->skip = s->channel == 0x03 ? 8 : 0; /* a replay: the offset first */
            d++, n--;
            continue;
        }
        if (s->skip) {
            size_t k = n < s->skip ? n : (size_t)s->skip;
            s->skip -= k;
            d += k, n -= k;
            continue;
        }
        kn_write_all(s->channel == 0x02 ? STDERR_FILENO : STDOUT_FILENO, d, n);
        n = 0;
    }
    return 0;
}

/* The opening handshake (RFC 6455 4.1). Returns the socket; *extra gets
 * the bytes read past the server's head (frames already). */
static int
handshake(const kn_client_t *cl, const char *path, char *extra, size_t *extra_len, kn_error_t *err)
{
    uint8_t raw[16];
    char key[32], want[64], head[HEAD_MAX + 1];
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    if (getrandom(raw, sizeof raw, 0) != sizeof raw)
        return kn_error_set(err, errno, "getrandom");
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);
    char cat[96];
    snprintf(cat, sizeof cat, "%s%s", key, WS_GUID);
    if (!EVP_Digest(cat, strlen(cat), dg, &dl, EVP_sha1(), NULL))
        return kn_error_set(err, EIO, "sha1");
    EVP_EncodeBlock((unsigned char *)want, dg, (int)dl);
    int fd = kn_uclient_connect_tcp(cl->host, cl->port, err);
    if (fd < 0)
        return -1;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char req[2048];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: "
                     "Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                     path, cl->host, cl->port, key, cl->headers);
    if (n < 0 || (size_t)n >= sizeof req || send_all(fd, req, (size_t)n) < 0) {
        close(fd);
        return kn_error_set(err, EIO, "sending the WebSocket handshake");
    }
    size_t got = 0;
    char *end = NULL;
    while (!end && got < HEAD_MAX) {
        ssize_t k = recv(fd, head + got, HEAD_MAX - got, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
        head[got] = '\0';
        end = strstr(head, "\r\n\r\n");
    }
    if (!end) {
        close(fd);
        return kn_error_set(err, EPROTO, "the server closed the WebSocket handshake");
    }
    *end = '\0';
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        /* The server's error: its JSON body, when it came with the head. */
        const char *body = end + 4;
        json_t *j = json_loadb(body, got - (size_t)(body - head), 0, NULL);
        const char *m = json_string_value(json_object_get(j, "message"));
        kn_error_set(err, EPROTO, "%s", m ? m : strtok(head, "\r"));
        json_decref(j);
        close(fd);
        return -1;
    }
    bool ok = false;
    for (char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        char *l = line + 2;
        if (!strncasecmp(l, "Sec-WebSocket-Accept:", 21)) {
            char *v = l + 21;
            while (*v == ' ')
                v++;
            size_t vl = strcspn(v, "\r");
            ok = vl == strlen(want) && !strncmp(v, want, vl);
        }
    }
    if (!ok) {
        close(fd);
        return kn_error_set(err, EPROTO, "the server's Sec-WebSocket-Accept is wrong");
    }
    size_t rest = got - (size_t)(end + 4 - head);
    memcpy(extra, end + 4, rest);
    *extra_len = rest;
    return fd;
}

static int
loop(session_t *s, const char *extra, size_t extra_len, kn_error_t *err)
{
    kn_ws_parser_t p;
    kn_ws_parser_init(&p, 0);
    if (extra_len && kn_ws_parse(&p, extra, extra_len, piece, s) < 0)
        return kn_error_set(err, EPROTO, "the server sent a bad frame: %s", p.error);
    sigset_t winch;
    sigemptyset(&winch);
    sigaddset(&winch, SIGWINCH);
    sigprocmask(SIG_BLOCK, &winch, NULL);
    int sfd = signalfd(-1, &winch, SFD_CLOEXEC | SFD_NONBLOCK);
    send_size(s->sock);
    bool in_open = true;
    char buf[32768];
    int ret = 0;
    while (!s->closed) {
        struct pollfd pf[3] = {
            {s->sock, POLLIN, 0}, {in_open ? STDIN_FILENO : -1, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(pf, 3, -1) < 0) {
            if (errno == EINTR)
                continue;
            ret = kn_error_set(err, errno, "poll");
            break;
        }
        if (pf[2].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == sizeof si)
                ;
            send_size(s->sock);
        }
        if (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t k = read(STDIN_FILENO, buf, sizeof buf);
            if (k > 0) {
                if (send_frame(s->sock, KN_WS_BINARY, 0x00, buf, (size_t)k) < 0)
                    break;
            } else if (k == 0 || (errno != EINTR && errno != EAGAIN)) {
                /* Input ended: the terminal's end-of-file (^D) ends the
                 * shell's input too. */
                in_open = false;
                (void)send_frame(s->sock, KN_WS_BINARY, 0x00, "\x04", 1);
            }
        }
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t k = recv(s->sock, buf, sizeof buf, 0);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                break;
            if (kn_ws_parse(&p, buf, (size_t)k, piece, s) < 0) {
                ret = kn_error_set(err, EPROTO, "the server sent a bad frame: %s", p.error);
                break;
            }
        }
    }
    if (sfd >= 0)
        close(sfd);
    sigprocmask(SIG_UNBLOCK, &winch, NULL);
    return ret;
}

int
kn_ptyc_run(kn_client_t *cl, const char *id, const char *command, const char *cwd, kn_error_t *err)
{
    char path[512];
    json_t *body = json_object(), *out = NULL;
    if (command)
        json_object_set_new(body, "command", json_string(command));
    if (cwd)
        json_object_set_new(body, "cwd", json_string(cwd));
    snprintf(path, sizeof path, "/sandboxes/%s/proxy/44772/pty", id);
    int rc = kn_client_call(cl, "POST", path, body, &out, err);
    json_decref(body);
    if (rc < 0)
        return -1;
    const char *sid = json_string_value(json_object_get(out, "session_id"));
    if (!sid || strlen(sid) > 64 || strpbrk(sid, "/?%# ")) {
        json_decref(out);
        return kn_error_set(err, EPROTO, "execd answered POST /pty without a session_id");
    }
    char pty[72];
    snprintf(pty, sizeof pty, "%s", sid);
    json_decref(out);
    char wspath[600], extra[HEAD_MAX];
    size_t extra_len = 0;
    snprintf(wspath, sizeof wspath, "/sandboxes/%s/proxy/44772/pty/%s/ws", id, pty);
    session_t *s = calloc(1, sizeof *s);
    if (!s)
        return kn_error_set(err, ENOMEM, "pty");
    s->exit_code = -1;
    s->channel = -1;
    int ret = -1;
    struct termios saved;
    bool raw = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    s->sock = handshake(cl, wspath, extra, &extra_len, err);
    if (s->sock < 0)
        goto out;
    if (raw) {
        struct termios t = saved;
        cfmakeraw(&t);
        tcsetattr(STDIN_FILENO, TCSANOW, &t);
    }
    if (loop(s, extra, extra_len, err) == 0)
        ret = s->exit_code >= 0 ? s->exit_code : 255;
    if (raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    close(s->sock);
out:;
    /* The session is the caller's only while it runs: gone either way. */
    char del[600];
    kn_error_t e = {0};
    snprintf(del, sizeof del, "/sandboxes/%s/proxy/44772/pty/%s", id, pty);
    json_t *ignored = NULL;
    (void)kn_client_call(cl, "DELETE", del, NULL, &ignored, &e);
    json_decref(ignored);
    free(s);
    return ret;
}
