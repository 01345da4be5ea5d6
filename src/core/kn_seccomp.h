/* kn_seccomp.h - the syscall filters of a sandbox, compiled with libseccomp.
 *
 * Filters are compiled in the launcher before the sandbox is cloned, so a
 * compile error is reported plainly and the child only has to load bytes. */
#ifndef KN_SECCOMP_H
#define KN_SECCOMP_H

#include <linux/filter.h>
#include <stdbool.h>

#include "config.h"
#include "error.h"

typedef struct kn_bpf {
    struct sock_filter *insns; /* owned; free with kn_bpf_free */
    unsigned short len;
} kn_bpf_t;

/* The filters are compiled by libseccomp at build time (tools/bpfgen.c) and
 * copied from the binary at run time; kn_seccomp_compile*() compile them
 * afresh (the build tool and the test that checks the copy use them). */
int kn_seccomp_compile(const kn_config_t *cfg, kn_bpf_t *out, kn_error_t *err);
int kn_seccomp_compile_exec_notify(kn_bpf_t *out, kn_error_t *err);
/* The main filter of cfg: the default deny list, plus sockets when
 * cfg->deny_sockets. Out-parameter set only on success. */
int kn_seccomp_build(const kn_config_t *cfg, kn_bpf_t *out, kn_error_t *err);
/* A filter that hands execve/execveat to a user-notification listener:
 * used when cfg->deny_exec, so that the sandbox's init can let exactly the
 * entry process's execve through and refuse every later one. */
int kn_seccomp_build_exec_notify(kn_bpf_t *out, kn_error_t *err);
/* Loads prog for the calling thread. With listener != NULL, the filter is
 * loaded with SECCOMP_FILTER_FLAG_NEW_LISTENER and *listener gets its fd.
 * Requires no_new_privs (set by the caller). */
int kn_seccomp_load(const kn_bpf_t *prog, int *listener, kn_error_t *err);
/* Answers one pending notification on listener: lets it continue when
 * *allow_next is true (and clears it), otherwise fails it with EPERM. */
int kn_seccomp_notify_answer(int listener, bool *allow_next);
void kn_bpf_free(kn_bpf_t *prog);

#endif
