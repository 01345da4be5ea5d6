/* mount.c - build the sandbox root. See mount.h for the shape of the view.
 *
 * Order matters and is the same every time:
 *   1. make every inherited mount private, so nothing propagates to the host;
 *   2. pivot onto a scratch tmpfs, keeping the old root at /oldroot (bind
 *      sources are then resolved beneath /oldroot, never through the new root);
 *   3. assemble /newroot; 4. remount its tmpfs read-only;
 *   5. pivot into /newroot and detach everything else. */
#include "mount.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"
#include "compat.h"
#include "util.h"

#define NEWROOT "/newroot"
#define OLDROOT "/oldroot"

/* Top-level names of the image that are never bound: they are made fresh. */
static const char *const fresh_top[] = {"proc", "sys",        "dev", "tmp", "run",
                                        "work", "lost+found", "in",  "out", NULL};

static const char *const dev_nodes[] = {"null", "zero", "full", "random", "urandom", "tty", NULL};

static int
do_mount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data,
         kn_error_t *err)
{
    if (mount(src, dst, type, flags, data) < 0)
        return kn_error_set(err, errno, "mount %s on %s", type ? type : (src ? src : "(none)"),
                            dst);
    return 0;
}

/* Sets ro/nosuid/nodev (and optionally noexec) on dst and everything below it. */
static int
lock_down(const char *dst, bool ro, bool noexec, kn_error_t *err)
{
    struct mount_attr a = {.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
    if (ro)
        a.attr_set |= MOUNT_ATTR_RDONLY;
    if (noexec)
        a.attr_set |= MOUNT_ATTR_NOEXEC;
    if (kn_sys_mount_setattr(AT_FDCWD, dst, AT_RECURSIVE | AT_SYMLINK_NOFOLLOW, &a) < 0)
        return kn_error_set(err, errno, "set mount attributes of %s", dst);
    return 0;
}

static int
tmpfs_at(const char *dst, uint64_t size, mode_t mode, unsigned long flags, const kn_config_t *cfg,
         bool owned, kn_error_t *err)
{
    /* tmpfs pages are charged to the sandbox's memory cgroup. A writable
     * tmpfs larger than half the memory limit would end a disk filler with
     * the OOM killer instead of ENOSPC: cap it, so the program gets an error
     * it can handle and the limit stays the backstop. */
    if (cfg && cfg->memory && size > cfg->memory / 2)
        size = cfg->memory / 2;
    char data[128];
    int n = snprintf(data, sizeof data, "mode=%o", (unsigned)mode);
    if (size)
        n += snprintf(data + n, sizeof data - (size_t)n, ",size=%llu", (unsigned long long)size);
    if (owned)
        snprintf(data + n, sizeof data - (size_t)n, ",uid=%u,gid=%u", (unsigned)cfg->uid,
                 (unsigned)cfg->gid);
    if (kn_mkdir_p(dst, 0755, err) < 0)
        return -1;
    return do_mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NODEV | flags, data, err);
}

/* Creates dst (and its parents) as a directory or an empty file, unless it
 * exists; a symlink there is refused (a mount would follow it). */
static int
make_mountpoint(const char *dst, bool dir, kn_error_t *err)
{
    struct stat st;
    if (dir)
        return kn_mkdir_p(dst, 0755, err);
    if (lstat(dst, &st) == 0) {
        if (S_ISLNK(st.st_mode))
            return kn_error_set(err, ELOOP, "mountpoint %s is a symlink", dst);
        return 0;
    }
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", dst);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        if (kn_mkdir_p(parent, 0755, err) < 0)
            return -1;
    }
    int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 && errno != EEXIST)
        return kn_error_set(err, errno, "create mountpoint %s", dst);
    if (fd >= 0)
        close(fd);
    return 0;
}

/* Binds src onto dst, creating dst as a directory or an empty file to match. */
static int
bind_at(const char *src, const char *dst, bool ro, kn_error_t *err)
{
    struct stat st;
    if (stat(src, &st) < 0)
        return kn_error_set(err, errno, "bind source %s", src);
    if (make_mountpoint(dst, S_ISDIR(st.st_mode), err) < 0)
        return -1;
    if (do_mount(src, dst, NULL, MS_BIND | MS_REC, NULL, err) < 0)
        return -1;
    return lock_down(dst, ro, false, err);
}

static bool
in_list(const char *name, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(name, *list))
            return true;
    return false;
}

/* Binds every top-level entry of the image (beneath /oldroot) into /newroot,
 * read-only; symlinks (merged /usr: /bin -> usr/bin) are recreated. */
static int
bind_image_top(const kn_config_t *cfg, kn_error_t *err)
{
    char src_root[PATH_MAX];
    bool host = !strcmp(cfg->image, "host");
    snprintf(src_root, sizeof src_root, "%s%s", OLDROOT, host ? "" : cfg->image);
    DIR *d = opendir(src_root);
    if (!d)
        return kn_error_set(err, errno, "open image root %s", host ? "/" : cfg->image);
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..") || in_list(n, fresh_top))
            continue;
        if (host && cfg->hide_home && (!strcmp(n, "root") || !strcmp(n, "home"))) {
            char p[PATH_MAX];
            snprintf(p, sizeof p, NEWROOT "/%s", n);
            if (mkdir(p, 0755) < 0 && errno != EEXIST)
                return kn_error_set(err, errno, "mkdir %s", p);
            continue;
        }
        /* Host-only mounts that no sandbox needs. */
        if (host && (!strcmp(n, "mnt") || !strcmp(n, "media") || !strcmp(n, "boot")))
            continue;
        char src[PATH_MAX], dst[PATH_MAX];
        snprintf(src, sizeof src, "%s/%s", src_root, n);
        snprintf(dst, sizeof dst, NEWROOT "/%s", n);
        struct stat st;
        if (lstat(src, &st) < 0)
            continue;
        if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t len = readlink(src, target, sizeof target - 1);
            if (len < 0)
                continue;
            target[len] = '\0';
            if (symlink(target, dst) < 0 && errno != EEXIST) {
                rc = kn_error_set(err, errno, "symlink %s", dst);
                break;
            }
        } else if (S_ISDIR(st.st_mode)) {
            if (bind_at(src, dst, true, err) < 0) {
                rc = -1;
                break;
            }
        }
    }
    closedir(d);
    return rc;
}

/* A stored image: its layers read-only under a writable tmpfs layer, joined
 * by overlayfs at /newroot. We are inside the sandbox's user namespace, so
 * overlayfs keeps its markers in user.* xattrs (`userxattr`); the image
 * store writes opaque directories that way and whiteouts as 0/0 devices.
 * Layers are named relative to their directory (one chdir) to keep the
 * option string, which must fit in a page, short. */
static int
overlay_root(const kn_config_t *cfg, kn_error_t *err)
{
    char opts[4096], dir[PATH_MAX];
    size_t n = 0;
    if (tmpfs_at("/overlay", cfg->root_size, 0755, 0, cfg, false, err) < 0)
        return -1;
    if (mkdir("/overlay/upper", 0755) < 0 || mkdir("/overlay/work", 0755) < 0)
        return kn_error_set(err, errno, "mkdir overlay upper layer");
    n = (size_t)snprintf(opts, sizeof opts,
                         "userxattr,upperdir=/overlay/upper,"
                         "workdir=/overlay/work,lowerdir=");
    size_t count = 0;
    while (cfg->image_layers[count])
        count++;
    for (size_t i = count; i-- > 0 && n < sizeof opts;) /* topmost first */
        n +=
            (size_t)snprintf(opts + n, sizeof opts - n, "%s%s", cfg->image_layers[i], i ? ":" : "");
    if (n >= sizeof opts)
        return kn_error_set(err, E2BIG, "image has too many layers for one overlay mount");
    snprintf(dir, sizeof dir, OLDROOT "%s", cfg->image_layer_dir);
    if (chdir(dir) < 0)
        return kn_error_set(err, errno, "image layers %s", cfg->image_layer_dir);
    int rc = do_mount("overlay", NEWROOT, "overlay", MS_NOSUID | MS_NODEV, opts, err);
    if (chdir("/") < 0 && rc == 0)
        rc = kn_error_set(err, errno, "chdir /");
    return rc;
}

static int
setup_dev(const kn_config_t *cfg, kn_error_t *err)
{
    if (tmpfs_at(NEWROOT "/dev", 1 << 20, 0755, MS_NOEXEC, NULL, false, err) < 0)
        return -1;
    for (const char *const *n = dev_nodes; *n; n++) {
        char src[PATH_MAX], dst[PATH_MAX];
        snprintf(src, sizeof src, OLDROOT "/dev/%s", *n);
        snprintf(dst, sizeof dst, NEWROOT "/dev/%s", *n);
        int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0)
            return kn_error_set(err, errno, "create %s", dst);
        close(fd);
        if (do_mount(src, dst, NULL, MS_BIND, NULL, err) < 0)
            return -1;
    }
    if (kn_mkdir_p(NEWROOT "/dev/pts", 0755, err) < 0)
        return -1;
    if (do_mount("devpts", NEWROOT "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                 "newinstance,ptmxmode=0666,mode=0620", err) < 0)
        return -1;
    const char *links[][2] = {{"pts/ptmx", "ptmx"},          {"/proc/self/fd", "fd"},
                              {"/proc/self/fd/0", "stdin"},  {"/proc/self/fd/1", "stdout"},
                              {"/proc/self/fd/2", "stderr"}, {NULL, NULL}};
    for (int i = 0; links[i][0]; i++) {
        char dst[PATH_MAX];
        snprintf(dst, sizeof dst, NEWROOT "/dev/%s", links[i][1]);
        if (symlink(links[i][0], dst) < 0)
            return kn_error_set(err, errno, "symlink %s", dst);
    }
    return tmpfs_at(NEWROOT "/dev/shm", 64 << 20, 01777, MS_NOEXEC, cfg, false, err);
}

/* Moves a detached mount tree (made by the launcher, see kn_mount_bind_tree)
 * onto dst, creating dst as a directory or an empty file to match. */
static int
attach_tree(int tree, const char *dst, kn_error_t *err)
{
    struct stat st;
    if (fstat(tree, &st) < 0)
        return kn_error_set(err, errno, "bind source");
    if (make_mountpoint(dst, S_ISDIR(st.st_mode), err) < 0)
        return -1;
    if (kn_sys_move_mount(tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return kn_error_set(err, errno, "attach bind at %s", dst);
    return 0;
}

/* bind_fds[i], when not -1, is binds[i] already cloned and locked down by
 * the launcher with its own right to reach the source: a source under a
 * directory the sandbox's user could not traverse (a 0700 home or temp dir)
 * still binds. Otherwise the source is bound by path from /oldroot. */
static int
setup_binds(const kn_config_t *cfg, const int *bind_fds, kn_error_t *err)
{
    for (size_t i = 0; i < cfg->n_binds; i++) {
        const kn_bind_t *b = &cfg->binds[i];
        char src[PATH_MAX], dst[PATH_MAX];
        snprintf(dst, sizeof dst, NEWROOT "%s", b->dst);
        if (bind_fds && bind_fds[i] >= 0) {
            if (attach_tree(bind_fds[i], dst, err) < 0)
                return kn_error_prefix(err, "bind %s:%s", b->src, b->dst);
            continue;
        }
        snprintf(src, sizeof src, OLDROOT "%s", b->src);
        if (bind_at(src, dst, !b->rw, err) < 0)
            return kn_error_prefix(err, "bind %s:%s", b->src, b->dst);
    }
    return 0;
}

int
kn_mount_bind_tree(const char *src, bool rw)
{
    int tree = kn_sys_open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0)
        return -1;
    struct mount_attr a = {.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
    if (!rw)
        a.attr_set |= MOUNT_ATTR_RDONLY;
    if (kn_sys_mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &a) < 0) {
        close(tree);
        return -1;
    }
    return tree;
}

static bool
has_bind_at(const kn_config_t *cfg, const char *dst)
{
    for (size_t i = 0; i < cfg->n_binds; i++)
        if (!strcmp(cfg->binds[i].dst, dst))
            return true;
    return false;
}

typedef struct cg_bind_ctx {
    kn_error_t *err;
    int rc;
} cg_bind_ctx_t;

static void
bind_cgroup_dir(const char *name, const char *dir, void *arg)
{
    cg_bind_ctx_t *c = arg;
    char src[PATH_MAX], dst[PATH_MAX];
    if (c->rc < 0)
        return;
    snprintf(src, sizeof src, OLDROOT "%s", dir);
    snprintf(dst, sizeof dst, NEWROOT "/sys/fs/cgroup%s%s", name[0] ? "/" : "", name);
    if (bind_at(src, dst, true, c->err) < 0)
        c->rc = -1;
}

/* The sandbox's own cgroup, read-only, where tools look for it. */
static int
setup_sys(const kn_cgroup_t *cg, kn_error_t *err)
{
    if (tmpfs_at(NEWROOT "/sys", 1 << 20, 0755, MS_NOEXEC, NULL, false, err) < 0)
        return -1;
    cg_bind_ctx_t c = {err, 0};
    kn_cgroup_each_dir(cg, bind_cgroup_dir, &c);
    if (c.rc < 0)
        return -1;
    struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
    if (kn_sys_mount_setattr(AT_FDCWD, NEWROOT "/sys", 0, &ro) < 0)
        return kn_error_set(err, errno, "make /sys read-only");
    return 0;
}

int
kn_mount_setup_root(const kn_config_t *cfg, const kn_cgroup_t *cg, const char *id,
                    const int *bind_fds, kn_error_t *err)
{
    /* 1. Nothing we do may propagate back to the host. */
    if (do_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL, err) < 0)
        return -1;
    /* 2. A scratch root; the old one stays reachable at /oldroot until step 5. */
    if (do_mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700,size=1m", err) < 0)
        return -1;
    if (chdir("/tmp") < 0)
        return kn_error_set(err, errno, "chdir scratch root");
    if (mkdir("oldroot", 0700) < 0 || mkdir("newroot", 0755) < 0)
        return kn_error_set(err, errno, "mkdir in scratch root");
    if (kn_sys_pivot_root(".", "oldroot") < 0)
        return kn_error_set(err, errno, "pivot_root to scratch root");
    if (chdir("/") < 0)
        return kn_error_set(err, errno, "chdir /");

    /* 3. The new root. */
    if (cfg->image_layers) {
        if (overlay_root(cfg, err) < 0)
            return -1;
    } else if (tmpfs_at(NEWROOT, 1 << 20, 0755, 0, cfg, false, err) < 0 ||
               bind_image_top(cfg, err) < 0) {
        return -1;
    }
    if (kn_mkdir_p(NEWROOT "/proc", 0555, err) < 0 ||
        do_mount("proc", NEWROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, err) < 0)
        return -1;
    /* Kernel tunables stay read-only even where a namespace would allow writes. */
    if (do_mount(NEWROOT "/proc/sys", NEWROOT "/proc/sys", NULL, MS_BIND | MS_REC, NULL, err) < 0 ||
        lock_down(NEWROOT "/proc/sys", true, true, err) < 0)
        return -1;
    if (setup_dev(cfg, err) < 0)
        return -1;
    unsigned long tmp_flags = cfg->tmp_noexec ? MS_NOEXEC : 0;
    if (tmpfs_at(NEWROOT "/tmp", cfg->tmp_size, 01777, tmp_flags, cfg, false, err) < 0)
        return -1;
    /* /run and /var/tmp are always fresh (host sockets and scratch files stay
     * out of reach); with a read-only root they are empty and read-only. */
    if (tmpfs_at(NEWROOT "/run", 4 << 20, 0755, MS_NOEXEC, cfg, true, err) < 0 ||
        (cfg->root_readonly && lock_down(NEWROOT "/run", true, true, err) < 0))
        return -1;
    struct stat st;
    if (stat(NEWROOT "/var/tmp", &st) == 0 &&
        (tmpfs_at(NEWROOT "/var/tmp", cfg->tmp_size, 01777, tmp_flags, cfg, false, err) < 0 ||
         (cfg->root_readonly && lock_down(NEWROOT "/var/tmp", true, true, err) < 0)))
        return -1;
    if (!cfg->root_readonly && !has_bind_at(cfg, "/work") &&
        tmpfs_at(NEWROOT "/work", cfg->root_size, 0755, 0, cfg, true, err) < 0)
        return -1;
    if (cfg->in_out) {
        /* Writable until the program starts, so that inputs can be copied
         * in; kn_mount_seal_inputs() makes it read-only then. */
        if (!has_bind_at(cfg, "/in") &&
            tmpfs_at(NEWROOT "/in", cfg->root_size, 0755, 0, cfg, true, err) < 0)
            return -1;
        if (!has_bind_at(cfg, "/out") &&
            tmpfs_at(NEWROOT "/out", cfg->root_size, 0755, 0, cfg, true, err) < 0)
            return -1;
    }
    if (setup_binds(cfg, bind_fds, err) < 0)
        return -1;
    if (cfg->service && cg && setup_sys(cg, err) < 0)
        return -1;
    if (cfg->net.enabled) {
        char src[PATH_MAX], path[PATH_MAX];
        if (kn_net_resolv_conf_path(id, path, sizeof path) < 0)
            return kn_error_set(err, ENAMETOOLONG, "resolv.conf path");
        snprintf(src, sizeof src, OLDROOT "%s", path);
        if (bind_at(src, NEWROOT "/etc/resolv.conf", true, err) < 0)
            return kn_error_prefix(err, "resolv.conf");
    }
    if (cfg->in_out && has_bind_at(cfg, "/in") && lock_down(NEWROOT "/in", true, false, err) < 0)
        return -1;

    /* 4. The root itself holds only mountpoints: read-only from here on
     * (an image's overlay root stays writable unless the profile says not). */
    struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
    if ((!cfg->image_layers || cfg->root_readonly) &&
        kn_sys_mount_setattr(AT_FDCWD, NEWROOT, 0, &ro) < 0)
        return kn_error_set(err, errno, "make the root read-only");

    /* 5. Enter it; the scratch root and the host's root go away together. */
    if (chdir(NEWROOT) < 0)
        return kn_error_set(err, errno, "chdir new root");
    if (kn_sys_pivot_root(".", ".") < 0)
        return kn_error_set(err, errno, "pivot_root into the new root");
    if (umount2(".", MNT_DETACH) < 0)
        return kn_error_set(err, errno, "detach the old root");
    if (chdir("/") < 0)
        return kn_error_set(err, errno, "chdir /");
    return 0;
}

int
kn_mount_writable_paths(const kn_config_t *cfg, const char **out, size_t cap)
{
    static const char *const base[] = {"/tmp", "/dev", "/var/tmp", "/run", NULL};
    size_t n = 0;
    for (const char *const *b = base; *b && n + 1 < cap; b++)
        if (!cfg->root_readonly || n < 2)
            out[n++] = *b;
    if (!cfg->root_readonly && n + 1 < cap)
        out[n++] = "/work";
    if (cfg->image_layers && !cfg->root_readonly && n + 1 < cap)
        out[n++] = "/"; /* the image's overlay root is writable */
    if (cfg->in_out && n + 1 < cap)
        out[n++] = "/out";
    for (size_t i = 0; i < cfg->n_binds && n + 1 < cap; i++)
        if (cfg->binds[i].rw)
            out[n++] = cfg->binds[i].dst;
    out[n] = NULL;
    return (int)n;
}

int
kn_mount_seal_inputs(const kn_config_t *cfg, kn_error_t *err)
{
    if (!cfg->in_out)
        return 0;
    struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
    if (kn_sys_mount_setattr(AT_FDCWD, "/in", AT_RECURSIVE, &ro) < 0)
        return kn_error_set(err, errno, "make /in read-only");
    return 0;
}
