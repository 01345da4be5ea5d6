/* cmd_shim.c - `kennel shim`: the per-sandbox supervisor that `kennel
 * serve` starts, detached, for each sandbox. Not meant to be run by hand. */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "shim.h"

int
kn_cmd_shim(int argc, char **argv)
{
    static const struct option opts[] = {
        {"execd", required_argument, 0, 'e'},
        {"ready-timeout", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *execd = NULL;
    int timeout = 30000, c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            execd = optarg;
            break;
        case 't':
            timeout = atoi(optarg);
            break;
        case 'h':
            printf("usage: kennel shim --execd PATH [--ready-timeout MS] RUN_DIR\n"
                   "The supervisor of one sandbox, started by `kennel serve`.\n");
            return 0;
        default:
            fprintf(stderr, "kennel shim: bad arguments\n");
            return KN_EXIT_KENNEL;
        }
    }
    if (!execd || optind + 1 != argc || timeout <= 0) {
        fprintf(stderr, "usage: kennel shim --execd PATH [--ready-timeout MS] RUN_DIR\n");
        return KN_EXIT_KENNEL;
    }
    /* Descriptor 3, when open, is the server's readiness pipe; nothing
     * else of the caller crosses. */
    int ready = fcntl(3, F_GETFD) >= 0 ? 3 : -1;
    if (ready >= 0)
        fcntl(3, F_SETFD, FD_CLOEXEC);
    close_range(4, ~0U, 0);
    return kn_shim_run(argv[optind], execd, timeout, ready);
}
