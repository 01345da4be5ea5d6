/* main.c - dispatch `kennel SUBCOMMAND ...` to the command table. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const kn_command_t commands[] = {
    {"run", "run code or a command in a fresh sandbox, then destroy it", kn_cmd_run},
    {"attest", "prove a profile's isolation with probes; write the evidence bundle", kn_cmd_attest},
    {"attest-probe", "the probes themselves, run inside the sandbox (internal)",
     kn_cmd_attest_probe},
    {"receipts", "verify a chain of signed receipts; print a key's public half", kn_cmd_receipts},
    {"serve", "serve the OpenSandbox lifecycle API (sandboxes, proxy to execd)", kn_cmd_serve},
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
