/* routes.h - the execd route table: method + path pattern -> handler. */
#ifndef KN_EXECD_ROUTES_H
#define KN_EXECD_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include "http.h"

struct kn_route {
    const char *method;
    const char *pattern; /* '*' matches exactly one non-empty path segment */
    kn_handler_fn handler;
    bool upload; /* body streamed to kn_upload_* instead of buffered */
};

/* Finds the route for method+url; the '*' segment is copied into param.
 * *path_known is set when some route has this path under another method. */
const struct kn_route *kn_routes_match(const char *method, const char *url, char *param, size_t n,
                                       bool *path_known);

#endif
