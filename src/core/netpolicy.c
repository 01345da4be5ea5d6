/* netpolicy.c - a sandbox's way out, when it has one (DESIGN.md §5).
 *
 * kn_net_attach() takes a /30 from 10.231.0.0/16 (a slot, held by an flock
 * on /run/kennel/net/slots/N for as long as the sandbox lives, so concurrent
 * launchers never collide and a crashed one frees its slot) and writes
 * /run/kennel/net/ID/resolv.conf naming the proxy. If the policy lets
 * anything out it then plumbs (plumb()): the shared uplink (uplink.c: the
 * veth pair kennel0/kennel1 and the static host table "inet kennel_host"),
 * the slot's gateway address on kennel0, the sandbox's eth0 (a macvlan of
 * kennel1 made inside its namespace) with a default route, the sandbox's own
 * table "inet kennel" (the policy proper, see inner_script), host exceptions
 * for allow CIDRs into blocked ranges, and the DNS proxy; a policy that
 * allows nothing leaves the namespace with only lo. Last come the exposed
 * ports' relays. kn_net_detach() undoes all of it without waiting for the
 * kernel: eth0 and the sandbox's table go with its namespace.
 *
 * The policy is enforced inside the sandbox's namespace (the sandbox has no
 * capabilities there and cannot change it) and, for the ranges that matter
 * most, again on the host's forward path, which the sandbox cannot reach.
 * Rules are evaluated in order, the first match deciding (netpolicy.h). */
#include "netpolicy_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define NET_RUN_DIR "/run/kennel/net"
#define SLOT_DIR NET_RUN_DIR "/slots"
#define POOL_BASE 0x0ae70000u /* 10.231.0.0/16 */
#define POOL_SLOTS 16384u     /* /30 each */
#define TTL_MIN 5u            /* seconds: answers with TTL 0 still get used once */
#define TTL_MAX 86400u
#define MAX_OPENED 1024
#define SCRIPT_MAX 65536
#define RELAY_DRAIN_US (2u * 1000000u) /* answers still on their way out, at most */

/* Never reachable unless an allow CIDR names them: "this network",
 * RFC 1918, shared address space, loopback, link-local (with the cloud
 * metadata address 169.254.169.254), IETF protocol assignments,
 * benchmarking, multicast and reserved/broadcast. */
static const struct {
    uint32_t addr;
    int prefix;
} blocked[] = {
    {0x00000000u, 8},  {0x0a000000u, 8},  {0x64400000u, 10}, {0x7f000000u, 8},
    {0xa9fe0000u, 16}, {0xac100000u, 12}, {0xc0000000u, 24}, {0xc0a80000u, 16},
    {0xc6120000u, 15}, {0xe0000000u, 4},  {0xf0000000u, 4},
};

typedef struct opened {
    uint32_t addr;
    uint64_t expires_us;
    char name[256];
} opened_t;

struct kn_netns {
    kn_net_policy_t pol;
    char id[128];
    char dir[PATH_MAX];
    int slot;
    int slot_fd;
    int netns_fd;
    int nfnl; /* nfnetlink in the sandbox, for the proxy's set additions */
    int rtnl; /* rtnetlink in the sandbox, to take eth0's address away at the end */
    int eth0_index;
    uint32_t host_ip, sb_ip;
    bool plumbed; /* eth0, the gateway address, the table and proxy exist (with egress) */
    bool uplinked, gw_addr, eth0, exceptions, dir_made;
    kn_uplink_t up;
    kn_nft_proc_t loading; /* the sandbox's table, still loading (see kn_net_ready) */
    pthread_t releaser;    /* kn_net_release_begin's thread, while it runs */
    bool releasing;
    bool is_loading;
    struct sockaddr_in upstream;
    kn_dnsproxy_t *dns;
    kn_relay_t *relays[KN_MAX_EXPOSE];
    size_t n_relays;
    opened_t *opened;
    size_t n_opened;
};

/* ---- rules ---- */

static uint32_t
mask_of(int prefix)
{
    return prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
}

static bool
in_cidr(uint32_t a, uint32_t net, int prefix)
{
    return (a & mask_of(prefix)) == net;
}

int
kn_net_parse_cidr(const char *s, uint32_t *addr, int *prefix)
{
    char host[32];
    const char *slash = strchr(s, '/');
    size_t hl = slash ? (size_t)(slash - s) : strlen(s);
    if (hl == 0 || hl >= sizeof host)
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    struct in_addr in;
    if (inet_pton(AF_INET, host, &in) != 1)
        return -1;
    int pl = 32;
    if (slash) {
        const char *p = slash + 1;
        if (!*p || strlen(p) > 2)
            return -1;
        pl = 0;
        for (; *p; p++) {
            if (*p < '0' || *p > '9')
                return -1;
            pl = pl * 10 + (*p - '0');
        }
        if (pl > 32)
            return -1;
    }
    *prefix = pl;
    *addr = ntohl(in.s_addr) & mask_of(pl);
    return 0;
}

/* A name: labels of letters, digits, '-' and '_', 1-63 bytes, 253 in all,
 * optionally behind "*." and with one trailing dot. */
static bool
valid_domain(const char *s)
{
    if (!strncmp(s, "*.", 2))
        s += 2;
    size_t len = strlen(s);
    if (len && s[len - 1] == '.')
        len--;
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_';
        if (!ok || ++label > 63)
            return false;
    }
    return label > 0;
}

int
kn_net_rule_check(const char *target, kn_error_t *err)
{
    uint32_t a;
    int pl;
    if (!target || !*target)
        return kn_error_set(err, EINVAL, "empty network rule");
    if (kn_net_parse_cidr(target, &a, &pl) == 0)
        return 0;
    if (strchr(target, ':'))
        return kn_error_set(err, EINVAL,
                            "network rule '%s': IPv6 rules are not supported (sandboxes get "
                            "IPv4 egress only)",
                            target);
    if (!valid_domain(target))
        return kn_error_set(err, EINVAL,
                            "network rule '%s' is neither a domain, a wildcard domain "
                            "(*.example.com) nor an IPv4 CIDR",
                            target);
    return 0;
}

static bool
is_cidr_rule(const kn_net_rule_t *r, uint32_t *addr, int *prefix)
{
    return kn_net_parse_cidr(r->target, addr, prefix) == 0;
}

bool
kn_net_domain_match(const char *pattern, const char *name)
{
    size_t pl = strlen(pattern), nl = strlen(name);
    if (pl && pattern[pl - 1] == '.')
        pl--;
    if (nl && name[nl - 1] == '.')
        nl--;
    if (pl >= 2 && pattern[0] == '*' && pattern[1] == '.') {
        /* "*.example.com": strictly below example.com. */
        const char *suffix = pattern + 1; /* ".example.com" */
        size_t sl = pl - 1;
        return nl > sl && strncasecmp(name + nl - sl, suffix, sl) == 0;
    }
    return pl == nl && strncasecmp(pattern, name, pl) == 0;
}

kn_name_verdict_t
kn_net_name_verdict(const kn_net_policy_t *p, const char *name)
{
    uint32_t a;
    int pl;
    /* The first name rule that matches decides (OpenSandbox's order). */
    for (size_t i = 0; i < p->n_rules; i++)
        if (!is_cidr_rule(&p->rules[i], &a, &pl) && kn_net_domain_match(p->rules[i].target, name))
            return p->rules[i].allow ? KN_NAME_OPEN : KN_NAME_REFUSE;
    return p->default_allow ? KN_NAME_FORWARD : KN_NAME_REFUSE;
}

/* The first CIDR rule that holds addr: 1 allow, 0 deny, -1 none. */
static int
cidr_verdict(const kn_net_policy_t *p, uint32_t addr)
{
    uint32_t a;
    int pl;
    for (size_t i = 0; i < p->n_rules; i++)
        if (is_cidr_rule(&p->rules[i], &a, &pl) && in_cidr(addr, a, pl))
            return p->rules[i].allow ? 1 : 0;
    return -1;
}

bool
kn_net_addr_openable(const kn_net_policy_t *p, uint32_t addr)
{
    int v = cidr_verdict(p, addr);
    if (v >= 0)
        return v == 1;
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++)
        if (in_cidr(addr, blocked[i].addr, blocked[i].prefix))
            return false;
    return true;
}

/* ---- nft scripts ---- */

typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool overflow;
} sbuf_t;

__attribute__((format(printf, 2, 3))) static void
put(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len)
        b->overflow = true;
    else
        b->len += (size_t)n;
}

static void
put_ip(sbuf_t *b, uint32_t a)
{
    put(b, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

static void put_blocked(sbuf_t *b);

int
kn_net_put_blocked(char *buf, size_t len)
{
    sbuf_t b = {.s = buf, .cap = len};
    buf[0] = '\0';
    put_blocked(&b);
    return b.overflow ? -1 : 0;
}

static void
put_blocked(sbuf_t *b)
{
    put(b, "{ ");
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++) {
        put(b, i ? ", " : "");
        put_ip(b, blocked[i].addr);
        put(b, "/%d", blocked[i].prefix);
    }
    put(b, " }");
}

#define REJECT "reject with icmpx type admin-prohibited"

/* One nft rule per CIDR rule, in the policy's order: the first that
 * holds the address decides, as for names. */
static void
put_cidr_rules(sbuf_t *b, const char *pre, const kn_net_policy_t *p, const char *deny,
               const char *allow)
{
    for (size_t i = 0; i < p->n_rules; i++) {
        uint32_t a;
        int pl;
        if (!is_cidr_rule(&p->rules[i], &a, &pl))
            continue;
        put(b, "\t\t%sip daddr ", pre);
        put_ip(b, a);
        put(b, "/%d %s\n", pl, p->rules[i].allow ? allow : deny);
    }
}

static uint32_t
ttl_left(const opened_t *o, uint64_t now)
{
    uint64_t s = (o->expires_us - now) / 1000000u;
    return s < 1 ? 1 : (uint32_t)s;
}

/* The sandbox's table: output is decided per packet, not per connection, so
 * a name removed from the policy stops at once even for open connections;
 * input takes only loopback and replies. */
/* How a script starts: "create" fails if the table exists (a fresh one is
 * the common case, and deleting a table costs the kernel a grace period);
 * "replace" swaps it in the same transaction. */
static void
put_table_head(sbuf_t *b, const char *name, bool fresh)
{
    if (fresh)
        put(b, "create table inet %s\ntable inet %s {\n", name, name);
    else
        put(b, "table inet %s\ndelete table inet %s\ntable inet %s {\n", name, name, name);
}

static void
inner_script(sbuf_t *b, const kn_netns_t *n, bool fresh)
{
    const kn_net_policy_t *p = &n->pol;
    put_table_head(b, "kennel", fresh);
    put(b, "\tset open4 { type ipv4_addr; flags timeout; }\n");
    put(b, "\tchain output {\n\t\ttype filter hook output priority 0; policy drop;\n");
    put(b, "\t\toifname \"lo\" accept\n");
    put(b, "\t\tip daddr ");
    put_ip(b, n->host_ip);
    put(b, " meta l4proto { udp, tcp } th dport 53 accept\n");
    /* DNS goes to the proxy only, even where the policy opens the resolver's
     * address: other resolvers would bypass its name rules. */
    put(b, "\t\tmeta l4proto { udp, tcp } th dport 53 " REJECT "\n");
    put_cidr_rules(b, "", p, REJECT, "accept");
    put(b, "\t\tip daddr ");
    put_blocked(b);
    put(b, " " REJECT "\n");
    put(b, "\t\tip daddr @open4 accept\n");
    if (p->default_allow)
        put(b, "\t\tmeta nfproto ipv4 accept\n");
    put(b, "\t\t" REJECT "\n\t}\n");
    put(b, "\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n");
    put(b, "\t\tiifname \"lo\" accept\n\t\tct state established,related accept\n\t}\n}\n");
    uint64_t now = kn_now_us();
    bool any = false;
    for (size_t i = 0; i < n->n_opened; i++) {
        const opened_t *o = &n->opened[i];
        if (o->expires_us <= now || kn_net_name_verdict(p, o->name) != KN_NAME_OPEN ||
            !kn_net_addr_openable(p, o->addr))
            continue;
        put(b, any ? ", " : "add element inet kennel open4 { ");
        put_ip(b, o->addr);
        put(b, " timeout %us", ttl_left(o, now));
        any = true;
    }
    if (any)
        put(b, " }\n");
}

static bool
overlaps_blocked(uint32_t a, int pl)
{
    for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++) {
        int p = pl < blocked[i].prefix ? pl : blocked[i].prefix;
        if ((a & mask_of(p)) == (blocked[i].addr & mask_of(p)))
            return true;
    }
    return false;
}

/* Whether allow rule i's CIDR lies within another allow CIDR of the policy
 * (for equal ones: within an earlier one). The set's intervals may not
 * overlap ("File exists"), and the larger range already opens it. */
static bool
covered_by_other(const kn_net_policy_t *p, size_t i, uint32_t a, int pl)
{
    for (size_t j = 0; j < p->n_rules; j++) {
        uint32_t b;
        int bl;
        if (j == i || !p->rules[j].allow || !is_cidr_rule(&p->rules[j], &b, &bl) || bl > pl)
            continue;
        if ((a & mask_of(bl)) == (b & mask_of(bl)) && (bl < pl || j < i))
            return true;
    }
    return false;
}

/* The host's part for this sandbox: exceptions in the shared table's set
 * private_ok for allow CIDRs that name blocked ranges (most policies have
 * none, and then nothing of the sandbox is in any host table). fresh: the
 * sandbox has none yet; else its old ones go first. */
static bool
exceptions_script(sbuf_t *b, const kn_netns_t *n, const kn_net_policy_t *old)
{
    bool any = false;
    const kn_net_policy_t *pols[2] = {old, &n->pol};
    for (int k = 0; k < 2; k++) {
        if (!pols[k])
            continue;
        for (size_t i = 0; i < pols[k]->n_rules; i++) {
            uint32_t a;
            int pl;
            if (!pols[k]->rules[i].allow || !is_cidr_rule(&pols[k]->rules[i], &a, &pl) ||
                !overlaps_blocked(a, pl) || covered_by_other(pols[k], i, a, pl))
                continue;
            put(b, "%s element inet " KN_UPLINK_TABLE " private_ok { ", k == 0 ? "delete" : "add");
            put_ip(b, n->sb_ip);
            put(b, " . ");
            put_ip(b, a);
            put(b, "/%d }\n", pl);
            any = true;
        }
    }
    return any;
}

static char *
script(const kn_netns_t *n, bool fresh, kn_error_t *err)
{
    sbuf_t b = {.s = malloc(SCRIPT_MAX), .cap = SCRIPT_MAX};
    if (!b.s) {
        kn_error_set(err, ENOMEM, "nft script");
        return NULL;
    }
    b.s[0] = '\0';
    inner_script(&b, n, fresh);
    if (b.overflow) {
        free(b.s);
        kn_error_set(err, E2BIG, "nft script too long");
        return NULL;
    }
    return b.s;
}

/* The sandbox's own table, in its namespace. */
static int
load(kn_netns_t *n, bool fresh, kn_error_t *err)
{
    char *s = script(n, fresh, err);
    int rc = s ? kn_nft_run(n->netns_fd, s, err) : -1;
    free(s);
    return rc < 0 ? kn_error_prefix(err, "sandbox firewall") : 0;
}

static bool
has_exceptions(const kn_net_policy_t *p)
{
    for (size_t i = 0; i < p->n_rules; i++) {
        uint32_t a;
        int pl;
        if (p->rules[i].allow && is_cidr_rule(&p->rules[i], &a, &pl) && overlaps_blocked(a, pl))
            return true;
    }
    return false;
}

/* The host's exceptions for this sandbox; old: the policy whose exceptions
 * are in place now (NULL: none are). */
static int
load_exceptions(kn_netns_t *n, const kn_net_policy_t *old, kn_error_t *err)
{
    char buf[8192];
    sbuf_t b = {.s = buf, .cap = sizeof buf};
    buf[0] = '\0';
    bool any = exceptions_script(&b, n, old && has_exceptions(old) ? old : NULL);
    if (b.overflow)
        return kn_error_set(err, E2BIG, "host exceptions");
    if (any && kn_nft_run(-1, buf, err) < 0)
        return kn_error_prefix(err, "host firewall");
    n->exceptions = has_exceptions(&n->pol);
    return 0;
}

/* ---- the DNS proxy's callback: open resolved addresses ---- */

static void
remember(kn_netns_t *n, const char *name, uint32_t addr, uint64_t expires)
{
    uint64_t now = kn_now_us();
    size_t w = 0;
    for (size_t i = 0; i < n->n_opened; i++)
        if (n->opened[i].expires_us > now)
            n->opened[w++] = n->opened[i];
    n->n_opened = w;
    for (size_t i = 0; i < n->n_opened; i++) {
        opened_t *o = &n->opened[i];
        if (o->addr == addr && !strcmp(o->name, name)) {
            if (expires > o->expires_us)
                o->expires_us = expires;
            return;
        }
    }
    if (n->n_opened < MAX_OPENED) {
        opened_t *o = &n->opened[n->n_opened++];
        o->addr = addr;
        o->expires_us = expires;
        snprintf(o->name, sizeof o->name, "%s", name);
    }
}

/* When addr is open in the set now (for a name the policy still allows),
 * until when. */
static uint64_t
open_until(const kn_netns_t *n, uint32_t addr)
{
    uint64_t until = 0;
    for (size_t i = 0; i < n->n_opened; i++) {
        const opened_t *o = &n->opened[i];
        if (o->addr == addr && o->expires_us > until &&
            kn_net_name_verdict(&n->pol, o->name) == KN_NAME_OPEN)
            until = o->expires_us;
    }
    return until;
}

/* Opens the addresses of one answer. An address already open for at least
 * half its new TTL is left alone, so that a sandbox repeating a lookup
 * does not cost an nft run each time. */
static int
open_addrs(void *ctx, const char *name, const uint32_t *addrs, const uint32_t *ttls, size_t k)
{
    kn_netns_t *n = ctx;
    uint64_t now = kn_now_us(), until[64];
    uint32_t add[64], add_ttl[64];
    size_t nadd = 0;
    if (k > 64)
        k = 64;
    for (size_t i = 0; i < k; i++) {
        until[i] = 0;
        if (!kn_net_addr_openable(&n->pol, addrs[i]))
            continue; /* rebinding to a private or metadata address: not opened */
        uint32_t ttl = ttls[i] < TTL_MIN ? TTL_MIN : ttls[i] > TTL_MAX ? TTL_MAX : ttls[i];
        until[i] = open_until(n, addrs[i]); /* as open as the set has it */
        if (until[i] >= now + (uint64_t)ttl * 500000u)
            continue;
        until[i] = now + (uint64_t)ttl * 1000000u;
        add[nadd] = addrs[i];
        add_ttl[nadd++] = ttl;
    }
    kn_error_t err;
    if (nadd && (n->nfnl < 0 ||
                 kn_nft_add_elems(n->nfnl, "kennel", "open4", add, add_ttl, nadd, &err) < 0)) {
        char script[4096];
        sbuf_t b = {.s = script, .cap = sizeof script};
        script[0] = '\0';
        for (size_t i = 0; i < nadd; i++) {
            put(&b, i ? ", " : "add element inet kennel open4 { ");
            put_ip(&b, add[i]);
            put(&b, " timeout %us", add_ttl[i]);
        }
        put(&b, " }\n");
        if (b.overflow || kn_nft_run(n->netns_fd, script, &err) < 0)
            return -1;
    }
    for (size_t i = 0; i < k; i++)
        if (until[i] > now)
            remember(n, name, addrs[i], until[i]);
    return 0;
}

/* ---- attach / detach ---- */

int
kn_net_resolv_conf_path(const char *id, char *buf, size_t len)
{
    return snprintf(buf, len, NET_RUN_DIR "/%s/resolv.conf", id) < (int)len ? 0 : -1;
}

static int
take_slot(kn_netns_t *n, pid_t pid, kn_error_t *err)
{
    if (kn_mkdir_p(SLOT_DIR, 0755, err) < 0)
        return -1;
    uint32_t start = ((uint32_t)pid * 2654435761u) % POOL_SLOTS;
    for (uint32_t k = 0; k < POOL_SLOTS; k++) {
        uint32_t s = (start + k) % POOL_SLOTS;
        if (s == 0)
            continue; /* 10.231.0.0/30 stays unused: easier to read */
        char path[64];
        snprintf(path, sizeof path, SLOT_DIR "/%u", s);
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
            return kn_error_set(err, errno, "open %s", path);
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            n->slot = (int)s;
            n->slot_fd = fd;
            n->host_ip = POOL_BASE + s * 4 + 1;
            n->sb_ip = POOL_BASE + s * 4 + 2;
            return 0;
        }
        close(fd);
    }
    return kn_error_set(err, EAGAIN, "no free address in 10.231.0.0/16");
}

static int
write_resolv_conf(kn_netns_t *n, kn_error_t *err)
{
    char path[PATH_MAX];
    if (snprintf(n->dir, sizeof n->dir, NET_RUN_DIR "/%s", n->id) >= (int)sizeof n->dir ||
        kn_net_resolv_conf_path(n->id, path, sizeof path) < 0)
        return kn_error_set(err, ENAMETOOLONG, "resolv.conf path");
    if (kn_mkdir_p(NET_RUN_DIR, 0755, err) < 0)
        return -1;
    /* Made under a umask of 077 (the server's), they could not be searched
     * by the sandbox's user, which opens the bind source. */
    static const char *const parents[] = {"/run/kennel", NET_RUN_DIR};
    for (size_t i = 0; i < 2; i++) {
        struct stat st;
        if (stat(parents[i], &st) == 0 && (st.st_mode & 0111) != 0111 &&
            chmod(parents[i], (st.st_mode & 07777) | 0111) < 0)
            return kn_error_set(err, errno, "chmod %s", parents[i]);
    }
    if (mkdir(n->dir, 0755) < 0 && errno != EEXIST)
        return kn_error_set(err, errno, "mkdir %s", n->dir);
    n->dir_made = true;
    /* The sandbox's user reads it through a bind: whatever the caller's
     * umask (the server's is 077), others may search and read. */
    if (chmod(n->dir, 0755) < 0)
        return kn_error_set(err, errno, "chmod %s", n->dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return kn_error_set(err, errno, "create %s", path);
    if (fchmod(fd, 0644) < 0) {
        int e = errno;
        close(fd);
        return kn_error_set(err, e, "chmod %s", path);
    }
    char buf[128];
    uint32_t h = n->host_ip;
    int len =
        snprintf(buf, sizeof buf, "nameserver %u.%u.%u.%u\noptions edns0 attempts:2 timeout:2\n",
                 h >> 24, (h >> 16) & 255, (h >> 8) & 255, h & 255);
    int rc = kn_write_all(fd, buf, (size_t)len);
    int e = errno;
    close(fd);
    return rc < 0 ? kn_error_set(err, e, "write %s", path) : 0;
}

/* Whether a policy lets anything out. Without, the sandbox keeps a
 * namespace with only lo (exposed ports need nothing more) until an update
 * opens something. */
static bool
wants_egress(const kn_net_policy_t *p)
{
    if (p->default_allow)
        return true;
    for (size_t i = 0; i < p->n_rules; i++)
        if (p->rules[i].allow)
            return true;
    return false;
}

/* The way out: the shared uplink, the sandbox's gateway address on it, its
 * eth0 (a macvlan made inside its namespace), its table and the DNS proxy.
 * The table loads (an nft process in the sandbox's namespace) while the
 * links are made: nothing can use them before attach returns, since the
 * sandbox's program waits for it. On failure what was made stays recorded
 * in n for unplumb(). */
static int
collect(kn_netns_t *n, kn_error_t *err)
{
    if (!n->is_loading)
        return 0;
    n->is_loading = false;
    return kn_nft_wait(&n->loading, err) < 0 ? kn_error_prefix(err, "sandbox firewall") : 0;
}

/* defer: leave the sandbox's table loading; kn_net_ready() collects it. */
static int
plumb(kn_netns_t *n, bool defer, kn_error_t *err)
{
    kn_error_t scratch;
    char *is = script(n, true, err);
    if (!is)
        return -1;
    int rc = kn_nft_start(n->netns_fd, is, &n->loading, err);
    free(is);
    if (rc < 0)
        return kn_error_prefix(err, "sandbox firewall");
    n->is_loading = true;
    if ((rc = kn_uplink_acquire(&n->up, err)) == 0) {
        n->uplinked = true;
        /* a launcher killed with SIGKILL leaves its slot's address */
        (void)kn_addr_host(false, n->up.gw_ifindex, n->host_ip, &scratch);
        (void)kn_neigh_delete(n->up.gw_ifindex, n->sb_ip, &scratch);
        rc = kn_addr_host(true, n->up.gw_ifindex, n->host_ip, err);
        n->gw_addr = rc == 0;
    }
    if (rc == 0) {
        rc = kn_link_macvlan_setup(n->up.lower_ifindex, n->netns_fd, n->host_ip, n->sb_ip, &n->rtnl,
                                   &n->eth0_index, err);
        n->eth0 = rc == 0;
    }
    if (rc < 0 || (!defer && collect(n, err) < 0) || load_exceptions(n, NULL, err) < 0)
        return -1;
    n->nfnl = kn_nft_socket(n->netns_fd, &scratch); /* without, nft(8) does it */
    n->dns = kn_dnsproxy_new(n->host_ip, n->sb_ip, &n->upstream, open_addrs, n, err);
    if (!n->dns)
        return -1;
    kn_dnsproxy_set_policy(n->dns, &n->pol);
    n->plumbed = true;
    return 0;
}

/* The host's address and neighbour entry of the slot. rtnetlink takes the
 * kernel's rtnl lock, which the clean-up of other namespaces holds for
 * milliseconds at a time on a busy host: kn_net_release_begin() does this on
 * a thread while the sandbox's processes are reaped. */
static void
release_gateway(kn_netns_t *n)
{
    kn_error_t err;
    (void)kn_addr_host(false, n->up.gw_ifindex, n->host_ip, &err);
    (void)kn_neigh_delete(n->up.gw_ifindex, n->sb_ip, &err);
    n->gw_addr = false;
}

static void *
releaser(void *p)
{
    release_gateway(p);
    return NULL;
}

void
kn_net_release_begin(kn_netns_t *n)
{
    if (!n || !n->gw_addr || n->releasing)
        return;
    n->releasing = pthread_create(&n->releaser, NULL, releaser, n) == 0;
}

/* Nothing here waits for the kernel: the gateway address and neighbour go
 * at once, eth0 and the sandbox's table go with its namespace. */
static void
unplumb(kn_netns_t *n)
{
    kn_error_t err;
    (void)collect(n, &err);
    kn_dnsproxy_free(n->dns);
    n->dns = NULL;
    if (n->nfnl >= 0)
        close(n->nfnl);
    n->nfnl = -1;
    if (n->exceptions) {
        /* Removing set elements makes the next nfnetlink close wait for a
         * grace period; only policies that open blocked ranges pay it. */
        kn_net_policy_t none = n->pol;
        none.n_rules = 0;
        kn_net_policy_t cur = n->pol;
        n->pol = none;
        (void)load_exceptions(n, &cur, &err);
        n->pol = cur;
    }
    /* The namespace may outlive us for a moment in the kernel's clean-up:
     * without its address, its eth0 no longer answers for the slot. */
    if (n->eth0 && n->rtnl >= 0)
        (void)kn_netns_unaddr(n->rtnl, n->sb_ip, n->eth0_index, &err);
    if (n->rtnl >= 0)
        close(n->rtnl);
    n->rtnl = -1;
    if (n->releasing) {
        pthread_join(n->releaser, NULL);
        n->releasing = false;
    }
    if (n->gw_addr)
        release_gateway(n);
    if (n->uplinked)
        kn_uplink_release(&n->up);
    n->uplinked = n->gw_addr = n->eth0 = n->exceptions = n->plumbed = false;
}

kn_netns_t *
kn_net_attach(const kn_net_policy_t *p, pid_t pid, const char *id, kn_error_t *err)
{
    struct sockaddr_in upstream;
    if (!id || !*id || strchr(id, '/') || strlen(id) >= sizeof((kn_netns_t *)0)->id ||
        id[0] == '.') {
        kn_error_set(err, EINVAL, "network: bad sandbox id");
        return NULL;
    }
    if (p->n_rules > KN_MAX_NET_RULES || p->n_expose > KN_MAX_EXPOSE) {
        kn_error_set(err, EINVAL, "network: too many rules or exposed ports");
        return NULL;
    }
    for (size_t i = 0; i < p->n_rules; i++)
        if (kn_net_rule_check(p->rules[i].target, err) < 0)
            return NULL;
    /* A bad --dns-upstream fails; a host without a usable nameserver only
     * leaves the proxy without upstream (allowed names get SERVFAIL). */
    memset(&upstream, 0, sizeof upstream);
    if (p->dns_upstream[0] && kn_dns_upstream_parse(p->dns_upstream, &upstream, err) < 0) {
        kn_error_prefix(err, "network");
        return NULL;
    }
    kn_error_t ignored;
    if (!p->dns_upstream[0] && kn_dns_upstream_parse("", &upstream, &ignored) < 0)
        upstream.sin_family = AF_UNSPEC;
    kn_netns_t *n = calloc(1, sizeof *n);
    opened_t *opened = calloc(MAX_OPENED, sizeof *opened);
    if (!n || !opened) {
        free(n);
        free(opened);
        kn_error_set(err, ENOMEM, "network");
        return NULL;
    }
    n->opened = opened;
    n->pol = *p;
    n->slot_fd = n->netns_fd = n->nfnl = n->rtnl = n->up.users_fd = -1;
    snprintf(n->id, sizeof n->id, "%s", id);
    char nspath[64];
    snprintf(nspath, sizeof nspath, "/proc/%d/ns/net", (int)pid);
    n->netns_fd = open(nspath, O_RDONLY | O_CLOEXEC);
    if (n->netns_fd < 0) {
        kn_error_set(err, errno, "open %s", nspath);
        goto fail;
    }
    n->upstream = upstream;
    if (take_slot(n, pid, err) < 0 || write_resolv_conf(n, err) < 0)
        goto fail;
    if (wants_egress(p) && plumb(n, true, err) < 0)
        goto fail;
    for (size_t i = 0; i < p->n_expose; i++) {
        kn_relay_t *r = kn_relay_new(n->netns_fd, p->expose[i].inside, p->expose[i].outside, err);
        if (!r)
            goto fail;
        n->relays[n->n_relays++] = r;
    }
    return n;
fail:
    kn_error_prefix(err, "network");
    kn_net_detach(n);
    return NULL;
}

static void
remove_dir(kn_netns_t *n)
{
    if (!n->dir_made)
        return;
    char path[PATH_MAX];
    if (kn_net_resolv_conf_path(n->id, path, sizeof path) == 0)
        unlink(path);
    rmdir(n->dir);
    n->dir_made = false;
}

int
kn_net_ready(kn_netns_t *n, kn_error_t *err)
{
    if (n && collect(n, err) < 0)
        return kn_error_prefix(err, "network");
    /* The sandbox has bound its resolv.conf by now (it holds the file, not
     * the name): nothing of it need stay in /run/kennel/net. */
    if (n)
        remove_dir(n);
    return 0;
}

int
kn_net_pollfds(kn_netns_t *n, struct pollfd *fds, int max)
{
    if (!n)
        return 0;
    int k = n->dns ? kn_dnsproxy_pollfds(n->dns, fds, max) : 0;
    for (size_t i = 0; i < n->n_relays && k < max; i++)
        k += kn_relay_pollfds(n->relays[i], fds + k, max - k);
    return k;
}

void
kn_net_handle(kn_netns_t *n, const struct pollfd *fds, int nfds)
{
    if (!n)
        return;
    for (int i = 0; i < nfds; i++) {
        if (!fds[i].revents)
            continue;
        bool done = false;
        for (size_t r = 0; r < n->n_relays && !done; r++)
            done = kn_relay_handle(n->relays[r], fds[i].fd, fds[i].revents);
        if (!done && n->dns)
            kn_dnsproxy_handle(n->dns, fds[i].fd, fds[i].revents);
    }
}

uint16_t
kn_net_exposed_port(const kn_netns_t *n, size_t i)
{
    return n && i < n->n_relays ? kn_relay_port(n->relays[i]) : 0;
}

int
kn_net_update(kn_netns_t *n, const kn_net_policy_t *p, kn_error_t *err)
{
    if (!n)
        return kn_error_set(err, EINVAL, "this sandbox has no network to update");
    if (p->n_rules > KN_MAX_NET_RULES)
        return kn_error_set(err, EINVAL, "network update: too many rules");
    for (size_t i = 0; i < p->n_rules; i++)
        if (kn_net_rule_check(p->rules[i].target, err) < 0)
            return -1;
    kn_net_policy_t old = n->pol;
    /* Rules and the default action change; the DNS upstream and exposed
     * ports stay as attached. */
    memcpy(n->pol.rules, p->rules, sizeof p->rules);
    n->pol.n_rules = p->n_rules;
    n->pol.default_allow = p->default_allow;
    if (!n->plumbed) {
        if (!wants_egress(&n->pol) || plumb(n, false, err) == 0)
            return 0;
        unplumb(n);
        n->pol = old;
        return kn_error_prefix(err, "network update");
    }
    if (load(n, false, err) < 0) {
        n->pol = old;
        return kn_error_prefix(err, "network update");
    }
    if (load_exceptions(n, &old, err) < 0) {
        kn_net_policy_t tried = n->pol;
        n->pol = old;
        kn_error_t e2;
        (void)load(n, false, &e2);
        (void)load_exceptions(n, &tried, &e2);
        return kn_error_prefix(err, "network update");
    }
    return 0;
}

void
kn_net_detach(kn_netns_t *n)
{
    if (!n)
        return;
    uint64_t deadline = kn_now_us() + RELAY_DRAIN_US;
    for (size_t i = 0; i < n->n_relays; i++) {
        kn_relay_drain(n->relays[i], deadline);
        kn_relay_free(n->relays[i]);
    }
    unplumb(n);
    remove_dir(n);
    if (n->netns_fd >= 0)
        close(n->netns_fd);
    /* The slot file stays (unlinking a file others may be opening would let
     * two launchers lock different files for one slot); closing unlocks it. */
    if (n->slot_fd >= 0)
        close(n->slot_fd);
    free(n->opened);
    free(n);
}
