/* cgroup.c - v1 and v2 cgroup managers behind one ops table (crun's idea).
 *
 * v2 is used when a cgroup2 hierarchy has the memory, pids and cpu controllers
 * enabled for our cgroup; otherwise each v1 controller hierarchy gets its own
 * directory. This machine family mounts v1 controllers beside an almost empty
 * v2 hierarchy, so both paths are exercised by the tests that run here. */
#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

enum { V1_MEMORY, V1_PIDS, V1_CPU, V1_CPUACCT, V1_FREEZER, V1_N };
static const char *const v1_names[V1_N] = {"memory", "pids", "cpu", "cpuacct", "freezer"};

typedef struct kn_cgroup_ops kn_cgroup_ops_t;

struct kn_cgroup {
    const kn_cgroup_ops_t *ops;
    char v2[PATH_MAX];       /* v2: the directory */
    char v1[V1_N][PATH_MAX]; /* v1: one directory per controller ("" if absent) */
};

struct kn_cgroup_ops {
    const char *version;
    int (*limit)(kn_cgroup_t *cg, const kn_cgroup_limits_t *lim, kn_error_t *err);
    int (*add_pid)(kn_cgroup_t *cg, const char *pid, kn_error_t *err);
    int (*stats)(kn_cgroup_t *cg, kn_cgroup_stats_t *st);
    int (*freeze)(kn_cgroup_t *cg, bool frozen, kn_error_t *err);
    void (*kill_all)(kn_cgroup_t *cg);
    void (*remove)(kn_cgroup_t *cg);
};

/* Finds our own path in the hierarchy whose /proc/self/cgroup controller list
 * contains `want` ("" selects the v2 line "0::/path"). Writes the full mount
 * directory of that hierarchy plus the path into out. */
static int
own_cgroup_dir(const char *want, char *out, size_t outlen)
{
    char buf[4096];
    if (kn_read_file("/proc/self/cgroup", buf, sizeof buf, NULL) < 0)
        return -1;
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        const char *ctrls = c1 + 1, *path = c2 + 1;
        if (!strcmp(path, "/"))
            path = "";
        if (!*want) {
            if (*ctrls)
                continue;
            const char *bases[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
            for (size_t i = 0; i < 2; i++) {
                struct statfs sf;
                if (statfs(bases[i], &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC) {
                    snprintf(out, outlen, "%s%s", bases[i], path);
                    return 0;
                }
            }
            return -1;
        }
        char list[256];
        snprintf(list, sizeof list, ",%s,", ctrls);
        char key[64];
        snprintf(key, sizeof key, ",%s,", want);
        if (!strstr(list, key))
            continue;
        char mnt[PATH_MAX];
        snprintf(mnt, sizeof mnt, "/sys/fs/cgroup/%s", ctrls);
        struct stat st;
        if (stat(mnt, &st) < 0)
            snprintf(mnt, sizeof mnt, "/sys/fs/cgroup/%s", want);
        if (stat(mnt, &st) < 0)
            return -1;
        snprintf(out, outlen, "%s%s", mnt, path);
        return 0;
    }
    return -1;
}

static int
write_at(const char *dir, const char *file, const char *val, kn_error_t *err)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    return kn_write_file(p, val, err);
}

static uint64_t
read_u64_at(const char *dir, const char *file, bool *ok)
{
    char p[PATH_MAX], buf[64];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    if (kn_read_file(p, buf, sizeof buf, NULL) < 0) {
        if (ok)
            *ok = false;
        return 0;
    }
    if (ok)
        *ok = true;
    return strtoull(buf, NULL, 10);
}

/* Reads "key value" lines of a flat-keyed file such as memory.events. */
static uint64_t
read_key_at(const char *dir, const char *file, const char *key, bool *ok)
{
    char p[PATH_MAX], buf[4096];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    *ok = false;
    if (kn_read_file(p, buf, sizeof buf, NULL) < 0)
        return 0;
    size_t kl = strlen(key);
    for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (!strncmp(l, key, kl) && l[kl] == ' ') {
            *ok = true;
            return strtoull(l + kl + 1, NULL, 10);
        }
    }
    return 0;
}

static void
kill_procs_in(const char *dir)
{
    char p[PATH_MAX], buf[8192];
    snprintf(p, sizeof p, "%s/cgroup.procs", dir);
    if (kn_read_file(p, buf, sizeof buf, NULL) <= 0)
        return;
    for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        pid_t pid = (pid_t)strtol(l, NULL, 10);
        if (pid > 1)
            kill(pid, SIGKILL);
    }
}

/* rmdir, retrying while the last tasks finish exiting. */
static void
remove_dir(const char *dir)
{
    if (!dir[0])
        return;
    for (int i = 0; i < 200; i++) {
        if (rmdir(dir) == 0 || errno == ENOENT)
            return;
        if (errno != EBUSY)
            return;
        kill_procs_in(dir);
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ---- v2 ---- */

static int
v2_limit(kn_cgroup_t *cg, const kn_cgroup_limits_t *lim, kn_error_t *err)
{
    char v[64];
    if (lim->memory) {
        snprintf(v, sizeof v, "%llu", (unsigned long long)lim->memory);
        if (write_at(cg->v2, "memory.max", v, err) < 0)
            return -1;
        if (write_at(cg->v2, "memory.swap.max", "0", err) < 0 && errno != ENOENT)
            return -1;
    }
    if (lim->pids) {
        snprintf(v, sizeof v, "%u", lim->pids);
        if (write_at(cg->v2, "pids.max", v, err) < 0)
            return -1;
    }
    if (lim->cpus > 0) {
        snprintf(v, sizeof v, "%llu 100000", (unsigned long long)(lim->cpus * 100000.0));
        if (write_at(cg->v2, "cpu.max", v, err) < 0)
            return -1;
    }
    return 0;
}

static int
v2_add_pid(kn_cgroup_t *cg, const char *pid, kn_error_t *err)
{
    return write_at(cg->v2, "cgroup.procs", pid, err);
}

static int
v2_stats(kn_cgroup_t *cg, kn_cgroup_stats_t *st)
{
    bool ok;
    st->peak_memory = read_u64_at(cg->v2, "memory.peak", &ok);
    st->have_memory = ok;
    st->oom_kills = read_key_at(cg->v2, "memory.events", "oom_kill", &ok);
    st->cpu_user_us = read_key_at(cg->v2, "cpu.stat", "user_usec", &ok);
    st->have_cpu = ok;
    st->cpu_sys_us = read_key_at(cg->v2, "cpu.stat", "system_usec", &ok);
    return 0;
}

static int
v2_freeze(kn_cgroup_t *cg, bool frozen, kn_error_t *err)
{
    return write_at(cg->v2, "cgroup.freeze", frozen ? "1" : "0", err);
}

static void
v2_kill_all(kn_cgroup_t *cg)
{
    if (write_at(cg->v2, "cgroup.kill", "1", NULL) < 0)
        kill_procs_in(cg->v2);
}

static void
v2_remove(kn_cgroup_t *cg)
{
    remove_dir(cg->v2);
}

static const kn_cgroup_ops_t v2_ops = {"v2",      v2_limit,    v2_add_pid, v2_stats,
                                       v2_freeze, v2_kill_all, v2_remove};

/* ---- v1 ---- */

static int
v1_limit(kn_cgroup_t *cg, const kn_cgroup_limits_t *lim, kn_error_t *err)
{
    char v[64];
    const char *mem = cg->v1[V1_MEMORY];
    if (lim->memory) {
        if (!mem[0])
            return kn_error_set(err, ENOENT, "no memory cgroup controller");
        snprintf(v, sizeof v, "%llu", (unsigned long long)lim->memory);
        if (write_at(mem, "memory.limit_in_bytes", v, err) < 0)
            return -1;
        /* memsw = memory + swap; equal to the limit means no swap. */
        if (write_at(mem, "memory.memsw.limit_in_bytes", v, NULL) < 0)
            write_at(mem, "memory.swappiness", "0", NULL);
    }
    if (lim->pids) {
        if (!cg->v1[V1_PIDS][0])
            return kn_error_set(err, ENOENT, "no pids cgroup controller");
        snprintf(v, sizeof v, "%u", lim->pids);
        if (write_at(cg->v1[V1_PIDS], "pids.max", v, err) < 0)
            return -1;
    }
    if (lim->cpus > 0) {
        if (!cg->v1[V1_CPU][0])
            return kn_error_set(err, ENOENT, "no cpu cgroup controller");
        if (write_at(cg->v1[V1_CPU], "cpu.cfs_period_us", "100000", err) < 0)
            return -1;
        snprintf(v, sizeof v, "%llu", (unsigned long long)(lim->cpus * 100000.0));
        if (write_at(cg->v1[V1_CPU], "cpu.cfs_quota_us", v, err) < 0)
            return -1;
    }
    return 0;
}

static int
v1_add_pid(kn_cgroup_t *cg, const char *pid, kn_error_t *err)
{
    for (int i = 0; i < V1_N; i++)
        if (cg->v1[i][0] && write_at(cg->v1[i], "cgroup.procs", pid, err) < 0)
            return kn_error_prefix(err, "join %s cgroup", v1_names[i]);
    return 0;
}

static int
v1_stats(kn_cgroup_t *cg, kn_cgroup_stats_t *st)
{
    bool ok = false;
    if (cg->v1[V1_MEMORY][0]) {
        st->peak_memory = read_u64_at(cg->v1[V1_MEMORY], "memory.max_usage_in_bytes", &ok);
        st->have_memory = ok;
        st->oom_kills = read_key_at(cg->v1[V1_MEMORY], "memory.oom_control", "oom_kill", &ok);
    }
    if (cg->v1[V1_CPUACCT][0]) {
        uint64_t u = read_u64_at(cg->v1[V1_CPUACCT], "cpuacct.usage_user", &ok);
        if (ok) {
            st->cpu_user_us = u / 1000;
            st->cpu_sys_us = read_u64_at(cg->v1[V1_CPUACCT], "cpuacct.usage_sys", NULL) / 1000;
            st->have_cpu = true;
        }
    }
    return 0;
}

static int
v1_freeze(kn_cgroup_t *cg, bool frozen, kn_error_t *err)
{
    if (!cg->v1[V1_FREEZER][0])
        return kn_error_set(err, ENOENT, "no freezer cgroup controller");
    return write_at(cg->v1[V1_FREEZER], "freezer.state", frozen ? "FROZEN" : "THAWED", err);
}

static void
v1_kill_all(kn_cgroup_t *cg)
{
    /* Frozen tasks cannot die; thaw first. */
    if (cg->v1[V1_FREEZER][0])
        write_at(cg->v1[V1_FREEZER], "freezer.state", "THAWED", NULL);
    for (int i = 0; i < V1_N; i++)
        if (cg->v1[i][0]) {
            kill_procs_in(cg->v1[i]);
            break;
        }
}

static void
v1_remove(kn_cgroup_t *cg)
{
    for (int i = 0; i < V1_N; i++)
        remove_dir(cg->v1[i]);
}

static const kn_cgroup_ops_t v1_ops = {"v1",      v1_limit,    v1_add_pid, v1_stats,
                                       v1_freeze, v1_kill_all, v1_remove};

/* ---- common ---- */

/* Launchers found alive or gone during one create: the same kennel-PID-*
 * names appear in every v1 hierarchy, so each is checked once. */
#define SEEN_CAP 4096
typedef struct seen {
    long pid[SEEN_CAP];
    signed char gone[SEEN_CAP]; /* 0 empty, 1 alive, 2 gone */
} seen_t;

static bool
launcher_gone(seen_t *s, long pid)
{
    if (!s)
        return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
    size_t h = (size_t)pid % SEEN_CAP;
    for (size_t i = 0; i < SEEN_CAP; i++, h = (h + 1) % SEEN_CAP) {
        if (s->gone[h] == 0) {
            bool gone = kill((pid_t)pid, 0) < 0 && errno == ESRCH;
            s->pid[h] = pid;
            s->gone[h] = gone ? 2 : 1;
            return gone;
        }
        if (s->pid[h] == pid)
            return s->gone[h] == 2;
    }
    return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

/* A sweep reads a directory with an entry per live sandbox and checks each
 * one's launcher: with a thousand sandboxes that is most of a create. It runs
 * every time while the directory is small (st_nlink counts a cgroup's
 * children), and otherwise at most once a second among all launchers (the
 * time of the last sweep is a stamp file's mtime). Stale cgroups are empty
 * directories: a second's delay costs nothing. */
#define SWEEP_ALWAYS_BELOW 64
#define SWEEP_STAMP "/run/kennel-cgroup-sweep"

static bool
sweep_due(const char *parent)
{
    struct stat st;
    if (stat(parent, &st) < 0 || st.st_nlink < 2 + SWEEP_ALWAYS_BELOW)
        return true;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (stat(SWEEP_STAMP, &st) == 0 && now.tv_sec - st.st_mtim.tv_sec < 1 &&
        now.tv_sec >= st.st_mtim.tv_sec)
        return false;
    int fd = open(SWEEP_STAMP, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
        futimens(fd, NULL);
        close(fd);
    }
    return true;
}

/* Removes "kennel-PID-..." cgroups under parent whose launcher PID is gone:
 * a launcher killed with SIGKILL cannot remove its own (its sandbox dies with
 * it, through PDEATHSIG, but the empty directories stay). rmdir refuses a
 * cgroup that still has tasks, so a live sandbox is never touched. */
static void
reap_stale(const char *parent, seen_t *seen)
{
    DIR *d = opendir(parent);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "kennel-", 7) != 0)
            continue;
        char *end = NULL;
        long pid = strtol(e->d_name + 7, &end, 10);
        if (pid <= 0 || !end || *end != '-')
            continue;
        if (!launcher_gone(seen, pid))
            continue;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%.3800s/%s", parent, e->d_name);
        rmdir(p);
    }
    closedir(d);
}

static bool
v2_usable(char *base, size_t len)
{
    if (own_cgroup_dir("", base, len) < 0)
        return false;
    char buf[512];
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/cgroup.subtree_control", base);
    if (kn_read_file(p, buf, sizeof buf, NULL) < 0)
        return false;
    /* Our children get a controller only if it is in our subtree_control. */
    return strstr(buf, "memory") && strstr(buf, "pids") && strstr(buf, "cpu");
}

kn_cgroup_t *
kn_cgroup_create(const char *name, const kn_cgroup_limits_t *lim, kn_error_t *err)
{
    kn_cgroup_t *cg = calloc(1, sizeof *cg);
    if (!cg) {
        kn_error_set(err, ENOMEM, "cgroup");
        return NULL;
    }
    char base[PATH_MAX];
    seen_t *seen = calloc(1, sizeof *seen); /* NULL: check each one */
    if (v2_usable(base, sizeof base)) {
        cg->ops = &v2_ops;
        if (sweep_due(base))
            reap_stale(base, seen);
        snprintf(cg->v2, sizeof cg->v2, "%.4000s/kennel-%s", base, name);
        if (mkdir(cg->v2, 0755) < 0) {
            kn_error_set(err, errno, "create cgroup %s", cg->v2);
            cg->v2[0] = '\0';
            goto fail;
        }
    } else {
        cg->ops = &v1_ops;
        int made = 0, sweep = -1;
        for (int i = 0; i < V1_N; i++) {
            /* Each v1 hierarchy costs a mkdir, a join and an rmdir: only the
             * ones in use. CPU time comes from wait4() when cpuacct is absent. */
            if ((i == V1_FREEZER && !lim->freezer) || (i == V1_CPUACCT && !lim->cpuacct) ||
                (i == V1_CPU && lim->cpus <= 0) || (i == V1_MEMORY && !lim->memory) ||
                (i == V1_PIDS && !lim->pids))
                continue;
            if (own_cgroup_dir(v1_names[i], base, sizeof base) < 0)
                continue;
            if (sweep < 0)
                sweep = sweep_due(base);
            if (sweep)
                reap_stale(base, seen);
            snprintf(cg->v1[i], sizeof cg->v1[i], "%.4000s/kennel-%s", base, name);
            if (mkdir(cg->v1[i], 0755) < 0) {
                kn_error_set(err, errno, "create cgroup %s", cg->v1[i]);
                cg->v1[i][0] = '\0';
                goto fail;
            }
            made++;
        }
        if (!made && (lim->memory || lim->pids || lim->cpus > 0 || lim->freezer)) {
            kn_error_set(err, ENOENT, "no cgroup hierarchy found under /sys/fs/cgroup");
            goto fail;
        }
    }
    if (cg->ops->limit(cg, lim, err) < 0)
        goto fail;
    free(seen);
    return cg;
fail:
    free(seen);
    kn_cgroup_destroy(cg);
    return NULL;
}

void
kn_cgroup_each_dir(const kn_cgroup_t *cg, void (*fn)(const char *name, const char *dir, void *arg),
                   void *arg)
{
    if (cg->ops == &v2_ops) {
        fn("", cg->v2, arg);
        return;
    }
    for (int i = 0; i < V1_N; i++)
        if (cg->v1[i][0])
            fn(v1_names[i], cg->v1[i], arg);
}

const char *
kn_cgroup_version(const kn_cgroup_t *cg)
{
    return cg->ops->version;
}

int
kn_cgroup_add_pid(kn_cgroup_t *cg, pid_t pid, kn_error_t *err)
{
    char v[32];
    snprintf(v, sizeof v, "%d", (int)pid);
    return cg->ops->add_pid(cg, v, err);
}

/* Writes "0" (the calling thread) to the threads file of dir/.. or dir. */
static int
move_self(const char *dir, bool to_parent, const char *file, kn_error_t *err)
{
    char p[PATH_MAX];
    if (to_parent) {
        const char *slash = strrchr(dir, '/');
        if (!slash)
            return kn_error_set(err, EINVAL, "cgroup %s", dir);
        snprintf(p, sizeof p, "%.*s/%s", (int)(slash - dir), dir, file);
    } else {
        snprintf(p, sizeof p, "%s/%s", dir, file);
    }
    return kn_write_file(p, "0", err);
}

static int
move_self_all(kn_cgroup_t *cg, bool to_parent, kn_error_t *err)
{
    if (cg->ops == &v2_ops)
        return move_self(cg->v2, to_parent, "cgroup.threads", err);
    for (int i = 0; i < V1_N; i++)
        if (cg->v1[i][0] && move_self(cg->v1[i], to_parent, "tasks", err) < 0)
            return -1;
    return 0;
}

int
kn_cgroup_enter(kn_cgroup_t *cg, kn_error_t *err)
{
    if (move_self_all(cg, false, err) < 0) {
        move_self_all(cg, true, NULL);
        return -1;
    }
    return 0;
}

int
kn_cgroup_leave(kn_cgroup_t *cg, kn_error_t *err)
{
    return move_self_all(cg, true, err);
}

int
kn_cgroup_stats(kn_cgroup_t *cg, kn_cgroup_stats_t *st)
{
    memset(st, 0, sizeof *st);
    return cg->ops->stats(cg, st);
}

int
kn_cgroup_freeze(kn_cgroup_t *cg, bool frozen, kn_error_t *err)
{
    return cg->ops->freeze(cg, frozen, err);
}

void
kn_cgroup_kill_all(kn_cgroup_t *cg)
{
    cg->ops->kill_all(cg);
}

void
kn_cgroup_destroy(kn_cgroup_t *cg)
{
    if (!cg)
        return;
    if (cg->ops) {
        cg->ops->kill_all(cg);
        cg->ops->remove(cg);
    }
    free(cg);
}
