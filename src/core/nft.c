/* nft.c - the kernel side of a sandbox's network: nftables rulesets and the
 * veth pair.
 *
 * Rulesets go through the nft(8) program rather than libnftables, because
 * the kennel binary links statically and Debian ships libnftables only as a
 * shared library; a ruleset is one `nft -f -` transaction (all or nothing),
 * run inside the sandbox's network namespace when it is for the sandbox.
 * Links, addresses and routes go through rtnetlink directly: a veth costs
 * three messages, not three processes. */
#include "netpolicy_internal.h"

#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <poll.h>
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
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0)
        return kn_error_set(err, errno, "open /proc/thread-self/ns/net");
    if (setns(netns_fd, CLONE_NEWNET) < 0) {
        int e = errno;
        close(self);
        return kn_error_set(err, e, "enter the sandbox's network namespace");
    }
    int fd = socket(domain, type | SOCK_CLOEXEC, 0);
    int e = errno;
    /* Going back cannot fail for a namespace we were in a moment ago; if it
     * did, this thread would be stranded in the sandbox: treat it as fatal. */
    if (setns(self, CLONE_NEWNET) < 0)
        abort();
    close(self);
    if (fd < 0)
        return kn_error_set(err, e, "socket in the sandbox's network namespace");
    return fd;
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
addr_add(int fd, int ifindex, uint32_t a, kn_error_t *err)
{
    nlreq_t r;
    struct ifaddrmsg ifa = {
        .ifa_family = AF_INET, .ifa_prefixlen = 30, .ifa_index = (unsigned)ifindex};
    req_init(&r, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &ifa, sizeof ifa);
    uint32_t be = htonl(a);
    attr(&r, IFA_LOCAL, &be, 4);
    attr(&r, IFA_ADDRESS, &be, 4);
    return nl_talk(fd, &r, err) < 0 ? kn_error_prefix(err, "add address") : 0;
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

static int
veth_create(int fd, const char *host_if, int netns_fd, kn_error_t *err)
{
    nlreq_t r;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    req_init(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
    attr(&r, IFLA_IFNAME, host_if, strlen(host_if) + 1);
    struct rtattr *li = attr(&r, IFLA_LINKINFO, NULL, 0);
    attr(&r, IFLA_INFO_KIND, "veth", 5);
    struct rtattr *data = attr(&r, IFLA_INFO_DATA, NULL, 0);
    struct rtattr *peer = attr(&r, VETH_INFO_PEER, &ifi, sizeof ifi);
    uint32_t nsfd = (uint32_t)netns_fd;
    attr(&r, IFLA_IFNAME, "eth0", 5);
    if (!attr(&r, IFLA_NET_NS_FD, &nsfd, 4))
        return kn_error_set(err, EMSGSIZE, "veth request");
    nest_end(&r, peer);
    nest_end(&r, data);
    nest_end(&r, li);
    return nl_talk(fd, &r, err) < 0 ? kn_error_prefix(err, "create veth %s", host_if) : 0;
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
 * works on either end while the thread is in that end's namespace. */
static void
ipv6_off(const char *ifname)
{
    char path[96];
    kn_error_t err;
    snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ifname);
    (void)kn_write_file(path, "1", &err); /* absent without IPv6: nothing to turn off */
}

static int
setup_inside(int netns_fd, uint32_t host, uint32_t peer, kn_error_t *err)
{
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0)
        return kn_error_set(err, errno, "open /proc/thread-self/ns/net");
    if (setns(netns_fd, CLONE_NEWNET) < 0) {
        int e = errno;
        close(self);
        return kn_error_set(err, e, "enter the sandbox's network namespace");
    }
    int rc = -1;
    int fd = rtnl_open(err);
    if (fd >= 0) {
        int idx = (int)if_nametoindex("eth0");
        ipv6_off("eth0");
        if (idx <= 0)
            kn_error_set(err, errno, "the sandbox's eth0");
        else if (addr_add(fd, idx, peer, err) == 0 && link_up(fd, idx, err) == 0 &&
                 route_default(fd, idx, host, err) == 0)
            rc = 0;
        close(fd);
    }
    if (setns(self, CLONE_NEWNET) < 0)
        abort(); /* see kn_netns_socket */
    close(self);
    return rc < 0 ? kn_error_prefix(err, "inside") : 0;
}

int
kn_link_veth_setup(const char *host_if, int netns_fd, uint32_t host, uint32_t peer, kn_error_t *err)
{
    int fd = rtnl_open(err);
    if (fd < 0)
        return -1;
    int rc = -1;
    if (veth_create(fd, host_if, netns_fd, err) == 0) {
        int idx = (int)if_nametoindex(host_if);
        ipv6_off(host_if);
        if (idx <= 0)
            kn_error_set(err, errno, "veth %s", host_if);
        else if (addr_add(fd, idx, host, err) == 0 && link_up(fd, idx, err) == 0 &&
                 setup_inside(netns_fd, host, peer, err) == 0)
            rc = 0;
    }
    close(fd);
    return rc;
}
