/* cli.h - the kennel command table. Each subcommand lives in its own file
 * (cmd_<name>.c), parses its arguments and calls one library function. */
#ifndef KN_CLI_H
#define KN_CLI_H

/* Exit code for Kennel's own errors (bad flags, set-up failures), distinct
 * from the program's codes and from 128+N for signals. */
#define KN_EXIT_KENNEL 125

typedef struct kn_command {
    const char *name;
    const char *summary;
    int (*main)(int argc, char **argv);
} kn_command_t;

int kn_cmd_run(int argc, char **argv);
int kn_cmd_attest(int argc, char **argv);
int kn_cmd_attest_probe(int argc, char **argv);
int kn_cmd_receipts(int argc, char **argv);
int kn_cmd_serve(int argc, char **argv);
int kn_cmd_shim(int argc, char **argv);
int kn_cmd_create(int argc, char **argv);
int kn_cmd_ls(int argc, char **argv);
int kn_cmd_inspect(int argc, char **argv);
int kn_cmd_exec(int argc, char **argv);
int kn_cmd_logs(int argc, char **argv);
int kn_cmd_cp(int argc, char **argv);
int kn_cmd_pause(int argc, char **argv);
int kn_cmd_resume(int argc, char **argv);
int kn_cmd_renew(int argc, char **argv);
int kn_cmd_rm(int argc, char **argv);
int kn_cmd_image(int argc, char **argv);
int kn_cmd_snapshot(int argc, char **argv);

#endif
