/* repl.h - long-lived language processes behind code contexts and bash sessions.
 *
 * A repl is one driver process (drivers.h) with four pipes: requests (its fd 3),
 * replies (its fd 4), stdout and stderr (merged for sessions). One run at a
 * time; a run that times out, or whose process dies, resets the repl: the
 * process is killed and the next run starts a fresh one, and the run's error
 * event says so. Other repls and the daemon are unaffected. */
#ifndef KN_EXECD_REPL_H
#define KN_EXECD_REPL_H

#include <jansson.h>
#include <stdbool.h>

#include "core/error.h"
#include "drivers.h"
#include "http.h"

typedef struct kn_repl kn_repl_t;

typedef enum kn_repl_kind {
    KN_REPL_CODE,
    KN_REPL_SESSION,
} kn_repl_kind_t;

/* Starts a repl and registers it. Returns it with one reference for the caller. */
kn_repl_t *kn_repl_create(kn_execd_t *ex, kn_repl_kind_t kind, const kn_driver_t *drv,
                          const char *cwd, bool is_default, kn_error_t *err);
/* Finds a registered repl by id and kind (a reference for the caller), or NULL. */
kn_repl_t *kn_repl_get(kn_execd_t *ex, kn_repl_kind_t kind, const char *id);
/* The default code context of a language, created on first use. */
kn_repl_t *kn_repl_default(kn_execd_t *ex, const kn_driver_t *drv, kn_error_t *err);
void kn_repl_put(kn_execd_t *ex, kn_repl_t *r);
const char *kn_repl_id(const kn_repl_t *r);
const char *kn_repl_language(const kn_repl_t *r);
/* Unregisters and kills it (a running stream ends with an error). */
void kn_repl_remove(kn_execd_t *ex, kn_repl_t *r);
/* Removes every code context of language. Returns how many. */
int kn_repl_remove_language(kn_execd_t *ex, const char *language);
/* [{"id","language"}] of the code contexts, optionally of one language. */
json_t *kn_repl_list(kn_execd_t *ex, const char *language);
/* SIGINT to the repl's process group (stops the current run). -1 if not running. */
int kn_repl_interrupt(kn_repl_t *r);
/* Replies with the stream of one run of code (timeout_ms 0 = none); 409 if busy.
 * cwd (sessions only) changes directory first; it persists. */
enum MHD_Result kn_repl_run(kn_req_t *req, kn_repl_t *r, const char *code, const char *cwd,
                            long timeout_ms);

#endif
