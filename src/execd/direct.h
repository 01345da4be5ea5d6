/* direct.h - running a simple command line without starting a shell.
 *
 * POST /command hands its command line to `bash -c`. For a simple command
 * (a program name and plain words: no quoting, expansion, redirection,
 * operator, assignment or builtin) bash does nothing but look the program up
 * in PATH and exec it in place (its one-shot path), after setting PWD, SHLVL
 * and _ in the environment. Starting bash for that costs more than the
 * command itself for short ones (about 0.7 ms of the 1.3 ms that
 * `bash -c true` takes here), so execd does that lookup and exec itself,
 * with the environment bash would have passed. Anything else, and anything
 * whose lookup fails (bash's own error messages), still goes to bash. */
#ifndef KN_EXECD_DIRECT_H
#define KN_EXECD_DIRECT_H

#include <stdbool.h>

typedef struct kn_direct {
    char **argv; /* the words, NULL-terminated; argv[0] as written */
    char *path;  /* what to execve: argv[0] found in PATH, or as written */
} kn_direct_t;

/* Plans `command` as a direct exec. *env is the command's environment
 * (NULL-terminated, each entry malloc'ed, as kn_command_env returns); cwd is
 * where it will run (NULL = execd's own). Returns true with d filled and
 * *env amended as bash would amend it (PWD, SHLVL, _); false when the
 * command must go to the shell (nothing changed), or without memory (*env
 * may then hold some of those amendments, which bash would make anyway). */
bool kn_direct_plan(const char *command, char ***env, const char *cwd, kn_direct_t *d);
void kn_direct_free(kn_direct_t *d);

/* The decision alone, for tests: true when `command` is made only of plain
 * words and its first word is neither a builtin nor a keyword of bash
 * (`true` and `false` without arguments excepted: the programs behave the
 * same). */
bool kn_direct_simple(const char *command);

#endif
