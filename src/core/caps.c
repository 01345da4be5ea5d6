#include "caps.h"

#include <errno.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int
last_cap(void)
{
    /* Probe upward: PR_CAPBSET_READ fails with EINVAL past the last one. */
    int c = 40;
    while (c < 64 && prctl(PR_CAPBSET_READ, c + 1, 0, 0, 0) >= 0)
        c++;
    while (c > 0 && prctl(PR_CAPBSET_READ, c, 0, 0, 0) < 0)
        c--;
    return c;
}

int
kn_caps_drop_bounding(kn_error_t *err)
{
    int last = last_cap();
    for (int c = 0; c <= last; c++)
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
            return kn_error_set(err, errno, "drop capability %d from the bounding set", c);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return kn_error_set(err, errno, "clear ambient capabilities");
    /* uid 0 inside gets no capabilities from execve, and that cannot be undone. */
    unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                         SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED;
    if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0)
        return kn_error_set(err, errno, "set securebits");
    return 0;
}

int
kn_caps_clear(kn_error_t *err)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capset, &hdr, data) < 0)
        return kn_error_set(err, errno, "capset");
    return 0;
}
