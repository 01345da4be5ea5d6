/* egress.h - network policy through the lifecycle server (issue 5).
 *
 * Create's networkPolicy (specs/sandbox-lifecycle.yml, OpenSandbox's shape:
 * a default action and egress rules by domain, wildcard domain or IPv4
 * CIDR, the first rule that matches deciding) becomes the sandbox's runtime
 * policy, and the egress API (specs/egress-api.yaml: GET, PATCH and DELETE
 * /policy) is answered for /sandboxes/{id}/proxy/18080/..., the endpoint the
 * SDK resolves for the egress port.
 *
 * Nothing of this runs inside the sandbox. The shim (outside) holds the
 * network attachment: the server writes the policy it wants into the run
 * directory and sends "policy" on the shim's control socket; the shim
 * applies it with kn_net_update (both nft tables replaced at once, so a
 * removed name stops at once) and writes the policy in force back.
 *
 * Run directory files:
 *   policy.json      the policy in force (written by the shim; absent when
 *                    the sandbox was created without networkPolicy)
 *   policy.req.json  the policy the server asks for (written by the server)
 *   policy.lock      flock'ed by the server around read-change-apply, so that
 *                    concurrent PATCHes do not lose each other's rules */
#ifndef KN_EGRESS_H
#define KN_EGRESS_H

#include <jansson.h>
#include <microhttpd.h>

#include "error.h"
#include "http.h"
#include "netpolicy.h"
#include "sandbox.h"
#include "server.h"

#define KN_EGRESS_PORT 18080
#define KN_EGRESS_POLICY "policy.json"
#define KN_EGRESS_REQUEST "policy.req.json"
#define KN_EGRESS_LOCK "policy.lock"

/* Create: checks networkPolicy (np; NULL or JSON null: none) and, when there
 * is one, puts the normalized policy with the server's DNS upstream in
 * kennel["network"]. EINVAL with a message naming the field. */
int kn_egress_parse(const json_t *np, const kn_server_cfg_t *cfg, json_t *kennel, kn_error_t *err);
/* kennel["network"] into a runtime policy. */
int kn_egress_config(const json_t *net, kn_net_policy_t *out, kn_error_t *err);

/* Shim: records the policy in force once the sandbox is attached. */
void kn_egress_shim_started(const char *dir, const json_t *spec);
/* Shim: applies policy.req.json to the running sandbox (the "policy"
 * control command) and records it in policy.json. */
int kn_egress_shim_apply(const char *dir, kn_sandbox_t *sb, kn_error_t *err);

/* Server: answers a request to the egress port. rest is what follows
 * /proxy/18080 (path and query); the body is complete in r. */
enum MHD_Result kn_egress_route(kn_srv_t *s, struct MHD_Connection *c, kn_req_t *r,
                                const char *method, const char *rest);

#endif
