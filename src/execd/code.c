/* code.c - /code and /code/context(s): stateful code contexts over repl.c. */
#include "code.h"

#include <stdlib.h>
#include <string.h>

#include "command.h"
#include "drivers.h"
#include "handlers.h"
#include "repl.h"
#include "util.h"

/* Resolves a language to its driver, or replies 400 naming what is missing. */
static const kn_driver_t *
driver_or_reply(kn_req_t *req, const char *language, enum MHD_Result *r)
{
    const kn_driver_t *drv = kn_driver_find(language);
    if (!drv) {
        *r = kn_http_reply_error(req, 400, "NOT_SUPPORTED",
                                 "language \"%s\" is not supported (python, javascript, bash)",
                                 language);
        return NULL;
    }
    if (!kn_util_in_path(drv->runtime)) {
        *r = kn_http_reply_error(req, 400, "NOT_SUPPORTED",
                                 "the %s runtime \"%s\" is not installed in this sandbox "
                                 "(not found in PATH)",
                                 drv->language, drv->runtime);
        return NULL;
    }
    return drv;
}

static json_t *
context_json(const kn_repl_t *c)
{
    return json_pack("{s:s,s:s}", "id", kn_repl_id(c), "language", kn_repl_language(c));
}

enum MHD_Result
kn_code_context_create(kn_req_t *req)
{
    enum MHD_Result r;
    json_t *body = kn_http_json_body(req, true, &r);
    if (!body)
        return r;
    json_t *lang = json_object_get(body, "language"), *cwd = json_object_get(body, "cwd");
    if (!json_is_object(body) || !json_is_string(lang) ||
        (cwd && !json_is_string(cwd) && !json_is_null(cwd))) {
        json_decref(body);
        return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                   "body must be {\"language\": string, \"cwd\"?: string}");
    }
    const kn_driver_t *drv = driver_or_reply(req, json_string_value(lang), &r);
    if (!drv) {
        json_decref(body);
        return r;
    }
    kn_error_t err = {0};
    kn_repl_t *c = kn_repl_create(req->ex, KN_REPL_CODE, drv, json_string_value(cwd), false, &err);
    json_decref(body);
    if (!c)
        return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "%s", err.msg);
    json_t *out = context_json(c);
    kn_repl_put(req->ex, c);
    return kn_http_reply_json(req, 200, out);
}

enum MHD_Result
kn_code_contexts_list(kn_req_t *req)
{
    const char *lang = kn_http_query(req, "language");
    if (lang && *lang && !kn_driver_find(lang))
        return kn_http_reply_json(req, 200, json_array());
    return kn_http_reply_json(req, 200, kn_repl_list(req->ex, lang));
}

enum MHD_Result
kn_code_contexts_delete_language(kn_req_t *req)
{
    const char *lang = kn_http_query(req, "language");
    if (!lang || !*lang)
        return kn_http_reply_error(req, 400, "MISSING_QUERY",
                                   "missing query parameter \"language\"");
    if (!kn_driver_find(lang))
        return kn_http_reply_error(req, 400, "NOT_SUPPORTED", "language \"%s\" is not supported",
                                   lang);
    kn_repl_remove_language(req->ex, lang);
    return kn_http_reply_empty(req, 200);
}

enum MHD_Result
kn_code_context_get(kn_req_t *req)
{
    kn_repl_t *c = kn_repl_get(req->ex, KN_REPL_CODE, req->param);
    if (!c)
        return kn_http_reply_error(req, 404, "CONTEXT_NOT_FOUND", "no code context %s", req->param);
    json_t *out = context_json(c);
    kn_repl_put(req->ex, c);
    return kn_http_reply_json(req, 200, out);
}

enum MHD_Result
kn_code_context_delete(kn_req_t *req)
{
    kn_repl_t *c = kn_repl_get(req->ex, KN_REPL_CODE, req->param);
    if (!c)
        return kn_http_reply_error(req, 404, "CONTEXT_NOT_FOUND", "no code context %s", req->param);
    kn_repl_remove(req->ex, c);
    kn_repl_put(req->ex, c);
    return kn_http_reply_empty(req, 200);
}

enum MHD_Result
kn_code_run(kn_req_t *req)
{
    enum MHD_Result r;
    json_t *body = kn_http_json_body(req, false, &r);
    if (!body)
        return r;
    json_t *code = json_object_get(body, "code"), *ctx = json_object_get(body, "context");
    json_t *to = json_object_get(body, "timeout");
    if (!json_is_object(body) || !json_is_string(code) ||
        strlen(json_string_value(code)) != json_string_length(code) ||
        (ctx && !json_is_null(ctx) && !json_is_object(ctx)) ||
        (to && !json_is_null(to) && (!json_is_integer(to) || json_integer_value(to) < 0))) {
        json_decref(body);
        return kn_http_reply_error(req, 400, "INVALID_REQUEST_BODY",
                                   "body must be {\"code\": string, \"context\"?: {\"id\"?, "
                                   "\"language\"?}, \"timeout\"?: ms}");
    }
    json_t *idv = json_object_get(ctx, "id"), *langv = json_object_get(ctx, "language");
    const char *id = json_string_value(idv), *lang = json_string_value(langv);
    long timeout = json_is_integer(to) ? (long)json_integer_value(to) : 0;
    kn_repl_t *c = NULL;
    if (id && *id) {
        c = kn_repl_get(req->ex, KN_REPL_CODE, id);
        if (!c) {
            r = kn_http_reply_error(req, 500, "CONTEXT_NOT_FOUND", "no code context %s", id);
            json_decref(body);
            return r;
        }
    } else if (!lang || !*lang) {
        /* No language: run the code as a shell command, as POST /command would. */
        json_t *cmd = json_pack("{s:O}", "command", code);
        if (timeout)
            json_object_set_new(cmd, "timeout", json_integer(timeout));
        json_decref(body);
        return kn_command_start(req, cmd);
    } else {
        const kn_driver_t *drv = driver_or_reply(req, lang, &r);
        if (!drv) {
            json_decref(body);
            return r;
        }
        kn_error_t err = {0};
        c = kn_repl_default(req->ex, drv, &err);
        if (!c) {
            json_decref(body);
            return kn_http_reply_error(req, 500, "RUNTIME_ERROR", "%s", err.msg);
        }
    }
    r = kn_repl_run(req, c, json_string_value(code), NULL, timeout);
    json_decref(body);
    return r;
}

enum MHD_Result
kn_code_interrupt(kn_req_t *req)
{
    const char *id = kn_http_query(req, "id");
    if (!id || !*id)
        return kn_http_reply_error(req, 400, "MISSING_QUERY", "missing query parameter \"id\"");
    kn_repl_t *c = kn_repl_get(req->ex, KN_REPL_CODE, id);
    if (!c)
        return kn_http_reply_error(req, 500, "CONTEXT_NOT_FOUND", "no code context %s", id);
    kn_repl_interrupt(c);
    kn_repl_put(req->ex, c);
    return kn_http_reply_empty(req, 200);
}
