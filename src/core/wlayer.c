/* wlayer.c - see wlayer.h. */
#include "wlayer.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compat.h"
#include "util.h"

struct kn_wlayer {
    kn_wlayer_kind_t kind;
    int mnt; /* the detached mount */
    uint64_t size;
};

int
kn_wlayer_fd(const kn_wlayer_t *w)
{
    return w->mnt;
}

int
kn_wlayer_open_upper(const kn_wlayer_t *w)
{
    return openat(w->mnt, "upper", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

const char *
kn_wlayer_kind_name(const kn_wlayer_t *w)
{
    return w->kind == KN_WLAYER_DISK ? "disk" : "tmpfs";
}

uint64_t
kn_wlayer_size(const kn_wlayer_t *w)
{
    return w->size;
}

void
kn_wlayer_free(kn_wlayer_t *w)
{
    if (!w)
        return;
    if (w->mnt >= 0)
        close(w->mnt);
    free(w);
}

static int
fs_set(int fs, const char *key, const char *value, kn_error_t *err)
{
    if (kn_sys_fsconfig(fs, value ? KN_FSCONFIG_SET_STRING : KN_FSCONFIG_SET_FLAG, key, value) < 0)
        return kn_error_set(err, errno, "writable layer: option %s", key);
    return 0;
}

/* Creates the superblock configured on fs and mounts it detached. */
static int
fs_mount(int fs, const char *what, kn_error_t *err)
{
    if (kn_sys_fsconfig(fs, KN_FSCONFIG_CMD_CREATE, NULL, NULL) < 0)
        return kn_error_set(err, errno, "writable layer: create the %s file system", what);
    int mnt = kn_sys_fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    if (mnt < 0)
        return kn_error_set(err, errno, "writable layer: mount the %s file system", what);
    return mnt;
}

static int
make_tmpfs(uint64_t size, kn_error_t *err)
{
    int fs = kn_sys_fsopen("tmpfs", FSOPEN_CLOEXEC);
    if (fs < 0)
        return kn_error_set(err, errno, "writable layer: fsopen tmpfs");
    char sz[32];
    snprintf(sz, sizeof sz, "%llu", (unsigned long long)size);
    int mnt = -1;
    if (fs_set(fs, "size", sz, err) == 0 && fs_set(fs, "mode", "0755", err) == 0)
        mnt = fs_mount(fs, "tmpfs", err);
    close(fs);
    return mnt;
}

/* A free loop device bound to file, detaching itself on its last close. */
static int
loop_attach(int file, char *dev, size_t devlen, kn_error_t *err)
{
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return kn_error_set(err, errno,
                            "writable layer: /dev/loop-control (is the loop module "
                            "there?)");
    int lfd = -1;
    bool failed = false;
    for (int tries = 0; tries < 32 && lfd < 0 && !failed; tries++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0) {
            failed = kn_error_set(err, errno, "writable layer: no free loop device");
            break;
        }
        snprintf(dev, devlen, "/dev/loop%d", n);
        int fd = open(dev, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            failed = kn_error_set(err, errno, "writable layer: open %s", dev);
            break;
        }
        struct loop_config lc = {.fd = (__u32)file, .block_size = 4096};
        lc.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        if (ioctl(fd, LOOP_CONFIGURE, &lc) == 0) {
            lfd = fd;
            break;
        }
        int e = errno;
        close(fd);
        if (e != EBUSY) /* EBUSY: another launcher took it first; try the next one */
            failed = kn_error_set(err, e, "writable layer: configure %s", dev);
    }
    close(ctl);
    if (lfd < 0 && !failed)
        kn_error_set(err, EBUSY, "writable layer: every loop device was taken");
    return lfd;
}

/* mkfs.ext4 on dev: no journal (the layer dies with its sandbox), nothing
 * reserved for root, no discard (it would punch holes in the reserved
 * file), inode tables left for lazy init, which the mount turns off (a
 * fresh file reads as zeros). About 5 ms for any size. */
static int
format(const char *dev, kn_error_t *err)
{
    static const char *const paths[] = {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4", NULL};
    const char *mkfs = NULL;
    for (const char *const *p = paths; *p && !mkfs; p++)
        if (access(*p, X_OK) == 0)
            mkfs = *p;
    if (!mkfs)
        return kn_error_set(err, ENOENT,
                            "writable layer: mkfs.ext4 is not installed (Debian: e2fsprogs)");
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return kn_error_set(err, errno, "pipe");
    char *argv[] = {(char *)mkfs, "-q", "-F",   "-O", "^has_journal,^resize_inode",   "-m",
                    "0",          "-b", "4096", "-E", "nodiscard,lazy_itable_init=1", (char *)dev,
                    NULL};
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return kn_error_set(err, e, "fork mkfs.ext4");
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0)
            dup2(null, 0), dup2(null, 1);
        dup2(pipefd[1], 2);
        char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL};
        execve(mkfs, argv, envp);
        _exit(127);
    }
    close(pipefd[1]);
    char out[512];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(pipefd[0], out + len, sizeof out - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof out - 1)
            len = 0; /* keep reading; the end is what matters */
    }
    out[len] = '\0';
    close(pipefd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        out[strcspn(out, "\n")] = '\0';
        return kn_error_set(err, EIO, "writable layer: mkfs.ext4 %s failed (status %d): %s", dev,
                            WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), out);
    }
    return 0;
}

static int
make_disk(const char *dir, uint64_t size, kn_error_t *err)
{
    if (size < KN_WLAYER_DISK_MIN)
        return kn_error_set(err, EINVAL,
                            "a disk-backed writable layer must be at least %llu MiB (asked: "
                            "%llu bytes)",
                            KN_WLAYER_DISK_MIN >> 20, (unsigned long long)size);
    if (kn_mkdir_p(dir, 0700, err) < 0)
        return kn_error_prefix(err, "writable layer directory");
    int file = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (file < 0)
        return kn_error_set(err, errno, "writable layer: an unnamed file in %s", dir);
    int mnt = -1, lfd = -1;
    char dev[32];
    /* Reserve every block now: a full host disk is then an error at start,
     * never an I/O error inside a running sandbox's file system. */
    int fr = fallocate(file, 0, 0, (off_t)size);
    if (fr < 0) {
        kn_error_set(err, errno, "writable layer: reserve %llu MiB in %s",
                     (unsigned long long)(size >> 20), dir);
        goto out;
    }
    if ((lfd = loop_attach(file, dev, sizeof dev, err)) < 0)
        goto out;
    if (format(dev, err) < 0)
        goto out;
    int fs = kn_sys_fsopen("ext4", FSOPEN_CLOEXEC);
    if (fs < 0) {
        kn_error_set(err, errno, "writable layer: fsopen ext4");
        goto out;
    }
    if (fs_set(fs, "source", dev, err) == 0 && fs_set(fs, "noinit_itable", NULL, err) == 0)
        mnt = fs_mount(fs, "ext4", err);
    close(fs);
out:
    /* From here the mount holds the loop device, which holds the file. */
    if (lfd >= 0)
        close(lfd);
    close(file);
    return mnt;
}

int
kn_wlayer_create(const kn_config_t *cfg, uid_t uid, gid_t gid, kn_wlayer_t **out, kn_error_t *err)
{
    kn_wlayer_t *w = calloc(1, sizeof *w);
    if (!w)
        return kn_error_set(err, ENOMEM, "writable layer");
    w->kind = cfg->wlayer;
    w->size = cfg->root_size;
    if (w->kind == KN_WLAYER_TMPFS) {
        /* As every writable tmpfs (mount.c): a filler gets ENOSPC, not the
         * OOM killer. */
        if (cfg->memory && w->size > cfg->memory / 2)
            w->size = cfg->memory / 2;
        w->mnt = make_tmpfs(w->size, err);
    } else {
        w->mnt = make_disk(cfg->wlayer_dir, w->size, err);
    }
    if (w->mnt < 0) {
        free(w);
        return -1;
    }
    static const char *const dirs[] = {"upper", "work", NULL};
    for (const char *const *d = dirs; *d; d++) {
        /* Explicit modes: the server's umask (077) must not make the
         * overlay's root 0700 for a sandbox whose user is not root. */
        if ((mkdirat(w->mnt, *d, 0755) < 0 && errno != EEXIST) ||
            fchmodat(w->mnt, *d, 0755, 0) < 0 ||
            fchownat(w->mnt, *d, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
            kn_error_set(err, errno, "writable layer: %s/", *d);
            kn_wlayer_free(w);
            return -1;
        }
    }
    *out = w;
    return 0;
}
