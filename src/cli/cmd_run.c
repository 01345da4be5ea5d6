/* cmd_run.c - `kennel run`: one-shot code or commands, each in a fresh
 * sandbox that is destroyed when it ends. Modelled on exec-sandbox's
 * `sbx run`. Parses flags into kn_config_t, then drives the sandboxes:
 * output streams as it happens, within caps; timeouts kill a whole sandbox. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "image.h"
#include "jsonw.h"
#include "sandbox.h"
#include "util.h"
#include "wlayer.h"

#define MAX_SOURCES 32
#define MAX_XFER 32
#define MAX_INLINE_CODE (64 * 1024)
#define MAX_NET_FDS 40

typedef struct source {
    const char *lang; /* python, javascript, bash; NULL for a command */
    char *code;       /* inline code, owned */
    const char *file; /* host path of a script */
    char **cmd;       /* borrowed argv of `-- CMD ARGS` */
    bool image_cmd;   /* no command given: the image's entrypoint and cmd */
    char label[64];
    char spill[64]; /* code too long for argv goes to this file inside */
} source_t;

typedef struct run_opts {
    const char *lang;
    const char *profile;
    const char *image;
    double timeout_s;
    bool have_timeout;
    uint64_t memory;
    bool have_memory;
    double cpus;
    bool have_cpus;
    long pids;
    bool have_pids;
    const char *env[KN_MAX_ENV];
    int n_env;
    const char *binds[KN_MAX_BINDS];
    bool bind_rw[KN_MAX_BINDS];
    int n_binds;
    const char *uploads[MAX_XFER];
    int n_uploads;
    const char *downloads[MAX_XFER];
    int n_downloads;
    bool json, quiet;
    uint64_t stdout_cap, stderr_cap;
    kn_net_policy_t net;
    uint64_t disk;   /* --disk: a disk-backed writable layer of this size */
    kn_image_t *img; /* --image named a stored image: held open for the run */
} run_opts_t;

typedef struct stream {
    int fd;          /* read end, -1 at EOF */
    int out;         /* where it streams: 1 or 2 */
    uint64_t cap, n; /* bytes kept so far */
    bool truncated;
    char *buf; /* --json: what is kept */
    size_t len, size;
    char line[4096]; /* several sources: the pending partial line */
    size_t line_len;
    bool broken; /* our own stdout/stderr reader went away (EPIPE) */
} stream_t;

typedef struct job {
    source_t *src;
    kn_config_t cfg;
    kn_sandbox_t *sb;
    stream_t s[2];
    uint64_t t0, deadline_us;
    bool program_done, finished, failed, download_failed, broken_pipe;
    char error[KN_ERROR_MSG_MAX];
    kn_result_t res;
} job_t;

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: kennel run [OPTIONS] [-c CODE]... [FILE|-]... [-- CMD ARGS...]\n"
            "\n"
            "Runs code or a command in a fresh sandbox, then destroys it. Several sources\n"
            "run concurrently, each in its own sandbox.\n"
            "\n"
            "  -l, --lang LANG        python, javascript or bash (default: from the file\n"
            "                         extension, else python)\n"
            "  -c, --code CODE        inline code (repeatable)\n"
            "  -t, --timeout SECONDS  wall-clock limit; the whole sandbox is killed (default 30)\n"
            "  -m, --memory SIZE      memory limit, swap off (MiB, or 512m, 1g; default 512)\n"
            "      --cpus N           CPU bandwidth in CPUs (default 1)\n"
            "      --pids N           process limit (default 256)\n"
            "  -e, --env KEY=VALUE    environment variable (repeatable); nothing else leaks in\n"
            "      --upload LOCAL:GUEST     copy a file in before the run\n"
            "      --download GUEST[:LOCAL] copy a file out after the run\n"
            "      --profile NAME     default or deny-by-default\n"
            "      --image IMAGE      host (default), an absolute rootfs directory, or an\n"
            "                         imported image: NAME[:TAG], NAME@sha256:D, sha256:D\n"
            "                         (kennel image); with no command, its entrypoint+cmd\n"
            "      --disk SIZE        writable layer on disk, bounded to SIZE (256m, 2g),\n"
            "                         instead of tmpfs; made in $KENNEL_LAYER_DIR or\n"
            "                         /var/lib/kennel/layers, gone when the run ends (root)\n"
            "      --ro-bind SRC:DST  bind a host path read-only\n"
            "      --bind SRC:DST     bind a host path writable\n"
            "      --stdout-limit SIZE, --stderr-limit SIZE  output caps (1m, 100k)\n"
            "      --network          give the sandbox egress (default: only lo)\n"
            "      --allow-domain D   allow a name (*.example.com for subdomains); implies\n"
            "                         --network and makes egress an allowlist\n"
            "      --allow-cidr C, --deny-domain D, --deny-cidr C   more rules (deny wins)\n"
            "      --dns-upstream A   resolver behind kennel's DNS proxy (default: the\n"
            "                         host's; also KENNEL_DNS_UPSTREAM)\n"
            "      --expose I[:E]     relay host 127.0.0.1:E to port I inside (no egress\n"
            "                         needed)\n"
            "      --json             print a JSON result instead of streaming\n"
            "  -q, --quiet            no warnings\n"
            "\n"
            "Exit status: the program's, 128+N if killed by signal N, 124 on timeout,\n"
            "125 for kennel's own errors, 127 if the command is not found.\n");
}

static int __attribute__((format(printf, 1, 2))) fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kennel: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return KN_EXIT_KENNEL;
}

static int
parse_double(const char *s, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static const char *
lang_of_file(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (!dot)
        return NULL;
    if (!strcmp(dot, ".py"))
        return "python";
    if (!strcmp(dot, ".js") || !strcmp(dot, ".mjs") || !strcmp(dot, ".cjs"))
        return "javascript";
    if (!strcmp(dot, ".sh") || !strcmp(dot, ".bash"))
        return "bash";
    return NULL;
}

static const char *
normalize_lang(const char *l)
{
    if (!strcmp(l, "python") || !strcmp(l, "py") || !strcmp(l, "python3"))
        return "python";
    if (!strcmp(l, "javascript") || !strcmp(l, "js") || !strcmp(l, "node"))
        return "javascript";
    if (!strcmp(l, "bash") || !strcmp(l, "sh") || !strcmp(l, "shell"))
        return "bash";
    return NULL;
}

static const char *
interpreter(const char *lang)
{
    if (!strcmp(lang, "python"))
        return "python3";
    if (!strcmp(lang, "javascript"))
        return "node";
    return "bash";
}

static char *
read_all_stdin(void)
{
    size_t size = 4096, len = 0;
    char *buf = malloc(size);
    if (!buf)
        return NULL;
    for (;;) {
        if (len + 1 >= size) {
            char *g = realloc(buf, size *= 2);
            if (!g) {
                free(buf);
                return NULL;
            }
            buf = g;
        }
        ssize_t n = read(STDIN_FILENO, buf + len, size - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

/* Fills cfg for one source from the profile and the flags. */
static int
build_config(job_t *j, const run_opts_t *o, kn_error_t *err)
{
    kn_config_t *cfg = &j->cfg;
    source_t *s = j->src;
    if (kn_profile_load(cfg, o->profile, err) < 0)
        return -1;
    if (o->image && kn_config_set_str(&cfg->image, o->image, err) < 0)
        return -1;
    if (o->img && kn_image_apply_config(cfg, o->img, err) < 0)
        return -1;
    if (o->have_timeout)
        cfg->timeout_ms = (uint64_t)(o->timeout_s * 1000.0 + 0.5);
    if (o->have_memory)
        cfg->memory = o->memory;
    if (o->have_cpus)
        cfg->cpus = o->cpus;
    if (o->have_pids)
        cfg->pids = (uint32_t)o->pids;
    if (o->net.enabled || o->net.n_expose)
        cfg->net = o->net;
    if (o->disk) {
        const char *dir = getenv("KENNEL_LAYER_DIR");
        cfg->wlayer = KN_WLAYER_DISK;
        cfg->root_size = o->disk;
        if (kn_config_set_str(&cfg->wlayer_dir, dir && dir[0] ? dir : KN_LAYER_DIR_DEFAULT, err) <
            0)
            return -1;
    }
    for (int i = 0; i < o->n_env; i++)
        if (kn_config_setenv(cfg, o->env[i], err) < 0)
            return -1;
    for (int i = 0; i < o->n_binds; i++) {
        char spec[PATH_MAX * 2];
        snprintf(spec, sizeof spec, "%s", o->binds[i]);
        char *colon = strchr(spec, ':');
        if (!colon || colon == spec || !colon[1])
            return kn_error_set(err, EINVAL, "bind '%s' is not SRC:DST", o->binds[i]);
        *colon = '\0';
        if (kn_config_add_bind(cfg, spec, colon + 1, o->bind_rw[i], err) < 0)
            return -1;
    }
    char *argv[8] = {0};
    char script[PATH_MAX];
    if (s->image_cmd) {
        if (!cfg->argv)
            return kn_error_set(err, EINVAL, "image '%s' has no entrypoint or cmd: give -- CMD",
                                o->image);
    } else if (s->cmd) {
        if (kn_config_set_argv(cfg, s->cmd, err) < 0)
            return -1;
    } else {
        argv[0] = (char *)interpreter(s->lang);
        if (s->file) {
            const char *base = strrchr(s->file, '/');
            snprintf(script, sizeof script, "/tmp/%s", base ? base + 1 : s->file);
            argv[1] = script;
        } else if (strlen(s->code) > MAX_INLINE_CODE) {
            /* One argv string may hold at most 128 KiB (MAX_ARG_STRLEN). */
            static const char *const ext[] = {"python", "py", "javascript", "js", "bash", "sh"};
            const char *e = "txt";
            for (int i = 0; i < 6; i += 2)
                if (!strcmp(s->lang, ext[i]))
                    e = ext[i + 1];
            snprintf(s->spill, sizeof s->spill, "/tmp/kennel-%s.%s", s->label, e);
            argv[1] = s->spill;
        } else {
            argv[1] = !strcmp(s->lang, "javascript") ? "-e" : "-c";
            argv[2] = s->code;
        }
        if (kn_config_set_argv(cfg, argv, err) < 0)
            return -1;
    }
    return kn_config_validate(cfg, err);
}

static int
parse_xfer(const char *spec, char *a, char *b, size_t len, bool download)
{
    const char *colon = strchr(spec, ':');
    if (!colon) {
        if (!download)
            return -1;
        snprintf(a, len, "%s", spec);
        const char *base = strrchr(spec, '/');
        snprintf(b, len, "%s", base ? base + 1 : spec);
        return 0;
    }
    snprintf(a, len, "%.*s", (int)(colon - spec), spec);
    snprintf(b, len, "%s", colon + 1);
    return (a[0] && b[0]) ? 0 : -1;
}

static void
guest_path(const char *g, char *out, size_t len)
{
    if (g[0] == '/')
        snprintf(out, len, "%s", g);
    else
        snprintf(out, len, "/work/%s", g);
}

static int
start_job(job_t *j, const run_opts_t *o, bool pass_stdin, kn_error_t *err)
{
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    j->t0 = kn_now_us();
    if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
        kn_error_set(err, errno, "pipe");
        goto fail;
    }
    int in = -1;
    if (pass_stdin && !isatty(STDIN_FILENO))
        in = STDIN_FILENO;
    kn_stdio_t io = {in, po[1], pe[1]};
    if (kn_sandbox_spawn(&j->cfg, &io, &j->sb, err) < 0)
        goto fail;
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;
    j->s[0].fd = po[0];
    j->s[1].fd = pe[0];
    for (int i = 0; i < o->n_uploads; i++) {
        char local[PATH_MAX], guest[PATH_MAX], g[PATH_MAX];
        parse_xfer(o->uploads[i], local, g, sizeof local, false);
        guest_path(g, guest, sizeof guest);
        if (kn_sandbox_copy_in(j->sb, local, guest, err) < 0)
            return -1;
    }
    if (j->src->spill[0] &&
        kn_sandbox_write_in(j->sb, j->src->spill, j->src->code, strlen(j->src->code), err) < 0)
        return -1;
    if (j->src->file) {
        const char *base = strrchr(j->src->file, '/');
        char guest[PATH_MAX];
        snprintf(guest, sizeof guest, "/tmp/%s", base ? base + 1 : j->src->file);
        if (kn_sandbox_copy_in(j->sb, j->src->file, guest, err) < 0)
            return -1;
    }
    if (kn_sandbox_start(j->sb, err) < 0)
        return -1;
    j->deadline_us = kn_now_us() + j->cfg.timeout_ms * 1000ULL;
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        if (po[i] >= 0)
            close(po[i]);
        if (pe[i] >= 0)
            close(pe[i]);
    }
    return -1;
}

static void
emit(stream_t *s, const char *data, size_t n, const char *label, bool json)
{
    if (json) {
        if (s->len + n + 1 > s->size) {
            size_t ns = s->size ? s->size : 8192;
            while (ns < s->len + n + 1)
                ns *= 2;
            char *g = realloc(s->buf, ns);
            if (!g)
                return;
            s->buf = g;
            s->size = ns;
        }
        memcpy(s->buf + s->len, data, n);
        s->len += n;
        return;
    }
    if (!label) {
        if (kn_write_all(s->out, data, n) < 0 && errno == EPIPE)
            s->broken = true;
        return;
    }
    /* Several sources: whole lines, each with its source's label. */
    for (size_t i = 0; i < n; i++) {
        if (s->line_len < sizeof s->line)
            s->line[s->line_len++] = data[i];
        if (data[i] == '\n' || s->line_len == sizeof s->line) {
            if (dprintf(s->out, "[%s] %.*s", label, (int)s->line_len, s->line) < 0 &&
                errno == EPIPE)
                s->broken = true;
            s->line_len = 0;
        }
    }
}

static void
flush_line(stream_t *s, const char *label)
{
    if (label && s->line_len) {
        dprintf(s->out, "[%s] %.*s\n", label, (int)s->line_len, s->line);
        s->line_len = 0;
    }
}

/* Reads what a stream has; returns false at EOF. */
static void
pump(job_t *j, int k, const char *label, bool json)
{
    stream_t *s = &j->s[k];
    char buf[65536];
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        close(s->fd);
        s->fd = -1;
        flush_line(s, label);
        return;
    }
    size_t keep = (size_t)n;
    if (s->n + keep > s->cap) {
        keep = s->cap > s->n ? (size_t)(s->cap - s->n) : 0;
        if (!s->truncated) {
            s->truncated = true;
            if (keep)
                emit(s, buf, keep, label, json);
            s->n += keep;
            if (!json)
                dprintf(STDERR_FILENO, "[kennel: %s truncated at %llu bytes]\n",
                        k == 0 ? "stdout" : "stderr", (unsigned long long)s->cap);
        }
        return; /* past the cap: read and dropped, so the writer never blocks */
    }
    emit(s, buf, keep, label, json);
    s->n += keep;
    if (s->broken && !j->broken_pipe) {
        /* Nobody reads what the program prints: end it, as SIGPIPE would. */
        j->broken_pipe = true;
        kn_sandbox_kill(j->sb, NULL);
    }
}

static void
end_program(job_t *j, const run_opts_t *o)
{
    for (int i = 0; i < o->n_downloads; i++) {
        char g[PATH_MAX], local[PATH_MAX], guest[PATH_MAX];
        kn_error_t err = {0};
        parse_xfer(o->downloads[i], g, local, sizeof g, true);
        guest_path(g, guest, sizeof guest);
        if (kn_sandbox_copy_out(j->sb, guest, local, &err) < 0) {
            fprintf(stderr, "kennel: download: %s\n", err.msg);
            j->download_failed = true;
        }
    }
    kn_sandbox_finish(j->sb, &j->res);
    j->finished = true;
}

/* Kills every sandbox still running (kennel itself got a signal). */
static void
abort_all(job_t *jobs, int n)
{
    for (int i = 0; i < n; i++)
        if (jobs[i].sb && !jobs[i].program_done && !jobs[i].failed)
            kn_sandbox_kill(jobs[i].sb, NULL);
}

/* Returns the signal that interrupted the run, or 0. */
static int
drive(job_t *jobs, int n, const run_opts_t *o, int sigfd)
{
    const bool labels = n > 1 && !o->json;
    int got_signal = 0;
    for (;;) {
        struct pollfd pfd[MAX_SOURCES * (3 + MAX_NET_FDS) + 1];
        int map[MAX_SOURCES * (3 + MAX_NET_FDS) + 1][2];
        int np = 0;
        if (sigfd >= 0 && !got_signal) {
            pfd[np] = (struct pollfd){sigfd, POLLIN, 0};
            map[np][0] = -1;
            map[np++][1] = -1;
        }
        uint64_t now = kn_now_us(), next = UINT64_MAX;
        for (int i = 0; i < n; i++) {
            job_t *j = &jobs[i];
            if (j->failed)
                continue;
            for (int k = 0; k < 2; k++)
                if (j->s[k].fd >= 0) {
                    pfd[np] = (struct pollfd){j->s[k].fd, POLLIN, 0};
                    map[np][0] = i;
                    map[np++][1] = k;
                }
            kn_netns_t *net = !j->program_done ? kn_sandbox_net(j->sb) : NULL;
            if (net) {
                int k = kn_net_pollfds(net, pfd + np, MAX_NET_FDS);
                for (int q = 0; q < k; q++) {
                    map[np + q][0] = i;
                    map[np + q][1] = 3 + q;
                }
                np += k;
            }
            if (!j->program_done) {
                if (now >= j->deadline_us && !j->res.timed_out) {
                    kn_sandbox_mark_timed_out(j->sb);
                    kn_sandbox_kill(j->sb, NULL);
                }
                pfd[np] = (struct pollfd){kn_sandbox_syncfd(j->sb), POLLIN, 0};
                map[np][0] = i;
                map[np++][1] = 2;
                if (j->deadline_us > now && j->deadline_us < next)
                    next = j->deadline_us;
            }
        }
        bool waiting = false;
        for (int p = 0; p < np; p++)
            waiting |= map[p][0] >= 0 && map[p][1] <= 2;
        if (!waiting)
            return got_signal;
        int timeout = -1;
        if (next != UINT64_MAX)
            timeout = (int)((next - now) / 1000 + 1);
        int r = poll(pfd, (nfds_t)np, timeout);
        if (r < 0 && errno != EINTR)
            return got_signal;
        for (int p = 0; p < np && r > 0; p++) {
            if (!pfd[p].revents)
                continue;
            if (map[p][0] == -1) {
                struct signalfd_siginfo si;
                if (read(sigfd, &si, sizeof si) == sizeof si) {
                    got_signal = (int)si.ssi_signo;
                    abort_all(jobs, n);
                }
                continue;
            }
            job_t *j = &jobs[map[p][0]];
            const char *label = labels ? j->src->label : NULL;
            if (map[p][1] >= 3) {
                /* This job's network descriptors are contiguous: hand them over once. */
                int first = p;
                while (p + 1 < np && map[p + 1][0] == map[first][0] && map[p + 1][1] >= 3)
                    p++;
                if (!j->program_done)
                    kn_net_handle(kn_sandbox_net(j->sb), pfd + first, p - first + 1);
                continue;
            }
            if (map[p][1] < 2) {
                pump(j, map[p][1], label, o->json);
                continue;
            }
            bool done = false;
            kn_sandbox_collect(j->sb, &done);
            if (done) {
                j->program_done = true;
                end_program(j, o);
            }
        }
    }
}

static void
print_json_one(FILE *f, job_t *j, const run_opts_t *o)
{
    bool first = true;
    kn_result_t *r = &j->res;
    fputc('{', f);
    kn_json_key(f, "source", &first);
    kn_json_str(f, j->src->label, strlen(j->src->label));
    if (j->failed) {
        kn_json_key(f, "error", &first);
        kn_json_str(f, j->error, strlen(j->error));
        kn_json_key(f, "exit_code", &first);
        fprintf(f, "%d}", KN_EXIT_KENNEL);
        return;
    }
    for (int k = 0; k < 2; k++) {
        kn_json_key(f, k ? "stderr" : "stdout", &first);
        kn_json_str(f, j->s[k].buf ? j->s[k].buf : "", j->s[k].len);
    }
    kn_json_key(f, "exit_code", &first);
    fprintf(f, "%d", r->timed_out ? 124 : r->exit_code);
    kn_json_key(f, "signal", &first);
    if (r->term_signal)
        fprintf(f, "%d", r->term_signal);
    else
        fputs("null", f);
    kn_json_key(f, "timed_out", &first);
    fputs(r->timed_out ? "true" : "false", f);
    kn_json_key(f, "oom_killed", &first);
    fputs(r->oom_killed ? "true" : "false", f);
    kn_json_key(f, "stdout_truncated", &first);
    fputs(j->s[0].truncated ? "true" : "false", f);
    kn_json_key(f, "stderr_truncated", &first);
    fputs(j->s[1].truncated ? "true" : "false", f);
    kn_json_key(f, "timing", &first);
    uint64_t total = r->setup_us + r->execute_us;
    fprintf(f, "{\"setup_ms\":%.3f,\"execute_ms\":%.3f,\"teardown_ms\":%.3f,\"total_ms\":%.3f",
            r->setup_us / 1000.0, r->execute_us / 1000.0, r->teardown_us / 1000.0,
            (total + r->teardown_us) / 1000.0);
    const kn_phases_t *ph = kn_sandbox_phases(j->sb);
    fputs(",\"setup_phases_us\":{", f);
    for (int i = 0; i < ph->n; i++)
        fprintf(f, "%s\"%s\":%llu", i ? "," : "", ph->p[i].name, (unsigned long long)ph->p[i].us);
    fputs("}}", f);
    kn_json_key(f, "cpu", &first);
    fprintf(f, "{\"user_ms\":%.3f,\"sys_ms\":%.3f}", r->cpu_user_us / 1000.0,
            r->cpu_sys_us / 1000.0);
    kn_json_key(f, "peak_memory_bytes", &first);
    fprintf(f, "%llu", (unsigned long long)r->peak_memory);
    kn_json_key(f, "limits", &first);
    fprintf(f,
            "{\"memory_bytes\":%llu,\"pids\":%u,\"cpus\":%g,\"timeout_ms\":%llu,"
            "\"stdout_bytes\":%llu,\"stderr_bytes\":%llu}",
            (unsigned long long)j->cfg.memory, j->cfg.pids, j->cfg.cpus,
            (unsigned long long)j->cfg.timeout_ms, (unsigned long long)o->stdout_cap,
            (unsigned long long)o->stderr_cap);
    kn_json_key(f, "profile", &first);
    kn_json_str(f, j->cfg.profile, strlen(j->cfg.profile));
    kn_json_key(f, "warnings", &first);
    fputc('[', f);
    const kn_warnings_t *w = j->sb ? kn_sandbox_warnings(j->sb) : NULL;
    for (int i = 0; w && i < w->n; i++) {
        if (i)
            fputc(',', f);
        kn_json_str(f, w->msg[i], strlen(w->msg[i]));
    }
    fputc(']', f);
    kn_json_key(f, "unenforced", &first);
    fputc('[', f);
    bool any = false;
    const char *layers[] = {"cgroup", "landlock"};
    for (int i = 0; i < 2; i++)
        if (j->sb && kn_sandbox_unenforced(j->sb, layers[i])) {
            fprintf(f, "%s\"%s\"", any ? "," : "", layers[i]);
            any = true;
        }
    fputs("]}", f);
}

/* One option of kennel run (sources, --help and errors excepted) into o.
 * Returns 0, or the exit code for a bad value (the message is printed). */
static int
apply_option(run_opts_t *o, int c, const char *optarg)
{
    switch (c) {
    case 'l':
        if (!(o->lang = normalize_lang(optarg)))
            return fail("unknown language '%s' (python, javascript, bash)", optarg);
        break;
    case 't':
        if (parse_double(optarg, &o->timeout_s) < 0 || o->timeout_s <= 0 || o->timeout_s > 86400)
            return fail("invalid timeout '%s' (seconds, above 0, at most 86400)", optarg);
        o->have_timeout = true;
        break;
    case 'm': {
        char *end = NULL;
        errno = 0;
        unsigned long long mib = strtoull(optarg, &end, 10);
        if (optarg[0] != '-' && !errno && end != optarg && *end == '\0')
            o->memory = mib * 1024ULL * 1024ULL;
        else if (kn_parse_size(optarg, &o->memory) < 0)
            return fail("invalid memory limit '%s' (MiB, or 512m, 1g)", optarg);
        if (o->memory == 0)
            return fail("invalid memory limit '%s' (must be above 0)", optarg);
        o->have_memory = true;
        break;
    }
    case 257:
        if (parse_double(optarg, &o->cpus) < 0 || o->cpus <= 0 || o->cpus > 1024)
            return fail("invalid --cpus '%s' (a number above 0)", optarg);
        o->have_cpus = true;
        break;
    case 258: {
        char *end = NULL;
        errno = 0;
        o->pids = strtol(optarg, &end, 10);
        if (errno || end == optarg || *end || o->pids < 2 || o->pids > 4194304)
            return fail("invalid --pids '%s' (an integer, at least 2)", optarg);
        o->have_pids = true;
        break;
    }
    case 'e':
        if (!strchr(optarg, '=') || optarg[0] == '=')
            return fail("invalid -e '%s' (KEY=VALUE)", optarg);
        if (o->n_env >= KN_MAX_ENV - 8)
            return fail("too many -e");
        o->env[o->n_env++] = optarg;
        break;
    case 259:
    case 260: {
        char a[PATH_MAX], b[PATH_MAX];
        if (parse_xfer(optarg, a, b, sizeof a, c == 260) < 0)
            return fail(c == 259 ? "invalid --upload '%s' (LOCAL:GUEST)"
                                 : "invalid --download '%s' (GUEST[:LOCAL])",
                        optarg);
        if (c == 259 && access(a, R_OK) < 0)
            return fail("--upload: cannot read '%s'", a);
        if ((c == 259 ? o->n_uploads : o->n_downloads) >= MAX_XFER)
            return fail("too many transfers");
        if (c == 259)
            o->uploads[o->n_uploads++] = optarg;
        else
            o->downloads[o->n_downloads++] = optarg;
        break;
    }
    case 261:
        o->profile = optarg;
        break;
    case 262:
        o->image = optarg;
        break;
    case 263:
    case 264:
        if (o->n_binds >= KN_MAX_BINDS)
            return fail("too many binds");
        o->bind_rw[o->n_binds] = c == 264;
        o->binds[o->n_binds++] = optarg;
        break;
    case 265:
        o->json = true;
        break;
    case 'q':
        o->quiet = true;
        break;
    case 266:
    case 267:
        if (kn_parse_size(optarg, c == 266 ? &o->stdout_cap : &o->stderr_cap) < 0)
            return fail("invalid output limit '%s'", optarg);
        break;
    case 268:
        o->net.enabled = true;
        break;
    case 269:
    case 270:
    case 271:
    case 272: {
        if (o->net.n_rules >= KN_MAX_NET_RULES)
            return fail("too many network rules");
        kn_net_rule_t *r = &o->net.rules[o->net.n_rules++];
        r->allow = c == 269 || c == 270;
        if (snprintf(r->target, sizeof r->target, "%s", optarg) >= (int)sizeof r->target)
            return fail("network rule '%s' is too long", optarg);
        o->net.enabled = true;
        break;
    }
    case 273: {
        unsigned in = 0, out = 0;
        char extra;
        int k = sscanf(optarg, "%u:%u%c", &in, &out, &extra);
        if (k < 1 || k > 2 || in == 0 || in > 65535 || out > 65535 ||
            (k == 1 && strchr(optarg, ':')))
            return fail("invalid --expose '%s' (INTERNAL[:EXTERNAL])", optarg);
        if (o->net.n_expose >= KN_MAX_EXPOSE)
            return fail("too many --expose");
        o->net.expose[o->net.n_expose].inside = (uint16_t)in;
        o->net.expose[o->net.n_expose++].outside = (uint16_t)out;
        break;
    }
    case 275:
        if (kn_parse_size(optarg, &o->disk) < 0 || o->disk == 0)
            return fail("invalid --disk '%s' (a size: 256m, 2g)", optarg);
        break;
    case 274:
        if (snprintf(o->net.dns_upstream, sizeof o->net.dns_upstream, "%s", optarg) >=
            (int)sizeof o->net.dns_upstream)
            return fail("--dns-upstream '%s' is too long", optarg);
        break;
    default:
        break;
    }
    return 0;
}

static int
parse_args(int argc, char **argv, run_opts_t *o, source_t *src, int *nsrc)
{
    static const struct option longopts[] = {
        {"lang", required_argument, 0, 'l'},
        {"code", required_argument, 0, 'c'},
        {"timeout", required_argument, 0, 't'},
        {"memory", required_argument, 0, 'm'},
        {"cpus", required_argument, 0, 257},
        {"pids", required_argument, 0, 258},
        {"env", required_argument, 0, 'e'},
        {"upload", required_argument, 0, 259},
        {"download", required_argument, 0, 260},
        {"profile", required_argument, 0, 261},
        {"image", required_argument, 0, 262},
        {"ro-bind", required_argument, 0, 263},
        {"bind", required_argument, 0, 264},
        {"json", no_argument, 0, 265},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {"stdout-limit", required_argument, 0, 266},
        {"stderr-limit", required_argument, 0, 267},
        {"network", no_argument, 0, 268},
        {"allow-domain", required_argument, 0, 269},
        {"allow-cidr", required_argument, 0, 270},
        {"deny-domain", required_argument, 0, 271},
        {"deny-cidr", required_argument, 0, 272},
        {"expose", required_argument, 0, 273},
        {"dns-upstream", required_argument, 0, 274},
        {"disk", required_argument, 0, 275},
        {0, 0, 0, 0},
    };
    int dd = argc; /* index of "--" */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--")) {
            dd = i;
            break;
        }
    /* Sources in command-line order: 'c' for -c CODE, 'p' for a positional. */
    const char *items[MAX_SOURCES];
    char kinds[MAX_SOURCES];
    int nitems = 0;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(dd, argv, "-:l:c:t:m:e:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
        case 1:
            if (nitems >= MAX_SOURCES)
                return fail("too many sources");
            kinds[nitems] = (char)c;
            items[nitems++] = optarg;
            break;
        case 'h':
            usage(stdout);
            return -1;
        case ':':
            return fail("option '%s' needs a value", argv[optind - 1]);
        case '?':
            return fail("unknown option '%s' (see kennel run --help)", argv[optind - 1]);
        default: {
            int rc = apply_option(o, c, optarg);
            if (rc)
                return rc;
        }
        }
    }
    if (o->net.enabled) {
        /* --network alone opens egress (private ranges stay closed); any
         * --allow-* turns it into an allowlist. */
        bool any_allow = false;
        for (size_t i = 0; i < o->net.n_rules; i++)
            any_allow |= o->net.rules[i].allow;
        /* The first matching rule decides: deny flags go first, so that
         * deny beats allow whatever the order on the command line. */
        kn_net_rule_t sorted[KN_MAX_NET_RULES] = {0};
        size_t k = 0;
        for (int pass = 0; pass < 2; pass++)
            for (size_t i = 0; i < o->net.n_rules; i++)
                if (o->net.rules[i].allow == (pass == 1))
                    sorted[k++] = o->net.rules[i];
        memcpy(o->net.rules, sorted, k * sizeof sorted[0]);
        o->net.default_allow = !any_allow;
        const char *up = getenv("KENNEL_DNS_UPSTREAM");
        if (!o->net.dns_upstream[0] && up)
            snprintf(o->net.dns_upstream, sizeof o->net.dns_upstream, "%s", up);
    }
    int n = 0;
    bool stdin_used = false;
    int ncode = 0;
    for (int i = 0; i < nitems; i++, n++) {
        const char *arg = items[i];
        if (kinds[i] == 'c') {
            src[n].code = strdup(arg);
            src[n].lang = o->lang ? o->lang : "python";
            snprintf(src[n].label, sizeof src[n].label, "code%d", ++ncode);
        } else if (!strcmp(arg, "-")) {
            if (stdin_used)
                return fail("standard input given twice");
            stdin_used = true;
            src[n].code = read_all_stdin();
            src[n].lang = o->lang ? o->lang : "python";
            snprintf(src[n].label, sizeof src[n].label, "stdin");
        } else {
            struct stat st;
            if (stat(arg, &st) < 0)
                return fail("no such file: '%s'", arg);
            if (!S_ISREG(st.st_mode) || access(arg, R_OK) < 0)
                return fail("not a readable file: '%s'", arg);
            const char *l = o->lang ? o->lang : lang_of_file(arg);
            if (!l)
                return fail("cannot tell the language of '%s': use -l", arg);
            src[n].file = arg;
            src[n].lang = l;
            snprintf(src[n].label, sizeof src[n].label, "%s", arg);
        }
    }
    if (dd < argc) {
        if (dd + 1 >= argc)
            return fail("nothing after '--'");
        if (n >= MAX_SOURCES)
            return fail("too many sources");
        src[n].cmd = argv + dd + 1;
        snprintf(src[n].label, sizeof src[n].label, "%s", argv[dd + 1]);
        n++;
    }
    if (n == 0 && o->image && kn_image_is_ref(o->image)) {
        src[0].image_cmd = true;
        snprintf(src[0].label, sizeof src[0].label, "%s", o->image);
        n = 1;
    }
    if (n == 0)
        return fail("nothing to run: give -c CODE, a FILE, '-' or -- CMD");
    if (n > 1 && o->n_downloads)
        return fail("--download needs exactly one source");
    *nsrc = n;
    return 0;
}

int
kn_cmd_run(int argc, char **argv)
{
    run_opts_t o = {.profile = "default", .stdout_cap = 1024 * 1024, .stderr_cap = 100 * 1024};
    source_t src[MAX_SOURCES];
    job_t *jobs = NULL; /* n of them, once the sources are known */
    memset(src, 0, sizeof src);
    int n = 0, rc = 0, sigfd = -1;
    signal(SIGPIPE, SIG_IGN);
    /* A signal to kennel ends its sandboxes and cleans up before kennel
     * exits with 128+N, like the program would have. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    sigaddset(&stop, SIGQUIT);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    sigfd = signalfd(-1, &stop, SFD_CLOEXEC | SFD_NONBLOCK);

    int pr = parse_args(argc, argv, &o, src, &n);
    if (pr != 0) {
        rc = pr < 0 ? 0 : pr;
        goto out;
    }
    if (!(jobs = calloc((size_t)n, sizeof *jobs))) {
        fprintf(stderr, "kennel: out of memory\n");
        rc = KN_EXIT_KENNEL;
        goto out;
    }
    for (int i = 0; i < n; i++)
        jobs[i].s[0].fd = jobs[i].s[1].fd = -1;
    if (o.image && kn_image_is_ref(o.image)) {
        kn_error_t err = {0};
        if (kn_image_open(NULL, o.image, &o.img, &err) < 0) {
            fprintf(stderr, "kennel: %s\n", err.msg);
            rc = KN_EXIT_KENNEL;
            goto out;
        }
    }
    for (int i = 0; i < n; i++) {
        job_t *j = &jobs[i];
        kn_error_t err = {0};
        j->src = &src[i];
        j->s[0] = (stream_t){.fd = -1, .out = STDOUT_FILENO, .cap = o.stdout_cap};
        j->s[1] = (stream_t){.fd = -1, .out = STDERR_FILENO, .cap = o.stderr_cap};
        if (build_config(j, &o, &err) < 0) {
            fprintf(stderr, "kennel: %s\n", err.msg);
            rc = KN_EXIT_KENNEL;
            goto out;
        }
    }
    for (int i = 0; i < n; i++) {
        job_t *j = &jobs[i];
        kn_error_t err = {0};
        bool pass_stdin = n == 1 && !src[i].code;
        if (start_job(j, &o, pass_stdin, &err) < 0) {
            j->failed = true;
            snprintf(j->error, sizeof j->error, "%s", err.msg);
            if (!o.json)
                fprintf(stderr, "kennel: %s\n", err.msg);
            continue;
        }
        const kn_warnings_t *w = kn_sandbox_warnings(j->sb);
        for (int k = 0; !o.quiet && !o.json && k < w->n; k++)
            fprintf(stderr, "kennel: warning: %s\n", w->msg[k]);
        /* --expose I without a host port: the one picked is the caller's only way in. */
        for (size_t k = 0; kn_sandbox_net(j->sb) && k < o.net.n_expose; k++)
            if (!o.net.expose[k].outside)
                fprintf(stderr, "kennel: exposed port %u on 127.0.0.1:%u\n", o.net.expose[k].inside,
                        kn_net_exposed_port(kn_sandbox_net(j->sb), k));
    }
    int sig = drive(jobs, n, &o, sigfd);

    if (o.json) {
        if (n > 1)
            putchar('[');
        for (int i = 0; i < n; i++) {
            if (i)
                putchar(',');
            print_json_one(stdout, &jobs[i], &o);
        }
        puts(n > 1 ? "]" : "");
    }
    if (sig) {
        fprintf(stderr, "kennel: interrupted by signal %d; the sandboxes were killed\n", sig);
        rc = 128 + sig;
    }
    for (int i = 0; i < n && rc == 0; i++) {
        job_t *j = &jobs[i];
        if (j->failed)
            rc = KN_EXIT_KENNEL;
        else if (j->res.error[0]) {
            fprintf(stderr, "kennel: %s\n", j->res.error);
            rc = KN_EXIT_KENNEL;
        } else if (j->broken_pipe)
            rc = 128 + SIGPIPE;
        else if (j->res.timed_out) {
            if (!o.json)
                fprintf(stderr, "kennel: %s: timed out after %gs; the sandbox was killed\n",
                        j->src->label, j->cfg.timeout_ms / 1000.0);
            rc = 124;
        } else if (j->res.exit_code)
            rc = j->res.exit_code;
        else if (j->download_failed)
            rc = KN_EXIT_KENNEL;
    }
out:
    fflush(stdout);
    if (sigfd >= 0)
        close(sigfd);
    for (int i = 0; jobs && i < n; i++) {
        for (int k = 0; k < 2; k++) {
            if (jobs[i].s[k].fd >= 0)
                close(jobs[i].s[k].fd);
            free(jobs[i].s[k].buf);
        }
        kn_sandbox_destroy(jobs[i].sb);
        kn_config_free(&jobs[i].cfg);
    }
    free(jobs);
    for (int i = 0; i < MAX_SOURCES; i++)
        free(src[i].code);
    kn_image_close(o.img);
    return rc;
}
