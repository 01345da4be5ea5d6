/* drivers.h - the language drivers embedded in execd.
 *
 * A driver is a small program run by the language's own interpreter. It reads
 * one request per line on fd 3 and writes one JSON object per line on fd 4:
 * {"type":"ready"} once at start, then per request any of
 * {"type":"result","text":...} and {"type":"error","ename","evalue","traceback"},
 * and finally {"type":"done"[,"status":N]}. User output goes to the driver's
 * own stdout and stderr, which execd streams separately. Requests are JSON
 * {"code":...} for python and node; bash gets the code as one line of
 * printf %b escapes (bash cannot parse JSON). */
#ifndef KN_EXECD_DRIVERS_H
#define KN_EXECD_DRIVERS_H

#include <stdbool.h>

typedef struct kn_driver {
    const char *language; /* as the API names it */
    const char *runtime;  /* executable looked up in PATH */
    const char *const *argv;
    bool json_requests;
} kn_driver_t;

/* The driver for a language name (python, javascript/js/node, bash), or NULL. */
const kn_driver_t *kn_driver_find(const char *language);

#endif
