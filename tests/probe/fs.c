/* fs.c - kennel-probe, terminal, descriptors, environment and files. */
#include "probe.h"

static const char *
tiocsti_on(int fd, unsigned long cmd)
{
    static const char inject[] = "KENNEL_TIOCSTI_INJECTED\n";
    for (size_t i = 0; i < sizeof inject - 1; i++) {
        if (syscall(SYS_ioctl, fd, cmd, &inject[i]) < 0)
            return errname(errno);
    }
    return "ok";
}

/* tiocsti: push input into the terminal on fd 0 and on /dev/tty, also with
 * the ioctl number's upper 32 bits set (the kernel ignores them, a careless
 * filter does not). Then TIOCLINUX, and an attempt to take the terminal as
 * controlling tty. "result" is "ok" if any injection got through. */
int
p_tiocsti(int argc, char **argv)
{
    const char *r0, *rhigh, *rtty = "ENXIO", *result;
    char subcode = 6; /* TIOCL_GETSHIFTSTATE: a read-only subcode */
    int tty;

    j_begin("tiocsti");
    j_bool("stdin_isatty", isatty(0));
    j_str("sctty", rc_name(ioctl(0, TIOCSCTTY, 0)));
    r0 = tiocsti_on(0, TIOCSTI);
    rhigh = tiocsti_on(0, 0x100000000UL | TIOCSTI);
    tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (tty >= 0) {
        rtty = tiocsti_on(tty, TIOCSTI);
        close(tty);
    } else {
        rtty = errname(errno);
    }
    j_str("stdin", r0);
    j_str("stdin_highbits", rhigh);
    j_str("dev_tty", rtty);
    j_str("tioclinux", rc_name(ioctl(0, TIOCLINUX, &subcode)));
    if (!strcmp(r0, "ok") || !strcmp(rhigh, "ok") || !strcmp(rtty, "ok"))
        result = "ok";
    else
        result = r0;
    j_str("result", result);
    return j_end();
}

/* ---- files ---- */

int
p_fds(int argc, char **argv)
{
    int all = argc > 0 && !strcmp(argv[0], "all");
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    j_begin("fds");
    if (!d) {
        j_str("result", errname(errno));
        return j_end();
    }
    j_open("fds", '{');
    while ((de = readdir(d))) {
        char path[300], target[PATH_MAX];
        ssize_t n;
        if (de->d_name[0] == '.' || parse_long(de->d_name, -1) == dirfd(d))
            continue;
        snprintf(path, sizeof path, "/proc/self/fd/%s", de->d_name);
        n = readlink(path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        j_str(de->d_name, n > 0 ? target : errname(errno));
    }
    j_close('}');
    closedir(d);
    if (all) {
        /* every other visible process: pid -> {fd: target or errno} */
        DIR *procs = opendir("/proc");
        j_open("others", '{');
        while (procs && (de = readdir(procs))) {
            char dir[300];
            DIR *fdd;
            struct dirent *fe;
            if (!isdigit((unsigned char)de->d_name[0]) || parse_long(de->d_name, 0) == getpid())
                continue;
            snprintf(dir, sizeof dir, "/proc/%s/fd", de->d_name);
            fdd = opendir(dir);
            if (!fdd) {
                j_str(de->d_name, errname(errno));
                continue;
            }
            j_open(de->d_name, '{');
            while ((fe = readdir(fdd))) {
                char path[600], target[PATH_MAX];
                ssize_t n;
                if (fe->d_name[0] == '.')
                    continue;
                snprintf(path, sizeof path, "%s/%s", dir, fe->d_name);
                n = readlink(path, target, sizeof target - 1);
                target[n > 0 ? n : 0] = 0;
                j_str(fe->d_name, n > 0 ? target : errname(errno));
            }
            j_close('}');
            closedir(fdd);
        }
        j_close('}');
        if (procs)
            closedir(procs);
    }
    j_str("result", "ok");
    return j_end();
}

int
p_env(int argc, char **argv)
{
    j_begin("env");
    j_open("env", '{');
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        char key[256];
        size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
        if (n >= sizeof key)
            n = sizeof key - 1;
        memcpy(key, *e, n);
        key[n] = 0;
        j_str(key, eq ? eq + 1 : "");
    }
    j_close('}');
    j_str("result", "ok");
    return j_end();
}

/* write PATH [TEXT]: create or truncate PATH and write TEXT. */
int
p_write(int argc, char **argv)
{
    const char *text = argc > 1 ? argv[1] : "kennel-probe\n";
    int fd;
    ssize_t n;
    if (argc < 1)
        return usage_error("write", "write PATH [TEXT]");
    j_begin("write");
    j_str("path", argv[0]);
    fd = open(argv[0], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        j_str("result", errname(errno));
        return j_end();
    }
    n = write(fd, text, strlen(text));
    j_str("result", n == (ssize_t)strlen(text) ? "ok" : errname(n < 0 ? errno : EIO));
    close(fd);
    return j_end();
}

/* open-w PATH: open an existing file for writing, write nothing. */
int
p_open_w(int argc, char **argv)
{
    int fd;
    if (argc < 1)
        return usage_error("open-w", "open-w PATH");
    fd = open(argv[0], O_WRONLY | O_CLOEXEC);
    j_begin("open-w");
    j_str("path", argv[0]);
    j_str("result", rc_name(fd));
    if (fd >= 0)
        close(fd);
    return j_end();
}

int
p_read(int argc, char **argv)
{
    char buf[8192];
    ssize_t n;
    int fd;
    if (argc < 1)
        return usage_error("read", "read PATH");
    fd = open(argv[0], O_RDONLY | O_CLOEXEC);
    j_begin("read");
    j_str("path", argv[0]);
    if (fd < 0) {
        j_str("result", errname(errno));
        return j_end();
    }
    n = read(fd, buf, sizeof buf);
    j_str("result", rc_name(n));
    if (n > 0)
        j_strn("data", buf, (size_t)n);
    close(fd);
    return j_end();
}

int
p_mkdir(int argc, char **argv)
{
    if (argc < 1)
        return usage_error("mkdir", "mkdir PATH");
    j_begin("mkdir");
    j_str("path", argv[0]);
    j_str("result", rc_name(mkdir(argv[0], 0755)));
    return j_end();
}

int
p_ls(int argc, char **argv)
{
    const char *path = argc > 0 ? argv[0] : ".";
    DIR *d = opendir(path);
    struct dirent *de;
    j_begin("ls");
    j_str("path", path);
    if (!d) {
        j_str("result", errname(errno));
        return j_end();
    }
    j_open("entries", '{');
    while ((de = readdir(d))) {
        struct stat st;
        const char *kind = "other";
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (S_ISDIR(st.st_mode))
                kind = "dir";
            else if (S_ISREG(st.st_mode))
                kind = "file";
            else if (S_ISLNK(st.st_mode))
                kind = "link";
            else if (S_ISSOCK(st.st_mode))
                kind = "socket";
            else if (S_ISCHR(st.st_mode))
                kind = "chr";
            else if (S_ISBLK(st.st_mode))
                kind = "blk";
            else if (S_ISFIFO(st.st_mode))
                kind = "fifo";
        }
        j_str(de->d_name, kind);
    }
    j_close('}');
    closedir(d);
    j_str("result", "ok");
    return j_end();
}

/* mknod DIR: a block device and a char device node in DIR. */
int
p_mknod(int argc, char **argv)
{
    char blk[PATH_MAX], chr[PATH_MAX];
    const char *dir = argc > 0 ? argv[0] : "/tmp";
    int rb, rc;
    snprintf(blk, sizeof blk, "%s/kennel-probe-blk", dir);
    snprintf(chr, sizeof chr, "%s/kennel-probe-mem", dir);
    rb = mknod(blk, S_IFBLK | 0600, makedev(253, 0));
    j_begin("mknod");
    j_str("result", rc_name(rb));
    rc = mknod(chr, S_IFCHR | 0600, makedev(1, 1)); /* /dev/mem */
    j_str("chr_mem", rc_name(rc));
    if (rb == 0)
        unlink(blk);
    if (rc == 0)
        unlink(chr);
    return j_end();
}

/* exec PATH [ARGS...]: only prints when execve fails. */
int
p_exec(int argc, char **argv)
{
    if (argc < 1)
        return usage_error("exec", "exec PATH [ARGS...]");
    execv(argv[0], argv);
    j_begin("exec");
    j_str("path", argv[0]);
    j_str("result", errname(errno));
    return j_end();
}

/* execveat PATH [ARGS...]: exec through a descriptor (fexecve), the route
 * a filter that only knows execve misses. Prints only when it fails. */
int
p_execveat(int argc, char **argv)
{
    int fd;
    if (argc < 1)
        return usage_error("execveat", "execveat PATH [ARGS...]");
    fd = open(argv[0], O_RDONLY | O_CLOEXEC);
    j_begin("execveat");
    j_str("path", argv[0]);
    if (fd < 0) {
        j_str("result", errname(errno));
        j_str("stage", "open");
        return j_end();
    }
    syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH);
    j_str("result", errname(errno));
    j_str("stage", "execveat");
    return j_end();
}

/* exe-write [--write-under PREFIX]: open every visible /proc/PID/exe for
 * writing (the runc CVE-2019-5736 route to the runtime's binary). With
 * --write-under, a marker is written through any descriptor that opened onto
 * a file whose path starts with PREFIX, so that the host can see the damage
 * on a copy it made for the purpose; nothing else is ever written. This
 * probe's own binary is skipped. */
int
p_exe_write(int argc, char **argv)
{
    const char *prefix = argc > 1 && !strcmp(argv[0], "--write-under") ? argv[1] : NULL;
    DIR *d = opendir("/proc");
    struct dirent *de;
    struct stat self;
    int any = 0;
    stat("/proc/self/exe", &self);
    j_begin("exe-write");
    j_open("targets", '{');
    while (d && (de = readdir(d))) {
        char path[300], target[PATH_MAX], key[320];
        struct stat st;
        ssize_t n;
        int fd;
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        snprintf(path, sizeof path, "/proc/%s/exe", de->d_name);
        n = readlink(path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        if (stat(path, &st) == 0 && st.st_dev == self.st_dev && st.st_ino == self.st_ino)
            continue;
        snprintf(key, sizeof key, "%s %s", de->d_name, n > 0 ? target : "?");
        fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 && errno == ETXTBSY) {
            /* wait for the process to exec something else, as runc's attacker did */
            for (int i = 0; i < 20 && fd < 0 && errno == ETXTBSY; i++) {
                usleep(5000);
                fd = open(path, O_WRONLY | O_CLOEXEC);
            }
        }
        j_str(key, rc_name(fd));
        if (fd >= 0) {
            any = 1;
            if (prefix && n > 0 && !strncmp(target, prefix, strlen(prefix))) {
                static const char pwn[] = "KENNEL-PWNED";
                j_str("wrote", rc_name(pwrite(fd, pwn, sizeof pwn - 1, 0)));
            }
            close(fd);
        }
    }
    j_close('}');
    if (d)
        closedir(d);
    j_str("result", any ? "ok" : "EACCES");
    return j_end();
}
