/* handlers.h - every route handler of execd, grouped by the module that owns it.
 * Each takes the request and queues exactly one response. */
#ifndef KN_EXECD_HANDLERS_H
#define KN_EXECD_HANDLERS_H

#include "http.h"

/* command.c */
enum MHD_Result kn_command_run(kn_req_t *req);
enum MHD_Result kn_command_interrupt(kn_req_t *req);
enum MHD_Result kn_command_status(kn_req_t *req);
enum MHD_Result kn_command_logs(kn_req_t *req);
/* Kennel's supervisor only (not in the spec), each once per execd:
 * POST /_kennel/env {"envs"} lays variables over execd's environment (so
 * that every later command, session and code context has them);
 * POST /_kennel/entrypoint {"command", "envs"?, "start"?} sets the
 * sandbox's main process (and its env), whose end ends execd with its
 * status, and starts it unless start is false; POST /_kennel/start starts
 * the one set (again: nothing). */
enum MHD_Result kn_command_set_env(kn_req_t *req);
enum MHD_Result kn_command_entrypoint(kn_req_t *req);
enum MHD_Result kn_command_entrypoint_start(kn_req_t *req);

/* files.c */
enum MHD_Result kn_files_info(kn_req_t *req);
enum MHD_Result kn_files_delete(kn_req_t *req);
enum MHD_Result kn_files_permissions(kn_req_t *req);
enum MHD_Result kn_files_mv(kn_req_t *req);
enum MHD_Result kn_files_search(kn_req_t *req);
enum MHD_Result kn_files_replace(kn_req_t *req);
enum MHD_Result kn_files_download(kn_req_t *req);
enum MHD_Result kn_dirs_list(kn_req_t *req);
enum MHD_Result kn_dirs_create(kn_req_t *req);
enum MHD_Result kn_dirs_delete(kn_req_t *req);

/* code.c */
enum MHD_Result kn_code_context_create(kn_req_t *req);
enum MHD_Result kn_code_contexts_list(kn_req_t *req);
enum MHD_Result kn_code_contexts_delete_language(kn_req_t *req);
enum MHD_Result kn_code_context_get(kn_req_t *req);
enum MHD_Result kn_code_context_delete(kn_req_t *req);
enum MHD_Result kn_code_run(kn_req_t *req);
enum MHD_Result kn_code_interrupt(kn_req_t *req);

/* session.c */
enum MHD_Result kn_session_create(kn_req_t *req);
enum MHD_Result kn_session_run(kn_req_t *req);
enum MHD_Result kn_session_delete(kn_req_t *req);

/* tunnel.c: GET /tunnel/{port} with Upgrade: kennel-tunnel answers 101 and
 * then carries bytes to 127.0.0.1:{port} (or [::1]) inside the sandbox until
 * either side ends; 502 PORT_UNREACHABLE when nothing accepts there. */
struct kn_tunnel;
enum MHD_Result kn_tunnel_open(kn_req_t *req);
/* Closes what a tunnel that never started left open (from on_completed). */
void kn_tunnel_free(struct kn_tunnel *t);

/* pty.c: interactive shells over a WebSocket (see pty.c's head). */
struct kn_pty_conn;
int kn_pty_store_init(kn_execd_t *ex, kn_error_t *err);
void kn_pty_store_free(kn_execd_t *ex);
enum MHD_Result kn_pty_create(kn_req_t *req);
enum MHD_Result kn_pty_status(kn_req_t *req);
enum MHD_Result kn_pty_delete(kn_req_t *req);
enum MHD_Result kn_pty_ws(kn_req_t *req);
void kn_pty_conn_free(struct kn_pty_conn *c);

/* metrics.c */
enum MHD_Result kn_metrics_get(kn_req_t *req);
enum MHD_Result kn_metrics_watch(kn_req_t *req);

#endif
