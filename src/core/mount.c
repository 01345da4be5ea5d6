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
    const char *image = cfg->image_base ? cfg->image_base : cfg->image;
    bool host = !strcmp(image, "host");
    snprintf(src_root, sizeof src_root, "%s%s", OLDROOT, host ? "" : image);
    DIR *d = opendir(src_root);
    if (!d)
        return kn_error_set(err, errno, "open image root %s", host ? "/" : image);
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

/* The writable layer, in the scratch root: upper/ and work/ for overlayfs. */
#define LAYER "/overlay"

/* Attaches the launcher's writable layer (wlayer.h) at LAYER, or makes a
 * tmpfs there (a launcher without the right to make one outside). */
static int
writable_layer(const kn_config_t *cfg, int wlayer_fd, kn_error_t *err)
{
    if (wlayer_fd >= 0) {
        if (mkdir(LAYER, 0755) < 0)
            return kn_error_set(err, errno, "mkdir " LAYER);
        if (kn_sys_move_mount(wlayer_fd, "", AT_FDCWD, LAYER, MOVE_MOUNT_F_EMPTY_PATH) < 0)
            return kn_error_set(err, errno, "attach the writable layer");
        return 0;
    }
    if (tmpfs_at(LAYER, cfg->root_size, 0755, 0, cfg, false, err) < 0)
        return -1;
    if (mkdir(LAYER "/upper", 0755) < 0 || mkdir(LAYER "/work", 0755) < 0 ||
        chmod(LAYER "/upper", 0755) < 0)
        return kn_error_set(err, errno, "mkdir the writable layer's directories");
    return 0;
}

/* Appends the image's layers to opts as overlayfs lower directories,
 * topmost first: "HEX/fs" (or "HEX/fs/SUB" when sub is given, only where
 * that exists), relative to the layer directory, which is the working
 * directory (the option string must fit in a page). *count: how many. */
static int
lower_dirs(const kn_config_t *cfg, const char *sub, char *opts, size_t cap, size_t *n,
           size_t *count, kn_error_t *err)
{
    size_t total = 0;
    *count = 0;
    while (cfg->image_layers[total])
        total++;
    for (size_t i = total; i-- > 0;) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s%s%s", cfg->image_layers[i], sub ? "/" : "", sub ? sub : "");
        struct stat st;
        if (sub && (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode)))
            continue;
        *n += (size_t)snprintf(opts + *n, *n < cap ? cap - *n : 0, "%s%s", *count ? ":" : "", dir);
        (*count)++;
        if (*n >= cap)
            return kn_error_set(err, E2BIG, "image has too many layers for one overlay mount");
    }
    return 0;
}

/* An overlay of the image's layers (or their SUB directories) at dst, its
 * upper and work directories in the writable layer. We are inside the
 * sandbox's user namespace, so overlayfs keeps its markers in user.*
 * xattrs (`userxattr`); the image store writes opaque directories that way
 * and whiteouts as 0/0 devices. Returns 1 mounted, 0 when no layer has sub. */
static int
overlay_at(const kn_config_t *cfg, const char *sub, const char *upper, const char *work,
           const char *dst, kn_error_t *err)
{
    char opts[4096], dir[PATH_MAX];
    size_t n = (size_t)snprintf(opts, sizeof opts,
                                "userxattr,upperdir=%s,workdir=%s,lowerdir=", upper, work);
    size_t count = 0;
    snprintf(dir, sizeof dir, OLDROOT "%s", cfg->image_layer_dir);
    if (chdir(dir) < 0)
        return kn_error_set(err, errno, "image layers %s", cfg->image_layer_dir);
    int rc = lower_dirs(cfg, sub, opts, sizeof opts, &n, &count, err);
    if (rc == 0 && count)
        rc = do_mount("overlay", dst, "overlay", MS_NOSUID | MS_NODEV, opts, err);
    if (chdir("/") < 0 && rc == 0)
        rc = kn_error_set(err, errno, "chdir /");
    return rc < 0 ? -1 : count > 0;
}

/* A stored image: its layers read-only under the writable layer. */
static int
overlay_root(const kn_config_t *cfg, int wlayer_fd, kn_error_t *err)
{
    if (writable_layer(cfg, wlayer_fd, err) < 0)
        return -1;
    return overlay_at(cfg, NULL, LAYER "/upper", LAYER "/work", NEWROOT, err) < 0 ? -1 : 0;
}

/* The places a sandbox writes to outside an image's root. With one
 * writable layer they are its directories (upper/work, upper/tmp,
 * upper/var/tmp); work: overlayfs's work directory for each. */
static const struct place {
    const char *path, *work;
    mode_t mode;
    bool owned; /* belongs to the sandbox's user, not its root */
} places[] = {{"work", "work", 0755, true},
              {"tmp", "tmp", 01777, false},
              {"var/tmp", "var-tmp", 01777, false},
              {NULL, NULL, 0, false}};

/* Every write goes to one layer (snapshots capture it, one size limit
 * bounds it): true for an image's writable root, a service sandbox, and a
 * launcher-made layer. `kennel run` on the host keeps a tmpfs per place. */
static bool
one_layer(const kn_config_t *cfg, int wlayer_fd)
{
    return !cfg->root_readonly && (cfg->image_layers || wlayer_fd >= 0 || cfg->service);
}

static int
mkdir_owned(const char *path, mode_t mode, const kn_config_t *cfg, bool owned, kn_error_t *err)
{
    if (kn_mkdir_p(path, 0755, err) < 0)
        return -1;
    if (chmod(path, mode) < 0 || (owned && chown(path, cfg->uid, cfg->gid) < 0))
        return kn_error_set(err, errno, "set up %s", path);
    return 0;
}

/* A host or directory root with one writable layer: each place is its
 * directory in the layer, bound in; over a snapshot of such a sandbox
 * (image_layers with image_base), an overlay of the snapshot's copy of the
 * place under it. */
static int
layer_places(const kn_config_t *cfg, kn_error_t *err)
{
    for (const struct place *p = places; p->path; p++) {
        char dst[PATH_MAX], upper[PATH_MAX], work[PATH_MAX];
        struct stat st;
        snprintf(dst, sizeof dst, NEWROOT "/%s", p->path);
        snprintf(upper, sizeof upper, LAYER "/upper/%s", p->path);
        snprintf(work, sizeof work, LAYER "/work/%s", p->work);
        if (strchr(p->path, '/') && stat(dst, &st) < 0)
            continue; /* a root without /var/tmp */
        if (!strchr(p->path, '/') && make_mountpoint(dst, true, err) < 0)
            return -1;
        if (mkdir_owned(upper, p->mode, cfg, p->owned, err) < 0)
            return -1;
        int mounted = 0;
        if (cfg->image_layers) {
            if (mkdir(work, 0755) < 0 && errno != EEXIST)
                return kn_error_set(err, errno, "mkdir %s", work);
            if ((mounted = overlay_at(cfg, p->path, upper, work, dst, err)) < 0)
                return -1;
        }
        if (!mounted && (do_mount(upper, dst, NULL, MS_BIND, NULL, err) < 0 ||
                         lock_down(dst, false, false, err) < 0))
            return -1;
    }
    return 0;
}

/* An image's root with one writable layer: the places are plain
 * directories of the root (made when the image has none). */
static int
root_places(const kn_config_t *cfg, kn_error_t *err)
{
    for (const struct place *p = places; p->path; p++) {
        char dst[PATH_MAX];
        struct stat st;
        snprintf(dst, sizeof dst, NEWROOT "/%s", p->path);
        if (lstat(dst, &st) == 0) {
            /* /tmp and /var/tmp are everyone's, as a fresh tmpfs was. */
            if (S_ISDIR(st.st_mode) && p->mode == 01777 && (st.st_mode & 07777) != 01777 &&
                chmod(dst, 01777) < 0)
                return kn_error_set(err, errno, "chmod %s", dst);
            continue;
        }
        if (strchr(p->path, '/'))
            continue;
        if (mkdir_owned(dst, p->mode, cfg, p->owned, err) < 0)
            return -1;
    }
    return 0;
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

/* The launcher's umask (the server's is 077) must not shape the
 * sandbox's own directories (mount points such as /.kennel, places made in
 * an image's root): they are made with 022, and the caller's mask comes
 * back for the program. */
static int build_root(const kn_config_t *cfg, const kn_cgroup_t *cg, const char *id,
                      const int *bind_fds, int wlayer_fd, kn_error_t *err);

int
kn_mount_setup_root(const kn_config_t *cfg, const kn_cgroup_t *cg, const char *id,
                    const int *bind_fds, int wlayer_fd, kn_error_t *err)
{
    mode_t mask = umask(022);
    int rc = build_root(cfg, cg, id, bind_fds, wlayer_fd, err);
    umask(mask);
    return rc;
}

static int
build_root(const kn_config_t *cfg, const kn_cgroup_t *cg, const char *id, const int *bind_fds,
           int wlayer_fd, kn_error_t *err)
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
    bool one = one_layer(cfg, wlayer_fd);
    if (cfg->image_layers && !cfg->image_base) {
        if (overlay_root(cfg, wlayer_fd, err) < 0 || (one && root_places(cfg, err) < 0))
            return -1;
    } else if (tmpfs_at(NEWROOT, 1 << 20, 0755, 0, cfg, false, err) < 0 ||
               bind_image_top(cfg, err) < 0) {
        return -1;
    } else if (one && (writable_layer(cfg, wlayer_fd, err) < 0 || layer_places(cfg, err) < 0)) {
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
    if (!one && tmpfs_at(NEWROOT "/tmp", cfg->tmp_size, 01777, tmp_flags, cfg, false, err) < 0)
        return -1;
    /* /run and /var/tmp are always fresh (host sockets and scratch files stay
     * out of reach); with a read-only root they are empty and read-only. */
    if (tmpfs_at(NEWROOT "/run", 4 << 20, 0755, MS_NOEXEC, cfg, true, err) < 0 ||
        (cfg->root_readonly && lock_down(NEWROOT "/run", true, true, err) < 0))
        return -1;
    struct stat st;
    if (!one && stat(NEWROOT "/var/tmp", &st) == 0 &&
        (tmpfs_at(NEWROOT "/var/tmp", cfg->tmp_size, 01777, tmp_flags, cfg, false, err) < 0 ||
         (cfg->root_readonly && lock_down(NEWROOT "/var/tmp", true, true, err) < 0)))
        return -1;
    if (!one && !cfg->root_readonly && !has_bind_at(cfg, "/work") &&
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
    if ((!cfg->image_layers || cfg->image_base || cfg->root_readonly) &&
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
    if (cfg->image_layers && !cfg->image_base && !cfg->root_readonly && n + 1 < cap)
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
