/* uplink.c - the way out that all sandboxes with egress share (see
 * netpolicy_internal.h, "the shared uplink").
 *
 * Why shared: deleting or moving a network device makes the kernel wait
 * for RCU grace periods (rcu_barrier in netdev_run_todo and in
 * __dev_change_net_namespace), 15-40 ms here, and deleting nftables objects
 * makes the next close of any nfnetlink socket wait for one too. A veth per
 * sandbox paid that at every teardown. Here nothing per sandbox is deleted:
 * its eth0 is a macvlan of kennel1 created inside its namespace, which the
 * kernel takes away with the namespace, and the host keeps per sandbox only
 * a gateway address on kennel0 (added and removed without a grace period)
 * and the DNS proxy's sockets. docs/decisions.md has the measurements. */
#include "netpolicy_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "util.h"

#define NET_DIR "/run/kennel/net"
#define USERS NET_DIR "/uplink.users"
#define MAKE_LOCK NET_DIR "/uplink.lock"
#define FORWARD_MARK NET_DIR "/forwarding-by-kennel"
#define IP_FORWARD "/proc/sys/net/ipv4/ip_forward"

static int
table_script(char *buf, size_t len)
{
    char blocked[512];
    if (kn_net_put_blocked(blocked, sizeof blocked) < 0)
        return -1;
    int n = snprintf(
        buf, len,
        "table inet " KN_UPLINK_TABLE "\n"
        "delete table inet " KN_UPLINK_TABLE "\n"
        "table inet " KN_UPLINK_TABLE " {\n"
        /* addresses a sandbox's allow CIDRs open in the blocked ranges:
         * "sandbox . range" */
        "\tset private_ok { type ipv4_addr . ipv4_addr; flags interval; }\n"
        "\tchain input {\n\t\ttype filter hook input priority -5; policy accept;\n"
        "\t\tiifname \"" KN_UPLINK_GW "\" ip daddr 10.231.0.0/16 meta l4proto { udp, tcp } th "
        "dport 53 accept\n"
        "\t\tiifname { \"" KN_UPLINK_GW "\", \"" KN_UPLINK_LOWER "\" } drop\n\t}\n"
        /* the sandboxes' range lives behind kennel0 only: a late packet for
         * a sandbox that is gone (its gateway address, and so its route, went
         * with it) must not follow the default route out of the host */
        "\tchain output {\n\t\ttype filter hook output priority -5; policy accept;\n"
        "\t\tip daddr 10.231.0.0/16 oifname != { \"" KN_UPLINK_GW "\", \"lo\" } drop\n\t}\n"
        "\tchain forward {\n\t\ttype filter hook forward priority -5; policy accept;\n"
        "\t\tip daddr 10.231.0.0/16 oifname != \"" KN_UPLINK_GW "\" drop\n"
        "\t\toifname \"" KN_UPLINK_GW "\" ct state established,related accept\n"
        "\t\toifname { \"" KN_UPLINK_GW "\", \"" KN_UPLINK_LOWER "\" } drop\n"
        "\t\tiifname \"" KN_UPLINK_LOWER "\" drop\n"
        "\t\tiifname \"" KN_UPLINK_GW "\" meta nfproto != ipv4 drop\n"
        "\t\tiifname \"" KN_UPLINK_GW "\" ip saddr != 10.231.0.0/16 drop\n"
        /* the sandboxes' MTU is large; what leaves through a smaller link
         * gets an MSS that fits it, so path-MTU discovery is never needed */
        "\t\tiifname \"" KN_UPLINK_GW "\" tcp flags syn tcp option maxseg size set rt mtu\n"
        "\t\tiifname \"" KN_UPLINK_GW "\" ip saddr . ip daddr @private_ok accept\n"
        "\t\tiifname \"" KN_UPLINK_GW "\" ip daddr %s drop\n\t}\n"
        "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
        "\t\tip saddr 10.231.0.0/16 oifname != \"" KN_UPLINK_GW "\" masquerade\n\t}\n}\n",
        blocked);
    return n > 0 && (size_t)n < len ? 0 : -1;
}

/* Whether the table is there in its current shape: the output chain came
 * last (an older kennel's table lacks it and is made again, which replaces
 * it in one transaction). */
static int
current_table(kn_error_t *err)
{
    return kn_nft_chain_exists(KN_UPLINK_TABLE, "output", err);
}

/* Makes what is missing of the pair and the table, under an flock so that
 * concurrent first users make them once. */
static int
make(kn_error_t *err)
{
    int fd = open(MAKE_LOCK, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return kn_error_set(err, errno, "open %s", MAKE_LOCK);
    int rc = -1;
    if (flock(fd, LOCK_EX) < 0) {
        kn_error_set(err, errno, "lock %s", MAKE_LOCK);
        goto out;
    }
    if (!if_nametoindex(KN_UPLINK_GW) || !if_nametoindex(KN_UPLINK_LOWER)) {
        /* one half without the other: left by a crash or removed by hand */
        if (kn_link_delete(KN_UPLINK_GW, err) < 0 || kn_link_delete(KN_UPLINK_LOWER, err) < 0 ||
            kn_link_pair_create(KN_UPLINK_GW, KN_UPLINK_LOWER, KN_UPLINK_MTU, err) < 0)
            goto out;
    }
    int have = current_table(err);
    if (have < 0)
        goto out;
    if (!have) {
        char script[4096];
        if (table_script(script, sizeof script) < 0) {
            kn_error_set(err, E2BIG, "uplink table");
            goto out;
        }
        if (kn_nft_run(-1, script, err) < 0) {
            kn_error_prefix(err, "host table " KN_UPLINK_TABLE);
            goto out;
        }
    }
    rc = 0;
out:
    close(fd);
    return rc;
}

static int
forwarding_on(kn_error_t *err)
{
    char v[8] = "";
    if (kn_read_file(IP_FORWARD, v, sizeof v, err) < 0)
        return -1;
    if (v[0] == '1')
        return 0;
    /* The mark first: a release that sees it turns forwarding off again. */
    int m = open(FORWARD_MARK, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (m < 0)
        return kn_error_set(err, errno, "create %s", FORWARD_MARK);
    close(m);
    return kn_write_file(IP_FORWARD, "1", err);
}

int
kn_uplink_acquire(kn_uplink_t *u, kn_error_t *err)
{
    u->users_fd = -1;
    if (kn_mkdir_p(NET_DIR, 0755, err) < 0)
        return -1;
    int fd = open(USERS, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return kn_error_set(err, errno, "open %s", USERS);
    if (flock(fd, LOCK_SH) < 0) {
        int e = errno;
        close(fd);
        return kn_error_set(err, e, "lock %s", USERS);
    }
    u->users_fd = fd;
    int have =
        if_nametoindex(KN_UPLINK_GW) && if_nametoindex(KN_UPLINK_LOWER) ? current_table(err) : 0;
    if (have < 0 || (have == 0 && make(err) < 0) || forwarding_on(err) < 0) {
        kn_uplink_release(u);
        return kn_error_prefix(err, "shared uplink");
    }
    u->gw_ifindex = (int)if_nametoindex(KN_UPLINK_GW);
    u->lower_ifindex = (int)if_nametoindex(KN_UPLINK_LOWER);
    if (u->gw_ifindex <= 0 || u->lower_ifindex <= 0) {
        kn_uplink_release(u);
        return kn_error_set(err, ENODEV, "shared uplink " KN_UPLINK_GW "/" KN_UPLINK_LOWER);
    }
    return 0;
}

void
kn_uplink_release(kn_uplink_t *u)
{
    if (u->users_fd < 0)
        return;
    close(u->users_fd);
    u->users_fd = -1;
    /* The last user out turns forwarding off, if Kennel turned it on; a
     * user arriving meanwhile waits for its shared lock, then turns it on. */
    int fd = open(USERS, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && access(FORWARD_MARK, F_OK) == 0) {
        kn_error_t err;
        if (kn_write_file(IP_FORWARD, "0", &err) == 0)
            unlink(FORWARD_MARK);
    }
    close(fd);
}
