"""`kennel run` started by an unprivileged user (uid 65534 here): it must
still sandbox with user namespaces, and name what it cannot enforce."""
import json
import os
import socket

import pytest

from .conftest import host_processes_matching


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
