/* net.c - kennel-probe, network: TCP, UDP, raw and other socket families, unix sockets. */
#include "probe.h"

static int
make_addr(const char *host, const char *port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    long p = parse_long(port, -1);
    memset(ss, 0, sizeof *ss);
    if (p < 0 || p > 65535)
        return -1;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)p);
        *len = sizeof *in4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)p);
        *len = sizeof *in6;
        return 0;
    }
    return -1;
}

/* net-tcp ADDR PORT: connect with a 2 s limit; "stage" says which call failed. */
int
p_net_tcp(int argc, char **argv)
{
    struct sockaddr_storage ss;
    socklen_t len;
    struct pollfd pfd;
    int fd, soerr = 0;
    socklen_t sl = sizeof soerr;

    if (argc < 2 || make_addr(argv[0], argv[1], &ss, &len) < 0)
        return usage_error("net-tcp", "net-tcp ADDR PORT");
    j_begin("net-tcp");
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        j_str("result", errname(errno));
        j_str("stage", "socket");
        return j_end();
    }
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        if (errno != EINPROGRESS) {
            j_str("result", errname(errno));
            j_str("stage", "connect");
            return j_end();
        }
        pfd.fd = fd;
        pfd.events = POLLOUT;
        if (poll(&pfd, 1, 2000) == 0) {
            j_str("result", "ETIMEDOUT");
            j_str("stage", "connect");
            return j_end();
        }
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    }
    j_str("result", errname(soerr));
    j_str("stage", "connect");
    if (!soerr) {
        static const char msg[] = "kennel-probe-tcp\n";
        j_str("send", rc_name(send(fd, msg, sizeof msg - 1, MSG_NOSIGNAL)));
    }
    close(fd);
    return j_end();
}

/* net-udp ADDR PORT: send one datagram. */
int
p_net_udp(int argc, char **argv)
{
    static const char msg[] = "kennel-probe-udp\n";
    struct sockaddr_storage ss;
    socklen_t len;
    int fd;

    if (argc < 2 || make_addr(argv[0], argv[1], &ss, &len) < 0)
        return usage_error("net-udp", "net-udp ADDR PORT");
    j_begin("net-udp");
    fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        j_str("result", errname(errno));
        j_str("stage", "socket");
        return j_end();
    }
    j_str("result", rc_name(sendto(fd, msg, sizeof msg - 1, 0, (struct sockaddr *)&ss, len)));
    j_str("stage", "sendto");
    close(fd);
    return j_end();
}

static int
p_socket_simple(const char *probe, int family, int type, int proto)
{
    int fd = socket(family, type | SOCK_CLOEXEC, proto);
    long fd2;
    j_begin(probe);
    j_str("result", rc_name(fd));
    if (fd >= 0)
        close(fd);
    fd2 = socket_highbits(family, type, proto);
    j_str("highbits", rc_name(fd2));
    if (fd2 >= 0)
        close((int)fd2);
    return j_end();
}

int
p_raw(int argc, char **argv)
{
    return p_socket_simple("raw", AF_INET, SOCK_RAW, IPPROTO_ICMP);
}

int
p_af_packet(int argc, char **argv)
{
    return p_socket_simple("af-packet", AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
}

/* Creates the socket only: a vsock connect would leave the machine. */
int
p_af_vsock(int argc, char **argv)
{
    return p_socket_simple("af-vsock", AF_VSOCK, SOCK_STREAM, 0);
}

/* socket inet|inet6|unix: creating any socket at all. */
int
p_socket(int argc, char **argv)
{
    const char *kind = argc > 0 ? argv[0] : "inet";
    int family = AF_INET;
    if (!strcmp(kind, "inet6"))
        family = AF_INET6;
    else if (!strcmp(kind, "unix"))
        family = AF_UNIX;
    return p_socket_simple("socket", family, SOCK_STREAM, 0);
}

/* socket-families: every address family 0..63 with the common socket
 * types; lists the families for which some socket could be created. A
 * family the kernel refuses with EAFNOSUPPORT counts as closed. */
int
p_socket_families(int argc, char **argv)
{
    static const int types[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET};
    j_begin("socket-families");
    j_open("opened", '[');
    for (int fam = 0; fam < 64; fam++) {
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            int fd = socket(fam, types[t] | SOCK_CLOEXEC, 0);
            if (fd >= 0) {
                char num[16];
                close(fd);
                snprintf(num, sizeof num, "%d", fam);
                out_sep();
                out_puts(num);
                break;
            }
        }
    }
    j_close(']');
    j_str("result", "ok");
    return j_end();
}

int
p_socketpair(int argc, char **argv)
{
    int sv[2];
    int rc = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
    j_begin("socketpair");
    j_str("result", rc_name(rc));
    if (rc == 0) {
        close(sv[0]);
        close(sv[1]);
    }
    return j_end();
}

/* netlink: every family but route must be refused; route is reported apart. */
int
p_netlink(int argc, char **argv)
{
    static const struct {
        const char *name;
        int proto;
    } fams[] = {
        {"route", NETLINK_ROUTE},         {"sock_diag", NETLINK_SOCK_DIAG},
        {"xfrm", NETLINK_XFRM},           {"audit", NETLINK_AUDIT},
        {"netfilter", NETLINK_NETFILTER}, {"kobject_uevent", NETLINK_KOBJECT_UEVENT},
        {"generic", NETLINK_GENERIC},
    };
    const char *worst = NULL;
    j_begin("netlink");
    j_open("families", '{');
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, fams[i].proto);
        const char *r = rc_name(fd);
        j_str(fams[i].name, r);
        if (fd >= 0)
            close(fd);
        if (fams[i].proto == NETLINK_ROUTE)
            continue;
        if (!worst || !strcmp(r, "ok"))
            worst = r;
    }
    j_close('}');
    {
        long fd = socket_highbits(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT);
        j_str("audit_highbits", rc_name(fd));
        if (fd >= 0)
            close((int)fd);
    }
    /* result: "ok" if any non-route family opened, else the first refusal */
    j_str("result", worst ? worst : "ok");
    return j_end();
}

/* unix PATH|@ABSTRACT: connect to a unix socket. */
int
p_unix(int argc, char **argv)
{
    struct sockaddr_un sun;
    socklen_t len;
    int fd, rc;
    size_t n;

    if (argc < 1 || strlen(argv[0]) >= sizeof sun.sun_path)
        return usage_error("unix", "unix PATH|@NAME");
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    n = strlen(argv[0]);
    memcpy(sun.sun_path, argv[0], n);
    if (argv[0][0] == '@')
        sun.sun_path[0] = '\0'; /* abstract namespace */
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (argv[0][0] == '@' ? 0 : 1));
    j_begin("unix");
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        j_str("result", errname(errno));
        j_str("stage", "socket");
        return j_end();
    }
    rc = connect(fd, (struct sockaddr *)&sun, len);
    j_str("result", rc_name(rc));
    j_str("stage", "connect");
    close(fd);
    return j_end();
}

/* ifaces: the interfaces of this network namespace, from /proc/net/dev. */
int
p_ifaces(int argc, char **argv)
{
    char line[512];
    int n = 0;
    FILE *f = fopen("/proc/net/dev", "re");
    j_begin("ifaces");
    if (!f) {
        j_str("result", errname(errno));
        return j_end();
    }
    j_open("ifaces", '[');
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        char *name = line;
        if (++n <= 2 || !colon)
            continue; /* two header lines */
        *colon = 0;
        while (*name == ' ')
            name++;
        j_elem(name);
    }
    j_close(']');
    fclose(f);
    j_str("result", "ok");
    return j_end();
}
