/* shim.c - see shim.h. One thread; everything goes through one poll loop. */
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "egress.h"
#include "sandbox.h"
#include "sandboxes.h"
#include "server.h"
#include "spec.h"
#include "uclient.h"
#include "image.h"
#include "util.h"

#define SHIM_NET_FDS 64 /* DNS proxy and port relay descriptors, at most */

typedef struct shim {
    const char *dir;
    char path[PATH_MAX]; /* scratch */
    kn_sandbox_t *sb;
    kn_config_t cfg;
    kn_image_t *img; /* a stored image, held open (in use) while the sandbox lives */
    json_t *spec;
    int ready_fd;
    bool ready_sent;
    int listen_fd;
    int sig_fd;
    int kill_fd; /* a client that asked for kill while the sandbox was starting */
    bool paused;
    char state[16];
    char reason[40];
    char message[160];
    char entrypoint_id[80];
    char pidns[64];
} shim_t;

static const char *
at(shim_t *s, const char *name)
{
    snprintf(s->path, sizeof s->path, "%s/%s", s->dir, name);
    return s->path;
}

/* One line of the shim's log: "<RFC 3339 time> kennel-shim[pid]: message".
 * Lines without the prefix in the same file are execd's own. */
static void __attribute__((format(printf, 2, 3))) logf_(shim_t *s, const char *fmt, ...)
{
    (void)s;
    char buf[1024], when[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    kn_sbx_format_time((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, when, sizeof when);
    dprintf(STDERR_FILENO, "%s " KN_SHIM_LOG_TAG "[%d]: %s\n", when, getpid(), buf);
}

/* Replaces state.json atomically. exit_code < -1000 means none. */
static void
write_state(shim_t *s, const char *state, const char *reason, const char *message, int exit_code)
{
    if (state != s->state)
        snprintf(s->state, sizeof s->state, "%s", state);
    if (reason != s->reason)
        snprintf(s->reason, sizeof s->reason, "%s", reason ? reason : "");
    if (message != s->message)
        snprintf(s->message, sizeof s->message, "%s", message ? message : "");
    json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:b}", "state", state, "reason",
                          reason ? reason : "", "message", message ? message : "", "pid",
                          s->sb ? (int)kn_sandbox_pid(s->sb) : 0, "pidns", s->pidns, "entrypoint",
                          s->entrypoint_id, "paused", s->paused);
    if (!j)
        return;
    if (exit_code > -1000)
        json_object_set_new(j, "exitCode", json_integer(exit_code));
    char tmp[PATH_MAX], dst[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", s->dir, KN_SHIM_STATE);
    snprintf(dst, sizeof dst, "%s/%s", s->dir, KN_SHIM_STATE);
    if (json_dump_file(j, tmp, JSON_COMPACT) == 0)
        rename(tmp, dst);
    json_decref(j);
}

static void
tell_ready(shim_t *s, const char *line)
{
    if (s->ready_fd < 0)
        return;
    if (!s->ready_sent)
        kn_write_all(s->ready_fd, line, strlen(line));
    close(s->ready_fd);
    s->ready_fd = -1;
}

/* The entrypoint's fork and exec would compete for the CPUs with the
 * server's answer to the create: wait, a little, until the server hangs up
 * on fd (the control connection or the ready pipe), which it does once the
 * sandbox is recorded Running. */
static void
await_hangup(int fd)
{
    struct pollfd p = {fd, POLLRDHUP, 0};
    char c;
    uint64_t until = kn_now_us() + 100000;
    while (kn_now_us() < until && poll(&p, 1, 100) > 0) {
        if (p.revents & (POLLERR | POLLHUP | POLLRDHUP))
            return;
        if (read(fd, &c, 1) <= 0) /* a socket: EOF or an error ends the wait */
            return;
    }
}

static int
listen_control(shim_t *s, kn_error_t *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const char *p = at(s, KN_SHIM_SOCK);
    if (strlen(p) >= sizeof sa.sun_path)
        return kn_error_set(err, ENAMETOOLONG, "control socket path %s", p);
    memcpy(sa.sun_path, p, strlen(p) + 1);
    unlink(p);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return kn_error_set(err, errno, "socket");
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(p, 0600) < 0 ||
        listen(fd, 64) < 0) {
        int e = errno;
        close(fd);
        return kn_error_set(err, e, "listen on %s", p);
    }
    return fd;
}

/* Largest payload of a control request (a claim's spec: the create body is
 * at most 1 MiB, and its normal form is not larger than that by much). */
#define CONTROL_MAX_PAYLOAD (4u << 20)

/* Reads one control request from a client of the control socket: a line,
 * and for "claim N" the N bytes after it (*payload, caller frees). */
static void
read_request(int fd, char *line, size_t cap, char **payload)
{
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[256];
    size_t len = 0;
    char *nl = NULL;
    *payload = NULL;
    memset(line, 0, cap);
    while (len < sizeof buf - 1 && !nl) {
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        nl = memchr(buf, '\n', len);
    }
    size_t head = nl ? (size_t)(nl - buf) : len;
    snprintf(line, cap, "%.*s", (int)head, buf);
    line[strcspn(line, "\r\n")] = '\0';
    unsigned long want = 0;
    if (!nl || strncmp(line, "claim ", 6) != 0)
        return;
    char *end = NULL;
    want = strtoul(line + 6, &end, 10);
    line[5] = '\0';
    if (*end || want == 0 || want > CONTROL_MAX_PAYLOAD)
        return;
    char *p = malloc(want + 1);
    if (!p)
        return;
    size_t got = len - head - 1;
    if (got > want)
        got = want;
    memcpy(p, nl + 1, got);
    while (got < want) {
        ssize_t n = read(fd, p + got, want - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < want) {
        free(p);
        return;
    }
    p[want] = '\0';
    *payload = p;
}

/* While execd starts, a signal or a "kill" on the control socket cancels
 * the start (the server gave up, or is cleaning up after a restart); other
 * commands are refused. Returns -1 with ECANCELED to cancel. */
static int
starting_event(shim_t *s, struct pollfd *pfd, kn_error_t *err)
{
    if (pfd[1].revents) {
        struct signalfd_siginfo si;
        if (read(s->sig_fd, &si, sizeof si) == sizeof si)
            return kn_error_set(err, ECANCELED, "signal %u while starting", si.ssi_signo);
    }
    if (pfd[2].revents) {
        int c = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            return 0;
        char line[64], *payload = NULL;
        read_request(c, line, sizeof line, &payload);
        free(payload);
        logf_(s, "control while starting: %s", line);
        if (!strcmp(line, "kill")) {
            s->kill_fd = c;
            return kn_error_set(err, ECANCELED, "deleted while starting");
        }
        const char *busy = "error the sandbox is still starting\n";
        kn_write_all(c, busy, strlen(busy));
        close(c);
    }
    return 0;
}

/* Waits until execd answers /ping, or the sandbox ends, or the deadline. */
static int
wait_ping(shim_t *s, int timeout_ms, kn_error_t *err)
{
    char sock[PATH_MAX];
    snprintf(sock, sizeof sock, "%s/%s", s->dir, KN_SHIM_EXECD_SOCK);
    uint64_t deadline = kn_now_us() + (uint64_t)timeout_ms * 1000;
    for (;;) {
        kn_uresp_t r;
        kn_error_t e = {0};
        if (access(sock, F_OK) == 0 && kn_uclient_request(sock, s->pidns, "GET", "/ping", NULL,
                                                          NULL, 0, 2000, 4096, &r, &e) == 0) {
            int st = r.status;
            kn_uresp_free(&r);
            if (st >= 200 && st < 300)
                return 0;
        }
        if (kn_now_us() > deadline)
            return kn_error_set(err, ETIMEDOUT, "execd did not answer /ping within %d ms",
                                timeout_ms);
        struct pollfd pfd[3] = {{kn_sandbox_syncfd(s->sb), POLLIN, 0},
                                {s->sig_fd, POLLIN, 0},
                                {s->listen_fd, POLLIN, 0}};
        if (poll(pfd, 3, 1) > 0) {
            if (pfd[0].revents)
                return kn_error_set(err, ECHILD, "the sandbox ended before execd was ready");
            if (starting_event(s, pfd, err) < 0)
                return -1;
        }
    }
}

static void finish(shim_t *s, const char *state, const char *reason, const char *message);

/* One call to execd's supervisor routes (once each per execd): returns the
 * answer (caller frees) or -1. */
static int
execd_call(shim_t *s, const char *path, json_t *body, kn_uresp_t *r, kn_error_t *err)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text)
        return kn_error_set(err, ENOMEM, "%s", path);
    char sock[PATH_MAX];
    snprintf(sock, sizeof sock, "%s/%s", s->dir, KN_SHIM_EXECD_SOCK);
    int rc = kn_uclient_request(sock, s->pidns, "POST", path, "application/json", text,
                                strlen(text), 10000, 1 << 20, r, err);
    free(text);
    if (rc < 0)
        return kn_error_prefix(err, "%s", path);
    if (r->status != 200) {
        kn_error_set(err, EIO, "%s: execd answered %d: %.200s", path, r->status, r->body);
        kn_uresp_free(r);
        return -1;
    }
    return 0;
}

/* Sets the entrypoint (and, for a claimed member, the request's env) in
 * execd before the create is answered, so that nobody else can set another
 * one and the first command a client sends sees the env; execd takes this
 * once. It is started (start_entrypoint) once the answer is out, so that its
 * fork and exec do not compete with it. envs: NULL, or the request's env. */
static int
set_entrypoint(shim_t *s, const json_t *envs, kn_error_t *err)
{
    char *cmd = kn_spec_entrypoint_cmd(s->spec);
    if (!cmd)
        return kn_error_set(err, ENOMEM, "entrypoint");
    json_t *body = json_pack("{s:s, s:b}", "command", cmd, "start", 0);
    free(cmd);
    if (body && json_object_size(envs))
        json_object_set(body, "envs", (json_t *)envs);
    kn_uresp_t r;
    if (execd_call(s, "/_kennel/entrypoint", body, &r, err) < 0)
        return kn_error_prefix(err, "entrypoint");
    /* Events are JSON objects separated by blank lines; the first is init. */
    char *end = strstr(r.body, "\n\n");
    if (end)
        *end = '\0';
    json_t *ev = json_loads(r.body, 0, NULL);
    const char *id = json_string_value(json_object_get(ev, "text"));
    if (id && !strcmp(json_string_value(json_object_get(ev, "type")) ?: "", "init"))
        snprintf(s->entrypoint_id, sizeof s->entrypoint_id, "%s", id);
    json_decref(ev);
    kn_uresp_free(&r);
    if (!s->entrypoint_id[0])
        return kn_error_set(err, EPROTO, "entrypoint: execd gave no command id");
    return 0;
}

static int
start_entrypoint(shim_t *s, kn_error_t *err)
{
    kn_uresp_t r;
    if (execd_call(s, "/_kennel/start", json_object(), &r, err) < 0)
        return kn_error_prefix(err, "entrypoint");
    kn_uresp_free(&r);
    write_state(s, s->state, s->reason, s->message, -1000);
    return 0;
}

static void ended(shim_t *s);

/* Whether the sandbox ends within wait_ms (its status is then collected). */
static bool
ends_within(shim_t *s, int wait_ms)
{
    uint64_t end = kn_now_us() + (uint64_t)wait_ms * 1000;
    struct pollfd p = {kn_sandbox_syncfd(s->sb), POLLIN, 0};
    for (uint64_t now = kn_now_us(); now < end; now = kn_now_us()) {
        int n = poll(&p, 1, (int)((end - now) / 1000) + 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        bool done = false;
        kn_sandbox_collect(s->sb, &done);
        if (done)
            return true;
    }
    return false;
}

/* After the answer: a start that fails ends the sandbox as Failed, as an
 * entrypoint that cannot run ends a container. An entrypoint that cannot
 * start at all (127) makes execd exit at once, which may cut the start's
 * own answer: then the exit status is the better account. */
static int
begin_entrypoint(shim_t *s)
{
    kn_error_t err = {0};
    if (start_entrypoint(s, &err) == 0)
        return 0;
    logf_(s, "entrypoint: %s", err.msg);
    if (ends_within(s, 2000)) {
        ended(s);
        return -1;
    }
    finish(s, "Failed", "entrypoint_failed", err.msg);
    return -1;
}

static void
record_pidns(shim_t *s)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/%d/ns/pid", (int)kn_sandbox_pid(s->sb));
    ssize_t n = readlink(link, s->pidns, sizeof s->pidns - 1);
    s->pidns[n > 0 ? n : 0] = '\0';
}

static int
start(shim_t *s, const char *execd_path, int ready_timeout_ms, kn_error_t *err)
{
    json_error_t je;
    if (!(s->spec = json_load_file(at(s, KN_SHIM_SPEC), 0, &je)))
        return kn_error_set(err, EINVAL, "%s: %s", s->path, je.text);
    char sbdir[PATH_MAX];
    snprintf(sbdir, sizeof sbdir, "%s/%s", s->dir, KN_SHIM_SANDBOX);
    if (kn_spec_config(s->spec, sbdir, execd_path, &s->cfg, &s->img, err) < 0)
        return -1;
    if ((s->listen_fd = listen_control(s, err)) < 0)
        return -1;
    kn_stdio_t io = {-1, STDERR_FILENO, STDERR_FILENO};
    if (kn_sandbox_spawn(&s->cfg, &io, &s->sb, err) < 0)
        return kn_error_prefix(err, "spawn");
    const kn_warnings_t *w = kn_sandbox_warnings(s->sb);
    for (int i = 0; i < w->n; i++)
        logf_(s, "warning: %s", w->msg[i]);
    if (kn_sandbox_start(s->sb, err) < 0)
        return kn_error_prefix(err, "start");
    kn_egress_shim_started(s->dir, s->spec);
    record_pidns(s);
    if (!s->pidns[0])
        return kn_error_set(err, ESRCH, "cannot read the sandbox's pid namespace");
    if (wait_ping(s, ready_timeout_ms, err) < 0)
        return -1;
    return 0;
}

/* Ends the sandbox for good and records why. */
static void
finish(shim_t *s, const char *state, const char *reason, const char *message)
{
    kn_result_t res = {0};
    int code = -1000;
    if (s->sb) {
        kn_sandbox_kill(s->sb, NULL);
        if (s->paused)
            kn_sandbox_freeze(s->sb, false, NULL);
        kn_sandbox_finish(s->sb, &res);
        code = res.exit_code;
        kn_sandbox_destroy(s->sb);
        s->sb = NULL;
    }
    s->paused = false;
    write_state(s, state, reason, message, code);
}

/* A create took this warm sandbox: payload is the request's normal form.
 * The request's environment and entrypoint go to execd before the answer,
 * so that the first command a client sends sees them. */
static int
claim(shim_t *s, const char *payload, kn_error_t *err)
{
    json_error_t je;
    json_t *spec = payload ? json_loads(payload, 0, &je) : NULL;
    if (!s->sb || s->entrypoint_id[0] || strcmp(s->state, "Warm") != 0) {
        json_decref(spec);
        return kn_error_set(err, EBUSY, "not a warm sandbox");
    }
    if (!json_is_object(spec) || !json_is_array(json_object_get(spec, "entrypoint"))) {
        json_decref(spec);
        return kn_error_set(err, EINVAL, "claim: no spec (%s)", payload ? je.text : "missing");
    }
    json_decref(s->spec);
    s->spec = spec;
    if (set_entrypoint(s, json_object_get(spec, "env"), err) < 0)
        return -1;
    /* The record ("claimed") is written right after the answer. A server
     * that died in between finds its row Pending and settles it from this
     * record: kept if it says Running, removed otherwise. Either is right
     * for a create nobody was told about. */
    snprintf(s->state, sizeof s->state, "Running");
    return 0;
}

/* Keeps the claimed spec beside the others (after the answer: nothing reads
 * it on the create's path). */
static void
save_spec(shim_t *s)
{
    char tmp[PATH_MAX], dst[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", s->dir, KN_SHIM_SPEC);
    snprintf(dst, sizeof dst, "%s/%s", s->dir, KN_SHIM_SPEC);
    if (json_dump_file(s->spec, tmp, JSON_COMPACT) == 0)
        rename(tmp, dst);
}

/* Snapshot ids come from the server: only what it makes (hex and '-'). */
static bool
snapshot_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 40)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f') || id[i] == '-'))
            return false;
    return true;
}

/* "snapshot ID": the writable layer becomes an image over the one the
 * sandbox runs (kn_image_commit), named KN_SHIM_SNAPSHOT_REPO:ID, while
 * the sandbox is frozen, as pause freezes it; what it was doing goes on
 * after. The result is written to snapshot.json for the server. */
static int
take_snapshot(shim_t *s, const char *sid, kn_error_t *err)
{
    if (!snapshot_id_ok(sid))
        return kn_error_set(err, EINVAL, "bad snapshot id");
    json_t *k = json_object_get(s->spec, "kennel");
    const char *image = json_string_value(json_object_get(k, "image"));
    const char *store = json_string_value(json_object_get(k, "imageStore"));
    const char *slash = strrchr(s->dir, '/');
    char ref[96], l1[96], l2[96], comment[160];
    snprintf(ref, sizeof ref, KN_SHIM_SNAPSHOT_REPO ":%s", sid);
    snprintf(l1, sizeof l1, KN_IMAGE_LABEL_SNAPSHOT "=%s", sid);
    snprintf(l2, sizeof l2, KN_IMAGE_LABEL_SANDBOX "=%s", slash ? slash + 1 : s->dir);
    snprintf(comment, sizeof comment, "kennel snapshot %s of sandbox %s", sid,
             slash ? slash + 1 : s->dir);
    const char *labels[] = {l1, l2, NULL};
    bool stored = image && !strncmp(image, "sha256:", 7);
    kn_image_commit_opts_t o = {.base = stored ? image : NULL,
                                .base_root = stored ? NULL : image,
                                .name = ref,
                                .labels = labels,
                                .comment = comment};
    int upper = kn_sandbox_open_upper(s->sb, err);
    if (upper < 0)
        return -1;
    uint64_t t0 = kn_now_us();
    if (kn_sandbox_freeze(s->sb, true, err) < 0) {
        close(upper);
        return kn_error_prefix(err, "freeze");
    }
    uint64_t t1 = kn_now_us();
    kn_image_info_t info = {0};
    kn_image_commit_stats_t st = {0};
    int rc = kn_image_commit(store, upper, &o, &info, &st, err);
    uint64_t t2 = kn_now_us();
    kn_error_t terr = {0};
    if (kn_sandbox_freeze(s->sb, false, &terr) < 0)
        logf_(s, "snapshot %s: thaw failed: %s", sid, terr.msg);
    uint64_t t3 = kn_now_us();
    close(upper);
    if (rc < 0)
        return -1;
    json_t *res = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f}", "id", sid, "digest",
                            info.digest, "files", (json_int_t)st.files, "bytes",
                            (json_int_t)st.bytes, "whiteouts", (json_int_t)st.whiteouts, "skipped",
                            (json_int_t)(st.skipped + info.devices_skipped), "setidCleared",
                            (json_int_t)info.setid_cleared, "layerNew", (json_int_t)info.layers_new,
                            "frozenMs", (t3 - t0) / 1000.0);
    char tmp[PATH_MAX], dst[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", s->dir, KN_SHIM_SNAPSHOT);
    snprintf(dst, sizeof dst, "%s/%s", s->dir, KN_SHIM_SNAPSHOT);
    if (!res || json_dump_file(res, tmp, JSON_COMPACT) < 0 || rename(tmp, dst) < 0)
        rc = kn_error_set(err, EIO, "write %s", dst);
    json_decref(res);
    logf_(s,
          "snapshot %s: %s, %llu files, %llu bytes, %llu whiteouts; frozen %.3f ms (capture "
          "%.3f ms)",
          sid, info.digest, (unsigned long long)st.files, (unsigned long long)st.bytes,
          (unsigned long long)st.whiteouts, (t3 - t0) / 1000.0, (t2 - t1) / 1000.0);
    kn_image_info_free(&info);
    return rc;
}

/* Serves one control request. Returns 1 when the shim should exit. */
static int
serve_control(shim_t *s, int fd)
{
    char line[64], *payload = NULL;
    read_request(fd, line, sizeof line, &payload);
    char reply[KN_ERROR_MSG_MAX + 16] = "ok\n";
    kn_error_t err = {0};
    int quit = 0;
    bool live = s->sb != NULL;
    if (!strcmp(line, "pause") || !strcmp(line, "resume")) {
        bool want = !strcmp(line, "pause");
        if (!live)
            snprintf(reply, sizeof reply, "error the sandbox has ended\n");
        else if (s->paused == want)
            snprintf(reply, sizeof reply, "error the sandbox is %s\n",
                     want ? "already paused" : "not paused");
        else if (kn_sandbox_freeze(s->sb, want, &err) < 0)
            snprintf(reply, sizeof reply, "error %s\n", err.msg);
        else {
            s->paused = want;
            write_state(s, want ? "Paused" : "Running",
                        want ? "CONTAINER_PAUSED" : "CONTAINER_RUNNING",
                        want ? "Sandbox paused." : "Sandbox running.", -1000);
            logf_(s, "%s", want ? "paused" : "resumed");
        }
    } else if (!strcmp(line, "claim")) {
        if (claim(s, payload, &err) < 0)
            snprintf(reply, sizeof reply, "error %s\n", err.msg);
        else
            quit = 2;
    } else if (!strcmp(line, "policy")) {
        /* PATCH /policy: the server wrote the policy it wants (egress.c). */
        if (kn_egress_shim_apply(s->dir, s->sb, &err) < 0)
            snprintf(reply, sizeof reply, "error %s\n", err.msg);
    } else if (!strncmp(line, "snapshot ", 9)) {
        if (!live)
            snprintf(reply, sizeof reply, "error the sandbox has ended\n");
        else if (s->paused)
            snprintf(reply, sizeof reply, "error the sandbox is paused\n");
        else if (take_snapshot(s, line + 9, &err) < 0)
            snprintf(reply, sizeof reply, "error %s\n", err.msg);
    } else if (!strcmp(line, "kill")) {
        finish(s, "Terminated", "user_delete", "Sandbox deleted.");
        logf_(s, "killed on request");
        quit = 1;
    } else if (strcmp(line, "ping") != 0) {
        snprintf(reply, sizeof reply, "error unknown command\n");
    }
    free(payload);
    kn_write_all(fd, reply, strlen(reply));
    logf_(s, "control: %s -> %.*s", line, (int)strcspn(reply, "\n"), reply);
    if (quit == 2) {
        await_hangup(fd);
        write_state(s, "Running", "CONTAINER_RUNNING", "Sandbox taken from a warm pool.", -1000);
        save_spec(s);
        if (begin_entrypoint(s) < 0)
            return 1;
    }
    return quit == 1;
}

/* The sandbox ended on its own: answers whoever is already waiting on the
 * control socket before the shim exits, so that a delete racing with the
 * end gets its "ok" rather than a closed connection. */
static void
drain_control(shim_t *s)
{
    for (;;) {
        struct pollfd pfd = {s->listen_fd, POLLIN, 0};
        if (poll(&pfd, 1, 0) <= 0)
            return;
        int c = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            return;
        char line[64], *payload = NULL;
        read_request(c, line, sizeof line, &payload);
        free(payload);
        const char *reply = !strcmp(line, "kill") ? "ok\n" : "error the sandbox has ended\n";
        kn_write_all(c, reply, strlen(reply));
        logf_(s, "control after the end: %s", line);
        close(c);
    }
}

/* The sandbox's main process ended. With an entrypoint that is the
 * entrypoint (execd exits with its status, as a container ends with its
 * main process): Terminated for 0, Failed otherwise. */
static void
ended(shim_t *s)
{
    kn_result_t res = {0};
    kn_sandbox_finish(s->sb, &res);
    kn_sandbox_destroy(s->sb);
    s->sb = NULL;
    char msg[160];
    const char *oom = res.oom_killed ? " (out of memory)" : "";
    int code = res.exit_code;
    if (s->entrypoint_id[0] && !res.term_signal)
        snprintf(msg, sizeof msg, "The entrypoint exited with status %d%s.", code, oom);
    else if (res.term_signal)
        snprintf(msg, sizeof msg, "execd was killed by signal %d%s.", res.term_signal, oom);
    else
        snprintf(msg, sizeof msg, "execd ended with status %d%s.", code, oom);
    logf_(s, "%s", msg);
    bool ok = code == 0 && !res.term_signal;
    write_state(s, ok ? "Terminated" : "Failed", ok ? "CONTAINER_EXITED" : "CONTAINER_EXITED_ERROR",
                msg, code);
}

static int
loop(shim_t *s)
{
    for (;;) {
        /* The sandbox's DNS proxy and port relays, when it has a network,
         * are served from here too, after the shim's own three. Nothing
         * here needs a timer: the entrypoint's end arrives as the sandbox's. */
        struct pollfd pfd[3 + SHIM_NET_FDS] = {{s->listen_fd, POLLIN, 0},
                                               {s->sig_fd, POLLIN, 0},
                                               {s->sb ? kn_sandbox_syncfd(s->sb) : -1, POLLIN, 0}};
        int nnet = s->sb ? kn_net_pollfds(kn_sandbox_net(s->sb), pfd + 3, SHIM_NET_FDS) : 0;
        int pr = poll(pfd, (nfds_t)(3 + nnet), -1);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (nnet && s->sb)
            kn_net_handle(kn_sandbox_net(s->sb), pfd + 3, nnet);
        if (pfd[1].revents) {
            struct signalfd_siginfo si;
            if (read(s->sig_fd, &si, sizeof si) == sizeof si) {
                logf_(s, "signal %u: ending the sandbox", si.ssi_signo);
                finish(s, "Terminated", "shim_signal", "The supervisor was told to stop.");
                drain_control(s);
                return 0;
            }
        }
        if (pfd[2].revents && s->sb) {
            bool done = false;
            kn_sandbox_collect(s->sb, &done);
            if (done) {
                ended(s);
                drain_control(s);
                return 0;
            }
        }
        if (pfd[0].revents) {
            int c = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0) {
                int quit = serve_control(s, c);
                close(c);
                if (quit)
                    return 0;
            }
        }
    }
}

int
kn_shim_run(const char *dir, const char *execd_path, int ready_timeout_ms, int ready_fd)
{
    shim_t s = {.dir = dir, .ready_fd = ready_fd, .listen_fd = -1, .sig_fd = -1, .kill_fd = -1};
    char line[64];
    signal(SIGPIPE, SIG_IGN); /* the server may be gone already */
    snprintf(line, sizeof line, "pid %d\n", (int)getpid());
    if (ready_fd >= 0)
        kn_write_all(ready_fd, line, strlen(line));
    int logfd = open(at(&s, KN_SHIM_LOG), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (logfd >= 0) {
        dup2(logfd, STDOUT_FILENO);
        dup2(logfd, STDERR_FILENO);
        close(logfd);
    }
    signal(SIGHUP, SIG_IGN);
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    s.sig_fd = signalfd(-1, &stop, SFD_CLOEXEC);

    int rc = 1;
    kn_error_t err = {0};
    int lock = open(at(&s, KN_SHIM_LOCK), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) < 0) {
        kn_error_set(&err, errno, "%s is held by another shim", s.path);
        goto out;
    }
    uint64_t t0 = kn_now_us();
    if (start(&s, execd_path, ready_timeout_ms, &err) < 0) {
        finish(&s, "Failed", "provision_failed", err.msg);
        if (s.kill_fd >= 0) {
            kn_write_all(s.kill_fd, "ok\n", 3);
            close(s.kill_fd);
        }
        goto out;
    }
    /* A pool member gets its env and entrypoint when a create claims it. */
    bool member = !json_object_get(s.spec, "entrypoint");
    if (!member && set_entrypoint(&s, NULL, &err) < 0) {
        finish(&s, "Failed", "entrypoint_failed", err.msg);
        goto out;
    }
    if (member)
        write_state(&s, "Warm", "warm", "Ready in a warm pool.", -1000);
    else
        write_state(&s, "Running", "CONTAINER_RUNNING", "Sandbox started; execd answers.", -1000);
    logf_(&s, "ready in %.3f ms (sandbox pid %d)", (kn_now_us() - t0) / 1000.0,
          (int)kn_sandbox_pid(s.sb));
    if (!member && s.ready_fd >= 0) {
        kn_write_all(s.ready_fd, "ready\n", 6);
        s.ready_sent = true;
        await_hangup(s.ready_fd);
    }
    tell_ready(&s, "ready\n");
    /* The shim lives as long as the sandbox: the set-up's stack and heap go. */
    kn_release_setup_memory();
    if (!member && begin_entrypoint(&s) < 0) {
        drain_control(&s);
        goto out;
    }
    rc = loop(&s);
out:
    if (err.msg[0]) {
        logf_(&s, "error: %s", err.msg);
        char reply[KN_ERROR_MSG_MAX + 16];
        snprintf(reply, sizeof reply, "error %s\n", err.msg);
        tell_ready(&s, reply);
    }
    if (s.listen_fd >= 0) {
        close(s.listen_fd);
        unlink(at(&s, KN_SHIM_SOCK));
    }
    if (s.sb)
        finish(&s, "Failed", "runtime_error", "The supervisor stopped.");
    kn_config_free(&s.cfg);
    kn_image_close(s.img);
    json_decref(s.spec);
    if (s.sig_fd >= 0)
        close(s.sig_fd);
    if (lock >= 0)
        close(lock);
    return rc;
}

int
kn_shim_call(const char *dir, const char *cmd, int timeout_ms, kn_error_t *err)
{
    return kn_shim_send(dir, cmd, NULL, 0, timeout_ms, NULL, err);
}

int
kn_shim_send(const char *dir, const char *cmd, const char *data, size_t len, int timeout_ms,
             int *keep, kn_error_t *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, KN_SHIM_SOCK);
    if (keep)
        *keep = -1;
    int fd = kn_uclient_connect(path, err);
    if (fd < 0)
        return kn_error_prefix(err, "supervisor");
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char line[64];
    if (data)
        snprintf(line, sizeof line, "%s %zu\n", cmd, len);
    else
        snprintf(line, sizeof line, "%s\n", cmd);
    char reply[KN_ERROR_MSG_MAX + 16] = {0};
    if (kn_write_all(fd, line, strlen(line)) < 0 || (data && kn_write_all(fd, data, len) < 0)) {
        close(fd);
        return kn_error_set(err, errno, "supervisor: send");
    }
    len = 0;
    while (len < sizeof reply - 1) {
        ssize_t n = read(fd, reply + len, sizeof reply - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (memchr(reply, '\n', len))
            break; /* the answer is one line; the shim may go on working */
    }
    if (keep)
        *keep = fd;
    else
        close(fd);
    reply[strcspn(reply, "\n")] = '\0';
    if (!strcmp(reply, "ok"))
        return 0;
    if (!strncmp(reply, "error ", 6))
        return kn_error_set(err, EBUSY, "%s", reply + 6);
    return kn_server_error(err, EIO, "supervisor: no answer to %s (%s)", cmd,
                           len ? "bad answer" : "connection closed or timed out");
}

bool
kn_shim_alive(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, KN_SHIM_LOCK);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool held = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd);
    return held;
}

json_t *
kn_shim_state(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, KN_SHIM_STATE);
    return json_load_file(path, 0, NULL);
}
