/* command.h - POST /command and friends: shell commands run in their own process
 * group, streamed as line events (foreground) or logged to a memory file
 * (background), with status kept for a bounded number of finished commands. */
#ifndef KN_EXECD_COMMAND_H
#define KN_EXECD_COMMAND_H

#include <stdbool.h>

#include <jansson.h>

#include "core/error.h"
#include "execd.h"
#include "http.h"

/* Creates the store on ex (ex->cmds). -1 with err on failure. */
int kn_command_store_init(kn_execd_t *ex, kn_error_t *err);
/* Kills every running command and frees the store. */
void kn_command_store_free(kn_execd_t *ex);
/* Builds the environment for a child: execd's environment with envs (a JSON
 * object of strings, may be NULL) laid over it. NULL-terminated; free with
 * kn_command_env_free(). */
char **kn_command_env(const void *envs_json);
void kn_command_env_free(char **env);
/* Runs a RunCommandRequest body (consumed) and replies with its stream. */
enum MHD_Result kn_command_start(kn_req_t *req, json_t *body);
/* True once the entrypoint started by POST /_kennel/entrypoint has ended;
 * *code is its exit status (128+N for signal N). */
bool kn_command_main_ended(kn_execd_t *ex, int *code);
/* The shell used for commands: "bash" when present in PATH, else "sh". */
const char *kn_command_shell(void);

#endif
