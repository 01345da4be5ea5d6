/* landlock.h - filesystem write allowlist and IPC scoping, where the kernel
 * has Landlock. A second line behind the read-only mounts. */
#ifndef KN_LANDLOCK_H
#define KN_LANDLOCK_H

#include "error.h"

/* The Landlock ABI version of the running kernel, or 0 when unavailable. */
int kn_landlock_abi(void);
/* Restricts the calling thread: reading and executing is allowed everywhere,
 * writing only beneath the NULL-terminated list `writable`. Signals and
 * abstract unix sockets are scoped to the sandbox when the ABI has it.
 * Returns the ABI applied (0: unavailable, nothing done) or -1. */
int kn_landlock_apply(const char *const *writable, kn_error_t *err);

#endif
