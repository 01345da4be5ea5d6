/* net.h - the sandbox's network namespace. */
#ifndef KN_NET_H
#define KN_NET_H

#include "error.h"

/* Brings up lo in the calling process's (fresh) network namespace. */
int kn_net_loopback_up(kn_error_t *err);

#endif
