/* copy.c - moving files across the sandbox boundary from outside.
 *
 * The launcher reaches the sandbox's filesystem through /proc/PID/root of its
 * init and resolves every guest path with openat2(RESOLVE_IN_ROOT), so ".."
 * and absolute symlinks stay inside the sandbox's root. The final component
 * is never followed (RESOLVE_NO_SYMLINKS on the last open would refuse links
 * in the middle too, which a guest may legitimately have). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sandbox_internal.h"
#include "util.h"

static int
open_in_root(kn_sandbox_t *sb, const char *guest, int flags, mode_t mode, kn_error_t *err)
{
    char root[64];
    snprintf(root, sizeof root, "/proc/%d/root", (int)sb->pid);
    int rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0)
        return kn_error_set(err, errno, "open sandbox root");
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW),
                           .mode = (flags & O_CREAT) ? mode : 0,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    /* Files inside belong to the sandbox's user. A root launcher also has no
     * id inside the sandbox's user namespace, and the kernel refuses to create
     * inodes for an unmapped owner (EOVERFLOW): act as the mapped user. */
    bool as_sandbox_user = geteuid() == 0;
    if (as_sandbox_user) {
        setfsgid(KN_ROOTMAP_BASE + sb->cfg->gid);
        setfsuid(KN_ROOTMAP_BASE + sb->cfg->uid);
    }
    int fd = (int)syscall(SYS_openat2, rfd, guest, &how, sizeof how);
    int saved = errno;
    if (as_sandbox_user) {
        setfsuid(0);
        setfsgid(0);
    }
    close(rfd);
    if (fd < 0)
        return kn_error_set(err, saved, "open %s in the sandbox", guest);
    return fd;
}

static int
copy_fd(int in, int out)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (kn_write_all(out, buf, (size_t)n) < 0)
            return -1;
    }
}

int
kn_sandbox_copy_in(kn_sandbox_t *sb, const char *local, const char *guest, kn_error_t *err)
{
    int rc = -1, in = -1, out = -1;
    if (sb->state != KN_SB_READY)
        return kn_error_set(err, EINVAL, "files can be copied in only before the program starts");
    in = open(local, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return kn_error_set(err, errno, "upload %s", local);
    struct stat st;
    if (fstat(in, &st) < 0) {
        kn_error_set(err, errno, "upload %s", local);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        kn_error_set(err, S_ISDIR(st.st_mode) ? EISDIR : EINVAL, "upload %s: not a regular file",
                     local);
        goto out;
    }
    out = open_in_root(sb, guest, O_WRONLY | O_CREAT | O_TRUNC, st.st_mode & 0755, err);
    if (out < 0)
        goto out;
    if (copy_fd(in, out) < 0) {
        kn_error_set(err, errno, "copy %s to %s", local, guest);
        goto out;
    }
    rc = 0;
out:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return rc;
}

int
kn_sandbox_write_in(kn_sandbox_t *sb, const char *guest, const void *data, size_t len,
                    kn_error_t *err)
{
    if (sb->state != KN_SB_READY)
        return kn_error_set(err, EINVAL, "files can be copied in only before the program starts");
    int out = open_in_root(sb, guest, O_WRONLY | O_CREAT | O_TRUNC, 0644, err);
    if (out < 0)
        return -1;
    int rc = 0;
    if (kn_write_all(out, data, len) < 0)
        rc = kn_error_set(err, errno, "write %s", guest);
    close(out);
    return rc;
}

int
kn_sandbox_copy_out(kn_sandbox_t *sb, const char *guest, const char *local, kn_error_t *err)
{
    int rc = -1, in = -1, out = -1;
    if (sb->state != KN_SB_EXITED || sb->pid <= 0)
        return kn_error_set(err, EINVAL, "files can be copied out only after the program ends");
    /* O_NONBLOCK: opening a FIFO the sandbox left must not wait for a writer. */
    in = open_in_root(sb, guest, O_RDONLY | O_NONBLOCK, 0, err);
    if (in < 0)
        return -1;
    struct stat st;
    if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode)) {
        kn_error_set(err, EINVAL, "download %s: not a regular file", guest);
        goto out;
    }
    fcntl(in, F_SETFL, 0);
    out = open(local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (out < 0) {
        kn_error_set(err, errno, "download to %s", local);
        goto out;
    }
    if (copy_fd(in, out) < 0) {
        kn_error_set(err, errno, "copy %s to %s", guest, local);
        goto out;
    }
    rc = 0;
out:
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return rc;
}
