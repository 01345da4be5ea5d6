/* load.c - kennel-probe, load generators: memory, disk, CPU, time. */
#include "probe.h"

/* mem MB: allocate and touch MB mebibytes; on failure report the errno. */
int
p_mem(int argc, char **argv)
{
    long mb = parse_long(argc > 0 ? argv[0] : NULL, 64);
    long done = 0;
    int err = 0;
    for (; done < mb; done++) {
        char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            err = errno;
            break;
        }
        for (size_t i = 0; i < (1u << 20); i += 4096)
            p[i] = (char)(i | 1);
    }
    j_begin("mem");
    j_int("mebibytes", done);
    j_str("result", errname(err));
    return j_end();
}

/* fill PATH MB: write up to MB mebibytes into PATH. */
int
p_fill(int argc, char **argv)
{
    static char chunk[1 << 20];
    long mb = parse_long(argc > 1 ? argv[1] : NULL, 64);
    long long written = 0;
    int err = 0, fd;
    if (argc < 1)
        return usage_error("fill", "fill PATH MB");
    signal(SIGXFSZ, SIG_IGN); /* so RLIMIT_FSIZE shows as EFBIG */
    memset(chunk, 'k', sizeof chunk);
    fd = open(argv[0], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = errno;
    } else {
        while (written < (long long)mb << 20) {
            ssize_t n = write(fd, chunk, sizeof chunk);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                err = errno;
                break;
            }
            if (n == 0) {
                err = ENOSPC;
                break;
            }
            written += n;
        }
        if (!err && fsync(fd) < 0)
            err = errno;
        close(fd);
    }
    j_begin("fill");
    j_str("path", argv[0]);
    j_int("bytes", written);
    j_str("result", errname(err));
    return j_end();
}

/* spin SECONDS: burn CPU for SECONDS of wall time, report CPU time used. */
int
p_spin(int argc, char **argv)
{
    double secs = argc > 0 ? strtod(argv[0], NULL) : 1.0;
    uint64_t end = now_ms() + (uint64_t)(secs * 1000.0);
    volatile uint64_t x = 0;
    struct rusage ru;
    while (now_ms() < end) {
        for (int i = 0; i < 100000; i++)
            x += (uint64_t)i;
    }
    getrusage(RUSAGE_SELF, &ru);
    j_begin("spin");
    j_int("user_ms", ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000);
    j_int("sys_ms", ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000);
    j_int("wall_ms", (long long)(secs * 1000.0));
    j_str("result", "ok");
    return j_end();
}

int
p_sleep(int argc, char **argv)
{
    double secs = argc > 0 ? strtod(argv[0], NULL) : 1.0;
    struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    j_begin("sleep");
    j_str("result", "ok");
    return j_end();
}

int
p_hostname(int argc, char **argv)
{
    struct utsname u;
    j_begin("hostname");
    if (argc > 0)
        j_str("result", rc_name(sethostname(argv[0], strlen(argv[0]))));
    else
        j_str("result", "ok");
    uname(&u);
    j_str("nodename", u.nodename);
    return j_end();
}
