/* execd.h - the daemon-wide context passed to every module of kennel-execd.
 *
 * One kn_execd_t is built by main() and handed down; modules keep their own
 * state behind opaque stores owned by it. Nothing here is a global. */
#ifndef KN_EXECD_H
#define KN_EXECD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#define KN_EXECD_DEFAULT_PORT 44772
#define KN_EXECD_DEFAULT_MAX_STDOUT (1024 * 1024)
#define KN_EXECD_DEFAULT_MAX_STDERR (100 * 1024)
/* Largest JSON request body accepted (uploads stream and are not bounded by it). */
#define KN_EXECD_MAX_BODY (8 * 1024 * 1024)
/* Per-connection memory for headers and buffers; larger header blocks get a 431. */
#define KN_EXECD_HEADER_MEMORY (64 * 1024)
/* A kept-alive connection idle this long is closed (streams in progress are not idle). */
#define KN_EXECD_IDLE_TIMEOUT_S 600

struct kn_cmdstore;
struct kn_replstore;
struct kn_ptystore;

typedef struct kn_execd {
    int root_fd;       /* O_PATH directory fd of the served root: "/" in a sandbox */
    bool no_openat2;   /* use the per-component O_NOFOLLOW walk instead of openat2 */
    size_t max_stdout; /* per foreground run, bytes; 0 = unlimited */
    size_t max_stderr; /* per foreground run, bytes; 0 = unlimited */
    const char *token; /* X-EXECD-ACCESS-TOKEN required when non-NULL */
    struct kn_cmdstore *cmds;
    struct kn_replstore *repls; /* code contexts and bash sessions */
    struct kn_ptystore *ptys;   /* /pty sessions */
    atomic_bool stopping;       /* set at shutdown: tunnels end within a second */
} kn_execd_t;

#endif
