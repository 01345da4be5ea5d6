/* egress_api.h - the egress API (specs/egress-api.yaml), answered by the
 * server for /sandboxes/{id}/proxy/18080/...; see egress.h for how a change
 * reaches the sandbox's shim. */
#ifndef KN_EGRESS_API_H
#define KN_EGRESS_API_H

#include <microhttpd.h>

#include "http.h"

#define KN_EGRESS_PORT 18080

/* Answers a request to the egress port. rest is what follows /proxy/18080
 * (path and query); the body is complete in r. */
enum MHD_Result kn_egress_route(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r,
                                const char *method, const char *rest);

#endif
