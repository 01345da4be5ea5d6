/* session.c - /session: bash sessions whose shell lives between runs, so
 * variables, exported environment, functions and cwd persist. */
#include <stdlib.h>
#include <string.h>

#include "drivers.h"
#include "handlers.h"
#include "repl.h"
#include "util.h"

enum MHD_Result
kn_session_create(kn_req_t *req)
{
    enum MHD_Result r;
    json_t *body = kn_http_json_body(req, true, &r);
    if (!body)
        return r;
    json_t *cwd = json_object_get(body, "cwd");
    if (!json_is_object(body) || (cwd && !json_is_string(cwd) && !json_is_null(cwd))) {
        json_decref(body);
        return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                   "body must be {\"cwd\"?: string}");
    }
    const kn_driver_t *drv = kn_driver_find("bash");
    if (!kn_util_in_path(drv->runtime)) {
        json_decref(body);
        return kn_http_reply_error(req, 400, "NOT_SUPPORTED",
                                   "sessions need bash, which is not installed in this sandbox");
    }
    kn_error_t err = {0};
    kn_repl_t *s =
        kn_repl_create(req->ex, KN_REPL_SESSION, drv, json_string_value(cwd), false, &err);
    json_decref(body);
    if (!s)
        return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "%s", err.msg);
    json_t *out = json_pack("{s:s}", "session_id", kn_repl_id(s));
    kn_repl_put(req->ex, s);
    return kn_http_reply_json(req, 200, out);
}

enum MHD_Result
kn_session_run(kn_req_t *req)
{
    enum MHD_Result r;
    json_t *body = kn_http_json_body(req, false, &r);
    if (!body)
        return r;
    json_t *cmd = json_object_get(body, "command"), *cwd = json_object_get(body, "cwd");
    json_t *to = json_object_get(body, "timeout");
    if (!json_is_object(body) || !json_is_string(cmd) ||
        strlen(json_string_value(cmd)) != json_string_length(cmd) ||
        (cwd && !json_is_string(cwd) && !json_is_null(cwd)) ||
        (to && !json_is_null(to) && (!json_is_integer(to) || json_integer_value(to) < 0))) {
        json_decref(body);
        return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                   "body must be {\"command\": string, \"cwd\"?: string, "
                                   "\"timeout\"?: ms}");
    }
    kn_repl_t *s = kn_repl_get(req->ex, KN_REPL_SESSION, req->param);
    if (!s) {
        json_decref(body);
        return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "no session %s", req->param);
    }
    r = kn_repl_run(req, s, json_string_value(cmd), json_string_value(cwd),
                    json_is_integer(to) ? (long)json_integer_value(to) : 0);
    json_decref(body);
    return r;
}

enum MHD_Result
kn_session_delete(kn_req_t *req)
{
    kn_repl_t *s = kn_repl_get(req->ex, KN_REPL_SESSION, req->param);
    if (!s)
        return kn_http_reply_error(req, 404, "CONTEXT_NOT_FOUND", "no session %s", req->param);
    kn_repl_remove(req->ex, s);
    kn_repl_put(req->ex, s);
    return kn_http_reply_empty(req, 200);
}
