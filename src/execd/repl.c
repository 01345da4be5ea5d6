/* repl.c - language driver processes and their runs. See repl.h. */
#include "repl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "code.h"
#include "command.h"
#include "proc.h"
#include "stream.h"
#include "util.h"

#define KN_REPL_READY_MS 20000
#define KN_REPL_ABANDON_MS 2000
#define KN_REPL_MAX_REPLY (16 * 1024 * 1024)

struct kn_replstore;

struct kn_repl {
    char id[40];
    struct kn_replstore *store;
    const kn_driver_t *drv;
    kn_repl_kind_t kind;
    char *cwd;
    bool is_default;
    /* The process; while busy only the running stream touches these. */
    kn_child_t *child;
    int req_w, resp_r, out_r, err_r;
    kn_buf_t replies;
    bool busy;
    bool removed;
    int exec_count;
    int refs;
    struct kn_repl *next;
};

struct kn_replstore {
    pthread_mutex_t lock;
    kn_repl_t *head;
};

int
kn_repl_store_init(kn_execd_t *ex, kn_error_t *err)
{
    struct kn_replstore *s = calloc(1, sizeof *s);
    if (!s)
        return kn_error_set(err, ENOMEM, "repl store");
    pthread_mutex_init(&s->lock, NULL);
    ex->repls = s;
    return 0;
}

static void
close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Kills the process and forgets it; the next run starts a fresh one. */
static void
repl_reset(kn_repl_t *r)
{
    pthread_mutex_lock(&r->store->lock);
    kn_child_t *c = r->child;
    r->child = NULL;
    pthread_mutex_unlock(&r->store->lock);
    if (c) {
        kn_child_kill(c, SIGKILL);
        kn_child_wait(c, 5000, NULL);
        kn_child_unref(c);
    }
    close_fd(&r->req_w);
    close_fd(&r->resp_r);
    close_fd(&r->out_r);
    close_fd(&r->err_r);
    r->replies.len = 0;
}

static void
repl_free(kn_repl_t *r)
{
    repl_reset(r);
    kn_buf_free(&r->replies);
    free(r->cwd);
    free(r);
}

void
kn_repl_store_free(kn_execd_t *ex)
{
    struct kn_replstore *s = ex->repls;
    if (!s)
        return;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        kn_repl_t *r = s->head;
        if (r) {
            s->head = r->next;
            r->removed = true;
            if (r->child)
                kn_child_kill(r->child, SIGKILL);
        }
        pthread_mutex_unlock(&s->lock);
        if (!r)
            break;
        kn_repl_put(ex, r);
    }
    /* Called after the HTTP servers stopped: no run holds the store any more. */
    pthread_mutex_destroy(&s->lock);
    free(s);
    ex->repls = NULL;
}

/* Reads one reply line (without its newline) into line; 1 if one is ready, 0
 * if more bytes are needed, -1 on EOF or error. */
static int
next_reply(kn_repl_t *r, kn_buf_t *line)
{
    for (;;) {
        char *nl = r->replies.len ? memchr(r->replies.data, '\n', r->replies.len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - r->replies.data);
            line->len = 0;
            kn_buf_append(line, r->replies.data, n);
            kn_buf_consume(&r->replies, n + 1);
            return 1;
        }
        char tmp[65536];
        ssize_t got = read(r->resp_r, tmp, sizeof tmp);
        if (got < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        if (got == 0 || r->replies.len + (size_t)got > KN_REPL_MAX_REPLY)
            return -1;
        kn_buf_append(&r->replies, tmp, (size_t)got);
    }
}

static int
drain_text(int fd, char *out, size_t n)
{
    size_t o = 0;
    while (fd >= 0 && o + 1 < n) {
        ssize_t got = read(fd, out + o, n - 1 - o);
        if (got <= 0)
            break;
        o += (size_t)got;
    }
    out[o] = '\0';
    return (int)o;
}

/* Starts the driver process and waits for its ready line. */
static int
repl_start(kn_repl_t *r, kn_error_t *err)
{
    int preq[2] = {-1, -1}, presp[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
    int rc = -1;
    char **env = NULL;
    if (pipe2(preq, O_CLOEXEC) < 0 || pipe2(presp, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 ||
        (r->kind == KN_REPL_CODE && pipe2(perr, O_CLOEXEC) < 0)) {
        kn_error_set(err, errno, "pipe");
        goto out;
    }
    json_t *extra = json_pack("{s:s}", "PYTHONDONTWRITEBYTECODE", "1");
    env = kn_command_env(extra);
    json_decref(extra);
    kn_spawn_t sp = {.argv = r->drv->argv,
                     .env = (const char *const *)env,
                     .cwd = r->cwd,
                     .uid = -1,
                     .gid = -1,
                     .stdin_fd = -1,
                     .stdout_fd = pout[1],
                     .stderr_fd = r->kind == KN_REPL_CODE ? perr[1] : pout[1],
                     .fd3 = preq[0],
                     .fd4 = presp[1]};
    kn_child_t *child = kn_proc_spawn(&sp, err);
    if (!child)
        goto out;
    pthread_mutex_lock(&r->store->lock);
    r->child = child;
    pthread_mutex_unlock(&r->store->lock);
    r->req_w = preq[1];
    r->resp_r = presp[0];
    r->out_r = pout[0];
    r->err_r = perr[0];
    preq[1] = presp[0] = pout[0] = perr[0] = -1;
    fcntl(r->resp_r, F_SETFL, O_NONBLOCK);
    fcntl(r->out_r, F_SETFL, O_NONBLOCK);
    if (r->err_r >= 0)
        fcntl(r->err_r, F_SETFL, O_NONBLOCK);
    kn_buf_t line = {0};
    int64_t until = kn_util_mono_ms() + KN_REPL_READY_MS;
    int got = 0;
    while (got == 0 && kn_util_mono_ms() < until) {
        struct pollfd p[2] = {{.fd = r->resp_r, .events = POLLIN},
                              {.fd = kn_child_exit_fd(r->child), .events = POLLIN}};
        poll(p, 2, 200);
        got = next_reply(r, &line);
        if (got == 0 && kn_child_exited(r->child, NULL))
            got = -1;
    }
    bool ready = got == 1 && strstr(line.data, "\"ready\"");
    kn_buf_free(&line);
    if (!ready) {
        char msg[300];
        kn_child_wait(r->child, 200, NULL);
        drain_text(r->err_r >= 0 ? r->err_r : r->out_r, msg, sizeof msg);
        kn_error_set(err, 0, "%s driver did not start%s%s", r->drv->runtime, *msg ? ": " : "", msg);
        repl_reset(r);
        goto out;
    }
    rc = 0;
out:
    kn_command_env_free(env);
    for (int i = 0; i < 2; i++) {
        close_fd(&preq[i]);
        close_fd(&presp[i]);
        close_fd(&pout[i]);
        close_fd(&perr[i]);
    }
    return rc;
}

kn_repl_t *
kn_repl_create(kn_execd_t *ex, kn_repl_kind_t kind, const kn_driver_t *drv, const char *cwd,
               bool is_default, kn_error_t *err)
{
    kn_repl_t *r = calloc(1, sizeof *r);
    if (!r) {
        kn_error_set(err, ENOMEM, "context");
        return NULL;
    }
    if (kind == KN_REPL_SESSION)
        kn_util_uuid(r->id);
    else
        kn_util_random_hex(r->id, 16);
    r->store = ex->repls;
    r->drv = drv;
    r->kind = kind;
    r->cwd = cwd && *cwd ? strdup(cwd) : NULL;
    r->is_default = is_default;
    r->req_w = r->resp_r = r->out_r = r->err_r = -1;
    r->refs = 2; /* the store's and the caller's */
    if (repl_start(r, err) < 0) {
        repl_free(r);
        return NULL;
    }
    struct kn_replstore *s = ex->repls;
    pthread_mutex_lock(&s->lock);
    r->next = s->head;
    s->head = r;
    pthread_mutex_unlock(&s->lock);
    return r;
}

kn_repl_t *
kn_repl_get(kn_execd_t *ex, kn_repl_kind_t kind, const char *id)
{
    struct kn_replstore *s = ex->repls;
    pthread_mutex_lock(&s->lock);
    kn_repl_t *r = s->head;
    while (r && (r->kind != kind || strcmp(r->id, id) != 0))
        r = r->next;
    if (r)
        r->refs++;
    pthread_mutex_unlock(&s->lock);
    return r;
}

kn_repl_t *
kn_repl_default(kn_execd_t *ex, const kn_driver_t *drv, kn_error_t *err)
{
    struct kn_replstore *s = ex->repls;
    pthread_mutex_lock(&s->lock);
    kn_repl_t *r = s->head;
    while (r && !(r->kind == KN_REPL_CODE && r->is_default && r->drv == drv))
        r = r->next;
    if (r)
        r->refs++;
    pthread_mutex_unlock(&s->lock);
    if (r)
        return r;
    return kn_repl_create(ex, KN_REPL_CODE, drv, NULL, true, err);
}

void
kn_repl_put(kn_execd_t *ex, kn_repl_t *r)
{
    if (!r)
        return;
    struct kn_replstore *s = ex->repls;
    pthread_mutex_lock(&s->lock);
    bool last = --r->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (last)
        repl_free(r);
}

const char *
kn_repl_id(const kn_repl_t *r)
{
    return r->id;
}

const char *
kn_repl_language(const kn_repl_t *r)
{
    return r->drv->language;
}

/* Unlinks r from the store (lock held); returns true if it was there. */
static bool
unlink_locked(struct kn_replstore *s, kn_repl_t *r)
{
    for (kn_repl_t **pp = &s->head; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            r->removed = true;
            if (r->child)
                kn_child_kill(r->child, SIGKILL);
            return true;
        }
    }
    return false;
}

void
kn_repl_remove(kn_execd_t *ex, kn_repl_t *r)
{
    struct kn_replstore *s = ex->repls;
    pthread_mutex_lock(&s->lock);
    bool was = unlink_locked(s, r);
    pthread_mutex_unlock(&s->lock);
    if (was)
        kn_repl_put(ex, r);
}

int
kn_repl_remove_language(kn_execd_t *ex, const char *language)
{
    const kn_driver_t *drv = kn_driver_find(language);
    struct kn_replstore *s = ex->repls;
    int n = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        kn_repl_t *r = s->head;
        while (r && !(r->kind == KN_REPL_CODE && r->drv == drv))
            r = r->next;
        if (r)
            unlink_locked(s, r);
        pthread_mutex_unlock(&s->lock);
        if (!r)
            return n;
        kn_repl_put(ex, r);
        n++;
    }
}

json_t *
kn_repl_list(kn_execd_t *ex, const char *language)
{
    const kn_driver_t *want = language && *language ? kn_driver_find(language) : NULL;
    json_t *a = json_array();
    struct kn_replstore *s = ex->repls;
    pthread_mutex_lock(&s->lock);
    for (kn_repl_t *r = s->head; r; r = r->next) {
        if (r->kind != KN_REPL_CODE || (language && *language && r->drv != want))
            continue;
        json_array_append_new(a, json_pack("{s:s,s:s}", "id", r->id, "language", r->drv->language));
    }
    pthread_mutex_unlock(&s->lock);
    return a;
}

int
kn_repl_interrupt(kn_repl_t *r)
{
    pthread_mutex_lock(&r->store->lock);
    kn_child_t *c = r->child;
    if (c)
        kn_child_ref(c);
    pthread_mutex_unlock(&r->store->lock);
    if (!c)
        return -1;
    kn_child_kill(c, SIGINT);
    kn_child_unref(c);
    return 0;
}

/* --- one run ----------------------------------------------------------------- */

typedef struct run {
    kn_execd_t *ex;
    kn_repl_t *r;
    int conn_fd;
    int phase; /* 0 init pending, 1 running, 2 finished */
    kn_lines_t lo, le;
    kn_buf_t request;
    json_t *error; /* the driver's error reply, if any */
    int64_t t0, deadline;
    long timeout_ms;
    bool timed_out;
} run_t;

/* The run is over: the repl takes the next run at once, before the client has
 * even seen the end of this stream. */
static void
run_finish(run_t *f)
{
    if (f->phase == 2)
        return;
    f->phase = 2;
    pthread_mutex_lock(&f->r->store->lock);
    f->r->busy = false;
    pthread_mutex_unlock(&f->r->store->lock);
}

static void
pump(int *fd, kn_lines_t *l, kn_buf_t *out)
{
    char buf[65536];
    for (int i = 0; *fd >= 0 && i < 16; i++) {
        ssize_t n = read(*fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        kn_lines_feed(l, out, buf, (size_t)n);
    }
}

static void
drain_outputs(run_t *f, kn_buf_t *out)
{
    for (int i = 0; i < 64; i++) {
        size_t before = out->len;
        pump(&f->r->out_r, &f->lo, out);
        pump(&f->r->err_r, &f->le, out);
        if (out->len == before)
            break;
    }
    kn_lines_flush(&f->lo, out);
    kn_lines_flush(&f->le, out);
}

static int
run_done(run_t *f, kn_buf_t *out, int status)
{
    drain_outputs(f, out);
    if (f->error) {
        json_t *tb = json_object_get(f->error, "traceback");
        kn_stream_event(out, "error",
                        json_pack("{s:{s:O,s:O,s:O}}", "error", "ename",
                                  json_object_get(f->error, "ename"), "evalue",
                                  json_object_get(f->error, "evalue"), "traceback",
                                  json_is_array(tb) ? tb : json_array()));
        run_finish(f);
        return 1;
    }
    if (status != 0) {
        char ev[16], tb[64];
        snprintf(ev, sizeof ev, "%d", status);
        snprintf(tb, sizeof tb, "command exited with code %d", status);
        kn_stream_error(out, "CommandExecError", ev, tb);
        run_finish(f);
        return 1;
    }
    kn_stream_event(out, "execution_complete",
                    json_pack("{s:I}", "execution_time", (json_int_t)(kn_util_mono_ms() - f->t0)));
    run_finish(f);
    return 1;
}

/* The process died (crash, exit, timeout kill): report and reset. */
static int
run_lost(run_t *f, kn_buf_t *out)
{
    int code = -1;
    kn_child_wait(f->r->child, 1000, &code);
    drain_outputs(f, out);
    char msg[300];
    const char *rt = f->r->drv->runtime;
    if (f->timed_out) {
        snprintf(msg, sizeof msg,
                 "execution timed out after %ld ms; the %s process was killed and the context "
                 "was reset (its state is lost)",
                 f->timeout_ms, rt);
        kn_stream_error(out, "TimeoutError", msg, msg);
    } else if (f->r->kind == KN_REPL_SESSION) {
        char ev[16];
        snprintf(ev, sizeof ev, "%d", code);
        snprintf(msg, sizeof msg,
                 "command exited with code %d; the session's shell exited and was restarted "
                 "(its state is lost)",
                 code);
        kn_stream_error(out, "CommandExecError", ev, msg);
    } else {
        snprintf(msg, sizeof msg,
                 "the %s process exited with status %d; the context was reset (its state is lost)",
                 rt, code);
        kn_stream_error(out, "ContextReset", msg, msg);
    }
    repl_reset(f->r);
    run_finish(f);
    return 1;
}

static int
handle_reply(run_t *f, kn_buf_t *out, const kn_buf_t *line)
{
    json_t *j = json_loadb(line->data, line->len, 0, NULL);
    const char *type = json_string_value(json_object_get(j, "type"));
    int rc = 0;
    if (!type) {
        /* not ours: ignore */
    } else if (!strcmp(type, "result")) {
        const char *text = json_string_value(json_object_get(j, "text"));
        if (text) {
            kn_lines_flush(&f->lo, out);
            kn_stream_event(out, "result", json_pack("{s:{s:s}}", "results", "text/plain", text));
        }
    } else if (!strcmp(type, "error")) {
        json_decref(f->error);
        f->error = json_incref(j);
    } else if (!strcmp(type, "done")) {
        json_t *st = json_object_get(j, "status");
        rc = run_done(f, out, json_is_integer(st) ? (int)json_integer_value(st) : 0);
    }
    json_decref(j);
    return rc;
}

static int
run_more(void *self, kn_buf_t *out)
{
    run_t *f = self;
    kn_repl_t *r = f->r;
    if (f->phase == 2)
        return 1;
    if (f->phase == 0) {
        f->phase = 1;
        kn_stream_text(out, "init", r->id, strlen(r->id));
        if (r->kind == KN_REPL_CODE)
            kn_stream_event(out, "execution_count",
                            json_pack("{s:i}", "execution_count", ++r->exec_count));
        if (kn_util_write_all(r->req_w, f->request.data, f->request.len) < 0)
            return run_lost(f, out);
        return 0;
    }
    struct pollfd p[5] = {
        {.fd = r->out_r, .events = POLLIN},
        {.fd = r->err_r, .events = POLLIN},
        {.fd = r->resp_r, .events = POLLIN},
        {.fd = kn_child_exit_fd(r->child), .events = POLLIN},
        {.fd = f->conn_fd, .events = POLLRDHUP},
    };
    int wait = 1000;
    if (f->deadline) {
        int64_t left = f->deadline - kn_util_mono_ms();
        if (left <= 0) {
            f->deadline = 0;
            f->timed_out = true;
            kn_child_kill(r->child, SIGKILL);
            return 0;
        }
        if (left < wait)
            wait = (int)left;
    }
    if (poll(p, 5, wait) < 0)
        return errno == EINTR ? 0 : -1;
    if (p[4].revents)
        return -1; /* the client left; destroy() settles the run */
    if (p[0].revents)
        pump(&r->out_r, &f->lo, out);
    if (p[1].revents)
        pump(&r->err_r, &f->le, out);
    if (p[2].revents) {
        kn_buf_t line = {0};
        int got;
        while ((got = next_reply(r, &line)) == 1) {
            if (handle_reply(f, out, &line) == 1) {
                kn_buf_free(&line);
                return 1;
            }
        }
        kn_buf_free(&line);
        if (got < 0)
            return run_lost(f, out);
    }
    if (p[3].revents && kn_child_exited(r->child, NULL))
        return run_lost(f, out);
    return 0;
}

/* After a client left mid-run: interrupt, wait briefly for the driver to
 * finish the run, else reset it. */
static void
settle_abandoned(run_t *f)
{
    kn_repl_t *r = f->r;
    kn_buf_t sink = {0};
    kn_child_kill(r->child, SIGINT);
    int64_t until = kn_util_mono_ms() + KN_REPL_ABANDON_MS;
    f->conn_fd = -1;
    while (f->phase != 2 && kn_util_mono_ms() < until && r->child) {
        if (run_more(f, &sink) != 0)
            break;
        sink.len = 0;
    }
    if (f->phase != 2) {
        repl_reset(r);
        run_finish(f);
    }
    kn_buf_free(&sink);
}

static void
run_destroy(void *self)
{
    run_t *f = self;
    if (f->phase != 2 && f->r->child)
        settle_abandoned(f);
    run_finish(f);
    struct kn_replstore *s = f->ex->repls;
    pthread_mutex_lock(&s->lock);
    bool removed = f->r->removed;
    pthread_mutex_unlock(&s->lock);
    if (removed)
        repl_reset(f->r);
    kn_lines_free(&f->lo);
    kn_lines_free(&f->le);
    kn_buf_free(&f->request);
    json_decref(f->error);
    kn_repl_put(f->ex, f->r);
    free(f);
}

/* Single-quotes s for the shell. */
static void
shell_quote(kn_buf_t *b, const char *s)
{
    kn_buf_append(b, "'", 1);
    for (; *s; s++) {
        if (*s == '\'')
            kn_buf_append(b, "'\\''", 4);
        else
            kn_buf_append(b, s, 1);
    }
    kn_buf_append(b, "'", 1);
}

/* The request line for bash: every byte outside printable ASCII, and the
 * backslash, as \xHH for printf %b. */
static void
bash_request(kn_buf_t *out, const char *code, const char *cwd)
{
    kn_buf_t src = {0};
    if (cwd && *cwd) {
        kn_buf_append(&src, "cd -- ", 6);
        shell_quote(&src, cwd);
        kn_buf_append(&src, " && eval ", 9);
        shell_quote(&src, code);
    } else {
        kn_buf_append(&src, code, strlen(code));
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < src.len; i++) {
        unsigned char c = (unsigned char)src.data[i];
        if (c < 0x20 || c >= 0x7f || c == '\\') {
            char e[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            kn_buf_append(out, e, 4);
        } else {
            kn_buf_append(out, &src.data[i], 1);
        }
    }
    kn_buf_append(out, "\n", 1);
    kn_buf_free(&src);
}

enum MHD_Result
kn_repl_run(kn_req_t *req, kn_repl_t *r, const char *code, const char *cwd, long timeout_ms)
{
    struct kn_replstore *s = req->ex->repls;
    pthread_mutex_lock(&s->lock);
    bool busy = r->busy;
    if (!busy)
        r->busy = true;
    pthread_mutex_unlock(&s->lock);
    if (busy) {
        kn_repl_put(req->ex, r);
        return kn_http_reply_error(req, 409, "RUNTIME_ERROR", "context %s is busy with another run",
                                   r->id);
    }
    kn_error_t err = {0};
    if (!r->child && repl_start(r, &err) < 0) {
        pthread_mutex_lock(&s->lock);
        r->busy = false;
        pthread_mutex_unlock(&s->lock);
        kn_repl_put(req->ex, r);
        return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "%s", err.msg);
    }
    run_t *f = calloc(1, sizeof *f);
    f->ex = req->ex;
    f->r = r;
    f->conn_fd = kn_http_conn_fd(req);
    kn_lines_init(&f->lo, "stdout", req->ex->max_stdout);
    kn_lines_init(&f->le, "stderr", req->ex->max_stderr);
    if (r->kind == KN_REPL_CODE) {
        f->lo.raw = f->le.raw = true;
    } else {
        f->lo.skip_empty = true;
    }
    if (r->drv->json_requests) {
        json_t *j = json_pack("{s:s}", "code", code);
        char *line = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
        kn_buf_append(&f->request, line, strlen(line));
        kn_buf_append(&f->request, "\n", 1);
        free(line);
        json_decref(j);
    } else {
        bash_request(&f->request, code, cwd);
    }
    f->t0 = kn_util_mono_ms();
    f->timeout_ms = timeout_ms;
    if (timeout_ms > 0)
        f->deadline = f->t0 + timeout_ms;
    kn_producer_t p = {run_more, run_destroy, f};
    return kn_http_reply_stream(req, "text/event-stream", p);
}
