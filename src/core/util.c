#include "util.h"

#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

int
kn_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t
kn_read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

int
kn_write_file(const char *path, const char *buf, kn_error_t *err)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return kn_error_set(err, errno, "open %s", path);
    int rc = kn_write_all(fd, buf, strlen(buf));
    int saved = errno;
    close(fd);
    if (rc < 0)
        return kn_error_set(err, saved, "write '%s' to %s", buf, path);
    return 0;
}

ssize_t
kn_read_file(const char *path, char *buf, size_t cap, kn_error_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kn_error_set(err, errno, "open %s", path);
    ssize_t n = kn_read_all(fd, buf, cap - 1);
    int saved = errno;
    close(fd);
    if (n < 0)
        return kn_error_set(err, saved, "read %s", path);
    buf[n] = '\0';
    return n;
}

int
kn_mkdir_p(const char *path, mode_t mode, kn_error_t *err)
{
    /* The common case is one missing level: try it before walking. */
    if (mkdir(path, mode) == 0 || errno == EEXIST)
        return 0;
    if (errno != ENOENT)
        return kn_error_set(err, errno, "mkdir %s", path);
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return kn_error_set(err, ENAMETOOLONG, "mkdir %s", path);
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(tmp, mode) < 0 && errno != EEXIST)
                return kn_error_set(err, errno, "mkdir %s", tmp);
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return 0;
}

uint64_t
kn_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000ULL;
}

#define KN_STACK_RELEASE (512 * 1024)

/* Call from a process's main thread only: below its stack, up to the stack
 * rlimit, the kernel keeps other mappings away. */
void __attribute__((noinline)) kn_release_setup_memory(void)
{
    /* Below this frame, keeping a page of margin (the red zone, and a signal
     * frame that may be on its way); pages below the stack's lowest touched
     * one are not mapped, and madvise skips them (ENOMEM is expected). */
    volatile char here = 0;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t top = ((uintptr_t)&here & ~(page - 1)) - page;
    if (top > KN_STACK_RELEASE)
        madvise((void *)(top - KN_STACK_RELEASE), KN_STACK_RELEASE, MADV_DONTNEED);
    (void)here;
    malloc_trim(0);
}
