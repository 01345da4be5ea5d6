/* nft.c - the kernel side of a sandbox's network: nftables rulesets, links,
 * addresses and neighbours.
 *
 * Rulesets go through the nft(8) program rather than libnftables, because
 * the kennel binary links statically and Debian ships libnftables only as a
 * shared library; a ruleset is one `nft -f -` transaction (all or nothing),
 * run inside the sandbox's network namespace when it is for the sandbox.
 * The one hot path, the DNS proxy adding resolved addresses to the set,
 * speaks nfnetlink directly (kn_nft_add_elems), as do links, addresses and
 * routes through rtnetlink: a sandbox's eth0 costs a few messages, not
 * processes. */
#include "netpolicy_internal.h"

#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <endian.h>
#include <linux/if_link.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <linux/neighbour.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

static const char *
nft_path(void)
{
    static const char *const paths[] = {"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

int
kn_nft_start(int netns_fd, const char *script, kn_nft_proc_t *proc, kn_error_t *err)
{
    const char *nft = nft_path();
    if (!nft)
        return kn_error_set(err, ENOENT, "nft is not installed (Debian package nftables)");
    int in = memfd_create("kn-nft", MFD_CLOEXEC);
    if (in < 0)
        return kn_error_set(err, errno, "memfd for the nft script");
    int ep[2];
    if (kn_write_all(in, script, strlen(script)) < 0 || lseek(in, 0, SEEK_SET) < 0 ||
        pipe2(ep, O_CLOEXEC) < 0) {
        int e = errno;
        close(in);
        return kn_error_set(err, e, "nft script");
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(in);
        close(ep[0]);
        close(ep[1]);
        return kn_error_set(err, e, "fork nft");
    }
    if (pid == 0) {
        char *const argv[] = {(char *)"nft", (char *)"-f", (char *)"-", NULL};
        char *const envp[] = {NULL};
        if ((netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) < 0) || dup2(in, 0) < 0 ||
            dup2(ep[1], 1) < 0 || dup2(ep[1], 2) < 0)
            _exit(126);
        execve(nft, argv, envp);
        _exit(127);
    }
    close(in);
    close(ep[1]);
    proc->pid = pid;
    proc->out = ep[0];
    return 0;
}

int
kn_nft_wait(kn_nft_proc_t *proc, kn_error_t *err)
{
    char msg[384];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(proc->out, msg + got, sizeof msg - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got == sizeof msg - 1) {
            char sink[512];
            while (read(proc->out, sink, sizeof sink) > 0)
                ;
            break;
        }
    }
    close(proc->out);
    proc->out = -1;
    msg[got] = '\0';
    int st = 0;
    while (waitpid(proc->pid, &st, 0) < 0)
        if (errno != EINTR)
            return kn_error_set(err, errno, "wait for nft");
    proc->pid = -1;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    char *nl = strchr(msg, '\n');
    if (nl)
        *nl = '\0';
    if (WIFEXITED(st) && WEXITSTATUS(st) == 126)
        return kn_error_set(err, EPERM, "nft: cannot enter the sandbox's network namespace");
    return kn_error_set(err, EIO, "nft: %s", got ? msg : "failed");
}

int
kn_nft_run(int netns_fd, const char *script, kn_error_t *err)
{
    kn_nft_proc_t p;
    if (kn_nft_start(netns_fd, script, &p, err) < 0)
        return -1;
    return kn_nft_wait(&p, err);
}

int
kn_netns_socket(int netns_fd, int domain, int type, kn_error_t *err)
{
    return kn_netns_socket_proto(netns_fd, domain, type, 0, err);
}

/* Work inside the sandbox's network namespace happens on a short-lived
 * thread that enters it (setns affects only the calling thread for network
 * namespaces) and then ends: the launcher's own thread never leaves the
 * host's namespace, so nothing can strand it in the sandbox's. */
typedef struct netns_job {
    int netns_fd;
    int (*fn)(void *arg, kn_error_t *err);
    void *arg;
    int rc;
    kn_error_t err;
} netns_job_t;

static void *
netns_thread(void *p)
{
    netns_job_t *j = p;
    if (setns(j->netns_fd, CLONE_NEWNET) < 0)
        j->rc = kn_error_set(&j->err, errno, "enter the sandbox's network namespace");
    else
        j->rc = j->fn(j->arg, &j->err);
    return NULL;
}

static int
netns_run(int netns_fd, int (*fn)(void *arg, kn_error_t *err), void *arg, kn_error_t *err)
{
    netns_job_t j = {.netns_fd = netns_fd, .fn = fn, .arg = arg, .rc = -1};
    pthread_t t;
    int e = pthread_create(&t, NULL, netns_thread, &j);
    if (e)
        return kn_error_set(err, e, "thread for the sandbox's network namespace");
    pthread_join(t, NULL);
    if (j.rc < 0)
        *err = j.err;
    return j.rc;
}

typedef struct socket_args {
    int domain, type, protocol;
} socket_args_t;

static int
make_socket(void *p, kn_error_t *err)
{
    const socket_args_t *a = p;
    int fd = socket(a->domain, a->type | SOCK_CLOEXEC, a->protocol);
    return fd < 0 ? kn_error_set(err, errno, "socket in the sandbox's network namespace") : fd;
}

int
kn_netns_socket_proto(int netns_fd, int domain, int type, int protocol, kn_error_t *err)
{
    socket_args_t a = {domain, type, protocol};
    return netns_run(netns_fd, make_socket, &a, err);
}

/* ---- rtnetlink ---- */

typedef struct nlreq {
    struct nlmsghdr h;
    char buf[1024];
} nlreq_t;

static struct rtattr *
attr(nlreq_t *r, unsigned short type, const void *data, size_t len)
{
    size_t at = NLMSG_ALIGN(r->h.nlmsg_len);
    size_t total = RTA_LENGTH(len);
    if (at + RTA_ALIGN(total) > sizeof *r)
        return NULL;
    struct rtattr *a = (struct rtattr *)((char *)r + at);
    a->rta_type = type;
    a->rta_len = (unsigned short)total;
    if (len)
        memcpy(RTA_DATA(a), data, len);
    r->h.nlmsg_len = (uint32_t)(at + RTA_ALIGN(total));
    return a;
}

static void
nest_end(nlreq_t *r, struct rtattr *a)
{
    a->rta_len = (unsigned short)((char *)r + r->h.nlmsg_len - (char *)a);
}

static void
req_init(nlreq_t *r, uint16_t type, uint16_t flags, const void *hdr, size_t hlen)
{
    memset(r, 0, sizeof *r);
    r->h.nlmsg_type = type;
    r->h.nlmsg_flags = (uint16_t)(NLM_F_REQUEST | NLM_F_ACK | flags);
    r->h.nlmsg_len = (uint32_t)NLMSG_LENGTH(hlen);
    memcpy(NLMSG_DATA(&r->h), hdr, hlen);
}

static int
nl_talk(int fd, nlreq_t *r, kn_error_t *err)
{
    static const char *const what = "rtnetlink";
    if (send(fd, r, r->h.nlmsg_len, 0) < 0)
        return kn_error_set(err, errno, "%s send", what);
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return kn_error_set(err, errno, "%s recv", what);
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                if (e->error)
                    return kn_error_set(err, -e->error, "%s", what);
                return 0;
            }
        }
    }
}

static int
rtnl_open(kn_error_t *err)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return kn_error_set(err, errno, "rtnetlink socket");
    return fd;
}

static int
addr_change(int fd, bool add, int ifindex, uint32_t a, kn_error_t *err)
{
    nlreq_t r;
    struct ifaddrmsg ifa = {
        .ifa_family = AF_INET, .ifa_prefixlen = 30, .ifa_index = (unsigned)ifindex};
    req_init(&r, add ? RTM_NEWADDR : RTM_DELADDR, add ? NLM_F_CREATE | NLM_F_EXCL : 0, &ifa,
             sizeof ifa);
    uint32_t be = htonl(a);
    attr(&r, IFA_LOCAL, &be, 4);
    attr(&r, IFA_ADDRESS, &be, 4);
    return nl_talk(fd, &r, err) < 0 ? kn_error_prefix(err, add ? "add address" : "delete address")
                                    : 0;
}

static int
addr_add(int fd, int ifindex, uint32_t a, kn_error_t *err)
{
    return addr_change(fd, true, ifindex, a, err);
}

static int
link_up(int fd, int ifindex, kn_error_t *err)
{
    nlreq_t r;
    struct ifinfomsg ifi = {
        .ifi_family = AF_UNSPEC, .ifi_index = ifindex, .ifi_flags = IFF_UP, .ifi_change = IFF_UP};
    req_init(&r, RTM_NEWLINK, 0, &ifi, sizeof ifi);
    return nl_talk(fd, &r, err) < 0 ? kn_error_prefix(err, "link up") : 0;
}

static int
route_default(int fd, int ifindex, uint32_t gw, kn_error_t *err)
{
    nlreq_t r;
    struct rtmsg rt = {.rtm_family = AF_INET,
                       .rtm_table = RT_TABLE_MAIN,
                       .rtm_protocol = RTPROT_BOOT,
                       .rtm_scope = RT_SCOPE_UNIVERSE,
                       .rtm_type = RTN_UNICAST};
    req_init(&r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &rt, sizeof rt);
    uint32_t be = htonl(gw), oif = (uint32_t)ifindex;
    attr(&r, RTA_GATEWAY, &be, 4);
    attr(&r, RTA_OIF, &oif, 4);
    return nl_talk(fd, &r, err) < 0 ? kn_error_prefix(err, "default route") : 0;
}

int
kn_link_delete(const char *name, kn_error_t *err)
{
    int fd = rtnl_open(err);
    if (fd < 0)
        return -1;
    nlreq_t r;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    req_init(&r, RTM_DELLINK, 0, &ifi, sizeof ifi);
    attr(&r, IFLA_IFNAME, name, strlen(name) + 1);
    int rc = nl_talk(fd, &r, err);
    close(fd);
    if (rc < 0 && (err->code == ENODEV || err->code == ENOENT))
        return 0;
    return rc < 0 ? kn_error_prefix(err, "delete %s", name) : 0;
}

/* The veth carries IPv4 only: no link-local address, no router or
 * neighbour solicitations. /proc/sys/net is the opener's namespace, so this
 * works on either end from a thread in that end's namespace. */
static void
ipv6_off(const char *ifname)
{
    char path[96];
    kn_error_t err;
    snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
    (void)kn_write_file(path, "1", &err); /* absent without IPv6: nothing to turn off */
}

typedef struct inside_args {
    uint32_t host, peer;
    int fd_out, idx_out; /* the rtnetlink socket (kept open) and eth0's index */
} inside_args_t;

/* On the thread inside the sandbox's namespace: eth0's address, up, and
 * the default route via the host end. */
static int
configure_inside(void *p, kn_error_t *err)
{
    inside_args_t *a = p;
    int fd = rtnl_open(err);
    if (fd < 0)
        return -1;
    int rc = -1;
    int idx = (int)if_nametoindex("eth0");
    ipv6_off("eth0");
    if (idx <= 0)
        kn_error_set(err, errno, "the sandbox's eth0");
    else if (addr_add(fd, idx, a->peer, err) == 0 && link_up(fd, idx, err) == 0 &&
             route_default(fd, idx, a->host, err) == 0)
        rc = 0;
    if (rc == 0) {
        a->fd_out = fd;
        a->idx_out = idx;
    } else {
        close(fd);
    }
    return rc;
}

static int
setup_inside(int netns_fd, uint32_t host, uint32_t peer, int *rtnl, int *idx, kn_error_t *err)
{
    inside_args_t a = {host, peer, -1, 0};
    if (netns_run(netns_fd, configure_inside, &a, err) < 0)
        return kn_error_prefix(err, "inside");
    *rtnl = a.fd_out;
    *idx = a.idx_out;
    return 0;
}

/* ---- the shared uplink pair and the sandboxes' macvlans ---- */

static int
set_mtu_up(int fd, int ifindex, unsigned mtu, kn_error_t *err)
{
    nlreq_t r;
    struct ifinfomsg ifi = {
        .ifi_family = AF_UNSPEC, .ifi_index = ifindex, .ifi_flags = IFF_UP, .ifi_change = IFF_UP};
    req_init(&r, RTM_NEWLINK, 0, &ifi, sizeof ifi);
    if (mtu)
        attr(&r, IFLA_MTU, &mtu, 4);
    return nl_talk(fd, &r, err) < 0 ? kn_error_prefix(err, "link up") : 0;
}

int
kn_link_pair_create(const char *a, const char *b, unsigned mtu, kn_error_t *err)
{
    int fd = rtnl_open(err);
    if (fd < 0)
        return -1;
    nlreq_t r;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    req_init(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
    attr(&r, IFLA_IFNAME, a, strlen(a) + 1);
    attr(&r, IFLA_MTU, &mtu, 4);
    struct rtattr *li = attr(&r, IFLA_LINKINFO, NULL, 0);
    attr(&r, IFLA_INFO_KIND, "veth", 5);
    struct rtattr *data = attr(&r, IFLA_INFO_DATA, NULL, 0);
    struct rtattr *peer = attr(&r, VETH_INFO_PEER, &ifi, sizeof ifi);
    attr(&r, IFLA_IFNAME, b, strlen(b) + 1);
    if (!attr(&r, IFLA_MTU, &mtu, 4)) {
        close(fd);
        return kn_error_set(err, EMSGSIZE, "veth request");
    }
    nest_end(&r, peer);
    nest_end(&r, data);
    nest_end(&r, li);
    int rc = nl_talk(fd, &r, err);
    if (rc < 0) {
        kn_error_prefix(err, "create %s", a);
    } else {
        ipv6_off(a);
        ipv6_off(b);
        int ia = (int)if_nametoindex(a), ib = (int)if_nametoindex(b);
        if (ia <= 0 || ib <= 0)
            rc = kn_error_set(err, ENODEV, "veth %s/%s", a, b);
        else if ((rc = set_mtu_up(fd, ia, 0, err)) == 0)
            rc = set_mtu_up(fd, ib, 0, err);
    }
    close(fd);
    return rc;
}

int
kn_addr_host(bool add, int ifindex, uint32_t a, kn_error_t *err)
{
    int fd = rtnl_open(err);
    if (fd < 0)
        return -1;
    int rc = addr_change(fd, add, ifindex, a, err);
    close(fd);
    if (rc < 0 && !add && (err->code == EADDRNOTAVAIL || err->code == ENODEV))
        return 0;
    return rc;
}

int
kn_neigh_delete(int ifindex, uint32_t a, kn_error_t *err)
{
    int fd = rtnl_open(err);
    if (fd < 0)
        return -1;
    nlreq_t r;
    struct ndmsg nd = {.ndm_family = AF_INET, .ndm_ifindex = ifindex};
    req_init(&r, RTM_DELNEIGH, 0, &nd, sizeof nd);
    uint32_t be = htonl(a);
    attr(&r, NDA_DST, &be, 4);
    int rc = nl_talk(fd, &r, err);
    close(fd);
    if (rc < 0 && (err->code == ENOENT || err->code == ENODEV))
        return 0;
    return rc < 0 ? kn_error_prefix(err, "delete neighbour") : 0;
}

static int
macvlan_create(int fd, int lower, int netns_fd, kn_error_t *err)
{
    nlreq_t r;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    req_init(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
    uint32_t link = (uint32_t)lower, nsfd = (uint32_t)netns_fd, mode = MACVLAN_MODE_PRIVATE;
    attr(&r, IFLA_IFNAME, "eth0", 5);
    attr(&r, IFLA_LINK, &link, 4);
    attr(&r, IFLA_NET_NS_FD, &nsfd, 4);
    struct rtattr *li = attr(&r, IFLA_LINKINFO, NULL, 0);
    attr(&r, IFLA_INFO_KIND, "macvlan", 8);
    struct rtattr *data = attr(&r, IFLA_INFO_DATA, NULL, 0);
    if (!attr(&r, IFLA_MACVLAN_MODE, &mode, 4))
        return kn_error_set(err, EMSGSIZE, "macvlan request");
    nest_end(&r, data);
    nest_end(&r, li);
    return nl_talk(fd, &r, err) < 0 ? kn_error_prefix(err, "create the sandbox's eth0") : 0;
}

int
kn_link_macvlan_setup(int lower, int netns_fd, uint32_t gw, uint32_t addr, int *rtnl, int *idx,
                      kn_error_t *err)
{
    int fd = rtnl_open(err);
    if (fd < 0)
        return -1;
    int rc = macvlan_create(fd, lower, netns_fd, err);
    close(fd);
    if (rc == 0)
        rc = setup_inside(netns_fd, gw, addr, rtnl, idx, err);
    return rc;
}

int
kn_netns_unaddr(int rtnl_fd, uint32_t addr, int ifindex, kn_error_t *err)
{
    return addr_change(rtnl_fd, false, ifindex, addr, err);
}

/* ---- set elements over nfnetlink ----
 *
 * The DNS proxy opens addresses while the sandbox waits for its answer, so
 * this path talks to the kernel directly instead of running nft: one batch
 * (begin, NEWSETELEM, end) on a socket made once in the sandbox's namespace.
 * Only additions go this way (they leave the kernel nothing to free, so
 * closing the socket does not wait for nftables' deferred destroy work). */

typedef struct nlbuf {
    char b[8192] __attribute__((aligned(8)));
    size_t len;
    bool overflow;
} nlbuf_t;

static void *
nl_put(nlbuf_t *nb, const void *data, size_t len)
{
    size_t at = NLMSG_ALIGN(nb->len);
    if (at + NLMSG_ALIGN(len) > sizeof nb->b) {
        nb->overflow = true;
        return nb->b; /* somewhere harmless; the message is not sent */
    }
    memset(nb->b + nb->len, 0, at + NLMSG_ALIGN(len) - nb->len);
    if (data)
        memcpy(nb->b + at, data, len);
    nb->len = at + NLMSG_ALIGN(len);
    return nb->b + at;
}

static size_t
nl_msg(nlbuf_t *nb, uint16_t type, uint16_t flags, uint8_t family, uint16_t res_id, uint32_t seq)
{
    size_t at = NLMSG_ALIGN(nb->len);
    struct nlmsghdr h = {
        .nlmsg_type = type, .nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags), .nlmsg_seq = seq};
    struct nfgenmsg g = {.nfgen_family = family, .version = NFNETLINK_V0, .res_id = htons(res_id)};
    nl_put(nb, &h, sizeof h);
    nl_put(nb, &g, sizeof g);
    return at;
}

static void
nl_msg_end(nlbuf_t *nb, size_t at)
{
    if (!nb->overflow)
        ((struct nlmsghdr *)(void *)(nb->b + at))->nlmsg_len = (uint32_t)(nb->len - at);
}

static size_t
nl_attr(nlbuf_t *nb, uint16_t type, const void *data, size_t len)
{
    size_t at = NLMSG_ALIGN(nb->len);
    struct nlattr a = {.nla_type = type, .nla_len = (uint16_t)(NLA_HDRLEN + len)};
    nl_put(nb, &a, sizeof a);
    if (len)
        nl_put(nb, data, len);
    return at;
}

static void
nl_nest_end(nlbuf_t *nb, size_t at)
{
    if (!nb->overflow)
        ((struct nlattr *)(void *)(nb->b + at))->nla_len = (uint16_t)(nb->len - at);
}

/* Sends a batch built in nb (its middle message has seq 2 and asks for an
 * ACK) and reads that ACK. The kernel processes the batch within send(), so
 * the answer is already queued when it returns. */
static int
nl_batch(int fd, nlbuf_t *nb, const char *what, kn_error_t *err)
{
    if (nb->overflow)
        return kn_error_set(err, E2BIG, "%s: batch too large", what);
    if (send(fd, nb->b, nb->len, 0) < 0)
        return kn_error_set(err, errno, "%s: nfnetlink send", what);
    for (;;) {
        ssize_t r = recv(fd, nb->b, sizeof nb->b, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return kn_error_set(err, errno, "%s: no answer from nfnetlink", what);
        for (struct nlmsghdr *h = (struct nlmsghdr *)(void *)nb->b; NLMSG_OK(h, (size_t)r);
             h = NLMSG_NEXT(h, r)) {
            if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq != 2)
                continue;
            const struct nlmsgerr *e = NLMSG_DATA(h);
            return e->error ? kn_error_set(err, -e->error, "%s", what) : 0;
        }
    }
}

int
kn_nft_socket(int netns_fd, kn_error_t *err)
{
    return kn_netns_socket_proto(netns_fd, AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER, err);
}

int
kn_nft_add_elems(int fd, const char *table, const char *set, const uint32_t *addrs,
                 const uint32_t *timeouts_s, size_t n, kn_error_t *err)
{
    nlbuf_t *nb = calloc(1, sizeof *nb);
    if (!nb)
        return kn_error_set(err, ENOMEM, "set elements");
    size_t m = nl_msg(nb, NFNL_MSG_BATCH_BEGIN, 0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES, 1);
    nl_msg_end(nb, m);
    m = nl_msg(nb, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_ACK,
               NFPROTO_INET, 0, 2);
    nl_attr(nb, NFTA_SET_ELEM_LIST_TABLE, table, strlen(table) + 1);
    nl_attr(nb, NFTA_SET_ELEM_LIST_SET, set, strlen(set) + 1);
    size_t list = nl_attr(nb, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, NULL, 0);
    for (size_t i = 0; i < n; i++) {
        size_t el = nl_attr(nb, NFTA_LIST_ELEM | NLA_F_NESTED, NULL, 0);
        size_t key = nl_attr(nb, NFTA_SET_ELEM_KEY | NLA_F_NESTED, NULL, 0);
        uint32_t be = htonl(addrs[i]);
        nl_attr(nb, NFTA_DATA_VALUE, &be, sizeof be);
        nl_nest_end(nb, key);
        uint64_t ms = htobe64((uint64_t)timeouts_s[i] * 1000u);
        nl_attr(nb, NFTA_SET_ELEM_TIMEOUT, &ms, sizeof ms);
        nl_nest_end(nb, el);
    }
    nl_nest_end(nb, list);
    nl_msg_end(nb, m);
    m = nl_msg(nb, NFNL_MSG_BATCH_END, 0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES, 3);
    nl_msg_end(nb, m);
    int rc = nl_batch(fd, nb, set, err);
    free(nb);
    return rc;
}

int
kn_nft_table_exists(const char *table, kn_error_t *err)
{
    return kn_nft_chain_exists(table, NULL, err);
}

int
kn_nft_chain_exists(const char *table, const char *chain, kn_error_t *err)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fd < 0)
        return kn_error_set(err, errno, "nfnetlink socket");
    nlbuf_t *nb = calloc(1, sizeof *nb);
    if (!nb) {
        close(fd);
        return kn_error_set(err, ENOMEM, "table query");
    }
    int type = chain ? NFT_MSG_GETCHAIN : NFT_MSG_GETTABLE;
    size_t m = nl_msg(nb, (NFNL_SUBSYS_NFTABLES << 8) | type, NLM_F_ACK, NFPROTO_INET, 0, 2);
    if (chain) {
        nl_attr(nb, NFTA_CHAIN_TABLE, table, strlen(table) + 1);
        nl_attr(nb, NFTA_CHAIN_NAME, chain, strlen(chain) + 1);
    } else {
        nl_attr(nb, NFTA_TABLE_NAME, table, strlen(table) + 1);
    }
    nl_msg_end(nb, m);
    int rc = -1;
    if (send(fd, nb->b, nb->len, 0) < 0) {
        kn_error_set(err, errno, "nfnetlink send");
        goto out;
    }
    for (;;) {
        ssize_t r = recv(fd, nb->b, sizeof nb->b, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            kn_error_set(err, r < 0 ? errno : EIO, "nfnetlink recv");
            goto out;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)(void *)nb->b; NLMSG_OK(h, (size_t)r);
             h = NLMSG_NEXT(h, r)) {
            if (h->nlmsg_type != NLMSG_ERROR)
                continue;
            const struct nlmsgerr *e = NLMSG_DATA(h);
            rc = e->error == 0         ? 1
                 : e->error == -ENOENT ? 0
                                       : kn_error_set(err, -e->error, "%s", table);
            goto out;
        }
    }
out:
    free(nb);
    close(fd);
    return rc;
}
