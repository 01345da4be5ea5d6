/* users.h - user and group names from the served root's /etc/passwd and
 * /etc/group (never the host's, never NSS: execd is static). */
#ifndef KN_EXECD_USERS_H
#define KN_EXECD_USERS_H

#include <sys/types.h>

#include "execd.h"

typedef struct kn_users kn_users_t;

/* Loads both files once (missing files give an empty table). Free with kn_users_free. */
kn_users_t *kn_users_load(const kn_execd_t *ex);
void kn_users_free(kn_users_t *u);
/* The name of uid (or gid when group), or its decimal form. */
void kn_users_name(const kn_users_t *u, int group, unsigned id, char *out, size_t n);
/* The id for a name or a decimal string; -1 if unknown. */
long kn_users_id(const kn_users_t *u, int group, const char *name);

#endif
