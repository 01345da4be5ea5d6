/* routes.c - the execd route table (paths exactly as specs/execd-api.yaml). */
#include "routes.h"

#include <stdio.h>
#include <string.h>

#include "handlers.h"
#include "upload.h"

static enum MHD_Result
ping(kn_req_t *req)
{
    return kn_http_reply_empty(req, 200);
}

static const struct kn_route routes[] = {
    {"GET", "/ping", ping, false},
    {"HEAD", "/ping", ping, false},
    {"POST", "/command", kn_command_run, false},
    {"DELETE", "/command", kn_command_interrupt, false},
    {"GET", "/command/status/*", kn_command_status, false},
    {"GET", "/command/*/logs", kn_command_logs, false},
    {"GET", "/tunnel/*", kn_tunnel_open, false},
    {"POST", "/pty", kn_pty_create, false},
    {"GET", "/pty/*", kn_pty_status, false},
    {"DELETE", "/pty/*", kn_pty_delete, false},
    {"GET", "/pty/*/ws", kn_pty_ws, false},
    {"POST", "/_kennel/env", kn_command_set_env, false},
    {"POST", "/_kennel/entrypoint", kn_command_entrypoint, false},
    {"POST", "/_kennel/start", kn_command_entrypoint_start, false},
#ifdef KN_EXECD_ROUTES_FILES
    {"GET", "/files/info", kn_files_info, false},
    {"DELETE", "/files", kn_files_delete, false},
    {"POST", "/files/permissions", kn_files_permissions, false},
    {"POST", "/files/mv", kn_files_mv, false},
    {"GET", "/files/search", kn_files_search, false},
    {"POST", "/files/replace", kn_files_replace, false},
    {"POST", "/files/upload", kn_upload_handle, true},
    {"GET", "/files/download", kn_files_download, false},
    {"GET", "/directories/list", kn_dirs_list, false},
    {"POST", "/directories", kn_dirs_create, false},
    {"DELETE", "/directories", kn_dirs_delete, false},
#endif
#ifdef KN_EXECD_ROUTES_CODE
    {"POST", "/code/context", kn_code_context_create, false},
    {"GET", "/code/contexts", kn_code_contexts_list, false},
    {"DELETE", "/code/contexts", kn_code_contexts_delete_language, false},
    {"GET", "/code/contexts/*", kn_code_context_get, false},
    {"DELETE", "/code/contexts/*", kn_code_context_delete, false},
    {"POST", "/code", kn_code_run, false},
    {"DELETE", "/code", kn_code_interrupt, false},
    {"POST", "/session", kn_session_create, false},
    {"POST", "/session/*/run", kn_session_run, false},
    {"DELETE", "/session/*", kn_session_delete, false},
#endif
#ifdef KN_EXECD_ROUTES_METRICS
    {"GET", "/metrics", kn_metrics_get, false},
    {"GET", "/metrics/watch", kn_metrics_watch, false},
#endif
};

/* Matches url against pattern segment by segment; copies the '*' segment. */
static bool
path_matches(const char *pattern, const char *url, char *param, size_t n)
{
    const char *p = pattern, *u = url;
    while (*p && *u) {
        if (*p == '*') {
            const char *end = strchr(u, '/');
            size_t len = end ? (size_t)(end - u) : strlen(u);
            if (len == 0 || len >= n)
                return false;
            memcpy(param, u, len);
            param[len] = '\0';
            u += len;
            p++;
            continue;
        }
        if (*p != *u)
            return false;
        p++;
        u++;
    }
    return *p == '\0' && *u == '\0';
}

const struct kn_route *
kn_routes_match(const char *method, const char *url, char *param, size_t n, bool *path_known)
{
    *path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        char tmp[512];
        if (!path_matches(routes[i].pattern, url, tmp, sizeof tmp))
            continue;
        *path_known = true;
        if (strcmp(routes[i].method, method) == 0) {
            snprintf(param, n, "%s", tmp);
            return &routes[i];
        }
    }
    return NULL;
}
