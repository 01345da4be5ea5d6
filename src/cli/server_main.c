/* server_main.c - `kennel-server`: the lifecycle server's own binary.
 * `kennel serve ARGS...` execs `kennel-server serve ARGS...` (see main.c);
 * it links libmicrohttpd and SQLite, which the lean `kennel` does not. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int
main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "serve"))
        return kn_cmd_serve(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "receipts"))
        return kn_cmd_receipts(argc - 1, argv + 1);
    fprintf(stderr, "usage: kennel-server serve|receipts ... (or: kennel serve --help)\n");
    return KN_EXIT_KENNEL;
}
