/* util.h - small file and time helpers shared by the runtime's modules. */
#ifndef KN_UTIL_H
#define KN_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

/* Writes all of buf to path (O_WRONLY, no create). Returns -1 with err. */
int kn_write_file(const char *path, const char *buf, kn_error_t *err);
/* Reads up to cap-1 bytes of path into buf, NUL-terminated. Returns bytes read or -1. */
ssize_t kn_read_file(const char *path, char *buf, size_t cap, kn_error_t *err);
/* Loops over short writes and EINTR. Returns 0 or -1 (errno set). */
int kn_write_all(int fd, const void *buf, size_t len);
/* Reads exactly len bytes unless EOF comes first; returns bytes read or -1. */
ssize_t kn_read_all(int fd, void *buf, size_t len);
/* mkdir -p with mode; existing directories are fine. */
int kn_mkdir_p(const char *path, mode_t mode, kn_error_t *err);
/* Monotonic clock in microseconds. */
uint64_t kn_now_us(void);
/* For a process that lives on after a deep set-up: gives back the stack
 * pages below the caller's frame (touched once, never read again) and the
 * heap's free memory, which would otherwise stay resident for its life. */
void kn_release_setup_memory(void);

#endif
