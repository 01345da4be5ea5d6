/* netpolicy.h - a sandbox's way out, when it has one (DESIGN.md §5).
 *
 * With a policy enabled, the launcher (as root) gives the sandbox an eth0 (a
 * macvlan on a veth pair that all sandboxes share) to the host with NAT. Inside the sandbox's
 * network namespace nftables drops everything except: DNS to Kennel's DNS proxy (the sandbox's
 * gateway address), the addresses that proxy resolved for allowed names (added to an nft set with
 * the record's TTL), and allowed CIDRs. Private, loopback, link-local and metadata ranges stay
 * blocked unless a rule names them; the host itself is never reachable except the proxy. The proxy
 * answers names that are not allowed with REFUSED. Exposed ports are relayed from a host loopback
 * port into the sandbox's own loopback, and work with no egress at all.
 *
 * Everything here is torn down by kn_net_detach(): no interface, nft table,
 * route or proxy socket outlives the sandbox. */
#ifndef KN_NETPOLICY_H
#define KN_NETPOLICY_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "error.h"

#define KN_MAX_NET_RULES 64
#define KN_MAX_EXPOSE 16

/* Rules are evaluated in order, names and CIDRs each on their own: the first
 * rule that matches a name (or holds an address) decides; with none, the
 * default action does (OpenSandbox's semantics). Callers that want "deny
 * beats allow" put the deny rules first, as `kennel run` does. */
typedef struct kn_net_rule {
    bool allow;       /* false: deny */
    char target[256]; /* "example.com", "*.example.com" or a CIDR "10.0.0.0/8" */
} kn_net_rule_t;

typedef struct kn_net_policy {
    bool enabled;       /* false: a namespace with only lo (the default) */
    bool default_allow; /* OpenSandbox defaultAction: what unmatched egress gets */
    kn_net_rule_t rules[KN_MAX_NET_RULES];
    size_t n_rules;
    char dns_upstream[64]; /* "ADDR" or "ADDR:PORT"; "" = the host's resolv.conf */
    struct {
        uint16_t inside;  /* port the program listens on, inside */
        uint16_t outside; /* host loopback port; 0 = pick one */
    } expose[KN_MAX_EXPOSE];
    size_t n_expose;
} kn_net_policy_t;

typedef struct kn_netns kn_netns_t;

/* Parses one rule target; returns -1 with a message when it is neither a
 * domain, a wildcard domain nor a CIDR. */
int kn_net_rule_check(const char *target, kn_error_t *err);

/* Host path of the resolv.conf that a sandbox with id `id` gets bound at
 * /etc/resolv.conf (written by kn_net_attach). */
int kn_net_resolv_conf_path(const char *id, char *buf, size_t len);

/* Launcher side, after the sandbox's first process exists (pid) and before
 * it builds its root. Needs root. NULL + err on failure. */
kn_netns_t *kn_net_attach(const kn_net_policy_t *p, pid_t pid, const char *id, kn_error_t *err);
/* Waits for what attach left running (the sandbox's table loads while the
 * sandbox builds its root): call before the sandbox's program may run. */
int kn_net_ready(kn_netns_t *n, kn_error_t *err);
/* Descriptors the launcher must poll (DNS proxy, port relays); returns how
 * many were written to fds (at most max). */
int kn_net_pollfds(kn_netns_t *n, struct pollfd *fds, int max);
/* Handles whatever poll() reported on descriptors from kn_net_pollfds: fds
 * may be any subset of them, in any order (match by descriptor). */
void kn_net_handle(kn_netns_t *n, const struct pollfd *fds, int nfds);
/* Host ports chosen for exposed ports (outside == 0 asked for any). */
uint16_t kn_net_exposed_port(const kn_netns_t *n, size_t i);
/* Replaces the policy of a running sandbox: removed names stop at once. */
int kn_net_update(kn_netns_t *n, const kn_net_policy_t *p, kn_error_t *err);
/* Once the program has ended: starts taking the sandbox's egress away on a
 * thread (the host's side waits for the kernel's rtnl lock) while the
 * caller reaps; kn_net_detach finishes it. NULL is a no-op. */
void kn_net_release_begin(kn_netns_t *n);
/* Removes every interface, rule, route and socket. NULL is a no-op. */
void kn_net_detach(kn_netns_t *n);

#endif
