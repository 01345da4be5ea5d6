/* probe.h - what the parts of kennel-probe share.
 *
 * Output: j_begin() starts the one JSON object a probe prints, j_str() and
 * friends add members, j_end() writes it to stdout and returns 0 (the probe's
 * exit status). Outcomes are named "ok", an errno name, or "killed:SIGxxx". */
#ifndef KENNEL_PROBE_H
#define KENNEL_PROBE_H

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/if_ether.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/landlock.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <linux/userfaultfd.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/timex.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif
#ifndef __X32_SYSCALL_BIT
#define __X32_SYSCALL_BIT 0x40000000
#endif

/* JSON output (common.c) */
void out_sep(void);
void out_puts(const char *s);
void j_begin(const char *probe);
void j_str(const char *key, const char *val);
void j_strn(const char *key, const char *val, size_t n);
void j_int(const char *key, long long v);
void j_bool(const char *key, int v);
void j_open(const char *key, char bracket);
void j_close(char bracket);
void j_elem(const char *val);
int j_end(void);

/* outcomes and helpers (common.c) */
const char *errname(int e);
const char *rc_name(long rc);
const char *signame(int sig);
const char *run_in_child(int (*fn)(void *), void *arg);
pid_t spawn_pauser(void);
void kill_and_reap(pid_t pid);
long parse_long(const char *s, long dflt);
uint64_t now_ms(void);
int usage_error(const char *probe, const char *what);
void read_small(const char *path, char *buf, size_t size);
int status_field(const char *status, const char *key, char *val, size_t size);
long socket_highbits(int family, int type, int proto);

/* the probes: argv holds the probe's own arguments */
int p_net_tcp(int argc, char **argv);
int p_net_udp(int argc, char **argv);
int p_raw(int argc, char **argv);
int p_af_packet(int argc, char **argv);
int p_af_vsock(int argc, char **argv);
int p_socket(int argc, char **argv);
int p_socket_families(int argc, char **argv);
int p_socketpair(int argc, char **argv);
int p_netlink(int argc, char **argv);
int p_unix(int argc, char **argv);
int p_ifaces(int argc, char **argv);
int p_ptrace(int argc, char **argv);
int p_process_vm(int argc, char **argv);
int p_steal_fds(int argc, char **argv);
int p_kill(int argc, char **argv);
int p_ps(int argc, char **argv);
int p_orphans(int argc, char **argv);
int p_forkmax(int argc, char **argv);
int p_caps(int argc, char **argv);
int p_setuid(int argc, char **argv);
int p_int80(int argc, char **argv);
int p_x32(int argc, char **argv);
int p_clone3(int argc, char **argv);
int p_clone_ns(int argc, char **argv);
int p_unshare(int argc, char **argv);
int p_userns(int argc, char **argv);
int p_setns(int argc, char **argv);
int p_mount(int argc, char **argv);
int p_remount(int argc, char **argv);
int p_umount(int argc, char **argv);
int p_newmount(int argc, char **argv);
int p_pivot_root(int argc, char **argv);
int p_chroot(int argc, char **argv);
int p_bpf(int argc, char **argv);
int p_perf(int argc, char **argv);
int p_io_uring(int argc, char **argv);
int p_userfaultfd(int argc, char **argv);
int p_keyctl(int argc, char **argv);
int p_kexec(int argc, char **argv);
int p_reboot(int argc, char **argv);
int p_swapon(int argc, char **argv);
int p_acct(int argc, char **argv);
int p_module(int argc, char **argv);
int p_iopl(int argc, char **argv);
int p_syslog(int argc, char **argv);
int p_open_by_handle(int argc, char **argv);
int p_landlock(int argc, char **argv);
int p_clock(int argc, char **argv);
int p_sched(int argc, char **argv);
int p_tiocsti(int argc, char **argv);
int p_fds(int argc, char **argv);
int p_env(int argc, char **argv);
int p_write(int argc, char **argv);
int p_open_w(int argc, char **argv);
int p_read(int argc, char **argv);
int p_mkdir(int argc, char **argv);
int p_ls(int argc, char **argv);
int p_mknod(int argc, char **argv);
int p_exec(int argc, char **argv);
int p_execveat(int argc, char **argv);
int p_exe_write(int argc, char **argv);
int p_mem(int argc, char **argv);
int p_fill(int argc, char **argv);
int p_spin(int argc, char **argv);
int p_sleep(int argc, char **argv);
int p_hostname(int argc, char **argv);

#endif
