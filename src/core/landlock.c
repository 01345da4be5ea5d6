#include "landlock.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "compat.h"

/* Constants newer than Debian 12's headers. */
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#define KN_LL_SCOPE_ABSTRACT_UNIX (1ULL << 0)
#define KN_LL_SCOPE_SIGNAL (1ULL << 1)

/* Our own copy of the ruleset attribute: the scoped field came in ABI 6. */
struct kn_ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

int
kn_landlock_abi(void)
{
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return abi < 0 ? 0 : (int)abi;
}

int
kn_landlock_apply(const char *const *writable, kn_error_t *err)
{
    int abi = kn_landlock_abi();
    if (abi <= 0)
        return 0;
    const uint64_t read_rights =
        LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
    uint64_t write_rights = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
                            LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
                            LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
                            LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
                            LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;
    if (abi >= 2)
        write_rights |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3)
        write_rights |= LANDLOCK_ACCESS_FS_TRUNCATE;

    struct kn_ll_ruleset_attr attr = {.handled_access_fs = read_rights | write_rights};
    size_t attr_size = offsetof(struct kn_ll_ruleset_attr, handled_access_net);
    if (abi >= 6) {
        attr.scoped = KN_LL_SCOPE_ABSTRACT_UNIX | KN_LL_SCOPE_SIGNAL;
        attr_size = sizeof attr;
    }
    int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
    if (rs < 0)
        return kn_error_set(err, errno, "landlock_create_ruleset");
    int rc = -1;
    struct landlock_path_beneath_attr pb = {.allowed_access = read_rights};
    pb.parent_fd = open("/", O_PATH | O_CLOEXEC);
    if (pb.parent_fd < 0) {
        kn_error_set(err, errno, "landlock: open /");
        goto out;
    }
    if (syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0) {
        kn_error_set(err, errno, "landlock rule for /");
        close(pb.parent_fd);
        goto out;
    }
    close(pb.parent_fd);
    for (const char *const *w = writable; w && *w; w++) {
        pb.allowed_access = read_rights | write_rights;
        pb.parent_fd = open(*w, O_PATH | O_CLOEXEC);
        if (pb.parent_fd < 0)
            continue; /* not present in this sandbox */
        long r = syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
        if (r < 0 && errno == EINVAL) {
            /* A file, not a directory: only file rights apply. */
            pb.allowed_access = read_rights & ~LANDLOCK_ACCESS_FS_READ_DIR;
            pb.allowed_access |= LANDLOCK_ACCESS_FS_WRITE_FILE;
            if (abi >= 3)
                pb.allowed_access |= LANDLOCK_ACCESS_FS_TRUNCATE;
            r = syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
        }
        int saved = errno;
        close(pb.parent_fd);
        if (r < 0) {
            kn_error_set(err, saved, "landlock rule for %s", *w);
            goto out;
        }
    }
    if (syscall(SYS_landlock_restrict_self, rs, 0) < 0) {
        kn_error_set(err, errno, "landlock_restrict_self");
        goto out;
    }
    rc = abi;
out:
    close(rs);
    return rc;
}
