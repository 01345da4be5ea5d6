/* netpolicy.c - placeholder until the network policy lands (issue 5).
 * Every entry point refuses plainly; nothing pretends to filter. */
#include "netpolicy.h"

#include <errno.h>
#include <stdio.h>

int
kn_net_rule_check(const char *target, kn_error_t *err)
{
    (void)target;
    return kn_error_set(err, ENOTSUP, "network policies are not implemented yet");
}

int
kn_net_resolv_conf_path(const char *id, char *buf, size_t len)
{
    return snprintf(buf, len, "/run/kennel/net/%s/resolv.conf", id) < (int)len ? 0 : -1;
}

kn_netns_t *
kn_net_attach(const kn_net_policy_t *p, pid_t pid, const char *id, kn_error_t *err)
{
    (void)p;
    (void)pid;
    (void)id;
    kn_error_set(err, ENOTSUP, "network policies are not implemented yet");
    return NULL;
}

int
kn_net_pollfds(kn_netns_t *n, struct pollfd *fds, int max)
{
    (void)n;
    (void)fds;
    (void)max;
    return 0;
}

void
kn_net_handle(kn_netns_t *n, const struct pollfd *fds, int nfds)
{
    (void)n;
    (void)fds;
    (void)nfds;
}

uint16_t
kn_net_exposed_port(const kn_netns_t *n, size_t i)
{
    (void)n;
    (void)i;
    return 0;
}

int
kn_net_update(kn_netns_t *n, const kn_net_policy_t *p, kn_error_t *err)
{
    (void)n;
    (void)p;
    return kn_error_set(err, ENOTSUP, "network policies are not implemented yet");
}

void
kn_net_detach(kn_netns_t *n)
{
    (void)n;
}
