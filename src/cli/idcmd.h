/* idcmd.h - the shape shared by `kennel pause|resume|rm ID...`: one lifecycle
 * API call per sandbox id, the id printed on success. */
#ifndef KN_IDCMD_H
#define KN_IDCMD_H

/* Calls METHOD /v1/sandboxes/ID<suffix> for each ID in argv[1..]; name is
 * the subcommand for messages. Returns the command's exit status. */
int kn_idcmd_run(int argc, char **argv, const char *name, const char *method, const char *suffix);

#endif
