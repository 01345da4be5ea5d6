"""`kennel run` started by an unprivileged user (uid 65534 here): it must
still sandbox with user namespaces, and name what it cannot enforce."""
import json
import os
import shutil
import socket

import pytest

from .conftest import host_processes_matching
from .test_image import BUSYBOX, is_static_elf


@pytest.fixture(scope="module", autouse=True)
def userns_available():
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            if int(f.read()) == 0:
                pytest.skip("user namespaces are disabled (user.max_user_namespaces = 0)")
    except OSError:
        pass
    try:
        with open("/proc/sys/kernel/unprivileged_userns_clone") as f:
            if f.read().strip() == "0":
                pytest.skip("unprivileged user namespaces are disabled")
    except OSError:
        pass


def test_runs_code(unpriv_kn):
    r = unpriv_kn.run("-c", "print(42)")
    assert r.rc == 0, r
    assert r.out == "42\n", r


def test_warns_about_unenforced_layers(unpriv_kn):
    r = unpriv_kn.run("-c", "pass")
    assert r.rc == 0, r
    assert "kennel:" in r.err and "cgroup" in r.err.lower(), f"no warning about cgroups\n{r}"


def test_quiet_suppresses_warnings(unpriv_kn):
    r = unpriv_kn.run("-q", "-c", "print(1)")
    assert r.rc == 0, r
    assert r.err == "", r


def test_json_names_unenforced(unpriv_kn):
    r = unpriv_kn.run("--json", "-c", "print(1)")
    assert r.rc == 0, r
    j = r.json()
    assert "cgroup" in j["unenforced"], j
    assert j["warnings"], j
    assert j["stdout"] == "1\n"


def test_isolation_holds(unpriv_kn):
    r, p = unpriv_kn.probe("caps")
    for field in ("CapEff", "CapBnd", "CapPrm", "CapAmb"):
        assert int(p[field], 16) == 0, (field, p)
    assert p["NoNewPrivs"] == "1" and p["Seccomp"] == "2", p
    r, p = unpriv_kn.probe("ptrace", "attach")
    assert p["result"] == "EPERM", p
    r, p = unpriv_kn.probe("write", "/etc/kennel-unpriv-probe")
    assert p["result"] != "ok" and not os.path.exists("/etc/kennel-unpriv-probe"), p
    r, p = unpriv_kn.probe("ifaces")
    assert set(p["ifaces"]) <= {"lo"}, p


def test_environment_clean(unpriv_kn):
    env = dict(os.environ, SECRET_TOKEN="tok-unpriv")
    r, p = unpriv_kn.probe("env", env=env)
    assert set(p["env"]) <= {"PATH", "HOME", "LANG"}, p
    assert "tok-unpriv" not in json.dumps(p)


def test_no_network_to_host(unpriv_kn):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    s.settimeout(0.3)
    try:
        r, p = unpriv_kn.probe("net-tcp", "127.0.0.1", str(s.getsockname()[1]))
        assert p["result"] != "ok", p
        with pytest.raises(socket.timeout):
            s.accept()
    finally:
        s.close()


def test_timeout_kills_tree(unpriv_kn, marker):
    r = unpriv_kn.probe_run("orphans", marker, "3", opts=("-t", "1"))
    assert r.rc == 124, r
    assert host_processes_matching(marker) == []


def test_exit_codes(unpriv_kn):
    assert unpriv_kn.run("--", "bash", "-c", "exit 3").rc == 3
    assert unpriv_kn.run("--", "bash", "-c", "kill -9 $$").rc == 137


def test_rlimits_hold_pids_without_cgroups(unpriv_kn):
    # DESIGN §2.6: rlimits are the second line. RLIMIT_NPROC is counted per
    # user namespace on this kernel, so --pids can hold without a cgroup.
    r, p = unpriv_kn.probe("forkmax", "200", opts=("-q", "--pids", "16"))
    assert p["children"] <= 16, f"--pids 16 let {p['children']} children start: {p}"


def test_rlimits_hold_memory_without_cgroups(unpriv_kn):
    r = unpriv_kn.probe_run("mem", "1024", opts=("-q", "-m", "64"))
    if r.rc == 0:
        p = r.probe()
        assert p["result"] != "ok" and p["mebibytes"] <= 128, \
            f"-m 64 let the program touch {p['mebibytes']} MiB"


def test_deny_by_default_profile(unpriv_kn):
    r, p = unpriv_kn.probe("caps", opts=("-q", "--profile", "deny-by-default"))
    assert p["euid"] == 65532 and int(p["CapEff"], 16) == 0 and p["Seccomp"] == "2", p
    r, p = unpriv_kn.probe("socket", "unix", opts=("-q", "--profile", "deny-by-default"))
    assert p["result"] == "EPERM", p


@pytest.mark.parametrize("probe", [["mount"], ["userns"], ["af-vsock"], ["io_uring"], ["bpf"],
                                   ["keyctl"], ["int80"]])
def test_seccomp_as_unprivileged(unpriv_kn, probe):
    r, p = unpriv_kn.probe(*probe, opts=("-q",))
    assert p["result"] in ("EPERM", "killed:SIGSYS"), p


def test_setup_failure_is_125(unpriv_kn):
    r = unpriv_kn.run("--bind", "/nonexistent/kennel/dir:/x", "-c", "print('RAN')")
    assert r.rc == 125 and "RAN" not in r.out, r


def test_cannot_bind_what_the_caller_cannot_read(unpriv_kn, hostdir):
    # kennel is no setuid helper: a directory closed to the caller stays closed.
    private = hostdir / "private"
    private.mkdir()
    (private / "secret.txt").write_text("root only\n")
    private.chmod(0o700)
    r = unpriv_kn.run("--ro-bind", f"{private}:/r", "-c",
                      "import os\ntry: print(os.listdir('/r'))\nexcept OSError as e: print(e)")
    assert "secret.txt" not in r.out, r


def test_rootfs_image(unpriv_kn, hostdir, probe_dir):
    if not os.path.exists(BUSYBOX) or not is_static_elf(BUSYBOX):
        pytest.skip("busybox-static is not installed")
    root = hostdir / "rootfs"
    for d in ("bin", "etc", "tmp", "work", "proc", "dev"):
        (root / d).mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    os.symlink("busybox", root / "bin" / "sh")
    shutil.copy2(probe_dir / "kennel-probe", root / "bin" / "kennel-probe")
    r = unpriv_kn.run("-q", "--image", str(root), "--", "/bin/sh", "-c", "echo from-image")
    assert r.rc == 0 and r.out == "from-image\n", r
    r = unpriv_kn.run("-q", "--image", str(root), "--", "/bin/kennel-probe", "caps")
    p = r.probe()
    assert int(p["CapEff"], 16) == 0 and p["Seccomp"] == "2", p
