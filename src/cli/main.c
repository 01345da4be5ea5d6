/* main.c - dispatch `kennel SUBCOMMAND ...` to the command table. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* `kennel serve` and `kennel receipts`: the server is its own binary beside
 * this one (server_main.c), so that this one stays lean for `kennel run` and
 * the shims; `receipts` reads the server's SQLite file, so it is there too.
 * exec keeps the pid: whoever started `kennel serve` holds the server
 * itself. */
static int
exec_server(int argc, char **argv)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "kennel: readlink /proc/self/exe: %s\n", strerror(errno));
        return KN_EXIT_KENNEL;
    }
    self[n] = '\0';
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/kennel-server", dirname(self));
    /* the server's argv: kennel-server serve|receipts ARGS... (argv[0] is
     * the command's name) */
    char *args[argc + 2];
    args[0] = path;
    for (int i = 0; i < argc; i++)
        args[i + 1] = argv[i];
    args[argc + 1] = NULL;
    execv(path, args);
    fprintf(stderr, "kennel: %s: cannot run %s: %s\n", argv[0], path, strerror(errno));
    return KN_EXIT_KENNEL;
}

static const kn_command_t commands[] = {
    {"run", "run code or a command in a fresh sandbox, then destroy it", kn_cmd_run},
    {"attest", "prove a profile's isolation with probes; write the evidence bundle", kn_cmd_attest},
    {"attest-probe", "the probes themselves, run inside the sandbox (internal)",
     kn_cmd_attest_probe},
    {"receipts", "export and verify signed receipt chains; print or rotate the keys", exec_server},
    {"serve", "serve the OpenSandbox lifecycle API (sandboxes, proxy to execd)", exec_server},
    {"shim", "supervise one sandbox for `kennel serve` (internal)", kn_cmd_shim},
    {"create", "create a sandbox on a kennel serve", kn_cmd_create},
    {"ls", "list the sandboxes of a kennel serve", kn_cmd_ls},
    {"inspect", "print a sandbox of a kennel serve as JSON", kn_cmd_inspect},
    {"exec", "run a command in a sandbox of a kennel serve, streaming", kn_cmd_exec},
    {"logs", "print a sandbox's logs (execd and its supervisor)", kn_cmd_logs},
    {"cp", "copy a file into or out of a sandbox of a kennel serve", kn_cmd_cp},
    {"pause", "pause sandboxes of a kennel serve", kn_cmd_pause},
    {"resume", "resume paused sandboxes of a kennel serve", kn_cmd_resume},
    {"renew", "set a sandbox to expire SECONDS from now", kn_cmd_renew},
    {"rm", "delete sandboxes of a kennel serve", kn_cmd_rm},
    {"image", "import, list, inspect and remove images (OCI, docker save)", kn_cmd_image},
    {"snapshot", "snapshot a sandbox of a kennel serve (its files); list, remove", kn_cmd_snapshot},
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: kennel COMMAND [ARGS...]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`kennel COMMAND --help` describes one command.\n");
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return KN_EXIT_KENNEL;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("kennel 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].main(argc - 1, argv + 1);
    fprintf(stderr, "kennel: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return KN_EXIT_KENNEL;
}
