/* netpolicy_internal.h - the pieces behind netpolicy.h, shared by
 * netpolicy.c (policy and orchestration), nft.c (nftables and rtnetlink),
 * dnsproxy.c (the DNS proxy and its parser) and relay.c (exposed ports).
 * Not part of the library's interface; the fuzz target and unit tests may
 * include it. */
#ifndef KN_NETPOLICY_INTERNAL_H
#define KN_NETPOLICY_INTERNAL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "netpolicy.h"

/* ---- names and addresses (netpolicy.c) ---- */

/* Parses "a.b.c.d" or "a.b.c.d/n" (host bits are masked off). Returns 0 with
 * addr (host byte order) and prefix, or -1 when s is not an IPv4 CIDR. */
int kn_net_parse_cidr(const char *s, uint32_t *addr, int *prefix);
/* "example.com" matches only itself; "*.example.com" matches any name below
 * example.com (one label or more) but not example.com itself. Both sides are
 * compared without case and without a trailing dot. */
bool kn_net_domain_match(const char *pattern, const char *name);

typedef enum {
    KN_NAME_REFUSE,  /* answer REFUSED */
    KN_NAME_FORWARD, /* forward; default-allow already opens public addresses */
    KN_NAME_OPEN,    /* forward and open the addresses of the answer */
} kn_name_verdict_t;
kn_name_verdict_t kn_net_name_verdict(const kn_net_policy_t *p, const char *name);
/* Whether the proxy may open addr (host byte order) for an allowed name:
 * not in a deny CIDR and not in a blocked range (private, loopback,
 * link-local, metadata, multicast) unless an allow CIDR covers it. */
bool kn_net_addr_openable(const kn_net_policy_t *p, uint32_t addr);

/* ---- nftables and links (nft.c) ---- */

/* Runs `nft -f -` with script on stdin, inside the network namespace netns_fd
 * (-1: the caller's). nft's own message becomes the error. */
int kn_nft_run(int netns_fd, const char *script, kn_error_t *err);
/* The same in two halves, so that independent rulesets load in parallel:
 * start forks nft; wait collects it (and must be called once start
 * succeeded). */
typedef struct kn_nft_proc {
    pid_t pid;
    int out;
} kn_nft_proc_t;
int kn_nft_start(int netns_fd, const char *script, kn_nft_proc_t *proc, kn_error_t *err);
int kn_nft_wait(kn_nft_proc_t *proc, kn_error_t *err);
/* A veth pair a/b in the caller's namespace, both up, IPv4 only, MTU mtu. */
int kn_link_pair_create(const char *a, const char *b, unsigned mtu, kn_error_t *err);
/* Creates "eth0" in netns_fd as a macvlan (private mode: no traffic between
 * siblings) of the caller's link `lower`, with addr/30, up, and a default
 * route via gw. Creating a link costs no RCU grace period; the macvlan goes
 * with the namespace, so nothing per sandbox is ever deleted on the host.
 * *rtnl gets an rtnetlink socket of the sandbox's namespace, *idx eth0's
 * index. */
int kn_link_macvlan_setup(int lower, int netns_fd, uint32_t gw, uint32_t addr, int *rtnl, int *idx,
                          kn_error_t *err);
/* Adds or deletes addr/30 on a link of the caller's namespace (deleting a
 * missing one is not an error). */
int kn_addr_host(bool add, int ifindex, uint32_t a, kn_error_t *err);
/* Deletes the address addr of link ifindex over rtnl_fd, an rtnetlink
 * socket made in the sandbox's namespace (kn_netns_socket_proto): eth0 then
 * stops answering ARP for it. */
int kn_netns_unaddr(int rtnl_fd, uint32_t addr, int ifindex, kn_error_t *err);
/* Deletes the neighbour entry of a on ifindex; a missing one is no error. */
int kn_neigh_delete(int ifindex, uint32_t a, kn_error_t *err);
/* 1 when table inet `table` exists in the caller's namespace, 0 if not. */
int kn_nft_table_exists(const char *table, kn_error_t *err);
/* Whether the inet table's chain exists: 1, 0, or -1 with err. */
int kn_nft_chain_exists(const char *table, const char *chain, kn_error_t *err);
/* Deletes a link of the caller's namespace; a missing one is not an error. */
int kn_link_delete(const char *name, kn_error_t *err);
/* Creates a socket inside netns_fd (setns there and back on this thread). */
int kn_netns_socket(int netns_fd, int domain, int type, kn_error_t *err);
int kn_netns_socket_proto(int netns_fd, int domain, int type, int protocol, kn_error_t *err);
/* An nfnetlink socket in netns_fd, for kn_nft_add_elems. */
int kn_nft_socket(int netns_fd, kn_error_t *err);
/* Adds n IPv4 addresses (host byte order) with timeouts in seconds to the
 * set `set` of table inet `table`, in one batch; an element already there
 * gets the new timeout. */
int kn_nft_add_elems(int fd, const char *table, const char *set, const uint32_t *addrs,
                     const uint32_t *timeouts_s, size_t n, kn_error_t *err);
/* "{ a/n, ... }" of the blocked ranges (netpolicy.c). */
int kn_net_put_blocked(char *buf, size_t len);

/* ---- the shared uplink (uplink.c) ---- */

/* Every sandbox with egress hangs a macvlan off one veth pair that lives as
 * long as the host ("kennel0", the gateway side with a /30 address per
 * sandbox, and "kennel1", the macvlans' lower link) and one static host table
 * "inet kennel_host" (NAT, MSS clamping, the host closed to sandboxes but for
 * DNS, blocked ranges closed on the forward path with per-sandbox exceptions
 * in a set). Both are made on first use. While a user holds it, IPv4
 * forwarding is on; the last user turns it off again if Kennel turned it on. */
#define KN_UPLINK_GW "kennel0"
#define KN_UPLINK_LOWER "kennel1"
#define KN_UPLINK_TABLE "kennel_host"
#define KN_UPLINK_MTU 65520

typedef struct kn_uplink {
    int users_fd; /* shared flock while held */
    int gw_ifindex, lower_ifindex;
} kn_uplink_t;

int kn_uplink_acquire(kn_uplink_t *u, kn_error_t *err);
void kn_uplink_release(kn_uplink_t *u);

/* ---- DNS (dnsproxy.c) ---- */

#define KN_DNS_MAX_MSG 4096

typedef struct kn_dns_question {
    char name[256]; /* lower case, dotted, no trailing dot; "" is the root */
    uint16_t qtype;
    uint16_t qclass;
    size_t end; /* offset just past the question */
} kn_dns_question_t;

/* Parses the header and the single question of msg (untrusted). Returns 0 or
 * -1 when the message is malformed or has no question / more than one. */
int kn_dns_parse_question(const uint8_t *msg, size_t len, kn_dns_question_t *q);
/* Calls fn for each A record of the answer section (after the question at
 * q->end). Returns the number of A records, or -1 when malformed. */
typedef void (*kn_dns_addr_fn)(void *ctx, uint32_t addr, uint32_t ttl);
int kn_dns_parse_answers(const uint8_t *msg, size_t len, const kn_dns_question_t *q,
                         kn_dns_addr_fn fn, void *ctx);
/* Writes a REFUSED answer to query (already parsed into q) into out; returns
 * its length, or 0 when it does not fit. */
size_t kn_dns_refused(const uint8_t *query, const kn_dns_question_t *q, uint8_t *out, size_t cap);

typedef struct kn_dnsproxy kn_dnsproxy_t;
/* Called for each address an allowed name resolved to (host byte order),
 * all of one answer at once; returns -1 to withhold the answer. */
typedef int (*kn_dns_open_fn)(void *ctx, const char *name, const uint32_t *addrs,
                              const uint32_t *ttls, size_t n);
/* An upstream whose sin_family is not AF_INET means none: allowed names
 * are answered SERVFAIL. */
kn_dnsproxy_t *kn_dnsproxy_new(uint32_t listen_addr, uint32_t client_addr,
                               const struct sockaddr_in *upstream, kn_dns_open_fn fn, void *ctx,
                               kn_error_t *err);
void kn_dnsproxy_set_policy(kn_dnsproxy_t *d, const kn_net_policy_t *p);
int kn_dnsproxy_pollfds(kn_dnsproxy_t *d, struct pollfd *fds, int max);
void kn_dnsproxy_handle(kn_dnsproxy_t *d, int fd, short revents);
void kn_dnsproxy_free(kn_dnsproxy_t *d);
/* Finds the upstream: spec "ADDR" or "ADDR:PORT", or "" for the first IPv4
 * nameserver of /etc/resolv.conf. */
int kn_dns_upstream_parse(const char *spec, struct sockaddr_in *out, kn_error_t *err);

/* ---- exposed ports (relay.c) ---- */

typedef struct kn_relay kn_relay_t;
/* Listens on host 127.0.0.1:outside (0: any) and relays each connection to
 * 127.0.0.1:inside in netns_fd (the descriptor stays the caller's). */
kn_relay_t *kn_relay_new(int netns_fd, uint16_t inside, uint16_t outside, kn_error_t *err);
uint16_t kn_relay_port(const kn_relay_t *r);
int kn_relay_pollfds(kn_relay_t *r, struct pollfd *fds, int max);
/* Returns true when fd belonged to this relay. */
bool kn_relay_handle(kn_relay_t *r, int fd, short revents);
/* Before free, once the program has ended: passes on what the sandbox
 * already sent, for at most until deadline_us (kn_now_us clock). */
void kn_relay_drain(kn_relay_t *r, uint64_t deadline_us);
void kn_relay_free(kn_relay_t *r);

#endif
