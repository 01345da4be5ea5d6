/* pty.c - /pty: long-lived shells driven over a WebSocket, in a terminal
 * (the default) or with plain pipes (?pty=0), as OpenSandbox's execd serves
 * them (API-NOTES b.6, its components/execd/PTY.md):
 *
 *   POST /pty {"cwd"?, "command"?}  -> 201 {"session_id"}; nothing runs yet
 *   GET /pty/{id}                   -> {"session_id","running","output_offset"}
 *   DELETE /pty/{id}                -> the shell's group gets SIGHUP (then
 *                                      SIGKILL), the session is gone
 *   GET /pty/{id}/ws                -> WebSocket; the first one starts the
 *                                      shell (bash, else sh; `-c command`)
 *
 * On the socket the server sends a replay frame (0x03, the 8-byte offset,
 * the output from ?since= or the oldest byte kept), then {"type":
 * "connected"}, then output as binary frames (0x01 stdout, 0x02 stderr in
 * pipe mode) and at the end {"type":"exit","exit_code"} and a close. The
 * client sends 0x00 + stdin bytes, or text {"type":"stdin","data"},
 * {"type":"resize","cols","rows"}, {"type":"signal","signal":"SIGINT"},
 * {"type":"ping"} (answered "pong"). One socket per session: another gets
 * 409 ALREADY_CONNECTED unless ?takeover=1, which closes the holder with
 * 4001 TAKEN_OVER and attaches to the same shell.
 *
 * One reader thread per started session moves output into a ring of
 * PTY_RING bytes (offsets count every byte ever produced); the attached
 * socket's loop sends from its own cursor, so a slow or absent client never
 * stalls the shell (a client that falls a whole ring behind skips ahead). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <nettle/base64.h>
#include <nettle/sha1.h>

#include "core/ws.h"
#include "handlers.h"
#include "proc.h"

#define PTY_MAX_SESSIONS 32
#define PTY_RING (1024 * 1024)        /* output kept for replay, per session */
#define PTY_MAX_MESSAGE (1024 * 1024) /* largest client message */
#define PTY_CHUNK (32 * 1024)         /* largest output frame */
#define PTY_PING_MS 30000             /* a silent socket is pinged this often */
#define PTY_SEND_TIMEOUT_MS 10000     /* a client that takes nothing this long is dropped */
#define PTY_TAKEOVER_MS 5000          /* how long a takeover waits for the holder to go */
#define PTY_HANGUP_GRACE_MS 1000      /* DELETE: SIGHUP, then SIGKILL after this */
#define PTY_MAX_RANGES 65536          /* stderr stretches remembered for replay */
#define PTY_DRAIN_MS 200              /* output read after the shell's end, at most */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

typedef struct range {
    uint64_t a, b;
} range_t;

typedef struct kn_pty {
    char id[33];
    char *cwd, *command;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    bool started, pipe_mode, exited, gone;
    int exit_code;
    uint64_t exited_ms; /* when the shell ended (monotonic) */
    kn_child_t *child;
    int in_fd;          /* the master (PTY) or stdin's write end; -1 */
    int out_fd, err_fd; /* what the reader reads; -1 */
    /* Output: ring[(off) % PTY_RING] for off in [total - kept, total). */
    char *ring;
    uint64_t total;
    range_t *errs; /* pipe mode: which offsets were stderr */
    size_t nerr, errcap;
    /* The attached socket, if any. */
    uint64_t holder; /* its generation; 0 = none */
    uint64_t gen;    /* the last generation given */
    int holder_efd;  /* its wake-up */
    bool evict;      /* a takeover asks the holder to go */
} kn_pty_t;

struct kn_ptystore {
    pthread_mutex_t mu;
    kn_pty_t *s[PTY_MAX_SESSIONS];
};

/* ---- sessions ------------------------------------------------------------- */

int
kn_pty_store_init(kn_execd_t *ex, kn_error_t *err)
{
    struct kn_ptystore *st = calloc(1, sizeof *st);
    if (!st)
        return kn_error_set(err, ENOMEM, "pty store");
    pthread_mutex_init(&st->mu, NULL);
    ex->ptys = st;
    return 0;
}

static void
pty_unref(kn_pty_t *p)
{
    pthread_mutex_lock(&p->mu);
    bool last = --p->refs == 0;
    pthread_mutex_unlock(&p->mu);
    if (!last)
        return;
    if (p->in_fd >= 0)
        close(p->in_fd);
    if (p->out_fd >= 0)
        close(p->out_fd);
    if (p->err_fd >= 0)
        close(p->err_fd);
    if (p->child)
        kn_child_unref(p->child);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->ring);
    free(p->errs);
    free(p->cwd);
    free(p->command);
    free(p);
}

/* SIGKILLs every process of the terminal session sid (what the shell
 * started, in whatever process group: a subshell's background job is no
 * job of the shell's any more, but still of its session). */
static void
kill_session(pid_t sid)
{
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[64], buf[512];
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = '\0';
        const char *rp = strrchr(buf, ')');
        char state;
        int ppid, pgrp, session;
        if (!rp || sscanf(rp + 1, " %c %d %d %d", &state, &ppid, &pgrp, &session) != 4)
            continue;
        pid_t pid = (pid_t)atoi(e->d_name);
        if (session == sid && pid != getpid())
            (void)kill(pid, SIGKILL);
    }
    closedir(d);
}

/* Kills what a session runs: SIGHUP to its group (a shell ignores SIGTERM),
 * SIGKILL after the grace; then the rest of a terminal's session. */
static void
hang_up(kn_pty_t *p)
{
    pthread_mutex_lock(&p->mu);
    kn_child_t *c = p->child ? p->child : NULL;
    bool live = c && !p->exited, terminal = c && !p->pipe_mode;
    if (c)
        kn_child_ref(c);
    pthread_mutex_unlock(&p->mu);
    if (!c)
        return;
    if (live) {
        kn_child_kill(c, SIGHUP);
        kn_child_kill(c, SIGCONT);
        if (!kn_child_wait(c, PTY_HANGUP_GRACE_MS, NULL)) {
            kn_child_kill(c, SIGKILL);
            kn_child_wait(c, -1, NULL);
        }
    }
    if (terminal)
        kill_session(kn_child_pid(c));
    kn_child_unref(c);
}

void
kn_pty_store_free(kn_execd_t *ex)
{
    struct kn_ptystore *st = ex->ptys;
    if (!st)
        return;
    for (int i = 0; i < PTY_MAX_SESSIONS; i++) {
        kn_pty_t *p = st->s[i];
        if (!p)
            continue;
        hang_up(p);
        pthread_mutex_lock(&p->mu);
        p->gone = true;
        if (p->holder)
            (void)eventfd_write(p->holder_efd, 1);
        pthread_mutex_unlock(&p->mu);
        pty_unref(p);
    }
    pthread_mutex_destroy(&st->mu);
    free(st);
    ex->ptys = NULL;
}

/* The session with id, with a reference, or NULL. */
static kn_pty_t *
pty_get(kn_execd_t *ex, const char *id)
{
    struct kn_ptystore *st = ex->ptys;
    kn_pty_t *p = NULL;
    pthread_mutex_lock(&st->mu);
    for (int i = 0; i < PTY_MAX_SESSIONS && !p; i++)
        if (st->s[i] && !strcmp(st->s[i]->id, id))
            p = st->s[i];
    if (p) {
        pthread_mutex_lock(&p->mu);
        p->refs++;
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&st->mu);
    return p;
}

/* Takes the session out of the store (the store's reference is the
 * caller's now). False when it was not there. */
static bool
pty_remove(kn_execd_t *ex, kn_pty_t *p)
{
    struct kn_ptystore *st = ex->ptys;
    bool found = false;
    pthread_mutex_lock(&st->mu);
    for (int i = 0; i < PTY_MAX_SESSIONS; i++)
        if (st->s[i] == p) {
            st->s[i] = NULL;
            found = true;
        }
    pthread_mutex_unlock(&st->mu);
    return found;
}

/* ---- output ------------------------------------------------------------------ */

/* Appends output (under p->mu). */
static void
ring_put(kn_pty_t *p, const char *data, size_t n, bool is_err)
{
    if (is_err && n) {
        if (p->nerr && p->errs[p->nerr - 1].b == p->total) {
            p->errs[p->nerr - 1].b += n;
        } else {
            /* Ranges older than the ring are of no use any more. */
            uint64_t base = p->total > PTY_RING ? p->total - PTY_RING : 0;
            size_t k = 0;
            while (k < p->nerr && p->errs[k].b <= base)
                k++;
            if (k) {
                memmove(p->errs, p->errs + k, (p->nerr - k) * sizeof *p->errs);
                p->nerr -= k;
            }
            /* Bounded: past PTY_MAX_RANGES interleavings in one ring, the
             * rest replays as stdout (live frames keep their stream). */
            if (p->nerr == p->errcap && p->errcap < PTY_MAX_RANGES) {
                size_t nc = p->errcap ? p->errcap * 2 : 16;
                range_t *r = realloc(p->errs, nc * sizeof *r);
                if (r) {
                    p->errs = r;
                    p->errcap = nc;
                }
            }
            if (p->nerr < p->errcap)
                p->errs[p->nerr++] = (range_t){p->total, p->total + n};
        }
    }
    for (size_t i = 0; i < n;) {
        size_t at = (size_t)(p->total % PTY_RING);
        size_t k = PTY_RING - at;
        if (k > n - i)
            k = n - i;
        memcpy(p->ring + at, data + i, k);
        i += k;
        p->total += k;
    }
}

static uint64_t
ring_base(const kn_pty_t *p)
{
    return p->total > PTY_RING ? p->total - PTY_RING : 0;
}

/* Whether offset off was stderr (under p->mu); *until: where that ends. */
static bool
is_err_at(const kn_pty_t *p, uint64_t off, uint64_t *until)
{
    *until = p->total;
    for (size_t i = 0; i < p->nerr; i++) {
        if (off < p->errs[i].a) {
            *until = p->errs[i].a;
            return false;
        }
        if (off < p->errs[i].b) {
            *until = p->errs[i].b;
            return true;
        }
    }
    return false;
}

/* Copies [off, off + max) of the ring into out, stopping where the stream
 * changes (under p->mu). Returns the length. */
static size_t
ring_get(const kn_pty_t *p, uint64_t off, char *out, size_t max, bool *is_err)
{
    uint64_t until;
    *is_err = is_err_at(p, off, &until);
    uint64_t n = until - off;
    if (n > max)
        n = max;
    for (uint64_t i = 0; i < n;) {
        size_t at = (size_t)((off + i) % PTY_RING);
        size_t k = PTY_RING - at;
        if (k > n - i)
            k = (size_t)(n - i);
        memcpy(out + i, p->ring + at, k);
        i += k;
    }
    return (size_t)n;
}

static void
wake_holder(kn_pty_t *p)
{
    if (p->holder)
        (void)eventfd_write(p->holder_efd, 1);
}

/* The reader thread: output into the ring until the shell has exited and
 * its descriptors are drained. Holds a reference. */
static void *
reader_main(void *arg)
{
    kn_pty_t *p = arg;
    char buf[16384];
    int fds[2] = {p->out_fd, p->err_fd};
    bool open_[2] = {fds[0] >= 0, fds[1] >= 0};
    bool child_done = false;
    int64_t drain_until = 0;
    int exit_fd = kn_child_exit_fd(p->child);
    for (;;) {
        struct pollfd pf[3];
        int n = 0, which[3];
        for (int i = 0; i < 2; i++)
            if (open_[i]) {
                pf[n] = (struct pollfd){fds[i], POLLIN, 0};
                which[n++] = i;
            }
        if (!child_done) {
            pf[n] = (struct pollfd){exit_fd, POLLIN, 0};
            which[n++] = 2;
        }
        if (n == 0)
            break;
        /* Once the shell is gone, what is still readable is drained (for
         * PTY_DRAIN_MS at most); a descendant that keeps the terminal open,
         * or keeps writing to it, does not hold the end. */
        if (child_done && !drain_until)
            drain_until = kn_util_mono_ms() + PTY_DRAIN_MS;
        if (child_done && kn_util_mono_ms() > drain_until)
            break;
        int r = poll(pf, (nfds_t)n, child_done ? 0 : -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        for (int j = 0; j < n; j++) {
            if (!pf[j].revents)
                continue;
            if (which[j] == 2) {
                child_done = true;
                continue;
            }
            int i = which[j];
            ssize_t k = read(fds[i], buf, sizeof buf);
            if (k < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (k <= 0) { /* EOF, or EIO: the terminal's last user closed it */
                open_[i] = false;
                continue;
            }
            pthread_mutex_lock(&p->mu);
            ring_put(p, buf, (size_t)k, i == 1);
            wake_holder(p);
            pthread_mutex_unlock(&p->mu);
        }
    }
    int code = 0;
    kn_child_wait(p->child, -1, &code);
    pthread_mutex_lock(&p->mu);
    p->exited = true;
    p->exit_code = code;
    p->exited_ms = (uint64_t)kn_util_mono_ms();
    wake_holder(p);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pty_unref(p);
    return NULL;
}

/* Starts the shell (under p->mu, not yet started). */
static int
pty_start(kn_execd_t *ex, kn_pty_t *p, bool pipe_mode, kn_error_t *err)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1};
    int master = -1, slave = -1;
    char **env = NULL;
    int ret = -1;
    const char *shell = kn_util_in_path("bash") ? "bash" : "sh";
    const char *argv[4] = {shell, NULL, NULL, NULL};
    if (p->command) {
        argv[1] = "-c";
        argv[2] = p->command;
    }
    if (!(p->ring = malloc(PTY_RING))) {
        kn_error_set(err, ENOMEM, "pty");
        goto out;
    }
    env = kn_proc_env_copy();
    if (!env) {
        kn_error_set(err, ENOMEM, "pty");
        goto out;
    }
    kn_spawn_t s = {.argv = argv,
                    .env = (const char *const *)env,
                    .cwd = p->cwd,
                    .uid = -1,
                    .gid = -1,
                    .fd3 = -1,
                    .fd4 = -1};
    if (pipe_mode) {
        if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
            kn_error_set(err, errno, "pipe");
            goto out;
        }
        s.stdin_fd = in[0];
        s.stdout_fd = out[1];
        s.stderr_fd = errp[1];
    } else {
        char name[128];
        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
            ptsname_r(master, name, sizeof name) != 0) {
            kn_error_set(err, errno, "open a terminal (/dev/ptmx)");
            goto out;
        }
        slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (slave < 0) {
            kn_error_set(err, errno, "open %s", name);
            goto out;
        }
        struct winsize ws = {.ws_row = 24, .ws_col = 80};
        (void)ioctl(slave, TIOCSWINSZ, &ws);
        s.stdin_fd = s.stdout_fd = s.stderr_fd = slave;
        s.ctty = true;
        /* A terminal wants a TERM; one set in execd's environment wins. */
        bool has_term = false;
        size_t n = 0;
        for (; env[n]; n++)
            has_term |= !strncmp(env[n], "TERM=", 5);
        if (!has_term) {
            char **e2 = realloc(env, (n + 2) * sizeof *e2);
            char *t = strdup("TERM=xterm-256color");
            if (!e2 || !t) {
                free(t);
                if (e2)
                    env = e2;
                kn_error_set(err, ENOMEM, "pty");
                goto out;
            }
            env = e2;
            env[n] = t;
            env[n + 1] = NULL;
            s.env = (const char *const *)env;
        }
    }
    kn_child_t *c = kn_proc_spawn(&s, err);
    if (!c)
        goto out;
    p->child = c;
    p->pipe_mode = pipe_mode;
    if (pipe_mode) {
        p->in_fd = in[1];
        p->out_fd = out[0];
        p->err_fd = errp[0];
        in[1] = out[0] = errp[0] = -1;
    } else {
        p->in_fd = master;
        p->out_fd = dup(master);
        master = -1;
        if (p->out_fd < 0) {
            kn_error_set(err, errno, "dup");
            goto out;
        }
        (void)fcntl(p->out_fd, F_SETFD, FD_CLOEXEC);
    }
    p->started = true;
    p->refs++; /* the reader's */
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 128 * 1024);
    int e = pthread_create(&t, &at, reader_main, p);
    pthread_attr_destroy(&at);
    if (e) {
        p->refs--;
        kn_child_kill(c, SIGKILL);
        p->exited = true;
        p->exit_code = 137;
        kn_error_set(err, e, "pthread_create");
        goto out;
    }
    ret = 0;
out:
    (void)ex;
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
        if (errp[i] >= 0)
            close(errp[i]);
    }
    if (master >= 0)
        close(master);
    if (slave >= 0)
        close(slave);
    if (env) {
        for (size_t i = 0; env[i]; i++)
            free(env[i]);
        free(env);
    }
    return ret;
}

/* ---- REST ----------------------------------------------------------------- */

enum MHD_Result
kn_pty_create(kn_req_t *req)
{
    enum MHD_Result r;
    json_t *body = kn_http_json_body(req, true, &r);
    if (!body)
        return r;
    json_t *cwd = json_object_get(body, "cwd"), *cmd = json_object_get(body, "command");
    bool ok = json_is_object(body) && (!cwd || json_is_null(cwd) || json_is_string(cwd)) &&
              (!cmd || json_is_null(cmd) || json_is_string(cmd));
    const char *cwd_s = json_string_value(cwd), *cmd_s = json_string_value(cmd);
    if (ok && ((cwd_s && strlen(cwd_s) != json_string_length(cwd)) ||
               (cmd_s && strlen(cmd_s) != json_string_length(cmd))))
        ok = false; /* a NUL inside */
    if (!ok) {
        json_decref(body);
        return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                   "body must be {\"cwd\"?: string, \"command\"?: string}");
    }
    if (cwd_s && !*cwd_s)
        cwd_s = NULL;
    if (cmd_s && !*cmd_s)
        cmd_s = NULL;
    struct stat st;
    if (cwd_s && (stat(cwd_s, &st) < 0 || !S_ISDIR(st.st_mode))) {
        bool missing = errno == ENOENT || errno == ENOTDIR;
        r = kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY", "cwd %s: %s", cwd_s,
                                missing ? "no such directory" : "not a directory");
        json_decref(body);
        return r;
    }
    kn_pty_t *p = calloc(1, sizeof *p);
    if (!p || (cwd_s && !(p->cwd = strdup(cwd_s))) || (cmd_s && !(p->command = strdup(cmd_s)))) {
        if (p) {
            free(p->cwd);
            free(p);
        }
        json_decref(body);
        return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "out of memory");
    }
    json_decref(body);
    kn_util_random_hex(p->id, 16);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->refs = 1;
    p->in_fd = p->out_fd = p->err_fd = p->holder_efd = -1;
    struct kn_ptystore *s = req->ex->ptys;
    bool placed = false;
    kn_pty_t *evicted = NULL;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < PTY_MAX_SESSIONS && !placed; i++)
        if (!s->s[i]) {
            s->s[i] = p;
            placed = true;
        }
    /* Full: the session whose shell ended longest ago, with nobody
     * attached, makes room (its output goes with it). */
    int oldest = -1;
    uint64_t oldest_ms = UINT64_MAX;
    for (int i = 0; i < PTY_MAX_SESSIONS && !placed; i++) {
        kn_pty_t *q = s->s[i];
        pthread_mutex_lock(&q->mu);
        if (q->exited && !q->holder && q->exited_ms < oldest_ms) {
            oldest = i;
            oldest_ms = q->exited_ms;
        }
        pthread_mutex_unlock(&q->mu);
    }
    if (!placed && oldest >= 0) {
        evicted = s->s[oldest];
        s->s[oldest] = p;
        placed = true;
    }
    pthread_mutex_unlock(&s->mu);
    if (evicted) {
        pthread_mutex_lock(&evicted->mu);
        evicted->gone = true;
        pthread_mutex_unlock(&evicted->mu);
        pty_unref(evicted);
    }
    if (!placed) {
        pty_unref(p);
        return kn_http_reply_error(req, 503, "TOO_MANY_SESSIONS",
                                   "at most %d PTY sessions at once, none of them ended; DELETE "
                                   "/pty/{id} one",
                                   PTY_MAX_SESSIONS);
    }
    return kn_http_reply_json(req, 201, json_pack("{s:s}", "session_id", p->id));
}

static enum MHD_Result
not_found(kn_req_t *req)
{
    return kn_http_reply_error(req, 404, "CONTEXT_NOT_FOUND", "pty session %s not found",
                               req->param);
}

enum MHD_Result
kn_pty_status(kn_req_t *req)
{
    kn_pty_t *p = pty_get(req->ex, req->param);
    if (!p)
        return not_found(req);
    pthread_mutex_lock(&p->mu);
    json_t *o = json_pack("{s:s, s:b, s:I}", "session_id", p->id, "running",
                          p->started && !p->exited, "output_offset", (json_int_t)p->total);
    if (o && p->started)
        json_object_set_new(o, "mode", json_string(p->pipe_mode ? "pipe" : "pty"));
    if (o && p->exited)
        json_object_set_new(o, "exit_code", json_integer(p->exit_code));
    pthread_mutex_unlock(&p->mu);
    pty_unref(p);
    return kn_http_reply_json(req, 200, o);
}

enum MHD_Result
kn_pty_delete(kn_req_t *req)
{
    kn_pty_t *p = pty_get(req->ex, req->param);
    if (!p)
        return not_found(req);
    if (!pty_remove(req->ex, p)) { /* a concurrent DELETE won */
        pty_unref(p);
        return not_found(req);
    }
    hang_up(p);
    /* The attached socket gets the exit frame and its close before this
     * answer: whoever watches both sees the end first. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2;
    pthread_mutex_lock(&p->mu);
    /* The reader marks the end once it has drained the output: the
     * socket's exit frame then carries the status. */
    while (p->started && !p->exited)
        if (pthread_cond_timedwait(&p->cv, &p->mu, &until) == ETIMEDOUT)
            break;
    p->gone = true;
    wake_holder(p);
    while (p->holder)
        if (pthread_cond_timedwait(&p->cv, &p->mu, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&p->mu);
    pty_unref(p); /* the store's */
    pty_unref(p); /* ours */
    return kn_http_reply_empty(req, 200);
}

/* ---- the WebSocket ------------------------------------------------------------ */

typedef struct kn_pty_conn {
    kn_execd_t *ex;
    kn_pty_t *p;
    int sock, efd;
    uint64_t gen;
    uint64_t cursor;
    bool takeover, pipe_mode;
    uint64_t since;
    bool has_since;
    kn_ws_parser_t parser;
    char *early; /* frames the client sent with its handshake */
    size_t early_len;
    kn_buf_t msg; /* the client message being gathered */
    int msg_op;
    bool closing; /* the client sent a close */
    uint16_t close_code;
} conn_t;

static int
send_all(int fd, const void *data, size_t n)
{
    const char *b = data;
    while (n > 0) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) {
            b += k;
            n -= (size_t)k;
            continue;
        }
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf = {fd, POLLOUT, 0};
            int r = poll(&pf, 1, PTY_SEND_TIMEOUT_MS);
            if (r > 0 && !(pf.revents & (POLLERR | POLLHUP)))
                continue;
            if (r < 0 && errno == EINTR)
                continue;
            errno = r == 0 ? ETIMEDOUT : EPIPE;
        }
        return -1;
    }
    return 0;
}

/* One frame: header, an optional one-byte prefix, the payload. */
static int
send_frame(conn_t *c, int opcode, int prefix, const void *data, size_t n)
{
    uint8_t h[KN_WS_MAX_HEADER + 1];
    size_t hl = kn_ws_header(h, opcode, n + (prefix >= 0));
    if (prefix >= 0)
        h[hl++] = (uint8_t)prefix;
    if (send_all(c->sock, h, hl) < 0)
        return -1;
    return n ? send_all(c->sock, data, n) : 0;
}

static int
send_json(conn_t *c, json_t *o /* stolen */)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!s)
        return -1;
    int rc = send_frame(c, KN_WS_TEXT, -1, s, strlen(s));
    free(s);
    return rc;
}

static int
send_error(conn_t *c, const char *code, const char *msg)
{
    return send_json(c, json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "error", msg));
}

static void
send_close(conn_t *c, uint16_t code, const char *reason)
{
    uint8_t b[KN_WS_MAX_CONTROL];
    size_t rl = strlen(reason);
    if (rl > sizeof b - 2)
        rl = sizeof b - 2;
    b[0] = (uint8_t)(code >> 8);
    b[1] = (uint8_t)code;
    memcpy(b + 2, reason, rl);
    (void)send_frame(c, KN_WS_CLOSE, -1, b, rl + 2);
}

/* Sends what the ring has past the cursor. 1 when the session has ended and
 * everything is out, 2 when evicted, 0 to go on, -1 on a send failure. */
static int
flush_output(conn_t *c)
{
    char *buf = malloc(PTY_CHUNK);
    if (!buf)
        return -1;
    int rc = 0;
    for (;;) {
        kn_pty_t *p = c->p;
        pthread_mutex_lock(&p->mu);
        if (p->evict) {
            pthread_mutex_unlock(&p->mu);
            rc = 2;
            break;
        }
        if (c->cursor < ring_base(p))
            c->cursor = ring_base(p);
        bool is_err = false;
        size_t n = c->cursor < p->total ? ring_get(p, c->cursor, buf, PTY_CHUNK, &is_err) : 0;
        bool done = n == 0 && (p->exited || p->gone);
        int code = p->exit_code;
        bool exited = p->exited;
        pthread_mutex_unlock(&p->mu);
        if (n) {
            if (send_frame(c, KN_WS_BINARY, is_err ? 0x02 : 0x01, buf, n) < 0) {
                rc = -1;
                break;
            }
            c->cursor += n;
            continue;
        }
        if (done) {
            json_t *o = exited ? json_pack("{s:s, s:i}", "type", "exit", "exit_code", code)
                               : json_pack("{s:s, s:s, s:s}", "type", "error", "code",
                                           "SESSION_GONE", "error", "the session was deleted");
            (void)send_json(c, o);
            send_close(c, 1000, exited ? "process exited" : "session deleted");
            rc = 1;
        }
        break;
    }
    free(buf);
    return rc;
}

static int
signal_number(const char *name)
{
    static const struct {
        const char *n;
        int s;
    } sigs[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},  {"KILL", SIGKILL},
                {"TERM", SIGTERM}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},  {"STOP", SIGSTOP},
                {"CONT", SIGCONT}, {"TSTP", SIGTSTP}, {"WINCH", SIGWINCH}};
    if (!name)
        return -1;
    if (!strncasecmp(name, "SIG", 3))
        name += 3;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (!strcasecmp(name, sigs[i].n))
            return sigs[i].s;
    return -1;
}

static int
write_stdin(conn_t *c, const char *data, size_t n)
{
    kn_pty_t *p = c->p;
    if (n == 0)
        return 0;
    if (p->in_fd < 0 || kn_util_write_all(p->in_fd, data, n) < 0)
        return send_error(c, "STDIN_WRITE_FAILED", strerror(errno));
    return 0;
}

/* A whole client message. -1 ends the connection. */
static int
on_message(conn_t *c)
{
    kn_pty_t *p = c->p;
    const char *d = c->msg.data;
    size_t n = c->msg.len;
    if (c->msg_op == KN_WS_BINARY) {
        if (n == 0 || (uint8_t)d[0] != 0x00)
            return send_error(c, "INVALID_FRAME", "binary frames from the client are 0x00 + stdin");
        return write_stdin(c, d + 1, n - 1);
    }
    json_error_t je;
    json_t *o = json_loadb(d, n, 0, &je);
    const char *type = json_string_value(json_object_get(o, "type"));
    int rc = 0;
    if (!type) {
        rc = send_error(c, "INVALID_FRAME", "text frames are JSON objects with a \"type\"");
    } else if (!strcmp(type, "stdin")) {
        const json_t *data = json_object_get(o, "data");
        rc = json_is_string(data)
                 ? write_stdin(c, json_string_value(data), json_string_length(data))
                 : send_error(c, "INVALID_FRAME", "stdin needs \"data\": string");
    } else if (!strcmp(type, "resize")) {
        json_int_t cols = json_integer_value(json_object_get(o, "cols"));
        json_int_t rows = json_integer_value(json_object_get(o, "rows"));
        if (cols <= 0 || rows <= 0 || cols > 65535 || rows > 65535)
            rc = send_error(c, "INVALID_FRAME", "resize needs cols and rows from 1 to 65535");
        else if (!p->pipe_mode) {
            struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
            (void)ioctl(p->in_fd, TIOCSWINSZ, &ws);
        }
    } else if (!strcmp(type, "signal")) {
        int sig = signal_number(json_string_value(json_object_get(o, "signal")));
        if (sig < 0) {
            rc = send_error(c, "INVALID_FRAME", "unknown signal");
        } else {
            /* A terminal's signal goes to its foreground job, as a key
             * press would send it; in pipe mode to the shell's group. */
            pid_t fg = p->pipe_mode ? -1 : tcgetpgrp(p->in_fd);
            if (fg > 0)
                (void)kill(-fg, sig);
            else
                kn_child_kill(p->child, sig);
        }
    } else if (!strcmp(type, "ping")) {
        rc = send_json(c, json_pack("{s:s}", "type", "pong"));
    } else {
        rc = send_error(c, "INVALID_FRAME", "unknown frame type");
    }
    json_decref(o);
    return rc;
}

static int
on_piece(void *ctx, const kn_ws_frame_t *f, uint64_t off, const uint8_t *data, size_t n, bool last)
{
    conn_t *c = ctx;
    (void)off;
    if (f->opcode == KN_WS_CLOSE) {
        if (last) {
            c->closing = true;
            c->close_code = 1000;
        }
        return 0;
    }
    if (f->opcode == KN_WS_PING) {
        /* Control frames are at most 125 bytes: the pong echoes one piece. */
        if (last)
            return send_frame(c, KN_WS_PONG, -1, data, n);
        return 0;
    }
    if (f->opcode == KN_WS_PONG)
        return 0;
    if (f->opcode != KN_WS_CONT && off == 0) {
        c->msg.len = 0;
        c->msg_op = f->opcode;
    }
    if (!f->masked)
        return -1; /* RFC 6455 5.1: a client masks every frame */
    if (c->msg.len + n > PTY_MAX_MESSAGE)
        return -1;
    if (n && kn_buf_append(&c->msg, data, n) < 0)
        return -1;
    if (last && f->fin)
        return on_message(c);
    return 0;
}

/* Becomes the session's holder (evicting the current one for a takeover).
 * False when that did not happen in time. */
static bool
attach(conn_t *c)
{
    kn_pty_t *p = c->p;
    pthread_mutex_lock(&p->mu);
    if (p->holder && c->takeover) {
        p->evict = true;
        wake_holder(p);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += PTY_TAKEOVER_MS / 1000;
        while (p->holder && !p->gone)
            if (pthread_cond_timedwait(&p->cv, &p->mu, &until) == ETIMEDOUT)
                break;
    }
    bool ok = !p->holder;
    if (ok) {
        p->evict = false;
        p->holder = c->gen = ++p->gen;
        p->holder_efd = c->efd;
    }
    pthread_mutex_unlock(&p->mu);
    return ok;
}

static void
detach(conn_t *c)
{
    kn_pty_t *p = c->p;
    pthread_mutex_lock(&p->mu);
    if (p->holder == c->gen) {
        p->holder = 0;
        p->holder_efd = -1;
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void
serve(conn_t *c)
{
    kn_pty_t *p = c->p;
    if (!attach(c)) {
        (void)send_error(c, "ALREADY_CONNECTED", "the takeover timed out");
        send_close(c, 1008, "ALREADY_CONNECTED");
        return;
    }
    kn_error_t err = {0};
    pthread_mutex_lock(&p->mu);
    int started = p->started ? 0 : pty_start(c->ex, p, c->pipe_mode, &err);
    bool gone = p->gone;
    c->cursor = ring_base(p);
    if (c->has_since && c->since > c->cursor)
        c->cursor = c->since < p->total ? c->since : p->total;
    /* The replay: what was kept from the cursor on, in one frame. */
    uint64_t from = c->cursor, to = p->total;
    char *replay = NULL;
    if (started == 0 && to > from && (replay = malloc((size_t)(to - from)))) {
        for (uint64_t o = from; o < to;) {
            bool e;
            o += ring_get(p, o, replay + (o - from), (size_t)(to - o), &e);
        }
        c->cursor = to;
    }
    const char *mode = p->pipe_mode ? "pipe" : "pty";
    pthread_mutex_unlock(&p->mu);
    if (started < 0) {
        (void)send_error(c, "START_FAILED", err.msg);
        send_close(c, 1011, "START_FAILED");
        goto out;
    }
    if (gone) {
        (void)send_error(c, "SESSION_GONE", "the session was deleted");
        send_close(c, 1000, "session deleted");
        goto out;
    }
    if (replay) {
        uint8_t off[8];
        for (int i = 0; i < 8; i++)
            off[i] = (uint8_t)(from >> (56 - 8 * i));
        uint8_t h[KN_WS_MAX_HEADER];
        size_t hl = kn_ws_header(h, KN_WS_BINARY, 1 + 8 + (to - from));
        uint8_t t = 0x03;
        if (send_all(c->sock, h, hl) < 0 || send_all(c->sock, &t, 1) < 0 ||
            send_all(c->sock, off, 8) < 0 || send_all(c->sock, replay, (size_t)(to - from)) < 0)
            goto out;
    }
    if (send_json(c, json_pack("{s:s, s:s, s:s}", "type", "connected", "session_id", p->id, "mode",
                               mode)) < 0)
        goto out;
    kn_ws_parser_init(&c->parser, PTY_MAX_MESSAGE);
    if (c->early_len && kn_ws_parse(&c->parser, c->early, c->early_len, on_piece, c) < 0) {
        send_close(c, 1002, c->parser.error ? c->parser.error : "bad frame");
        goto out;
    }
    int64_t last_io = kn_util_mono_ms();
    char in[16384];
    for (;;) {
        int f = flush_output(c);
        if (f == 2) {
            send_close(c, 4001, "TAKEN_OVER");
            break;
        }
        if (f != 0)
            break;
        struct pollfd pf[2] = {{c->sock, POLLIN, 0}, {c->efd, POLLIN, 0}};
        int r = poll(pf, 2, 1000);
        if (r < 0 && errno != EINTR)
            break;
        if (atomic_load(&c->ex->stopping)) {
            send_close(c, 1001, "execd is shutting down");
            break;
        }
        if (pf[1].revents & POLLIN) {
            eventfd_t v;
            (void)eventfd_read(c->efd, &v);
        }
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t k = recv(c->sock, in, sizeof in, MSG_DONTWAIT);
            if (k < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (k <= 0)
                break;
            last_io = kn_util_mono_ms();
            if (kn_ws_parse(&c->parser, in, (size_t)k, on_piece, c) < 0) {
                send_close(
                    c, c->parser.error && !strcmp(c->parser.error, "frame too large") ? 1009 : 1002,
                    c->parser.error ? c->parser.error : "bad frame");
                break;
            }
            if (c->closing) {
                send_close(c, 1000, "");
                break;
            }
        } else if (r == 0 && kn_util_mono_ms() - last_io > PTY_PING_MS) {
            if (send_frame(c, KN_WS_PING, -1, NULL, 0) < 0)
                break;
            last_io = kn_util_mono_ms();
        }
    }
out:
    free(replay);
    detach(c);
}

static void
ws_run(void *cls, struct MHD_Connection *conn, void *req_cls, const char *extra_in,
       size_t extra_len, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
    (void)conn;
    (void)req_cls;
    conn_t *c = cls;
    c->sock = sock;
    /* Bytes the client sent right after its handshake are frames already;
     * they are read once the shell is up. */
    if (extra_len && (c->early = malloc(extra_len))) {
        memcpy(c->early, extra_in, extra_len);
        c->early_len = extra_len;
    }
    serve(c);
    /* Last: MHD may clean the request up (kn_pty_conn_free) once this runs. */
    MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

void
kn_pty_conn_free(struct kn_pty_conn *c)
{
    if (!c)
        return;
    if (c->efd >= 0)
        close(c->efd);
    kn_buf_free(&c->msg);
    free(c->early);
    pty_unref(c->p);
    free(c);
}

enum MHD_Result
kn_pty_ws(kn_req_t *req)
{
    const char *up = kn_http_header(req, "Upgrade");
    const char *co = kn_http_header(req, "Connection");
    const char *key = kn_http_header(req, "Sec-WebSocket-Key");
    const char *ver = kn_http_header(req, "Sec-WebSocket-Version");
    kn_pty_t *p = pty_get(req->ex, req->param);
    if (!p)
        return not_found(req);
    if (!up || strcasecmp(up, "websocket") || !co || !kn_ws_has_token(co, "upgrade") || !key ||
        strlen(key) != 24) {
        pty_unref(p);
        return kn_http_reply_error(req, 400, "INVALID_REQUEST",
                                   "a WebSocket handshake is needed (Upgrade: websocket, "
                                   "Connection: Upgrade, Sec-WebSocket-Key)");
    }
    if (!ver || strcmp(ver, "13")) {
        pty_unref(p);
        return kn_http_reply_error(req, 426, "UPGRADE_REQUIRED",
                                   "Sec-WebSocket-Version must be 13");
    }
    const char *q_pty = kn_http_query(req, "pty"), *q_since = kn_http_query(req, "since");
    const char *q_take = kn_http_query(req, "takeover");
    bool takeover = q_take && !strcmp(q_take, "1");
    pthread_mutex_lock(&p->mu);
    bool busy = p->holder != 0, gone = p->gone;
    pthread_mutex_unlock(&p->mu);
    if (gone) {
        pty_unref(p);
        return not_found(req);
    }
    if (busy && !takeover) {
        pty_unref(p);
        return kn_http_reply_error(req, 409, "ALREADY_CONNECTED",
                                   "another client is already connected to pty session %s; "
                                   "?takeover=1 takes it over",
                                   req->param);
    }
    conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        pty_unref(p);
        return MHD_NO;
    }
    c->ex = req->ex;
    c->p = p;
    c->takeover = takeover;
    c->pipe_mode = q_pty && !strcmp(q_pty, "0");
    if (q_since && *q_since) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(q_since, &end, 10);
        if (*end || errno || q_since[0] == '-') {
            pty_unref(p);
            free(c);
            return kn_http_reply_error(req, 400, "INVALID_REQUEST",
                                       "since must be a byte offset (a non-negative integer)");
        }
        c->since = v;
        c->has_since = true;
    }
    c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->efd < 0) {
        pty_unref(p);
        free(c);
        return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "eventfd: %s", strerror(errno));
    }
    /* Sec-WebSocket-Accept: base64(SHA-1(key + GUID)) (RFC 6455 4.2.2). */
    struct sha1_ctx h;
    uint8_t dg[SHA1_DIGEST_SIZE];
    char accept[BASE64_ENCODE_RAW_LENGTH(SHA1_DIGEST_SIZE) + 1];
    sha1_init(&h);
    sha1_update(&h, strlen(key), (const uint8_t *)key);
    sha1_update(&h, sizeof WS_GUID - 1, (const uint8_t *)WS_GUID);
    sha1_digest(&h, sizeof dg, dg);
    base64_encode_raw(accept, sizeof dg, dg);
    accept[sizeof accept - 1] = '\0';
    req->pty_conn = c; /* freed when the request completes, upgraded or not */
    struct MHD_Response *resp = MHD_create_response_for_upgrade(ws_run, c);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Upgrade", "websocket");
    MHD_add_response_header(resp, "Connection", "Upgrade");
    MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
    return kn_http_queue(req, 101, resp);
}
