/* egress.h - network policy through the lifecycle server (issue 5).
 *
 * Create's networkPolicy (specs/sandbox-lifecycle.yml, OpenSandbox's shape:
 * a default action and egress rules by domain, wildcard domain or IPv4
 * CIDR, the first rule that matches deciding) becomes the sandbox's runtime
 * policy, and the egress API (specs/egress-api.yaml: GET, PATCH and DELETE
 * /policy) is answered for /sandboxes/{id}/proxy/18080/..., the endpoint the
 * SDK resolves for the egress port.
 *
 * This file and egress.c are the shim's side (in the `kennel` binary);
 * egress_api.h/.c the server's. Nothing of this runs inside the sandbox. The shim (outside) holds
 * the network attachment: the server writes the policy it wants into the run directory and sends
 * "policy" on the shim's control socket; the shim applies it with kn_net_update (both nft tables
 * replaced at once, so a removed name stops at once) and writes the policy in force back.
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
#include <stddef.h>

#include "error.h"
#include "netpolicy.h"
#include "sandbox.h"
#include "server.h"

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

/* Shared with egress_api.c: the checks of a NetworkPolicy and of one rule
 * (field names the rule in messages), a target's canonical form, and the
 * run directory's JSON files (written atomically, 0600). */
json_t *kn_egress_check_policy(const json_t *np, kn_error_t *err);
json_t *kn_egress_check_rule(const json_t *r, const char *field, kn_error_t *err);
int kn_egress_canonical(const char *t, char *out, size_t len, const char *field, kn_error_t *err);
json_t *kn_egress_read(const char *dir, const char *name);
int kn_egress_write(const char *dir, const char *name, const json_t *j, kn_error_t *err);

#endif
