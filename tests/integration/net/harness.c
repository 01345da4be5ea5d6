/* kn-net-harness - drives kn_net_attach/kn_net_update/kn_net_detach on a
 * bare network namespace, for tests of what no CLI flag reaches (a policy
 * changed at run time, as PATCH /policy does).
 *
 *   kn-net-harness UPSTREAM RULE...     RULE: allow:T, deny:T or default-allow
 *
 * Prints "ready PID NAMESERVER" (PID holds the namespace: probe it with
 * nsenter), then serves the DNS proxy while reading commands on stdin:
 * "update RULE..." (answers "ok" or "error: ...") and "quit". */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/netpolicy.h"

static int
parse_rules(kn_net_policy_t *p, char **words, int n)
{
    p->n_rules = 0;
    p->default_allow = false;
    for (int i = 0; i < n; i++) {
        if (!strcmp(words[i], "default-allow")) {
            p->default_allow = true;
            continue;
        }
        bool allow = !strncmp(words[i], "allow:", 6);
        if ((!allow && strncmp(words[i], "deny:", 5)) || p->n_rules >= KN_MAX_NET_RULES)
            return -1;
        kn_net_rule_t *r = &p->rules[p->n_rules++];
        r->allow = allow;
        snprintf(r->target, sizeof r->target, "%s", words[i] + (allow ? 6 : 5));
    }
    return 0;
}

static pid_t
namespace_holder(int *hold)
{
    int fds[2], ready[2];
    if (pipe(fds) < 0 || pipe(ready) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        close(fds[1]);
        close(ready[0]);
        if (unshare(CLONE_NEWNET) < 0)
            _exit(1);
        if (write(ready[1], "x", 1) != 1)
            _exit(1);
        while (read(fds[0], &c, 1) > 0)
            ;
        _exit(0);
    }
    close(fds[0]);
    close(ready[1]);
    char c;
    if (pid < 0 || read(ready[0], &c, 1) != 1)
        return -1;
    close(ready[0]);
    *hold = fds[1];
    return pid;
}

int
main(int argc, char **argv)
{
    static kn_net_policy_t pol;
    kn_error_t err;
    if (argc < 2) {
        fprintf(stderr, "usage: kn-net-harness UPSTREAM RULE...\n");
        return 2;
    }
    pol.enabled = true;
    snprintf(pol.dns_upstream, sizeof pol.dns_upstream, "%s", argv[1]);
    if (parse_rules(&pol, argv + 2, argc - 2) < 0) {
        fprintf(stderr, "bad rule\n");
        return 2;
    }
    int hold = -1;
    pid_t pid = namespace_holder(&hold);
    if (pid < 0) {
        perror("namespace");
        return 1;
    }
    char id[64];
    snprintf(id, sizeof id, "harness-%d", (int)getpid());
    kn_netns_t *n = kn_net_attach(&pol, pid, id, &err);
    if (!n) {
        fprintf(stderr, "attach: %s\n", err.msg);
        close(hold);
        waitpid(pid, NULL, 0);
        return 1;
    }
    char path[256], ns[64] = "";
    kn_net_resolv_conf_path(id, path, sizeof path);
    FILE *rc = fopen(path, "re");
    if (!rc || fscanf(rc, "nameserver %63s", ns) != 1)
        strcpy(ns, "?");
    if (rc)
        fclose(rc);
    printf("ready %d %s\n", (int)pid, ns);
    fflush(stdout);
    char line[4096];
    size_t have = 0;
    int status = 0;
    for (bool quit = false; !quit;) {
        struct pollfd fds[41];
        fds[0] = (struct pollfd){0, POLLIN, 0};
        int k = kn_net_pollfds(n, fds + 1, 40);
        if (poll(fds, (nfds_t)k + 1, -1) < 0 && errno != EINTR)
            break;
        kn_net_handle(n, fds + 1, k);
        if (!(fds[0].revents & (POLLIN | POLLHUP)))
            continue;
        ssize_t r = read(0, line + have, sizeof line - 1 - have);
        if (r <= 0)
            break;
        have += (size_t)r;
        line[have] = '\0';
        char *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = '\0';
            char *words[KN_MAX_NET_RULES + 2];
            int nw = 0;
            for (char *s = NULL, *w = strtok_r(line, " ", &s); w && nw < KN_MAX_NET_RULES + 2;
                 w = strtok_r(NULL, " ", &s))
                words[nw++] = w;
            if (nw && !strcmp(words[0], "quit")) {
                quit = true;
            } else if (nw && !strcmp(words[0], "update")) {
                kn_net_policy_t np = pol;
                if (parse_rules(&np, words + 1, nw - 1) < 0)
                    printf("error: bad rule\n");
                else if (kn_net_update(n, &np, &err) < 0)
                    printf("error: %s\n", err.msg);
                else
                    printf("ok\n");
                fflush(stdout);
            }
            size_t used = (size_t)(nl + 1 - line);
            memmove(line, nl + 1, have - used + 1);
            have -= used;
        }
    }
    kn_net_detach(n);
    close(hold);
    waitpid(pid, &status, 0);
    return 0;
}
