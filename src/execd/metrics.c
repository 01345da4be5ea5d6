/* metrics.c - GET /metrics and /metrics/watch: CPU and memory of the sandbox.
 *
 * Inside a sandbox /sys/fs/cgroup is the sandbox's own cgroup (cgroup
 * namespace), so its cpu.max, cpu.stat, memory.max and memory.current are the
 * sandbox's limits and usage. When that directory is the root cgroup (no
 * memory.current, e.g. execd run directly on a host) the figures come from
 * /proc/stat and /proc/meminfo instead. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "handlers.h"
#include "stream.h"
#include "util.h"

#define KN_CGROUP "/sys/fs/cgroup"
#define KN_METRICS_SAMPLE_MS 100
#define KN_METRICS_WATCH_MS 1000

/* Where this process's cgroup files are: a v2 directory, or v1 memory and
 * cpuacct directories. Empty strings when not available. */
typedef struct cgdirs {
    char v2[512];
    char mem[512];
    char cpu[512];
} cgdirs_t;

typedef struct cpu_sample {
    uint64_t busy_us; /* CPU time used */
    uint64_t wall_us; /* CPU time available (all CPUs), /proc only */
    int64_t mono_ms;
    bool cgroup;
} cpu_sample_t;

static int
read_small(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t got = read(fd, buf, n - 1);
    close(fd);
    if (got < 0)
        return -1;
    buf[got] = '\0';
    return 0;
}

static int
read_file_in(const char *dir, const char *name, char *buf, size_t n)
{
    char path[640];
    if (!*dir)
        return -1;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return read_small(path, buf, n);
}

static bool
has_file(const char *dir, const char *name)
{
    char path[640];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return *dir && access(path, R_OK) == 0;
}

/* Reads /proc/self/cgroup: "0::/path" for v2, "N:memory:/path" and
 * "N:cpu,cpuacct:/path" for v1. In a sandbox (cgroup namespace) the paths are
 * "/" and the directories are the sandbox's own. */
static void
find_cgroups(cgdirs_t *cg)
{
    char buf[4096];
    memset(cg, 0, sizeof *cg);
    if (read_small("/proc/self/cgroup", buf, sizeof buf) < 0)
        return;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        const char *ctrls = c1 + 1, *path = c2 + 1;
        if (strcmp(path, "/") == 0)
            path = "";
        if (!*ctrls) {
            char d[512];
            snprintf(d, sizeof d, KN_CGROUP "%s", path);
            if (has_file(d, "memory.current") && has_file(d, "cpu.stat"))
                snprintf(cg->v2, sizeof cg->v2, "%s", d);
            else if (has_file(KN_CGROUP, "memory.current") && has_file(KN_CGROUP, "cpu.stat"))
                snprintf(cg->v2, sizeof cg->v2, "%s", KN_CGROUP);
            continue;
        }
        char list[128];
        snprintf(list, sizeof list, ",%s,", ctrls);
        if (strstr(list, ",memory,"))
            snprintf(cg->mem, sizeof cg->mem, KN_CGROUP "/memory%s", path);
        if (strstr(list, ",cpuacct,")) {
            snprintf(cg->cpu, sizeof cg->cpu, KN_CGROUP "/%s%s", ctrls, path);
            if (!has_file(cg->cpu, "cpuacct.usage"))
                snprintf(cg->cpu, sizeof cg->cpu, KN_CGROUP "/cpuacct%s", path);
        }
    }
    if (!has_file(cg->mem, "memory.usage_in_bytes"))
        cg->mem[0] = '\0';
    if (!has_file(cg->cpu, "cpuacct.usage"))
        cg->cpu[0] = '\0';
}

static double
cpu_count(const cgdirs_t *cg)
{
    char buf[128];
    if (read_file_in(cg->v2, "cpu.max", buf, sizeof buf) == 0 && strncmp(buf, "max", 3) != 0) {
        double quota = 0, period = 0;
        if (sscanf(buf, "%lf %lf", &quota, &period) == 2 && quota > 0 && period > 0)
            return quota / period;
    }
    char q[64], p[64];
    if (!*cg->v2 && read_file_in(cg->cpu, "cpu.cfs_quota_us", q, sizeof q) == 0 &&
        read_file_in(cg->cpu, "cpu.cfs_period_us", p, sizeof p) == 0) {
        double quota = strtod(q, NULL), period = strtod(p, NULL);
        if (quota > 0 && period > 0)
            return quota / period;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (double)n : 1.0;
}

static void
cpu_sample(const cgdirs_t *cg, cpu_sample_t *s)
{
    char buf[4096];
    memset(s, 0, sizeof *s);
    s->mono_ms = kn_util_mono_ms();
    if (read_file_in(cg->v2, "cpu.stat", buf, sizeof buf) == 0) {
        char *p = strstr(buf, "usage_usec ");
        if (p) {
            s->busy_us = strtoull(p + 11, NULL, 10);
            s->cgroup = true;
            return;
        }
    }
    if (!*cg->v2 && read_file_in(cg->cpu, "cpuacct.usage", buf, sizeof buf) == 0) {
        s->busy_us = strtoull(buf, NULL, 10) / 1000;
        s->cgroup = true;
        return;
    }
    if (read_small("/proc/stat", buf, sizeof buf) == 0 && strncmp(buf, "cpu ", 4) == 0) {
        unsigned long long v[10] = {0};
        sscanf(buf + 4, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
               &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
        uint64_t total = 0;
        for (int i = 0; i < 8; i++)
            total += v[i];
        uint64_t idle = v[3] + v[4];
        long hz = sysconf(_SC_CLK_TCK);
        if (hz <= 0)
            hz = 100;
        s->busy_us = (total - idle) * 1000000ULL / (uint64_t)hz;
        s->wall_us = total * 1000000ULL / (uint64_t)hz;
    }
}

static double
cpu_pct(const cpu_sample_t *a, const cpu_sample_t *b, double cpus)
{
    double pct = 0;
    if (a->cgroup && b->cgroup) {
        double wall = (double)(b->mono_ms - a->mono_ms) * 1000.0 * cpus;
        if (wall > 0)
            pct = (double)(b->busy_us - a->busy_us) * 100.0 / wall;
    } else if (b->wall_us > a->wall_us) {
        pct = (double)(b->busy_us - a->busy_us) * 100.0 / (double)(b->wall_us - a->wall_us);
    }
    if (pct < 0)
        pct = 0;
    if (pct > 100)
        pct = 100;
    return pct;
}

static void
memory(const cgdirs_t *cg, double *total_mib, double *used_mib)
{
    char buf[4096];
    uint64_t mem_total = 0, mem_avail = 0;
    if (read_small("/proc/meminfo", buf, sizeof buf) == 0) {
        char *p = strstr(buf, "MemTotal:");
        if (p)
            mem_total = strtoull(p + 9, NULL, 10) * 1024;
        p = strstr(buf, "MemAvailable:");
        if (p)
            mem_avail = strtoull(p + 13, NULL, 10) * 1024;
    }
    uint64_t total = mem_total, used = mem_total - (mem_avail < mem_total ? mem_avail : 0);
    const char *dir = *cg->v2 ? cg->v2 : cg->mem;
    const char *limf = *cg->v2 ? "memory.max" : "memory.limit_in_bytes";
    const char *usef = *cg->v2 ? "memory.current" : "memory.usage_in_bytes";
    if (*dir) {
        if (read_file_in(dir, limf, buf, sizeof buf) == 0 && strncmp(buf, "max", 3) != 0) {
            uint64_t lim = strtoull(buf, NULL, 10);
            if (lim > 0 && (total == 0 || lim < total))
                total = lim;
        }
        if (read_file_in(dir, usef, buf, sizeof buf) == 0)
            used = strtoull(buf, NULL, 10);
    }
    if (used > total)
        used = total;
    *total_mib = (double)total / (1024.0 * 1024.0);
    *used_mib = (double)used / (1024.0 * 1024.0);
}

static json_t *
metrics_json(const cgdirs_t *cg, const cpu_sample_t *a, const cpu_sample_t *b)
{
    double cpus = cpu_count(cg), total, used;
    memory(cg, &total, &used);
    return json_pack("{s:f,s:f,s:f,s:f,s:I}", "cpu_count", cpus, "cpu_used_pct",
                     cpu_pct(a, b, cpus), "mem_total_mib", total, "mem_used_mib", used, "timestamp",
                     (json_int_t)kn_util_now_ms());
}

enum MHD_Result
kn_metrics_get(kn_req_t *req)
{
    cpu_sample_t a, b;
    cgdirs_t cg;
    find_cgroups(&cg);
    cpu_sample(&cg, &a);
    struct timespec ts = {0, KN_METRICS_SAMPLE_MS * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    cpu_sample(&cg, &b);
    return kn_http_reply_json(req, 200, metrics_json(&cg, &a, &b));
}

typedef struct watch {
    int conn_fd;
    cgdirs_t cg;
    cpu_sample_t last;
    bool started;
} watch_t;

static int
watch_more(void *self, kn_buf_t *out)
{
    watch_t *w = self;
    if (w->started) {
        struct pollfd p = {.fd = w->conn_fd, .events = POLLRDHUP};
        if (poll(&p, 1, KN_METRICS_WATCH_MS) > 0)
            return -1; /* the client left */
    } else {
        w->started = true;
        find_cgroups(&w->cg);
        cpu_sample(&w->cg, &w->last);
        struct timespec ts = {0, KN_METRICS_SAMPLE_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    cpu_sample_t now;
    cpu_sample(&w->cg, &now);
    json_t *m = metrics_json(&w->cg, &w->last, &now);
    w->last = now;
    char *s = json_dumps(m, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(m);
    if (!s)
        return -1;
    kn_buf_append(out, s, strlen(s));
    kn_buf_append(out, "\n\n", 2);
    free(s);
    return 0;
}

static void
watch_destroy(void *self)
{
    free(self);
}

enum MHD_Result
kn_metrics_watch(kn_req_t *req)
{
    watch_t *w = calloc(1, sizeof *w);
    if (!w)
        return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "out of memory");
    w->conn_fd = kn_http_conn_fd(req);
    kn_producer_t p = {watch_more, watch_destroy, w};
    /* The stream owns w from here: watch_destroy frees it. */
    // cppcheck-suppress memleak
    return kn_http_reply_stream(req, "text/event-stream", p);
}
