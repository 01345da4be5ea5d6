/* sandboxes.c - see sandboxes.h. */
#include "sandboxes.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "sandbox.h"
#include "shim.h"
#include "spec.h"
#include "store.h"
#include "sbx_internal.h"
#include "util.h"

void
kn_sbx_creating_mark(kn_sbx_t *m, const char *id, bool on)
{
    pthread_mutex_lock(&m->mu);
    if (on) {
        if (m->n_creating == m->cap_creating) {
            size_t nc = m->cap_creating ? m->cap_creating * 2 : 16;
            char(*g)[40] = realloc(m->creating, nc * sizeof *g);
            if (g) {
                m->creating = g;
                m->cap_creating = nc;
            }
        }
        if (m->n_creating < m->cap_creating)
            snprintf(m->creating[m->n_creating++], 40, "%s", id);
    } else {
        for (size_t i = 0; i < m->n_creating; i++)
            if (!strcmp(m->creating[i], id)) {
                memmove(m->creating[i], m->creating[--m->n_creating], 40);
                break;
            }
    }
    pthread_mutex_unlock(&m->mu);
}

static void settle_pending(kn_sbx_t *m, const kn_store_rec_t *r);

static bool
creating(kn_sbx_t *m, const char *id)
{
    bool found = false;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->n_creating && !found; i++)
        found = !strcmp(m->creating[i], id);
    pthread_mutex_unlock(&m->mu);
    return found;
}

int64_t
kn_sbx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int
kn_sbx_parse_time(const char *s, int64_t *ms)
{
    int y, mo, d, h, mi, sec, frac = 0;
    if (strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) ||
        s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &sec))
        return -1;
    const char *p = s + 19;
    if (*p == '.') {
        int n = 0;
        for (p++; isdigit((unsigned char)*p); p++, n++)
            if (n < 3)
                frac = frac * 10 + (*p - '0');
        if (n == 0)
            return -1;
        for (; n < 3; n++)
            frac *= 10;
    }
    int off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return -1;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970)
        return -1;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *ms = ((int64_t)t - off) * 1000 + frac;
    return 0;
}

/* Ids come from URLs: only what kn_server_new_id() makes can name a run directory. */
static bool
id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n >= 40)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)id[i]) && id[i] != '-')
            return false;
    return true;
}

void
kn_sbx_run_dir(const kn_sbx_t *m, const char *id, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", m->cfg->run_dir, id);
}

/* rm -rf that never follows a symlink: the sandbox/ part is the sandbox's. */
static void
rm_tree_at(int dfd, const char *name, int depth)
{
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT || depth > 64)
        return;
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            rm_tree_at(dirfd(d), e->d_name, depth + 1);
    closedir(d);
    unlinkat(dfd, name, AT_REMOVEDIR);
}

static void
remove_run_dir(const kn_sbx_t *m, const char *id)
{
    int base = open(m->cfg->run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (base < 0)
        return;
    rm_tree_at(base, id, 0);
    close(base);
}

static bool
terminal(const char *state)
{
    return !strcmp(state, "Terminated") || !strcmp(state, "Failed");
}

/* Pool members are the server's, not anyone's sandbox: hidden from the API
 * while they wait (Warm) and while they start (Pending with the pool's
 * spec, which a claim replaces). */
static bool
hidden(const kn_store_rec_t *r)
{
    if (!strcmp(r->state, "Warm"))
        return true;
    if (strcmp(r->state, "Pending") != 0)
        return false;
    json_t *spec = json_loads(r->spec, 0, NULL);
    bool pool = json_object_get(spec, "pool") != NULL;
    json_decref(spec);
    return pool;
}

/* The API object of a record; create responses leave out the image. */
json_t *
kn_sbx_to_json(const kn_store_rec_t *r, bool with_image)
{
    json_t *spec = json_loads(r->spec, 0, NULL);
    json_t *meta = json_loads(r->metadata, 0, NULL);
    char created[40], trans[40], exp[40];
    kn_sbx_format_time(r->created_ms, created, sizeof created);
    kn_sbx_format_time(r->transition_ms, trans, sizeof trans);
    json_t *status = json_pack("{s:s, s:s}", "state", r->state, "lastTransitionAt", trans);
    if (r->reason && r->reason[0])
        json_object_set_new(status, "reason", json_string(r->reason));
    if (r->message && r->message[0])
        json_object_set_new(status, "message", json_string(r->message));
    json_t *o = json_pack("{s:s, s:o, s:o, s:s}", "id", r->id, "status", status, "metadata",
                          meta ? meta : json_object(), "createdAt", created);
    json_t *ep = json_object_get(spec, "entrypoint");
    json_object_set_new(o, "entrypoint", ep ? json_incref(ep) : json_array());
    if (r->expires_ms) {
        kn_sbx_format_time(r->expires_ms, exp, sizeof exp);
        json_object_set_new(o, "expiresAt", json_string(exp));
    }
    if (with_image && json_object_get(spec, "image"))
        json_object_set(o, "image", json_object_get(spec, "image"));
    if (with_image && json_object_get(spec, "snapshotId"))
        json_object_set(o, "snapshotId", json_object_get(spec, "snapshotId"));
    if (json_object_get(spec, "platform"))
        json_object_set(o, "platform", json_object_get(spec, "platform"));
    if (with_image && json_object_size(json_object_get(spec, "extensions")))
        json_object_set(o, "extensions", json_object_get(spec, "extensions"));
    json_decref(spec);
    return o;
}

/* Copies what the shim recorded into the store. A shim that is gone
 * without a final state means the sandbox died with it. With state_out,
 * the shim's record read here is handed over (NULL when none was read). */
static void
refresh(kn_sbx_t *m, kn_store_rec_t *r, json_t **state_out)
{
    if (state_out)
        *state_out = NULL;
    if (terminal(r->state) || !strcmp(r->state, "Pending"))
        return;
    char dir[PATH_MAX];
    kn_sbx_run_dir(m, r->id, dir, sizeof dir);
    /* Alive first, then the record: a shim writes its final state before
     * it lets go of its lock, so a shim found gone left its last word in
     * the file read after. (The other order raced: a record read just
     * before the final write, then the lock found free, made a clean exit
     * look like a dead supervisor.) */
    bool alive = kn_shim_alive(dir);
    json_t *st = kn_shim_state(dir);
    const char *s = json_string_value(json_object_get(st, "state"));
    const char *reason = json_string_value(json_object_get(st, "reason"));
    const char *msg = json_string_value(json_object_get(st, "message"));
    if (!alive && (!s || !terminal(s))) {
        s = "Failed";
        reason = "runtime_error";
        msg = "The sandbox's supervisor is gone.";
    }
    if (s && strcmp(s, r->state) != 0 &&
        (terminal(s) || !strcmp(s, "Running") || !strcmp(s, "Paused"))) {
        kn_error_t err = {0};
        if (kn_store_set_state(m->store, r->id, s, reason, msg, &err) == 0) {
            snprintf(r->state, sizeof r->state, "%s", s);
            free(r->reason);
            free(r->message);
            r->reason = reason ? strdup(reason) : NULL;
            r->message = msg ? strdup(msg) : NULL;
            r->transition_ms = kn_sbx_now_ms();
        }
    }
    if (state_out)
        *state_out = st;
    else
        json_decref(st);
}

/* The sandbox's record, brought up to date with its shim's (whose JSON goes
 * to *state when state is not NULL; the caller releases it). */
static int
load_state(kn_sbx_t *m, const char *id, kn_store_rec_t *r, json_t **state, kn_error_t *err)
{
    bool found = false;
    if (!id_ok(id))
        return kn_server_error(err, ENOENT, "sandbox %s not found", id);
    if (kn_store_get(m->store, id, r, &found, err) < 0)
        return -1;
    if (!found)
        return kn_server_error(err, ENOENT, "sandbox %s not found", id);
    if (hidden(r)) { /* not a sandbox of anyone's yet */
        kn_store_rec_free(r);
        return kn_server_error(err, ENOENT, "sandbox %s not found", id);
    }
    refresh(m, r, state);
    return 0;
}

static int
load(kn_sbx_t *m, const char *id, kn_store_rec_t *r, kn_error_t *err)
{
    return load_state(m, id, r, NULL, err);
}

/* Starts `kennel shim` detached (own session, re-parented to init) and
 * waits for its answer on a pipe. Between fork and exec only
 * async-signal-safe calls: the server has threads. */
static int
spawn_shim(kn_sbx_t *m, const char *dir, pid_t *shim_pid, int *ready_fd, kn_error_t *err)
{
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", m->cfg->ready_timeout_ms);
    char *argv[] = {m->cfg->self_path, "shim",  "--execd",   m->cfg->execd_path,
                    "--ready-timeout", timeout, (char *)dir, NULL};
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return kn_error_set(err, errno, "pipe");
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return kn_error_set(err, e, "fork");
    }
    if (pid == 0) {
        setsid();
        if (fork() != 0)
            _exit(0);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        if (p[1] == 3)
            fcntl(3, F_SETFD, 0);
        else if (dup2(p[1], 3) < 0)
            _exit(126);
        execv(m->cfg->self_path, argv);
        _exit(127);
    }
    close(p[1]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    char buf[KN_ERROR_MSG_MAX + 64];
    size_t len = 0;
    uint64_t deadline = kn_now_us() + (uint64_t)(m->cfg->ready_timeout_ms + 5000) * 1000;
    int ret = -1;
    *shim_pid = 0;
    for (;;) {
        buf[len] = '\0';
        char *nl;
        while ((nl = strchr(buf, '\n'))) {
            *nl = '\0';
            if (!strncmp(buf, "pid ", 4))
                *shim_pid = (pid_t)atoi(buf + 4);
            else if (!strcmp(buf, "ready"))
                ret = 0;
            else if (!strncmp(buf, "error ", 6)) {
                kn_error_set(err, 0, "%s", buf + 6);
                err->code = EIO;
            }
            len -= (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, len + 1);
        }
        if (ret == 0 || err->msg[0])
            break;
        int64_t left = (int64_t)(deadline - kn_now_us()) / 1000;
        struct pollfd pfd = {p[0], POLLIN, 0};
        if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
            kn_error_set(err, ETIMEDOUT, "the sandbox did not become ready in time");
            break;
        }
        ssize_t n = read(p[0], buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            kn_error_set(err, EIO, "the supervisor ended without a word (see %s/%s)", dir,
                         KN_SHIM_LOG);
            break;
        }
        len += (size_t)n;
    }
    /* Open until the row says Running: the shim starts the entrypoint when
     * it closes (see kn_shim_send). */
    if (ret == 0)
        *ready_fd = p[0];
    else
        close(p[0]);
    return ret;
}

/* The end of a shim's log, for error messages about it. */
static void
log_tail(const char *dir, char *buf, size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, KN_SHIM_LOG);
    buf[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)len - 1 ? end - (off_t)len + 1 : 0;
    ssize_t n = pread(fd, buf, len - 1, from);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

/* Ends a sandbox's shim (if any) and removes its run directory and row. */
int
kn_sbx_destroy(kn_sbx_t *m, const char *id, kn_error_t *err)
{
    char dir[PATH_MAX];
    kn_sbx_run_dir(m, id, dir, sizeof dir);
    if (kn_shim_alive(dir)) {
        kn_error_t e = {0};
        int rc = kn_shim_call(dir, "kill", 20000, &e);
        /* A sandbox that ended on its own at the same moment: its shim is
         * on its way out. */
        for (int i = 0; rc < 0 && i < 200 && kn_shim_alive(dir); i++)
            usleep(10000);
        if (rc < 0 && kn_shim_alive(dir)) {
            char tail[240];
            log_tail(dir, tail, sizeof tail);
            return kn_server_error(err, EIO, "could not stop sandbox %s: %s (supervisor log: %s)",
                                   id, e.msg, tail);
        }
    }
    remove_run_dir(m, id);
    return kn_store_delete(m->store, id, err);
}

/* Makes a sandbox from a parsed spec: run directory, row (Pending), shim;
 * then the row goes to state/reason. rec is filled (caller frees). */
int
kn_sbx_provision(kn_sbx_t *m, const json_t *spec, const char *state, const char *reason,
                 const char *message, kn_store_rec_t *rec, kn_error_t *err)
{
    kn_config_t cfg = {0};
    char dir[PATH_MAX], sbdir[PATH_MAX], path[PATH_MAX];
    bool made = false, stored = false;
    int ret = -1, ready_fd = -1;
    kn_server_new_id(rec->id);
    kn_sbx_creating_mark(m, rec->id, true);
    kn_sbx_run_dir(m, rec->id, dir, sizeof dir);
    snprintf(sbdir, sizeof sbdir, "%s/%s", dir, KN_SHIM_SANDBOX);
    /* 0711: the runtime resolves bind sources as the sandbox's user, which
     * must be able to pass through; the shim's own files are 0600. */
    if (mkdir(dir, 0711) < 0 || chmod(dir, 0711) < 0 || mkdir(sbdir, 0700) < 0) {
        kn_error_set(err, errno, "create %s", sbdir);
        goto out;
    }
    made = true;
    /* Validates what the shim will build, so bad requests fail here. */
    if (kn_spec_config(spec, sbdir, m->cfg->execd_path, &cfg, NULL, err) < 0) {
        if (err->code != EBADMSG)
            err->code = EINVAL;
        goto out;
    }
    if (chown(sbdir, kn_sandbox_host_uid(&cfg), kn_sandbox_host_gid(&cfg)) < 0) {
        kn_error_set(err, errno, "chown %s", sbdir);
        goto out;
    }
    snprintf(path, sizeof path, "%s/%s", dir, KN_SHIM_SPEC);
    if (json_dump_file(spec, path, JSON_COMPACT) < 0) {
        kn_error_set(err, EIO, "write %s", path);
        goto out;
    }
    rec->created_ms = rec->transition_ms = kn_sbx_now_ms();
    json_t *timeout = json_object_get(spec, "timeout");
    if (json_is_integer(timeout))
        rec->expires_ms = rec->created_ms + json_integer_value(timeout) * 1000;
    snprintf(rec->state, sizeof rec->state, "Pending");
    rec->reason = strdup("provisioning");
    rec->message = strdup("Sandbox is being provisioned.");
    rec->spec = json_dumps(spec, JSON_COMPACT);
    json_t *meta = json_object_get(spec, "metadata");
    rec->metadata = meta ? json_dumps(meta, JSON_COMPACT) : strdup("{}");
    if (!rec->spec || !rec->metadata || !rec->reason || !rec->message) {
        kn_error_set(err, ENOMEM, "create");
        goto out;
    }
    if (kn_store_insert(m->store, rec, err) < 0)
        goto out;
    stored = true;
    pid_t shim = 0;
    if (spawn_shim(m, dir, &shim, &ready_fd, err) < 0) {
        kn_error_prefix(err, "sandbox %s failed to start", rec->id);
        if (err->code != ETIMEDOUT)
            err->code = EIO;
        goto out;
    }
    if (kn_store_set_state(m->store, rec->id, state, reason, message, err) < 0)
        goto out;
    close(ready_fd);
    ready_fd = -1;
    snprintf(rec->state, sizeof rec->state, "%s", state);
    free(rec->reason);
    free(rec->message);
    rec->reason = strdup(reason);
    rec->message = strdup(message);
    rec->transition_ms = kn_sbx_now_ms();
    ret = 0;
out:
    if (ready_fd >= 0)
        close(ready_fd);
    if (ret < 0 && made) {
        kn_error_t e = {0};
        if (stored)
            kn_sbx_destroy(m, rec->id, &e);
        else
            remove_run_dir(m, rec->id);
    }
    kn_sbx_creating_mark(m, rec->id, false);
    kn_config_free(&cfg);
    return ret;
}

/* Live sandboxes, pool members aside. Creates racing each other may pass
 * the limit by as many as run at once (the check is not a reservation). */
static int
quota_check(kn_sbx_t *m, kn_error_t *err)
{
    if (m->cfg->max_sandboxes <= 0)
        return 0;
    kn_store_rec_t *recs = NULL;
    size_t n = 0;
    if (kn_store_list(m->store, &recs, &n, err) < 0)
        return -1;
    long live = 0;
    for (size_t i = 0; i < n; i++) {
        live += !terminal(recs[i].state) && !hidden(&recs[i]);
        kn_store_rec_free(&recs[i]);
    }
    free(recs);
    if (live >= m->cfg->max_sandboxes)
        return kn_server_error(err, EBUSY,
                               "this server runs at most %d sandboxes (maxSandboxes); delete some "
                               "first",
                               m->cfg->max_sandboxes);
    return 0;
}

int
kn_sbx_create(kn_sbx_t *m, const json_t *req, json_t **out, kn_error_t *err)
{
    return kn_sbx_create_from(m, req, NULL, out, err);
}

int
kn_sbx_create_from(kn_sbx_t *m, const json_t *req, const kn_spec_snapshot_t *snap, json_t **out,
                   kn_error_t *err)
{
    json_t *merged = NULL;
    kn_sbx_pool_t *wanted = NULL;
    if (kn_sbx_pool_request(m, req, &merged, &wanted, err) < 0)
        return -1;
    json_t *spec = kn_spec_parse_from(merged ? merged : req, m->cfg, snap, err);
    json_decref(merged);
    if (!spec || quota_check(m, err) < 0) {
        json_decref(spec);
        kn_sbx_pool_put(m, wanted);
        return -1;
    }
    int ret = 0;
    kn_sbx_pool_t *p = kn_sbx_pool_match(m, spec, wanted);
    if (!p || !kn_sbx_claim(m, p, spec, out)) {
        kn_store_rec_t rec = {0};
        ret = kn_sbx_provision(m, spec, "Running", "CONTAINER_RUNNING",
                               "Sandbox started; execd answers.", &rec, err);
        if (ret == 0)
            *out = kn_sbx_to_json(&rec, false);
        kn_store_rec_free(&rec);
    }
    kn_sbx_pool_put(m, p);
    kn_sbx_pool_put(m, wanted);
    json_decref(spec);
    return ret;
}

int
kn_sbx_get(kn_sbx_t *m, const char *id, json_t **out, kn_error_t *err)
{
    kn_store_rec_t r;
    if (load(m, id, &r, err) < 0)
        return -1;
    *out = kn_sbx_to_json(&r, true);
    kn_store_rec_free(&r);
    return 0;
}

int
kn_sbx_exists(kn_sbx_t *m, const char *id, kn_error_t *err)
{
    kn_store_rec_t r;
    if (load(m, id, &r, err) < 0)
        return -1;
    kn_store_rec_free(&r);
    return 0;
}

static bool
matches(const kn_store_rec_t *r, const kn_sbx_filter_t *f)
{
    bool ok = f->n_states == 0;
    for (int i = 0; i < f->n_states && !ok; i++)
        ok = !strcasecmp(f->states[i], r->state);
    if (!ok)
        return false;
    if (f->n_meta == 0)
        return true;
    json_t *meta = json_loads(r->metadata, 0, NULL);
    for (int i = 0; i < f->n_meta && ok; i++) {
        const char *v = json_string_value(json_object_get(meta, f->meta_key[i]));
        ok = v && !strcmp(v, f->meta_val[i]);
    }
    json_decref(meta);
    return ok;
}

int
kn_sbx_list(kn_sbx_t *m, const kn_sbx_filter_t *f, json_t **out, kn_error_t *err)
{
    kn_store_rec_t *recs = NULL;
    size_t n = 0;
    if (kn_store_list(m->store, &recs, &n, err) < 0)
        return -1;
    json_t *items = json_array();
    long total = 0, first = (f->page - 1) * f->page_size;
    for (size_t i = 0; i < n; i++) {
        if (!hidden(&recs[i]) && matches(&recs[i], f)) {
            if (total >= first && total < first + f->page_size)
                json_array_append_new(items, kn_sbx_to_json(&recs[i], true));
            total++;
        }
        kn_store_rec_free(&recs[i]);
    }
    free(recs);
    long pages = (total + f->page_size - 1) / f->page_size;
    *out = json_pack("{s:o, s:{s:I, s:I, s:I, s:I, s:b}}", "items", items, "pagination", "page",
                     (json_int_t)f->page, "pageSize", (json_int_t)f->page_size, "totalItems",
                     (json_int_t)total, "totalPages", (json_int_t)pages, "hasNextPage",
                     f->page < pages);
    return *out ? 0 : kn_error_set(err, ENOMEM, "list");
}

int
kn_sbx_delete(kn_sbx_t *m, const char *id, const char *reason, kn_error_t *err)
{
    kn_store_rec_t r;
    if (load(m, id, &r, err) < 0)
        return -1;
    kn_store_rec_free(&r);
    (void)reason;
    /* Recorded (receipts) before anything is stopped. */
    if (kn_store_intent(m->store, id, "delete", err) < 0)
        return -1;
    return kn_sbx_destroy(m, id, err);
}

int
kn_sbx_pause(kn_sbx_t *m, const char *id, bool pause, kn_error_t *err)
{
    kn_store_rec_t r;
    if (load(m, id, &r, err) < 0)
        return -1;
    const char *need = pause ? "Running" : "Paused";
    if (strcmp(r.state, need) != 0) {
        kn_server_error(err, EBUSY, "sandbox %s is %s, not %s", id, r.state, need);
        kn_store_rec_free(&r);
        return -1;
    }
    kn_store_rec_free(&r);
    char dir[PATH_MAX];
    kn_sbx_run_dir(m, id, dir, sizeof dir);
    if (kn_store_intent(m->store, id, pause ? "pause" : "resume", err) < 0 ||
        kn_shim_call(dir, pause ? "pause" : "resume", 10000, err) < 0)
        return -1;
    return kn_store_set_state(m->store, id, pause ? "Paused" : "Running",
                              pause ? "CONTAINER_PAUSED" : "CONTAINER_RUNNING",
                              pause ? "Sandbox paused." : "Sandbox running.", err);
}

int
kn_sbx_renew(kn_sbx_t *m, const char *id, const json_t *body, json_t **out, kn_error_t *err)
{
    const char *s = json_string_value(json_object_get(body, "expiresAt"));
    int64_t ms;
    if (!json_is_object(body) || !s)
        return kn_server_error(err, EINVAL,
                               "the body must be {\"expiresAt\": \"<RFC 3339 time>\"}");
    if (kn_sbx_parse_time(s, &ms) < 0)
        return kn_server_error(err, EINVAL, "expiresAt '%s' is not an RFC 3339 time", s);
    kn_store_rec_t r;
    if (load(m, id, &r, err) < 0)
        return -1;
    int ret = -1;
    if (terminal(r.state))
        kn_server_error(err, EBUSY, "sandbox %s is %s", id, r.state);
    else if (!r.expires_ms)
        kn_server_error(err, EBUSY, "sandbox %s has no expiration (manual cleanup)", id);
    else if (ms <= kn_sbx_now_ms())
        kn_server_error(err, EINVAL, "expiresAt must be in the future");
    else if (kn_store_set_expires(m->store, id, ms, err) == 0) {
        char buf[40];
        kn_sbx_format_time(ms, buf, sizeof buf);
        *out = json_pack("{s:s}", "expiresAt", buf);
        ret = 0;
    }
    kn_store_rec_free(&r);
    return ret;
}

int
kn_sbx_patch_metadata(kn_sbx_t *m, const char *id, const json_t *patch, json_t **out,
                      kn_error_t *err)
{
    if (!json_is_object(patch))
        return kn_server_error(err, EINVAL, "the body must be a JSON object (a merge patch)");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)patch, k, v)
    {
        if (!json_is_null(v) && !json_is_string(v))
            return kn_server_error(err, EINVAL, "metadata.%s must be a string or null", k);
        if (kn_spec_check_label(k, json_string_value(v), err) < 0)
            return -1;
    }
    kn_store_rec_t r;
    if (load(m, id, &r, err) < 0)
        return -1;
    json_t *meta = json_loads(r.metadata, 0, NULL);
    if (!meta)
        meta = json_object();
    json_object_foreach((json_t *)patch, k, v)
    {
        if (json_is_null(v))
            json_object_del(meta, k);
        else
            json_object_set(meta, k, v);
    }
    int ret = -1;
    char *text = json_dumps(meta, JSON_COMPACT);
    if (text && kn_store_set_metadata(m->store, id, text, err) == 0) {
        free(r.metadata);
        r.metadata = text;
        text = NULL;
        *out = kn_sbx_to_json(&r, true);
        ret = 0;
    }
    free(text);
    json_decref(meta);
    kn_store_rec_free(&r);
    return ret;
}

/* OSEP-0009 renew-on-access: a sandbox created with
 * extensions["access.renew.extend.seconds"] = N lives at least N seconds
 * past each request through the proxy. At most one store write a second. */
static void
renew_on_access(kn_sbx_t *m, const kn_store_rec_t *r)
{
    if (!r->expires_ms || strstr(r->spec, "access.renew.extend.seconds") == NULL)
        return;
    json_t *spec = json_loads(r->spec, 0, NULL);
    const char *v = json_string_value(
        json_object_get(json_object_get(spec, "extensions"), "access.renew.extend.seconds"));
    long n = v ? strtol(v, NULL, 10) : 0;
    json_decref(spec);
    int64_t want = kn_sbx_now_ms() + (int64_t)n * 1000;
    kn_error_t err = {0};
    if (n > 0 && want - r->expires_ms >= 1000)
        kn_store_set_expires(m->store, r->id, want, &err);
}

int
kn_sbx_execd(kn_sbx_t *m, const char *id, char *sock, size_t socklen, char *pidns, size_t nslen,
             kn_error_t *err)
{
    kn_store_rec_t r;
    json_t *st = NULL; /* the shim's record, read once for the state and the namespace */
    if (load_state(m, id, &r, &st, err) < 0)
        return -1;
    int ret = -1;
    renew_on_access(m, &r);
    if (strcmp(r.state, "Running") != 0) {
        kn_server_error(err, EBUSY, "sandbox %s is %s", id, r.state);
    } else {
        char dir[PATH_MAX];
        kn_sbx_run_dir(m, id, dir, sizeof dir);
        const char *ns = json_string_value(json_object_get(st, "pidns"));
        snprintf(pidns, nslen, "%s", ns ? ns : "");
        snprintf(sock, socklen, "%s/%s", dir, KN_SHIM_EXECD_SOCK);
        ret = pidns[0] ? 0 : kn_error_set(err, EIO, "sandbox %s: no recorded namespace", id);
    }
    json_decref(st);
    kn_store_rec_free(&r);
    return ret;
}

int
kn_sbx_live_dir(kn_sbx_t *m, const char *id, char *dir, size_t len, kn_error_t *err)
{
    kn_store_rec_t r;
    if (load(m, id, &r, err) < 0)
        return -1;
    int ret = 0;
    if (strcmp(r.state, "Running") != 0 && strcmp(r.state, "Paused") != 0)
        ret = kn_server_error(err, EBUSY, "sandbox %s is %s", id, r.state);
    else
        kn_sbx_run_dir(m, id, dir, len);
    kn_store_rec_free(&r);
    return ret;
}

#define DIAG_MAX (64 * 1024)

int
kn_sbx_diagnostics(kn_sbx_t *m, const char *id, const char *kind, const char *scope, json_t **out,
                   kn_error_t *err)
{
    bool container = !strcmp(scope, "container");
    bool runtime = !strcmp(scope, "runtime") || !strcmp(scope, "lifecycle");
    bool all = !strcmp(scope, "all");
    if (!container && !runtime && !all)
        return kn_server_error(
            err, EINVAL, "scope '%s' is not supported (container, runtime, lifecycle, all)", scope);
    kn_store_rec_t r;
    if (load(m, id, &r, err) < 0)
        return -1;
    kn_store_rec_free(&r);
    /* Events are the supervisor's record; logs are what was asked for. */
    bool events = !strcmp(kind, "events");
    char dir[PATH_MAX], path[PATH_MAX];
    kn_sbx_run_dir(m, id, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s", dir, KN_SHIM_LOG);
    json_t *warnings = json_array();
    FILE *f = fopen(path, "re");
    size_t cap = DIAG_MAX + 1, len = 0;
    char *text = calloc(1, cap), line[4096];
    bool truncated = false;
    if (!f)
        json_array_append_new(warnings, json_string("no supervisor log is available"));
    while (f && text && fgets(line, sizeof line, f)) {
        bool mine = strstr(line, KN_SHIM_LOG_TAG "[") != NULL;
        if (!(all || (mine && (runtime || events)) || (!mine && container && !events)))
            continue;
        size_t n = strlen(line);
        if (len + n > DIAG_MAX) {
            /* Keep the newest: drop from the front. */
            size_t drop = len + n - DIAG_MAX;
            drop = drop > len ? len : drop;
            memmove(text, text + drop, len - drop);
            len -= drop;
            truncated = true;
        }
        if (n > DIAG_MAX)
            n = DIAG_MAX;
        memcpy(text + len, line, n);
        len += n;
        text[len] = '\0';
    }
    if (f)
        fclose(f);
    if (events && container)
        json_array_append_new(warnings, json_string("container events are not recorded"));
    *out = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s%, s:I, s:b}", "sandboxId", id, "kind",
                     events ? "events" : "logs", "scope", scope, "delivery", "inline",
                     "contentType", "text/plain; charset=utf-8", "content", text ? text : "", len,
                     "contentLength", (json_int_t)len, "truncated", truncated);
    if (*out && json_array_size(warnings))
        json_object_set(*out, "warnings", warnings);
    json_decref(warnings);
    free(text);
    return *out ? 0 : kn_error_set(err, ENOMEM, "diagnostics");
}

int
kn_sbx_reap(kn_sbx_t *m, int max_wait_ms)
{
    kn_store_rec_t *recs = NULL;
    size_t n = 0;
    kn_error_t err = {0};
    int64_t now = kn_sbx_now_ms(), next = now + max_wait_ms;
    if (kn_store_list(m->store, &recs, &n, &err) < 0)
        return max_wait_ms;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        kn_store_rec_t *r = &recs[i];
        bool gone = false;
        if (!strcmp(r->state, "Warm")) {
            gone = kn_sbx_warm_gone(m, r);
        } else if (!strcmp(r->state, "Pending")) {
            if (!creating(m, r->id))
                settle_pending(m, r);
        } else if (r->expires_ms && r->expires_ms <= now) {
            kn_error_t e = {0};
            if (kn_store_intent(m->store, r->id, "expire", &e) < 0 ||
                kn_sbx_destroy(m, r->id, &e) < 0)
                kn_sbx_log("error", "an expired sandbox could not be removed", r->id, e.msg);
            else
                kn_sbx_log("info", "expired", r->id, NULL);
            gone = true;
        } else {
            refresh(m, r, NULL);
            if (r->expires_ms && r->expires_ms < next)
                next = r->expires_ms;
        }
        if (gone)
            kn_store_rec_free(r);
        else
            recs[kept++] = *r;
    }
    if (kn_sbx_refill(m, recs, kept))
        next = now; /* come back at once until the pools are at their targets */
    for (size_t i = 0; i < kept; i++)
        kn_store_rec_free(&recs[i]);
    free(recs);
    kn_store_checkpoint(m->store);
    int64_t wait = next - now;
    return wait < 10 ? 10 : (int)wait;
}

void
kn_sbx_count_states(kn_sbx_t *m, void (*fn)(const char *state, long n, void *ctx), void *ctx)
{
    static const char *const states[] = {"Pending",    "Running", "Paused",
                                         "Terminated", "Failed",  "Warm"};
    long counts[6] = {0};
    kn_store_rec_t *recs = NULL;
    size_t n = 0;
    kn_error_t err = {0};
    if (kn_store_list(m->store, &recs, &n, &err) < 0)
        return;
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < 6; k++)
            if (!strcmp(recs[i].state, states[k]))
                counts[k]++;
        kn_store_rec_free(&recs[i]);
    }
    free(recs);
    for (int k = 0; k < 6; k++)
        fn(states[k], counts[k], ctx);
}

/* After a restart: keep what the shims kept alive, clean the rest. Rows
 * still Pending were never acknowledged to a client; a live, ready shim
 * makes them Running, otherwise they go. Run directories without a row
 * are leftovers of an interrupted create or delete. */
void
kn_sbx_log(const char *level, const char *msg, const char *id, const char *detail)
{
    json_t *j = json_pack("{s:s, s:s, s:s}", "level", level, "msg", msg, "sandboxId", id);
    if (j && detail && detail[0])
        json_object_set_new(j, "detail", json_string(detail));
    char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (line)
        fprintf(stderr, "%s\n", line);
    free(line);
    json_decref(j);
}

/* A Pending row that no create of this process is working on: an earlier
 * server died before it answered. A shim that got ready makes it Running
 * (the sandbox is whole, just never acknowledged); otherwise it goes. */
static void
settle_pending(kn_sbx_t *m, const kn_store_rec_t *r)
{
    char dir[PATH_MAX];
    kn_error_t err = {0};
    kn_sbx_run_dir(m, r->id, dir, sizeof dir);
    json_t *st = kn_shim_state(dir);
    const char *s = json_string_value(json_object_get(st, "state"));
    if (kn_shim_alive(dir) && s && !strcmp(s, "Running")) {
        if (kn_store_set_state(m->store, r->id, "Running", "CONTAINER_RUNNING",
                               "Sandbox adopted after a server restart.", &err) < 0)
            kn_sbx_log("error", "adoption: cannot mark Running", r->id, err.msg);
        else
            kn_sbx_log("info", "adopted a sandbox never acknowledged", r->id, NULL);
    } else if (kn_sbx_destroy(m, r->id, &err) < 0) {
        kn_sbx_log("error", "adoption: cannot remove an unfinished create", r->id, err.msg);
    } else {
        kn_sbx_log("info", "removed an unfinished create", r->id, s);
    }
    json_decref(st);
}

static void
adopt(kn_sbx_t *m)
{
    kn_store_rec_t *recs = NULL;
    size_t n = 0;
    kn_error_t err = {0};
    if (kn_store_list(m->store, &recs, &n, &err) < 0) {
        kn_sbx_log("error", "adoption: cannot list the store", "", err.msg);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        kn_store_rec_t *r = &recs[i];
        if (!strcmp(r->state, "Pending"))
            settle_pending(m, r);
        else if (!strcmp(r->state, "Warm"))
            kn_sbx_warm_gone(m, r);
        else
            refresh(m, r, NULL);
        kn_store_rec_free(r);
    }
    free(recs);
    DIR *d = opendir(m->cfg->run_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || !id_ok(e->d_name))
            continue;
        kn_store_rec_t r;
        bool found = false;
        if (kn_store_get(m->store, e->d_name, &r, &found, &err) == 0 && found) {
            kn_store_rec_free(&r);
            continue;
        }
        char dir[PATH_MAX];
        kn_sbx_run_dir(m, e->d_name, dir, sizeof dir);
        if (kn_shim_alive(dir))
            kn_shim_call(dir, "kill", 20000, &err);
        remove_run_dir(m, e->d_name);
        kn_sbx_log("info", "removed a run directory without a row", e->d_name, NULL);
    }
    if (d)
        closedir(d);
}

/* The runtime resolves bind sources as the sandbox's user: every directory
 * above the run directory must let others pass. */
static int
check_reachable(const char *dir, kn_error_t *err)
{
    char path[PATH_MAX];
    if (!realpath(dir, path))
        return kn_error_set(err, errno, "run directory %s", dir);
    for (char *slash = path + strlen(path); slash > path; slash = strrchr(path, '/')) {
        struct stat st;
        if (stat(path, &st) == 0 && !(st.st_mode & S_IXOTH))
            return kn_server_error(err, EACCES,
                                   "%s is not searchable by others (chmod o+x): sandboxes could "
                                   "not reach their run directories under %s",
                                   path, dir);
        *slash = '\0';
    }
    return 0;
}

int
kn_sbx_open(const kn_server_cfg_t *cfg, kn_sbx_t **out, kn_error_t *err)
{
    return kn_sbx_open_with(cfg, NULL, NULL, out, err);
}

int
kn_sbx_open_with(const kn_server_cfg_t *cfg,
                 int (*on_store)(kn_store_t *st, void *ctx, kn_error_t *err), void *ctx,
                 kn_sbx_t **out, kn_error_t *err)
{
    kn_sbx_t *m = calloc(1, sizeof *m);
    if (!m)
        return kn_error_set(err, ENOMEM, "manager");
    m->cfg = cfg;
    pthread_mutex_init(&m->mu, NULL);
    if (kn_mkdir_p(cfg->run_dir, 0711, err) < 0 || chmod(cfg->run_dir, 0711) < 0 ||
        check_reachable(cfg->run_dir, err) < 0 || kn_store_open(cfg->db_path, &m->store, err) < 0) {
        free(m);
        return -1;
    }
    if ((on_store && on_store(m->store, ctx, err) < 0) || kn_sbx_pools_init(m, err) < 0) {
        kn_sbx_close(m);
        return -1;
    }
    adopt(m);
    *out = m;
    return 0;
}

void
kn_sbx_close(kn_sbx_t *m)
{
    if (!m)
        return;
    kn_store_close(m->store);
    kn_sbx_pools_free(m);
    pthread_mutex_destroy(&m->mu);
    free(m->creating);
    free(m);
}
