/* shim.h - the per-sandbox supervisor (`kennel shim`) and how the server
 * talks to it.
 *
 * One shim per sandbox, detached from the server (its own session, parent
 * init), owns the sandbox for its whole life: it spawns a service sandbox
 * whose program is kennel-execd, waits until execd answers /ping, starts the
 * request's entrypoint through execd as the sandbox's main process (execd
 * exits with its status when it ends, which ends the sandbox: Terminated on
 * 0, Failed otherwise), then serves pause/resume/kill/claim on a control
 * socket and records the sandbox's state in its run directory. A warm pool
 * member waits without an entrypoint until a claim brings the request (its
 * env and entrypoint).
 * The server can die and come back: everything it needs is in the run
 * directory and the store.
 *
 * Run directory <run_dir>/<id>/ (root, 0700):
 *   spec.json   normalized create request (written by the server)
 *   lock        flock'ed by the shim while it lives
 *   shim.sock   control socket: one line in ("pause", "resume", "kill",
 *               "snapshot ID", or "claim N" followed by N bytes: a create's
 *               normal form for a warm member), one line out ("ok" or
 *               "error MESSAGE")
 *   snapshot.json  the last snapshot's result (image digest, counts)
 *   state.json  {"state", "reason", "message", "pid", "pidns", "entrypoint", "exitCode"}
 *   shim.log    the shim's and execd's own output
 *   sandbox/    owned by the sandbox's host uid, bound at /run/kennel inside;
 *               holds execd.sock. Kept apart so that the sandbox cannot touch
 *               the shim's files. */
#ifndef KN_SHIM_H
#define KN_SHIM_H

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "error.h"

#define KN_SHIM_SPEC "spec.json"
#define KN_SHIM_LOCK "lock"
#define KN_SHIM_SOCK "shim.sock"
#define KN_SHIM_STATE "state.json"
#define KN_SHIM_LOG "shim.log"
#define KN_SHIM_SANDBOX "sandbox"
/* The last snapshot's result: {"id", "digest", "files", "bytes", ...}. */
#define KN_SHIM_SNAPSHOT "snapshot.json"
/* Snapshot images are named KN_SHIM_SNAPSHOT_REPO:<snapshot id> in the store. */
#define KN_SHIM_SNAPSHOT_REPO "kennel-snapshot"
#define KN_SHIM_EXECD_SOCK "sandbox/execd.sock"
/* Marks the shim's own lines in shim.log (the rest is execd's output). */
#define KN_SHIM_LOG_TAG "kennel-shim"

/* The shim's descriptor 3 (when ready_fd >= 0) gets "pid N\n" at once, then
 * "ready\n" or "error MESSAGE\n", then is closed. Returns the exit status. */
int kn_shim_run(const char *dir, const char *execd_path, int ready_timeout_ms, int ready_fd);

/* Server side. Sends cmd, waits for the answer (timeout_ms). An "error"
 * answer becomes -1 with its message (EBUSY). */
int kn_shim_call(const char *dir, const char *cmd, int timeout_ms, kn_error_t *err);
/* The same with a payload: "cmd LEN\n" then the LEN bytes of data. With
 * keep, the connection stays open once the answer is read (*keep, or -1;
 * the caller closes it): the shim waits for that hang-up before the work
 * that follows its answer (a claim's entrypoint). */
int kn_shim_send(const char *dir, const char *cmd, const char *data, size_t len, int timeout_ms,
                 int *keep, kn_error_t *err);
/* True while a shim holds dir's lock. */
bool kn_shim_alive(const char *dir);
/* state.json as JSON, or NULL when missing or unreadable. */
json_t *kn_shim_state(const char *dir);

#endif
