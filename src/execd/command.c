/* command.c - shell commands for POST /command, status, logs, interrupt. */
#include "command.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "direct.h"
#include "handlers.h"
#include "http.h"
#include "proc.h"
#include "repl.h"
#include "stream.h"
#include "util.h"
#include "core/utf8.h"

/* Finished commands remembered for /command/status; the oldest are forgotten. */
#define KN_CMD_KEEP_FINISHED 256
#define KN_CMD_INTERRUPT_GRACE_MS 3000

typedef struct kn_cmd {
    char id[33];
    char *content;
    bool background;
    kn_child_t *child;
    int log_fd; /* background: memfd with stdout+stderr, else -1 */
    int64_t started_ms;
    int64_t finished_ms;
    bool running;
    int exit_code;
    char *error;
    int refs;
    struct kn_cmd *next;
} kn_cmd_t;

struct kn_cmdstore {
    pthread_mutex_t lock;
    pthread_cond_t idle;
    int waiters;    /* background waiter threads still running */
    kn_cmd_t *head; /* newest first */
    /* Kennel's supervisor calls, each taken once per execd. */
    bool env_taken;
    bool main_taken;
    bool main_started;
    bool main_done;
    int main_code;
    kn_cmd_t *main; /* the entrypoint, with a reference, once started */
};

int
kn_command_store_init(kn_execd_t *ex, kn_error_t *err)
{
    struct kn_cmdstore *s = calloc(1, sizeof *s);
    if (!s)
        return kn_error_set(err, ENOMEM, "command store");
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->idle, NULL);
    ex->cmds = s;
    return 0;
}

static void
cmd_unref_locked(kn_cmd_t *c)
{
    if (--c->refs > 0)
        return;
    kn_child_unref(c->child);
    if (c->log_fd >= 0)
        close(c->log_fd);
    free(c->content);
    free(c->error);
    free(c);
}

static void
cmd_unref(struct kn_cmdstore *s, kn_cmd_t *c)
{
    pthread_mutex_lock(&s->lock);
    cmd_unref_locked(c);
    pthread_mutex_unlock(&s->lock);
}

void
kn_command_store_free(kn_execd_t *ex)
{
    struct kn_cmdstore *s = ex->cmds;
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    if (s->main) {
        if (s->main->child)
            kn_child_kill(s->main->child, SIGKILL);
        cmd_unref_locked(s->main);
        s->main = NULL;
    }
    kn_cmd_t *c = s->head;
    s->head = NULL;
    while (c) {
        kn_cmd_t *next = c->next;
        if (c->running && c->child)
            kn_child_kill(c->child, SIGKILL);
        cmd_unref_locked(c);
        c = next;
    }
    /* Waiter threads hold the store until their (killed) command is reaped. */
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    while (s->waiters > 0 && pthread_cond_timedwait(&s->idle, &s->lock, &dl) == 0)
        ;
    bool idle = s->waiters == 0;
    pthread_mutex_unlock(&s->lock);
    if (idle) {
        pthread_cond_destroy(&s->idle);
        pthread_mutex_destroy(&s->lock);
        free(s);
        ex->cmds = NULL;
    }
}

/* Adds c (one reference for the store) and forgets the oldest finished commands. */
static void
store_add(struct kn_cmdstore *s, kn_cmd_t *c)
{
    pthread_mutex_lock(&s->lock);
    c->refs++;
    c->next = s->head;
    s->head = c;
    int finished = 0;
    for (kn_cmd_t **pp = &s->head; *pp;) {
        kn_cmd_t *x = *pp;
        if (!x->running && ++finished > KN_CMD_KEEP_FINISHED) {
            *pp = x->next;
            cmd_unref_locked(x);
            continue;
        }
        pp = &x->next;
    }
    pthread_mutex_unlock(&s->lock);
}

/* Returns the command with a reference, or NULL. */
static kn_cmd_t *
store_get(struct kn_cmdstore *s, const char *id)
{
    pthread_mutex_lock(&s->lock);
    kn_cmd_t *c = s->head;
    while (c && strcmp(c->id, id) != 0)
        c = c->next;
    if (c)
        c->refs++;
    pthread_mutex_unlock(&s->lock);
    return c;
}

static void
cmd_finish(struct kn_cmdstore *s, kn_cmd_t *c, int code, const char *error)
{
    pthread_mutex_lock(&s->lock);
    if (c->running) {
        c->running = false;
        c->exit_code = code;
        c->finished_ms = kn_util_now_ms();
        if (error && !c->error)
            c->error = strdup(error);
    }
    pthread_mutex_unlock(&s->lock);
}

/* Where bash was found last and with which PATH, so that a command costs
 * one access() rather than a stat per PATH entry; looked up again when PATH
 * changes or that file goes. */
static pthread_mutex_t shell_mu = PTHREAD_MUTEX_INITIALIZER;
static char shell_bash[4096], shell_path[8192];

const char *
kn_command_shell(void)
{
    pthread_mutex_lock(&shell_mu);
    const char *path = getenv("PATH");
    path = path ? path : "";
    bool same = strlen(path) < sizeof shell_path && !strcmp(path, shell_path);
    if (!same)
        snprintf(shell_path, sizeof shell_path, "%s", path);
    bool bash = same && shell_bash[0] && access(shell_bash, X_OK) == 0;
    if (!bash) {
        bash = kn_util_which("bash", shell_bash, sizeof shell_bash);
        if (!bash)
            shell_bash[0] = '\0';
    }
    pthread_mutex_unlock(&shell_mu);
    return bash ? "bash" : "sh";
}

char **
kn_command_env(const void *envs_json)
{
    const json_t *envs = envs_json;
    char **base = kn_proc_env_copy();
    if (!base)
        return NULL;
    size_t n = 0;
    while (base[n])
        n++;
    size_t extra = json_is_object(envs) ? json_object_size(envs) : 0;
    char **env = calloc(n + extra + 1, sizeof *env);
    if (!env) {
        kn_command_env_free(base);
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(base[i], '=');
        if (eq && extra) {
            char key[256];
            size_t kl = (size_t)(eq - base[i]);
            if (kl < sizeof key) {
                memcpy(key, base[i], kl);
                key[kl] = '\0';
                if (json_object_get(envs, key)) {
                    free(base[i]);
                    continue;
                }
            }
        }
        env[k++] = base[i]; /* moved */
    }
    free(base);
    const char *key;
    json_t *v;
    if (extra) {
        json_object_foreach((json_t *)envs, key, v)
        {
            if (!json_is_string(v) || !*key || strchr(key, '='))
                continue;
            size_t len = strlen(key) + json_string_length(v) + 2;
            char *kv = malloc(len);
            if (kv) {
                snprintf(kv, len, "%s=%s", key, json_string_value(v));
                env[k++] = kv;
            }
        }
    }
    env[k] = NULL;
    return env;
}

void
kn_command_env_free(char **env)
{
    if (!env)
        return;
    for (char **e = env; *e; e++)
        free(*e);
    free(env);
}

/* Drops the command's hold on its finished child so a remembered command keeps
 * no descriptor open. */
static void
cmd_release_child(struct kn_cmdstore *s, kn_cmd_t *c)
{
    pthread_mutex_lock(&s->lock);
    kn_child_t *child = c->child;
    c->child = NULL;
    pthread_mutex_unlock(&s->lock);
    kn_child_unref(child);
}

/* --- foreground streaming ------------------------------------------------- */

typedef struct fg {
    kn_execd_t *ex;
    kn_cmd_t *cmd;
    int conn_fd;
    int out_fd, err_fd;
    kn_lines_t lo, le;
    int64_t t0;
    int64_t deadline; /* monotonic ms; 0 = none */
    long timeout_ms;
    bool timed_out;
    int phase; /* 0: init pending, 1: running */
    char *spawn_error;
} fg_t;

/* Reads what is available on *fd into lines; closes it on EOF. */
static int
pump(int *fd, kn_lines_t *l, kn_buf_t *out)
{
    char buf[65536];
    for (int rounds = 0; *fd >= 0 && rounds < 16; rounds++) {
        ssize_t n = read(*fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            n = 0;
        }
        if (n == 0) {
            close(*fd);
            *fd = -1;
            return 0;
        }
        if (kn_lines_feed(l, out, buf, (size_t)n) < 0)
            return -1;
    }
    return 0;
}

static int
fg_final(fg_t *f, kn_buf_t *out, int code)
{
    /* Whatever the command wrote before it exited is still in the pipes. */
    for (int i = 0; i < 64 && (f->out_fd >= 0 || f->err_fd >= 0); i++) {
        size_t before = out->len;
        pump(&f->out_fd, &f->lo, out);
        pump(&f->err_fd, &f->le, out);
        if (out->len == before)
            break;
    }
    kn_lines_flush(&f->lo, out);
    kn_lines_flush(&f->le, out);
    char tb[160];
    if (f->timed_out) {
        /* As exec-sandbox's table and the reference execd: a timeout is -1,
         * distinct from a command that died of a signal on its own (128+N). */
        snprintf(tb, sizeof tb, "timed out after %ld ms; the process group was killed",
                 f->timeout_ms);
        code = -1;
        cmd_finish(f->ex->cmds, f->cmd, code, "timeout");
    } else {
        snprintf(tb, sizeof tb, "exit status %d", code);
        cmd_finish(f->ex->cmds, f->cmd, code, code ? tb : NULL);
    }
    if (code == 0 && !f->timed_out) {
        json_t *x = json_pack("{s:I}", "execution_time", (json_int_t)(kn_util_mono_ms() - f->t0));
        return kn_stream_event(out, "execution_complete", x) < 0 ? -1 : 1;
    }
    char ev[16];
    snprintf(ev, sizeof ev, "%d", code);
    return kn_stream_error(out, "CommandExecError", ev, tb) < 0 ? -1 : 1;
}

static int
fg_more(void *self, kn_buf_t *out)
{
    fg_t *f = self;
    if (f->phase == 0) {
        f->phase = 1;
        if (kn_stream_text(out, "init", f->cmd->id, strlen(f->cmd->id)) < 0)
            return -1;
        if (f->spawn_error) {
            kn_stream_error(out, "CommandExecError", f->spawn_error, f->spawn_error);
            return 1;
        }
        return 0;
    }
    int code;
    if (kn_child_exited(f->cmd->child, &code))
        return fg_final(f, out, code);
    struct pollfd p[4] = {
        {.fd = f->out_fd, .events = POLLIN},
        {.fd = f->err_fd, .events = POLLIN},
        {.fd = kn_child_exit_fd(f->cmd->child), .events = POLLIN},
        {.fd = f->conn_fd, .events = POLLRDHUP},
    };
    int wait = 1000;
    if (f->deadline) {
        int64_t left = f->deadline - kn_util_mono_ms();
        if (left <= 0) {
            f->deadline = 0;
            f->timed_out = true;
            kn_child_kill(f->cmd->child, SIGKILL);
            return 0;
        }
        if (left < wait)
            wait = (int)left;
    }
    int r = poll(p, 4, wait);
    if (r < 0)
        return errno == EINTR ? 0 : -1;
    if (p[3].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
        /* The client went away: the command goes with it. */
        kn_child_kill(f->cmd->child, SIGKILL);
        return -1;
    }
    if (p[0].revents && pump(&f->out_fd, &f->lo, out) < 0)
        return -1;
    if (p[1].revents && pump(&f->err_fd, &f->le, out) < 0)
        return -1;
    if (p[2].revents && kn_child_exited(f->cmd->child, &code))
        return fg_final(f, out, code);
    return 0;
}

static void
fg_destroy(void *self)
{
    fg_t *f = self;
    if (f->cmd->child) {
        int code;
        if (!kn_child_exited(f->cmd->child, &code)) {
            kn_child_kill(f->cmd->child, SIGKILL);
            kn_child_wait(f->cmd->child, 5000, &code);
            cmd_finish(f->ex->cmds, f->cmd, code, "client disconnected");
        }
    }
    if (f->out_fd >= 0)
        close(f->out_fd);
    if (f->err_fd >= 0)
        close(f->err_fd);
    kn_lines_free(&f->lo);
    kn_lines_free(&f->le);
    free(f->spawn_error);
    cmd_release_child(f->ex->cmds, f->cmd);
    cmd_unref(f->ex->cmds, f->cmd);
    free(f);
}

/* --- background ------------------------------------------------------------ */

struct bg_wait {
    kn_execd_t *ex;
    kn_cmd_t *cmd;
    long timeout_ms;
};

static void *
bg_waiter(void *arg)
{
    struct bg_wait *w = arg;
    int code = -1;
    const char *error = NULL;
    if (w->timeout_ms > 0 && !kn_child_wait(w->cmd->child, (int)w->timeout_ms, &code)) {
        kn_child_kill(w->cmd->child, SIGKILL);
        error = "timeout";
    }
    kn_child_wait(w->cmd->child, -1, &code);
    if (error)
        code = -1;
    if (!error && code != 0)
        error = "non-zero exit status";
    cmd_finish(w->ex->cmds, w->cmd, code, error);
    cmd_release_child(w->ex->cmds, w->cmd);
    struct kn_cmdstore *s = w->ex->cmds;
    pthread_mutex_lock(&s->lock);
    cmd_unref_locked(w->cmd);
    s->waiters--;
    pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->lock);
    free(w);
    return NULL;
}

/* --- handlers --------------------------------------------------------------- */

struct run_args {
    const char *command;
    const char *cwd;
    bool background;
    long timeout_ms;
    long uid, gid;
    json_t *envs;
};

static enum MHD_Result
parse_run(kn_req_t *req, json_t *body, struct run_args *a)
{
    json_t *v;
    memset(a, 0, sizeof *a);
    a->uid = a->gid = -1;
    if (!json_is_object(body))
        return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY", "body must be an object");
    v = json_object_get(body, "command");
    if (!json_is_string(v) || json_string_length(v) == 0)
        return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                   "\"command\" must be a non-empty string");
    if (strlen(json_string_value(v)) != json_string_length(v))
        return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                   "\"command\" contains a NUL byte");
    a->command = json_string_value(v);
    v = json_object_get(body, "cwd");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v))
            return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                       "\"cwd\" must be a string");
        if (json_string_length(v))
            a->cwd = json_string_value(v);
    }
    v = json_object_get(body, "background");
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v))
            return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                       "\"background\" must be a boolean");
        a->background = json_is_true(v);
    }
    v = json_object_get(body, "timeout");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                       "\"timeout\" must be a non-negative integer (ms)");
        a->timeout_ms = (long)json_integer_value(v);
    }
    const char *ids[2] = {"uid", "gid"};
    long *dst[2] = {&a->uid, &a->gid};
    for (int i = 0; i < 2; i++) {
        v = json_object_get(body, ids[i]);
        if (v && !json_is_null(v)) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > INT32_MAX)
                return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                           "\"%s\" must be a non-negative integer", ids[i]);
            *dst[i] = (long)json_integer_value(v);
        }
    }
    if (a->gid >= 0 && a->uid < 0)
        return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY", "\"gid\" requires \"uid\"");
    v = json_object_get(body, "envs");
    if (v && !json_is_null(v)) {
        const char *k;
        json_t *x;
        if (!json_is_object(v))
            return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                       "\"envs\" must be an object of strings");
        json_object_foreach(v, k, x)
        {
            if (!json_is_string(x) || strlen(json_string_value(x)) != json_string_length(x))
                return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                           "\"envs.%s\" must be a string without NUL", k);
        }
        a->envs = v;
    }
    return MHD_YES;
}

static kn_cmd_t *
cmd_new(const struct run_args *a)
{
    kn_cmd_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    kn_util_random_hex(c->id, 16);
    c->content = strdup(a->command);
    c->background = a->background;
    c->log_fd = -1;
    c->started_ms = kn_util_now_ms();
    c->running = true;
    c->refs = 1;
    return c;
}

static enum MHD_Result
run_background(kn_req_t *req, const struct run_args *a, kn_cmd_t *c, kn_spawn_t *sp)
{
    kn_error_t err = {0};
    c->log_fd = memfd_create("execd-command-log", MFD_CLOEXEC);
    if (c->log_fd < 0) {
        cmd_unref(req->ex->cmds, c);
        return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "memfd_create: %s", strerror(errno));
    }
    sp->stdout_fd = sp->stderr_fd = c->log_fd;
    c->child = kn_proc_spawn(sp, &err);
    if (!c->child) {
        cmd_unref(req->ex->cmds, c);
        return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "%s", err.msg);
    }
    store_add(req->ex->cmds, c);
    struct bg_wait *w = malloc(sizeof *w);
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 64 * 1024);
    if (w) {
        *w = (struct bg_wait){req->ex, c, a->timeout_ms};
        pthread_mutex_lock(&req->ex->cmds->lock);
        req->ex->cmds->waiters++;
        c->refs++; /* the waiter's */
        pthread_mutex_unlock(&req->ex->cmds->lock);
        if (pthread_create(&t, &at, bg_waiter, w) != 0) {
            pthread_mutex_lock(&req->ex->cmds->lock);
            req->ex->cmds->waiters--;
            c->refs--;
            pthread_mutex_unlock(&req->ex->cmds->lock);
            free(w);
            w = NULL;
        }
    }
    pthread_attr_destroy(&at);
    if (!w) {
        kn_child_kill(c->child, SIGKILL);
        cmd_finish(req->ex->cmds, c, -1, "cannot start waiter");
        cmd_unref(req->ex->cmds, c);
        return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "cannot start waiter thread");
    }
    kn_buf_t out = {0};
    kn_stream_text(&out, "init", c->id, strlen(c->id));
    kn_stream_event(&out, "execution_complete", json_pack("{s:i}", "execution_time", 0));
    enum MHD_Result r = kn_http_reply_text(req, 200, "text/event-stream", out.data, out.len);
    kn_buf_free(&out);
    cmd_unref(req->ex->cmds, c);
    return r;
}

static enum MHD_Result
run_foreground(kn_req_t *req, const struct run_args *a, kn_cmd_t *c, kn_spawn_t *sp)
{
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    kn_error_t err = {0};
    fg_t *f = calloc(1, sizeof *f);
    if (!f || pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
        if (po[0] >= 0) {
            close(po[0]);
            close(po[1]);
        }
        free(f);
        cmd_unref(req->ex->cmds, c);
        return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "cannot create pipes: %s",
                                   strerror(errno));
    }
    sp->stdout_fd = po[1];
    sp->stderr_fd = pe[1];
    c->child = kn_proc_spawn(sp, &err);
    close(po[1]);
    close(pe[1]);
    fcntl(po[0], F_SETFL, O_NONBLOCK);
    fcntl(pe[0], F_SETFL, O_NONBLOCK);
    f->ex = req->ex;
    f->cmd = c;
    f->conn_fd = kn_http_conn_fd(req);
    f->out_fd = po[0];
    f->err_fd = pe[0];
    kn_lines_init(&f->lo, "stdout", req->ex->max_stdout);
    kn_lines_init(&f->le, "stderr", req->ex->max_stderr);
    f->t0 = kn_util_mono_ms();
    f->timeout_ms = a->timeout_ms;
    if (a->timeout_ms > 0)
        f->deadline = f->t0 + a->timeout_ms;
    if (!c->child) {
        f->spawn_error = strdup(err.msg);
        c->running = false;
        c->exit_code = -1;
        c->error = strdup(err.msg);
        c->finished_ms = kn_util_now_ms();
    }
    store_add(req->ex->cmds, c);
    kn_producer_t p = {fg_more, fg_destroy, f};
    return kn_http_reply_stream(req, "text/event-stream", p);
}

enum MHD_Result
kn_command_run(kn_req_t *req)
{
    enum MHD_Result r;
    json_t *body = kn_http_json_body(req, false, &r);
    if (!body)
        return r;
    return kn_command_start(req, body);
}

enum MHD_Result
kn_command_start(kn_req_t *req, json_t *body)
{
    enum MHD_Result r;
    struct run_args a;
    r = parse_run(req, body, &a);
    if (req->replied) {
        json_decref(body);
        return r;
    }
    kn_cmd_t *c = cmd_new(&a);
    char **env = kn_command_env(a.envs);
    if (!c || !env) {
        json_decref(body);
        kn_command_env_free(env);
        free(c);
        return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "out of memory");
    }
    const char *shell = kn_command_shell();
    const char *argv[] = {shell, "-c", a.command, NULL};
    /* A simple command runs without the shell, as bash would run it (direct.h). */
    kn_direct_t dx = {0};
    bool direct = a.uid < 0 && a.gid < 0 && strcmp(shell, "bash") == 0 &&
                  kn_direct_plan(a.command, &env, a.cwd, &dx);
    kn_spawn_t sp = {.argv = direct ? (const char *const *)dx.argv : argv,
                     .path = dx.path,
                     .env = (const char *const *)env,
                     .cwd = a.cwd,
                     .uid = a.uid,
                     .gid = a.uid >= 0 && a.gid < 0 ? a.uid : a.gid,
                     .stdin_fd = -1,
                     .fd3 = -1,
                     .fd4 = -1};
    if (a.background)
        r = run_background(req, &a, c, &sp);
    else
        r = run_foreground(req, &a, c, &sp);
    kn_direct_free(&dx);
    kn_command_env_free(env);
    json_decref(body);
    return r;
}

enum MHD_Result
kn_command_interrupt(kn_req_t *req)
{
    const char *id = kn_http_query(req, "id");
    if (!id || !*id)
        return kn_http_reply_error(req, 400, "MISSING_QUERY", "missing query parameter \"id\"");
    kn_cmd_t *c = store_get(req->ex->cmds, id);
    if (!c) {
        /* As the reference does: a code context id interrupts its run, a
         * session id stops that session's current command. */
        kn_repl_t *r = kn_repl_get(req->ex, KN_REPL_CODE, id);
        if (!r)
            r = kn_repl_get(req->ex, KN_REPL_SESSION, id);
        if (r) {
            kn_repl_interrupt(r);
            kn_repl_put(req->ex, r);
            return kn_http_reply_empty(req, 200);
        }
        return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "no command with id %s", id);
    }
    kn_child_t *child = NULL;
    pthread_mutex_lock(&req->ex->cmds->lock);
    if (c->running && c->child) {
        child = c->child;
        kn_child_ref(child);
    }
    pthread_mutex_unlock(&req->ex->cmds->lock);
    if (!child || kn_child_exited(child, NULL)) {
        kn_child_unref(child);
        cmd_unref(req->ex->cmds, c);
        return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "command %s is not running", id);
    }
    int code = kn_child_terminate(child, KN_CMD_INTERRUPT_GRACE_MS);
    kn_child_unref(child);
    /* Its status is known now: a status request right after this answer
     * must not find it running because its waiter has not run yet. */
    cmd_finish(req->ex->cmds, c, code, code ? "non-zero exit status" : NULL);
    cmd_unref(req->ex->cmds, c);
    return kn_http_reply_empty(req, 200);
}

static void
set_time(json_t *o, const char *key, int64_t ms)
{
    char ts[48];
    kn_util_rfc3339(ts, sizeof ts, (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L);
    json_object_set_new(o, key, json_string(ts));
}

enum MHD_Result
kn_command_status(kn_req_t *req)
{
    kn_cmd_t *c = store_get(req->ex->cmds, req->param);
    if (!c)
        return kn_http_reply_error(req, 404, "FILE_NOT_FOUND", "no command with id %s", req->param);
    json_t *o = json_object();
    pthread_mutex_lock(&req->ex->cmds->lock);
    json_object_set_new(o, "id", json_string(c->id));
    size_t len;
    char *content = kn_utf8_clean(c->content, strlen(c->content), &len);
    json_object_set_new(o, "content", json_stringn(content ? content : "", len));
    free(content);
    json_object_set_new(o, "running", json_boolean(c->running));
    if (!c->running)
        json_object_set_new(o, "exit_code", json_integer(c->exit_code));
    if (c->error)
        json_object_set_new(o, "error", json_string(c->error));
    set_time(o, "started_at", c->started_ms);
    if (!c->running)
        set_time(o, "finished_at", c->finished_ms);
    pthread_mutex_unlock(&req->ex->cmds->lock);
    cmd_unref(req->ex->cmds, c);
    return kn_http_reply_json(req, 200, o);
}

enum MHD_Result
kn_command_logs(kn_req_t *req)
{
    kn_cmd_t *c = store_get(req->ex->cmds, req->param);
    if (!c)
        return kn_http_reply_error(req, 404, "FILE_NOT_FOUND", "no command with id %s", req->param);
    enum MHD_Result r;
    if (!c->background || c->log_fd < 0) {
        r = kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                "command %s is not a background command", c->id);
        goto out;
    }
    uint64_t cursor = 0;
    const char *cs = kn_http_query(req, "cursor");
    if (cs && *cs) {
        char *end;
        errno = 0;
        cursor = strtoull(cs, &end, 10);
        if (*end || errno || cs[0] == '-') {
            r = kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                    "cursor must be a non-negative integer");
            goto out;
        }
    }
    struct stat st;
    if (fstat(c->log_fd, &st) < 0) {
        r = kn_http_reply_error(req, 500, "RUNTIME_ERROR", "fstat log: %s", strerror(errno));
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (cursor > size)
        cursor = size;
    size_t n = (size_t)(size - cursor);
    char *data = malloc(n + 1);
    ssize_t got = data ? pread(c->log_fd, data, n, (off_t)cursor) : -1;
    if (got < 0) {
        free(data);
        r = kn_http_reply_error(req, 500, "RUNTIME_ERROR", "read log failed");
        goto out;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer((size_t)got, data, MHD_RESPMEM_MUST_FREE);
    char tail[32];
    snprintf(tail, sizeof tail, "%" PRIu64, cursor + (uint64_t)got);
    MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
    MHD_add_response_header(resp, "EXECD-COMMANDS-TAIL-CURSOR", tail);
    r = kn_http_queue(req, 200, resp);
out:
    cmd_unref(req->ex->cmds, c);
    return r;
}

/* --- the entrypoint --------------------------------------------------------- */

/* The entrypoint needs no thread of its own: main's signal loop asks after
 * every SIGCHLD whether it has ended (kn_command_main_ended). */
bool
kn_command_main_ended(kn_execd_t *ex, int *code)
{
    struct kn_cmdstore *s = ex->cmds;
    int c = 0;
    pthread_mutex_lock(&s->lock);
    kn_cmd_t *m = s->main;
    bool check = !s->main_done && m && m->child && kn_child_exited(m->child, &c);
    if (check) {
        s->main_done = true;
        s->main_code = c;
        s->main = NULL;
    }
    bool done = s->main_done;
    *code = s->main_code;
    pthread_mutex_unlock(&s->lock);
    if (check) {
        fprintf(stderr, "kennel-execd: the entrypoint (command %s) exited with status %d\n", m->id,
                c);
        cmd_finish(s, m, c, c ? "non-zero exit status" : NULL);
        cmd_release_child(s, m);
        cmd_unref(s, m);
    }
    return done;
}

/* {"envs": {name: value}}: names without '=', values without NUL. */
static const char *
envs_bad(const json_t *body)
{
    const json_t *envs = json_object_get(body, "envs");
    if (!json_is_object(body) || !json_is_object(envs))
        return "the body must be {\"envs\": {name: value}}";
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)envs, k, v)
    {
        if (!*k || strchr(k, '=') || !json_is_string(v) ||
            strlen(json_string_value(v)) != json_string_length(v))
            return "\"envs\" needs names without '=' and string values without NUL";
    }
    return NULL;
}

/* Takes one of the once-per-execd calls; false when it was taken before. */
static bool
take_once(struct kn_cmdstore *s, bool *flag)
{
    pthread_mutex_lock(&s->lock);
    bool first = !*flag;
    *flag = true;
    pthread_mutex_unlock(&s->lock);
    return first;
}

enum MHD_Result
kn_command_set_env(kn_req_t *req)
{
    enum MHD_Result r;
    json_t *body = kn_http_json_body(req, false, &r);
    if (!body)
        return r;
    const char *bad = envs_bad(body);
    if (bad) {
        r = kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY", "%s", bad);
    } else if (!take_once(req->ex->cmds, &req->ex->cmds->env_taken)) {
        r = kn_http_reply_error(req, 409, "ENVIRONMENT_ALREADY_SET",
                                "this sandbox's environment was set already");
    } else {
        /* Every command, session and code context started from now on
         * inherits it (they all start from execd's environment). */
        const char *k;
        json_t *v;
        r = MHD_NO;
        json_object_foreach(json_object_get(body, "envs"), k, v)
        {
            if (kn_proc_setenv(k, json_string_value(v)) < 0) {
                r = kn_http_reply_error(req, 500, "RUNTIME_ERROR", "setenv %s: %s", k,
                                        strerror(errno));
                break;
            }
        }
        if (!req->replied)
            r = kn_http_reply_empty(req, 200);
    }
    json_decref(body);
    return r;
}

/* Forks and execs the registered entrypoint, once. */
static void
main_start(struct kn_cmdstore *s)
{
    pthread_mutex_lock(&s->lock);
    kn_cmd_t *c = s->main_started ? NULL : s->main;
    if (c) {
        s->main_started = true;
        c->refs++;
    }
    pthread_mutex_unlock(&s->lock);
    if (!c)
        return;
    kn_error_t err = {0};
    char **env = kn_command_env(NULL);
    const char *argv[] = {kn_command_shell(), "-c", c->content, NULL};
    kn_spawn_t sp = {.argv = argv,
                     .env = (const char *const *)env,
                     .uid = -1,
                     .gid = -1,
                     .stdin_fd = -1,
                     .stdout_fd = c->log_fd,
                     .stderr_fd = c->log_fd,
                     .fd3 = -1,
                     .fd4 = -1};
    kn_child_t *child = env ? kn_proc_spawn(&sp, &err) : NULL;
    kn_command_env_free(env);
    const char *why = child ? NULL : err.msg[0] ? err.msg : "out of memory";
    pthread_mutex_lock(&s->lock);
    c->child = child;
    if (!child) {
        /* It cannot run: that ends the sandbox, as for a container. */
        s->main_done = true;
        s->main_code = 127;
        s->main = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (why) {
        dprintf(c->log_fd, "kennel-execd: cannot start the entrypoint: %s\n", why);
        fprintf(stderr, "kennel-execd: cannot start the entrypoint: %s\n", why);
        cmd_finish(s, c, 127, why);
        cmd_unref(s, c); /* the main reference */
    }
    cmd_unref(s, c);
    /* A quick entrypoint may have ended before it was recorded: main's
     * signal loop looks again. */
    kill(getpid(), SIGUSR1);
}

/* Lays envs over execd's environment (the env slot is taken by the caller). */
static const char *
apply_envs(const json_t *envs)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)envs, k, v)
    {
        if (kn_proc_setenv(k, json_string_value(v)) < 0)
            return "setenv failed";
    }
    return NULL;
}

enum MHD_Result
kn_command_entrypoint(kn_req_t *req)
{
    enum MHD_Result r;
    json_t *body = kn_http_json_body(req, false, &r);
    if (!body)
        return r;
    struct kn_cmdstore *s = req->ex->cmds;
    const json_t *cmd = json_object_get(body, "command");
    const json_t *envs = json_object_get(body, "envs");
    const json_t *start = json_object_get(body, "start");
    if (!json_is_object(body) || !json_is_string(cmd) || json_string_length(cmd) == 0 ||
        strlen(json_string_value(cmd)) != json_string_length(cmd) ||
        (start && !json_is_boolean(start))) {
        r = kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                "the body must be {\"command\": a non-empty string without NUL, "
                                "\"envs\": {...}, \"start\": boolean}");
        goto out;
    }
    if (envs && envs_bad(body)) {
        r = kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY", "%s", envs_bad(body));
        goto out;
    }
    if (!take_once(s, &s->main_taken)) {
        r = kn_http_reply_error(req, 409, "ENTRYPOINT_ALREADY_STARTED",
                                "this sandbox's entrypoint was set already");
        goto out;
    }
    /* The environment first: every command, session and code context
     * started from now on, the entrypoint too, inherits it. */
    if (envs) {
        const char *bad =
            take_once(s, &s->env_taken) ? apply_envs(envs) : "the environment was set already";
        if (bad) {
            r = kn_http_reply_error(req, 409, "ENVIRONMENT_ALREADY_SET", "%s", bad);
            goto out;
        }
    }
    struct run_args a = {.command = json_string_value(cmd), .background = true};
    kn_cmd_t *c = cmd_new(&a);
    if (c)
        c->log_fd = memfd_create("execd-entrypoint-log", MFD_CLOEXEC);
    if (!c || c->log_fd < 0) {
        if (c)
            cmd_unref(s, c);
        r = kn_http_reply_error(req, 500, "RUNTIME_ERROR", "cannot register the entrypoint");
        goto out;
    }
    store_add(s, c);
    pthread_mutex_lock(&s->lock);
    c->refs++; /* the main reference */
    s->main = c;
    pthread_mutex_unlock(&s->lock);
    if (!json_is_false(start))
        main_start(s);
    kn_buf_t ev = {0};
    kn_stream_text(&ev, "init", c->id, strlen(c->id));
    kn_stream_event(&ev, "execution_complete", json_pack("{s:i}", "execution_time", 0));
    r = kn_http_reply_text(req, 200, "text/event-stream", ev.data, ev.len);
    kn_buf_free(&ev);
    cmd_unref(s, c);
out:
    json_decref(body);
    return r;
}

enum MHD_Result
kn_command_entrypoint_start(kn_req_t *req)
{
    struct kn_cmdstore *s = req->ex->cmds;
    pthread_mutex_lock(&s->lock);
    bool registered = s->main_taken;
    pthread_mutex_unlock(&s->lock);
    if (!registered)
        return kn_http_reply_error(req, 409, "NO_ENTRYPOINT", "no entrypoint was set");
    main_start(s);
    return kn_http_reply_empty(req, 200);
}
