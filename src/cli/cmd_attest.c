/* cmd_attest.c - `kennel attest --profile NAME`: prove a profile's isolation
 * with the probes of ../shared/seeds/deny-by-default-attestation.txt (§6),
 * run inside a sandbox of that profile, and write the evidence bundle.
 *
 * The probes run in kennel's own static binary, bound read-only at
 * /app/kennel and started as the entry process (`kennel attest-probe`), so
 * the attestation needs nothing from the image and the probes are the same
 * code on every host. Outside, kennel adds what only the host can say:
 * profile, kernel, the SHA-256 of the seccomp filter in force, Landlock ABI,
 * and the verdict. Exit status: 0 when every probe passed, 1 otherwise, 125
 * when the attestation itself could not run. */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "jsonw.h"
#include "kn_seccomp.h"
#include "landlock.h"
#include "sandbox.h"
#include "util.h"

extern char **environ;

/* ------------------------------------------------------------ inside */

typedef struct probe_out {
    FILE *f;
    int total, pass, fail;
} probe_out_t;

static void
record(probe_out_t *o, const char *id, const char *op, const char *expected, const char *actual,
       int err_no, bool pass)
{
    bool first = true;
    fputs(o->total ? ",\n    {" : "\n    {", o->f);
    kn_json_key(o->f, "probe_id", &first);
    kn_json_str(o->f, id, strlen(id));
    kn_json_key(o->f, "operation", &first);
    kn_json_str(o->f, op, strlen(op));
    kn_json_key(o->f, "expected", &first);
    kn_json_str(o->f, expected, strlen(expected));
    kn_json_key(o->f, "actual_stderr_or_value", &first);
    kn_json_str(o->f, actual, strlen(actual));
    kn_json_key(o->f, "errno_or_exit", &first);
    fprintf(o->f, "%d", err_no);
    kn_json_key(o->f, "verdict", &first);
    fputs(pass ? "\"PASS\"}" : "\"FAIL\"}", o->f);
    o->total++;
    if (pass)
        o->pass++;
    else
        o->fail++;
}

/* Tries to create and write path; returns 0 or errno. */
static int
try_write(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return errno;
    int rc = kn_write_all(fd, "ok", 2) < 0 ? errno : 0;
    close(fd);
    return rc;
}

static void
probe_write_denied(probe_out_t *o, const char *id, const char *path, const char *expected)
{
    char op[PATH_MAX + 16];
    snprintf(op, sizeof op, "open %s w", path);
    int e = try_write(path);
    char actual[128];
    snprintf(actual, sizeof actual, "%s", e ? strerror(e) : "WROTE");
    record(o, id, op, expected, actual, e, e == EROFS || e == EACCES);
}

static void
probe_network(probe_out_t *o)
{
    /* PR-NET-1: a route lookup, never traffic. connect() on a UDP socket
     * only asks the kernel for a route (no packet is sent); the address is
     * from TEST-NET-2 (RFC 5737), which nothing answers on. */
    int e = 0;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        e = errno;
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(53)};
        a.sin_addr.s_addr = htonl(0xc6336401); /* 198.51.100.1 */
        if (connect(s, (struct sockaddr *)&a, sizeof a) < 0)
            e = errno;
        close(s);
    }
    record(o, "PR-NET-1", "route to 198.51.100.1:53 (UDP connect, no packet)",
           "EPERM(1)/ENETUNREACH(101)/EAFNOSUPPORT(97)", e ? strerror(e) : "ROUTED", e,
           e == EPERM || e == ENETUNREACH || e == EAFNOSUPPORT);

    /* PR-NET-2: /proc/net/dev lists only lo. */
    char buf[4096];
    bool only_lo = true;
    char ifs[256] = "";
    if (kn_read_file("/proc/net/dev", buf, sizeof buf, NULL) < 0) {
        only_lo = false;
    } else {
        char *line = strchr(buf, '\n');
        line = line ? strchr(line + 1, '\n') : NULL;
        while (line && *++line) {
            char name[64] = "";
            if (sscanf(line, " %63[^:]", name) == 1) {
                size_t l = strlen(ifs);
                snprintf(ifs + l, sizeof ifs - l, "%s%s", l ? "," : "", name);
                if (strcmp(name, "lo") != 0)
                    only_lo = false;
            }
            line = strchr(line, '\n');
        }
    }
    record(o, "PR-NET-2", "read /proc/net/dev", "interfaces == {lo}", ifs, 0, only_lo);

    /* PR-SOCK-1 */
    s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    e = s < 0 ? errno : 0;
    if (s >= 0)
        close(s);
    record(o, "PR-SOCK-1", "socket(AF_INET,SOCK_STREAM)", "EPERM(1)", e ? strerror(e) : "CREATED",
           e, e == EPERM);
}

static bool
secret_like(const char *key)
{
    static const char *const pats[] = {"token", "secret",  "password", "passwd", "_dsn",
                                       "conn",  "api_key", "api-key",  NULL};
    char low[256];
    size_t n = 0;
    for (; key[n] && key[n] != '=' && n < sizeof low - 1; n++)
        low[n] = (char)((key[n] >= 'A' && key[n] <= 'Z') ? key[n] + 32 : key[n]);
    low[n] = '\0';
    for (const char *const *p = pats; *p; p++)
        if (strstr(low, *p))
            return true;
    return !strncmp(low, "pg", 2) || !strncmp(low, "kb", 2);
}

static void
probe_env(probe_out_t *o)
{
    char keys[1024] = "";
    bool leaked = false;
    for (char **e = environ; e && *e; e++) {
        size_t l = strlen(keys);
        const char *eq = strchr(*e, '=');
        int kl = eq ? (int)(eq - *e) : (int)strlen(*e);
        snprintf(keys + l, sizeof keys - l, "%s%.*s", l ? "," : "", kl, *e);
        leaked |= secret_like(*e);
    }
    record(o, "PR-ENV-1", "environ keys", "no token/secret/password/_dsn/conn/pg/kb/api_key", keys,
           0, !leaked);
}

static void
probe_files(probe_out_t *o)
{
    probe_write_denied(o, "PR-FS-RO-IN", "/in/__probe", "EROFS(30)");
    probe_write_denied(o, "PR-FS-ESC-1", "/etc/__probe", "EROFS(30)");
    probe_write_denied(o, "PR-FS-ESC-2", "/app/__probe", "EROFS(30)/EACCES(13)");
    int e = try_write("/out/report.md");
    record(o, "PR-FS-OUT-OK", "open /out/report.md w", "succeeds (positive control)",
           e ? strerror(e) : "WROTE ok", e, e == 0);
}

static void
probe_exec(probe_out_t *o)
{
    /* In a child, so that a successful execve (a failed probe) cannot take
     * the harness with it: exit 0 means the exec happened, 100+N that it
     * failed with errno N. */
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, STDOUT_FILENO);
        char *argv[] = {"/app/kennel", "--version", NULL};
        char *envp[] = {NULL};
        execve("/app/kennel", argv, envp);
        _exit(100 + (errno < 100 ? errno : 99));
    }
    int st = 0, e = 0;
    bool executed = false;
    if (pid < 0) {
        e = errno;
    } else if (waitpid(pid, &st, 0) == pid && WIFEXITED(st)) {
        executed = WEXITSTATUS(st) < 100;
        e = executed ? 0 : WEXITSTATUS(st) - 100;
    }
    record(o, "PR-EXEC-1", "execve(/app/kennel)", "EPERM(1)/ENOENT(2)",
           executed ? "EXECVE-SUCCEEDED" : strerror(e), e,
           !executed && (e == EPERM || e == ENOENT));
}

/* Finds the mount at `target` in mountinfo; returns its options or NULL. */
static const char *
mount_opts(char *mi, const char *target, char *out, size_t len)
{
    for (char *l = mi; l && *l;) {
        char *nl = strchr(l, '\n');
        char id[16], parent[16], dev[32], root[PATH_MAX], mp[PATH_MAX], opts[256];
        if (sscanf(l, "%15s %15s %31s %4095s %4095s %255s", id, parent, dev, root, mp, opts) == 6 &&
            !strcmp(mp, target))
            snprintf(out, len, "%s", opts); /* the last (topmost) one wins */
        l = nl ? nl + 1 : NULL;
    }
    return out[0] ? out : NULL;
}

static void
probe_mounts(probe_out_t *o)
{
    static char mi[65536];
    char in[256] = "", outo[256] = "", root[256] = "", tmp[256] = "";
    if (kn_read_file("/proc/self/mountinfo", mi, sizeof mi, NULL) < 0) {
        record(o, "PR-MOUNT-1", "read /proc/self/mountinfo", "expected mount table",
               strerror(errno), errno, false);
        return;
    }
    char copy[65536];
    memcpy(copy, mi, sizeof copy);
    mount_opts(copy, "/in", in, sizeof in);
    mount_opts(copy, "/out", outo, sizeof outo);
    mount_opts(copy, "/", root, sizeof root);
    mount_opts(copy, "/tmp", tmp, sizeof tmp);
    bool ok = !strncmp(in, "ro", 2) && !strncmp(outo, "rw", 2) && !strncmp(root, "ro", 2) &&
              strstr(tmp, "noexec");
    char actual[512];
    snprintf(actual, sizeof actual, "/: %s; /in: %s; /out: %s; /tmp: %s", root[0] ? root : "-",
             in[0] ? in : "-", outo[0] ? outo : "-", tmp[0] ? tmp : "-");
    record(o, "PR-MOUNT-1", "read /proc/self/mountinfo",
           "rootfs ro; /in ro; /out rw; /tmp noexec; nothing else", actual, 0, ok);
}

static void
probe_misc(probe_out_t *o)
{
    bool exists = access("/var/run/docker.sock", F_OK) == 0;
    record(o, "PR-SOCK-DOCKER", "exists /var/run/docker.sock", "False", exists ? "True" : "False",
           0, !exists);
    errno = 0;
    long r = ptrace(PTRACE_TRACEME, 0, NULL, NULL);
    int e = r < 0 ? errno : 0;
    record(o, "PR-PTRACE-1", "ptrace(PTRACE_TRACEME)", "EPERM(1)", e ? strerror(e) : "ALLOWED", e,
           r < 0 && e == EPERM);
}

/* Reads "Key:\tvalue" from /proc/self/status into out. */
static bool
status_field(const char *key, char *out, size_t len)
{
    char buf[8192];
    if (kn_read_file("/proc/self/status", buf, sizeof buf, NULL) < 0)
        return false;
    size_t kl = strlen(key);
    for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (!strncmp(l, key, kl) && l[kl] == ':') {
            const char *v = l + kl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            size_t n = strcspn(v, "\n");
            snprintf(out, len, "%.*s", (int)n, v);
            return true;
        }
    }
    return false;
}

/* First line of a cgroup file under /sys/fs/cgroup (v2 name, then v1 path). */
static bool
cgroup_value(const char *v2, const char *v1, char *out, size_t len)
{
    char p[256], buf[128];
    const char *names[] = {v2, v1};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "/sys/fs/cgroup/%s", names[i]);
        if (kn_read_file(p, buf, sizeof buf, NULL) > 0) {
            snprintf(out, len, "%.*s", (int)strcspn(buf, "\n"), buf);
            return true;
        }
    }
    return false;
}

/* Kennel's own promises, beyond the seed's list. */
static void
probe_kennel(probe_out_t *o)
{
    char v[256] = "", w[256] = "";
    bool ok = status_field("Seccomp", v, sizeof v);
    record(o, "PR-KN-SECCOMP", "/proc/self/status Seccomp", "2 (filter)", ok ? v : "unreadable", 0,
           ok && !strcmp(v, "2"));
    ok = status_field("NoNewPrivs", v, sizeof v);
    record(o, "PR-KN-NNP", "/proc/self/status NoNewPrivs", "1", ok ? v : "unreadable", 0,
           ok && !strcmp(v, "1"));
    static const char *const caps[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"};
    bool none = true;
    char all[256] = "";
    for (int i = 0; i < 5; i++) {
        bool got = status_field(caps[i], v, sizeof v);
        size_t l = strlen(all);
        snprintf(all + l, sizeof all - l, "%s%s=%s", i ? " " : "", caps[i], got ? v : "?");
        none &= got && strspn(v, "0") == strlen(v);
    }
    record(o, "PR-KN-CAPS", "/proc/self/status Cap*", "all zero", all, 0, none);
    char map[512] = "";
    bool root_mapped = true;
    if (kn_read_file("/proc/self/uid_map", map, sizeof map, NULL) > 0) {
        root_mapped = false;
        for (char *l = map; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
            unsigned long in, out, n;
            if (sscanf(l, "%lu %lu %lu", &in, &out, &n) == 3 && out == 0)
                root_mapped = true; /* some id inside is host root */
        }
    }
    map[strcspn(map, "\n")] = '\0';
    record(o, "PR-KN-UIDMAP", "/proc/self/uid_map", "host uid 0 not mapped", map, 0, !root_mapped);
    bool mem = cgroup_value("memory.max", "memory/memory.limit_in_bytes", v, sizeof v);
    bool pids = cgroup_value("pids.max", "pids/pids.max", w, sizeof w);
    char lim[300];
    snprintf(lim, sizeof lim, "memory=%s pids=%s", mem ? v : "?", pids ? w : "?");
    if (!mem || !pids)
        record(o, "PR-KN-CGROUP", "cgroup limits at /sys/fs/cgroup", "memory and pids limited", lim,
               0, false);
    else
        record(o, "PR-KN-CGROUP", "cgroup limits at /sys/fs/cgroup", "memory and pids limited", lim,
               0, strcmp(v, "max") != 0 && strcmp(w, "max") != 0);
}

int
kn_cmd_attest_probe(int argc, char **argv)
{
    const char *date = argc > 2 && !strcmp(argv[1], "--run-date") ? argv[2] : "unknown";
    probe_out_t o = {.f = stdout};
    printf("{\"schema\":\"b4-prime-sandbox-attestation/inside/v1\",\"run_date\":");
    kn_json_str(stdout, date, strlen(date));
    printf(",\"probes\":[");
    probe_network(&o);
    probe_env(&o);
    probe_files(&o);
    probe_exec(&o);
    probe_mounts(&o);
    probe_misc(&o);
    probe_kennel(&o);
    printf("\n  ],\"summary\":{\"total\":%d,\"pass\":%d,\"fail\":%d,\"unverified\":0}}\n", o.total,
           o.pass, o.fail);
    /* _exit: nothing else may run after the bundle. A sanitizer build's leak
     * check at exit needs ptrace, which the sandbox denies. */
    fflush(stdout);
    _exit(o.fail ? 2 : 0);
}

/* ----------------------------------------------------------- outside */

static int
self_path(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

static void
filter_digest(const kn_config_t *cfg, char *hex, size_t len)
{
    kn_bpf_t prog = {0};
    kn_error_t err = {0};
    snprintf(hex, len, "unavailable");
    if (kn_seccomp_build(cfg, &prog, &err) < 0)
        return;
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)prog.insns, prog.len * sizeof prog.insns[0]);
    for (size_t i = 0; i < sizeof h && 2 * i + 2 < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    kn_bpf_free(&prog);
}

/* Runs the probe harness in a sandbox of cfg; its stdout lands in *out. */
static int
run_harness(kn_config_t *cfg, bool fixture, char **out, size_t *outlen, kn_result_t *res,
            kn_error_t *err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return kn_error_set(err, errno, "pipe");
    kn_stdio_t io = {-1, p[1], -1};
    kn_sandbox_t *sb = NULL;
    int rc = -1;
    FILE *mem = open_memstream(out, outlen);
    if (!mem) {
        kn_error_set(err, errno, "memstream");
        goto done;
    }
    if (kn_sandbox_spawn(cfg, &io, &sb, err) < 0)
        goto done;
    close(p[1]);
    p[1] = -1;
    /* The seed's input fixture, when no --in directory was given. */
    static const char packet[] = "{\"packet\":\"attestation-fixture\"}\n";
    if (fixture && cfg->in_out &&
        kn_sandbox_write_in(sb, "/in/packet.json", packet, sizeof packet - 1, err) < 0)
        goto done;
    if (kn_sandbox_start(sb, err) < 0)
        goto done;
    char buf[65536];
    for (;;) {
        ssize_t n = read(p[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        fwrite(buf, 1, (size_t)n, mem);
    }
    bool ended = false;
    while (!ended) {
        struct pollfd pfd = {kn_sandbox_syncfd(sb), POLLIN, 0};
        if (poll(&pfd, 1, (int)cfg->timeout_ms) <= 0) {
            kn_sandbox_kill(sb, NULL);
        }
        kn_sandbox_collect(sb, &ended);
    }
    kn_sandbox_finish(sb, res);
    rc = 0;
done:
    if (mem)
        fclose(mem);
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
    kn_sandbox_destroy(sb);
    return rc;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: kennel attest [--profile NAME] [--in DIR] [--out DIR] [--run-date DATE]\n"
               "\n"
               "Runs the deny-by-default attestation probes (PR-NET-1 ... PR-PTRACE-1) inside a\n"
               "sandbox of the profile, plus Kennel's own (PR-KN-*: seccomp, no_new_privs,\n"
               "capabilities, uid map, cgroup limits), and writes the evidence bundle (JSON)\n"
               "to DIR/sandbox-attestation-evidence-PROFILE-DATE.json or stdout. --in DIR is\n"
               "bound read-only at /in.\n"
               "Exit status: 0 all probes passed, 1 a probe failed, 125 the run itself failed.\n");
}

int
kn_cmd_attest(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"profile", required_argument, 0, 'p'}, {"out", required_argument, 0, 'o'},
        {"in", required_argument, 0, 'i'},      {"run-date", required_argument, 0, 'd'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
    };
    const char *profile = "deny-by-default", *outdir = NULL, *indir = NULL;
    char date[16];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            profile = optarg;
            break;
        case 'o':
            outdir = optarg;
            break;
        case 'i':
            indir = optarg;
            break;
        case 'd':
            snprintf(date, sizeof date, "%s", optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            fprintf(stderr, "kennel: unknown option '%s' (see kennel attest --help)\n",
                    argv[optind - 1]);
            return KN_EXIT_KENNEL;
        }
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "kennel: libsodium failed to initialise\n");
        return KN_EXIT_KENNEL;
    }
    kn_config_t cfg;
    kn_error_t err = {0};
    char self[PATH_MAX];
    char *inside = NULL;
    size_t inside_len = 0;
    kn_result_t res;
    int rc = KN_EXIT_KENNEL;
    if (kn_profile_load(&cfg, profile, &err) < 0) {
        fprintf(stderr, "kennel: %s\n", err.msg);
        return KN_EXIT_KENNEL;
    }
    char *hargv[] = {"/app/kennel", "attest-probe", "--run-date", date, NULL};
    /* A service sandbox sees its own cgroup (read-only) for PR-KN-CGROUP. */
    cfg.service = true;
    if (self_path(self, sizeof self) < 0 || kn_config_set_argv(&cfg, hargv, &err) < 0 ||
        kn_config_add_bind(&cfg, self, "/app/kennel", false, &err) < 0 ||
        (indir && kn_config_add_bind(&cfg, indir, "/in", false, &err) < 0) ||
        kn_config_validate(&cfg, &err) < 0 ||
        run_harness(&cfg, indir == NULL, &inside, &inside_len, &res, &err) < 0) {
        fprintf(stderr, "kennel: attest: %s\n", err.msg[0] ? err.msg : strerror(errno));
        goto out;
    }
    bool complete = inside_len > 0 && strstr(inside, "\"summary\"");
    bool passed = complete && res.exit_code == 0;
    char outpath[PATH_MAX];
    if (outdir)
        snprintf(outpath, sizeof outpath, "%s/sandbox-attestation-evidence-%s-%s.json", outdir,
                 profile, date);
    FILE *f = outdir ? fopen(outpath, "we") : stdout;
    if (!f) {
        fprintf(stderr, "kennel: attest: %s: %s\n", outpath, strerror(errno));
        goto out;
    }
    struct utsname u;
    uname(&u);
    char digest[80];
    filter_digest(&cfg, digest, sizeof digest);
    fprintf(f, "{\"schema\":\"kennel-attestation/v1\",\"run_date\":\"%s\",\"profile\":", date);
    kn_json_str(f, profile, strlen(profile));
    fprintf(f, ",\"runtime\":\"kennel 0.1.0\",\"kernel\":");
    kn_json_str(f, u.release, strlen(u.release));
    fprintf(f, ",\"seccomp_sha256\":\"%s\",\"landlock_abi\":%d", digest, kn_landlock_abi());
    fprintf(f, ",\"harness_exit\":%d,\"verdict\":\"%s\",\"inside\":", res.exit_code,
            passed ? "PASS" : "FAIL");
    if (complete)
        fwrite(inside, 1, inside_len, f);
    else
        fputs("null", f);
    fputs("}\n", f);
    if (outdir) {
        fclose(f);
        fprintf(stderr, "kennel: attest: evidence written to %s\n", outpath);
    } else
        fflush(f);
    if (!complete)
        fprintf(stderr, "kennel: attest: the probe harness produced no bundle (exit %d)\n",
                res.exit_code);
    rc = passed ? 0 : 1;
out:
    free(inside);
    kn_config_free(&cfg);
    return rc;
}
