"""The default profile's deny-list, one probe per kernel surface.

Each probe is also run on the host where that is harmless, to show that the
probe can tell success from refusal: an EPERM inside means something only if
the same call works outside.
"""
import pytest

from .conftest import probe_guard_args, run_cmd

EPERM = {"EPERM"}
KILLED_OR_EPERM = {"killed:SIGSYS", "EPERM"}

# probe args -> {field: accepted results}; "result" is always checked.
DENIED = {
    "mount": (["mount"], {"result": EPERM}),
    "umount /proc": (["umount", "/proc"], {"result": EPERM}),
    "remount / rw": (["remount", "/"], {"result": EPERM}),
    "pivot_root": (["pivot-root"], {"result": EPERM}),
    "chroot": (["chroot"], {"result": EPERM}),
    "ptrace attach": (["ptrace", "attach"], {"result": EPERM}),
    "ptrace traceme": (["ptrace", "traceme"], {"result": EPERM}),
    "process_vm_readv": (["process-vm"], {"result": EPERM}),
    "bpf": (["bpf"], {"result": EPERM}),
    "perf_event_open": (["perf"], {"result": EPERM}),
    "kexec_load": (["kexec"], {"result": EPERM}),
    "keyctl": (["keyctl"], {"result": EPERM, "add_key": EPERM, "request_key": EPERM}),
    "userfaultfd": (["userfaultfd"], {"result": EPERM}),
    "io_uring": (["io_uring"], {"result": EPERM, "enter": EPERM, "register": EPERM}),
    "unshare": (["unshare"], {"result": EPERM}),
    "unshare user": (["userns"], {"result": EPERM}),
    "setns": (["setns"], {"result": EPERM}),
    "clone with namespace flags": (["clone-ns"], {"result": EPERM}),
    "clone3": (["clone3"], {"result": {"ENOSYS"}}),
    "modules": (["module"], {"result": EPERM, "finit_module": EPERM, "delete_module": EPERM}),
    "reboot": (["reboot"], {"result": EPERM}),
    "swapon": (["swapon"], {"result": EPERM, "swapoff": EPERM}),
    "acct": (["acct"], {"result": EPERM}),
    # "highbits": the family with bit 32 set, which the kernel drops
    "AF_VSOCK": (["af-vsock"], {"result": EPERM, "highbits": EPERM}),
    "AF_PACKET": (["af-packet"], {"result": EPERM, "highbits": EPERM}),
    "raw socket": (["raw"], {"result": EPERM, "highbits": EPERM}),
    "netlink (non-route)": (["netlink"], {"result": EPERM, "audit_highbits": EPERM}),
    "new mount API": (["newmount"], {"result": EPERM, "open_tree": EPERM, "mount_setattr": EPERM}),
    "pidfd_getfd on pid 1": (["steal-fds", "1"], {"result": {"EPERM", "EACCES", "ESRCH"}}),
    "i386 int 0x80": (["int80"], {"result": KILLED_OR_EPERM}),
    "x32 ABI": (["x32"], {"result": KILLED_OR_EPERM}),
    "TIOCSTI/TIOCLINUX": (["tiocsti"], {"stdin": EPERM, "stdin_highbits": EPERM,
                                        "tioclinux": EPERM}),
    "open_by_handle_at": (["open-by-handle"], {"result": EPERM}),
    # ENOSYS: a kernel without CONFIG_X86_IOPL_IOPERM (this one) has neither
    "iopl/ioperm": (["iopl"], {"result": {"EPERM", "ENOSYS"}, "ioperm": {"EPERM", "ENOSYS"}}),
    "real-time scheduling": (["sched"], {"result": EPERM, "nice": {"EACCES", "EPERM"},
                                         "ioprio_rt": EPERM}),
    "syslog": (["syslog"], {"result": EPERM}),
    "clock_settime/adjtimex": (["clock"], {"result": EPERM, "adjtimex": EPERM}),
}


@pytest.mark.parametrize("probe_args,expect", list(DENIED.values()), ids=list(DENIED))
def test_default_profile_denies(kn, probe_args, expect):
    r, p = kn.probe(*probe_args)
    assert r.rc == 0, r
    if "result" not in expect:
        assert p["result"] != "ok", p
    for field, accepted in expect.items():
        if probe_args == ["x32"] and p[field] == "ENOSYS":
            # this kernel has no x32 ABI at all; nothing to filter
            host = run_cmd([kn.probe_dir + "/kennel-probe", "x32"]).probe()
            if host["result"] == "ENOSYS":
                continue
        assert p[field] in accepted, f"{field}={p[field]!r}, want one of {sorted(accepted)}: {p}"


def test_netlink_families(kn):
    r, p = kn.probe("netlink")
    refused = {k: v for k, v in p["families"].items() if k != "route" and v != "EPERM"}
    assert not refused, f"netlink families open inside: {refused}"


# Probes that succeed on the host (root, this kernel): the controls.
HOST_CONTROLS = ["int80", "userfaultfd", "io_uring", "perf", "keyctl", "clone3", "unshare", "raw",
                 "af-packet", "af-vsock", "netlink", "process-vm", "newmount", "sched"]


@pytest.mark.parametrize("probe", HOST_CONTROLS)
def test_probe_works_on_the_host(probe_dir, probe):
    r = run_cmd([str(probe_dir / "kennel-probe"), probe])
    p = r.probe()
    if p["result"] != "ok":
        # e.g. no vsock in this kernel, io_uring_disabled, perf_event_paranoid
        pytest.skip(f"the host itself refuses {probe} ({p['result']}): no control here")
    assert p["result"] == "ok"


def test_ordinary_syscalls_still_work(kn):
    # The deny-list must not break ordinary programs: threads, subprocesses,
    # pipes, mmap, signals, sockets on lo, fork+exec.
    code = ("import subprocess, threading, socket, mmap, os, signal\n"
            "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
            "print(subprocess.run(['echo', 'sub'], capture_output=True, text=True).stdout.strip())\n"
            "m = mmap.mmap(-1, 4096); m[0] = 1\n"
            "r, w = os.pipe(); os.write(w, b'p'); print(os.read(r, 1).decode())\n"
            "signal.signal(signal.SIGUSR1, lambda *a: print('sig')); os.kill(os.getpid(), signal.SIGUSR1)\n"
            "a, b = socket.socketpair(); a.send(b'x'); print(b.recv(1).decode())\n")
    r = kn.run("-c", code)
    assert r.rc == 0, r
    assert r.out.split() == ["sub", "p", "sig", "x"], r


def test_only_ordinary_socket_families(kn, probe_dir):
    # AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK (route only, see above);
    # everything else (AF_ALG, AF_XDP, AF_KEY, ...) is attack surface.
    host = run_cmd([str(probe_dir / "kennel-probe"), "socket-families"]).probe()
    r, p = kn.probe("socket-families")
    extra = sorted(set(p["opened"]) - {1, 2, 10, 16})
    assert not extra, f"address families open inside: {extra} (host: {host['opened']})"


@pytest.mark.parametrize("probe", [["umount", "/proc"], ["hostname", "kennel-evil-name"], ["tiocsti"]])
def test_probe_refuses_to_act_on_the_host(probe_dir, probe):
    # The safety net of this suite: with the guards every sandboxed probe
    # gets, a probe that finds itself in the host's namespaces does nothing.
    r = run_cmd([str(probe_dir / "kennel-probe"), *probe_guard_args(), *probe])
    assert r.probe()["result"] == "refused", r
