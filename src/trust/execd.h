/* execd.h - what the receipt of one proxied execd request commits to.
 *
 * The server proxies every execd call (it sees the request and the response
 * as they pass) and issues receipts for them (docs/receipts.md). A capture
 * follows one request: it classifies it (kn_receipt_execd_action_type()),
 * builds the parameters that action.parameters_hash covers, and folds the
 * response, streamed or not, into the object outcome.response_hash covers,
 * in the shapes ADR-0027 gives (e.g. {"command","env"} -> {"exit_code"} for
 * /command, {"code_hash","language"} -> {"result_hash","logs_hash"} for
 * /code) and Kennel's documented ones for the routes the ADR does not name.
 *
 * Memory is bounded whatever the backend sends (it lives in the sandbox and
 * is untrusted): raw bodies are hashed as they pass, SSE events are parsed
 * one at a time up to KN_EXECD_MAX_EVENT bytes, upload parts are hashed,
 * never kept. Not thread-safe: one capture belongs to one request. */
#ifndef KN_TRUST_EXECD_H
#define KN_TRUST_EXECD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/error.h"

/* Largest SSE event parsed (execd's own are at most 64 KiB of text). */
#define KN_EXECD_MAX_EVENT (1024 * 1024)
/* Largest request body read before forwarding (execd's own cap). */
#define KN_EXECD_MAX_BODY (8 * 1024 * 1024)

typedef struct kn_execd_capture kn_execd_capture_t;

/* A capture for method and target (path and query as sent to execd), or
 * NULL with *not_action true for requests that are not actions (health,
 * metrics, reading a command's status or logs). NULL with *not_action false
 * and err set on ENOMEM. */
kn_execd_capture_t *kn_execd_capture_new(const char *method, const char *target, bool *not_action,
                                         kn_error_t *err);
void kn_execd_capture_free(kn_execd_capture_t *c);

/* action.type (static), target.system, target.resource (the path without
 * the query: file names are parameters, hashed, not shown). Borrowed. */
const char *kn_execd_capture_type(const kn_execd_capture_t *c);
const char *kn_execd_capture_system(const kn_execd_capture_t *c);
const char *kn_execd_capture_resource(const kn_execd_capture_t *c);

/* True when the request body holds the parameters and must be read whole
 * (at most KN_EXECD_MAX_BODY) before the request is forwarded: every route
 * but uploads, which stream. */
bool kn_execd_capture_reads_body(const kn_execd_capture_t *c);
/* The request's Content-Type (multipart boundary of uploads). */
void kn_execd_capture_request_type(kn_execd_capture_t *c, const char *content_type);
/* Request body bytes, as they pass (uploads) or all at once. */
void kn_execd_capture_request_body(kn_execd_capture_t *c, const char *data, size_t len);
/* The parameters object as far as known: complete once the body has been
 * given (or for requests without a body); NULL with *pending true for an
 * upload whose parts have not all passed yet. New reference. */
json_t *kn_execd_capture_parameters(kn_execd_capture_t *c, bool *pending, kn_error_t *err);

/* The response head and its body bytes as execd sends them. */
void kn_execd_capture_response_head(kn_execd_capture_t *c, unsigned status,
                                    const char *content_type);
void kn_execd_capture_response_body(kn_execd_capture_t *c, const char *data, size_t len);

/* The outcome after the response: *response (new reference), *status
 * ("success" or "failure", static) and, on failure, a short error (no
 * request or response content, which receipts only hash). complete is
 * false when the response did not reach the client whole. */
int kn_execd_capture_outcome(kn_execd_capture_t *c, bool complete, json_t **response,
                             const char **status, char *error, size_t error_size, kn_error_t *err);

/* POST /pty: the session id execd answered with, once the outcome is
 * known and only when it is a plain token (letters, digits, '-', '_'). */
const char *kn_execd_capture_pty_id(const kn_execd_capture_t *c);

#endif
