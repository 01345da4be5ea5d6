/* common.c - kennel-probe's JSON output and the helpers every probe uses. */
#include "probe.h"

#define OUT_MAX (256 * 1024)
static char out_buf[OUT_MAX];
static size_t out_len;
static int out_first = 1; /* no comma before the next member */

static void
out_raw(const char *s, size_t n)
{
    if (out_len + n >= OUT_MAX - 8)
        n = OUT_MAX - 8 - out_len; /* truncate rather than overflow */
    memcpy(out_buf + out_len, s, n);
    out_len += n;
}

void
out_puts(const char *s)
{
    out_raw(s, strlen(s));
}

static void
out_quoted(const char *s, size_t n)
{
    out_puts("\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            out_raw(esc, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            /* non-ASCII bytes are escaped one by one so the line stays valid JSON */
            snprintf(esc, sizeof esc, "\\u%04x", c);
            out_puts(esc);
        } else {
            out_raw((const char *)&c, 1);
        }
    }
    out_puts("\"");
}

void
out_sep(void)
{
    if (!out_first)
        out_puts(",");
    out_first = 0;
}

static void
out_key(const char *key)
{
    out_sep();
    out_quoted(key, strlen(key));
    out_puts(":");
    out_first = 1; /* the value that follows needs no comma */
}

void
j_str(const char *key, const char *val)
{
    out_key(key);
    out_quoted(val, strlen(val));
    out_first = 0;
}

void
j_strn(const char *key, const char *val, size_t n)
{
    out_key(key);
    out_quoted(val, n);
    out_first = 0;
}

void
j_int(const char *key, long long v)
{
    char num[32];
    out_key(key);
    snprintf(num, sizeof num, "%lld", v);
    out_puts(num);
    out_first = 0;
}

void
j_bool(const char *key, int v)
{
    out_key(key);
    out_puts(v ? "true" : "false");
    out_first = 0;
}

/* Nested containers: j_open("key", '{') ... j_close('}'). A NULL key opens
 * an anonymous element inside an array. */
void
j_open(const char *key, char bracket)
{
    char b[2] = {bracket, 0};
    if (key)
        out_key(key);
    else
        out_sep();
    out_puts(b);
    out_first = 1;
}

void
j_close(char bracket)
{
    char b[2] = {bracket, 0};
    out_puts(b);
    out_first = 0;
}

/* An array element that is a string. */
void
j_elem(const char *val)
{
    out_sep();
    out_quoted(val, strlen(val));
}

void
j_begin(const char *probe)
{
    out_len = 0;
    out_first = 1;
    out_puts("{");
    j_str("probe", probe);
}

int
j_end(void)
{
    ssize_t n;
    size_t off = 0;
    out_puts("}\n");
    while (off < out_len) {
        n = write(STDOUT_FILENO, out_buf + off, out_len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    return 0;
}

/* ---- outcome names ---- */

const char *
errname(int e)
{
    static char buf[16];
    const char *n = e ? strerrorname_np(e) : NULL;
    if (!e)
        return "ok";
    if (n)
        return n;
    snprintf(buf, sizeof buf, "E%d", e);
    return buf;
}

/* "ok" when rc >= 0, else the errno name. Call right after the syscall. */
const char *
rc_name(long rc)
{
    return rc >= 0 ? "ok" : errname(errno);
}

const char *
signame(int sig)
{
    static char buf[32];
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev)
        snprintf(buf, sizeof buf, "SIG%s", abbrev);
    else
        snprintf(buf, sizeof buf, "SIG%d", sig);
    return buf;
}

/* Runs fn in a forked child and names how it ended. fn returns 0 for
 * success or an errno value, which travels back as the exit status; a child
 * killed by seccomp (SIGSYS) or anything else is reported as killed:SIG. */
const char *
run_in_child(int (*fn)(void *), void *arg)
{
    static char buf[48];
    int status;
    pid_t pid = fork();
    if (pid < 0)
        return errname(errno);
    if (pid == 0)
        _exit(fn(arg) & 0xff);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return errname(errno);
    }
    if (WIFSIGNALED(status)) {
        snprintf(buf, sizeof buf, "killed:%s", signame(WTERMSIG(status)));
        return buf;
    }
    return errname(WEXITSTATUS(status));
}

pid_t
spawn_pauser(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        for (;;)
            pause();
    }
    return pid;
}

void
kill_and_reap(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

long
parse_long(const char *s, long dflt)
{
    char *end;
    long v;
    if (!s)
        return dflt;
    errno = 0;
    v = strtol(s, &end, 0);
    if (errno || *end)
        return dflt;
    return v;
}

uint64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- shared helpers ---- */

int
usage_error(const char *probe, const char *what)
{
    j_begin(probe);
    j_str("result", "usage");
    j_str("error", what);
    return j_end();
}

void
read_small(const char *path, char *buf, size_t size)
{
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    buf[0] = 0;
    if (fd < 0)
        return;
    n = read(fd, buf, size - 1);
    buf[n > 0 ? n : 0] = 0;
    close(fd);
}

/* A "Key:\tvalue" line of /proc/PID/status, whitespace trimmed. */
int
status_field(const char *status, const char *key, char *val, size_t size)
{
    size_t klen = strlen(key);
    const char *p = status;
    while (p && *p) {
        if (!strncmp(p, key, klen) && p[klen] == ':') {
            const char *v = p + klen + 1;
            size_t n = 0;
            while (*v == ' ' || *v == '\t')
                v++;
            while (v[n] && v[n] != '\n' && n + 1 < size)
                n++;
            memcpy(val, v, n);
            val[n] = 0;
            return 0;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    val[0] = 0;
    return -1;
}

/* socket(2) with bits above 31 set in the family: the kernel takes an int
 * and drops them, a filter that compares all 64 bits does not. */
long
socket_highbits(int family, int type, int proto)
{
    return syscall(SYS_socket, (unsigned long)family | (1UL << 32), type | SOCK_CLOEXEC, proto);
}
