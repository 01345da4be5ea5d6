"""The deny-by-default profile, checked with the twelve probes of the seed's
attestation (shared/seeds/deny-by-default-attestation.txt, section 6),
written afresh for Kennel, plus the profile's limits.

Differences from the seed, on purpose: PR-NET-1 connects to a listener of
this test on the host's 127.0.0.1 instead of a public resolver (no test may
send traffic off the machine), and PR-FS-ESC-2 writes into the interpreter's
own directory because there is no /app here.
"""
import json
import os
import socket

import pytest

HARNESS = r"""
import ctypes, errno, json, os, re, socket, sys

PORT = int(sys.argv[1])
probes = []

def record(pid, expected, actual, ok):
    probes.append({"probe_id": pid, "expected": expected, "actual": str(actual)[:300],
                   "verdict": "PASS" if ok else "FAIL"})

def attempt(fn):
    try:
        fn()
        return 0
    except OSError as e:
        return e.errno

def write(path):
    with open(path, "w") as f:
        f.write("probe\n")

e = attempt(lambda: socket.create_connection(("127.0.0.1", PORT), timeout=2))
record("PR-NET-1", "EPERM/ENETUNREACH/ECONNREFUSED", errno.errorcode.get(e, e),
       e in (errno.EPERM, errno.ENETUNREACH, errno.EAFNOSUPPORT, errno.ECONNREFUSED))

with open("/proc/net/dev") as f:
    ifaces = [ln.split(":")[0].strip() for ln in f.read().splitlines()[2:]]
record("PR-NET-2", "interfaces within {lo}", ifaces, set(ifaces) <= {"lo"})

e = attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
record("PR-SOCK-1", "EPERM", errno.errorcode.get(e, e), e == errno.EPERM)

secretish = re.compile(r"(?i)(token|secret|password|passwd|_dsn|conn|^pg|^kb|api[_-]?key)")
keys = sorted(os.environ)
record("PR-ENV-1", "no secret-looking variable", keys, not [k for k in keys if secretish.search(k)])

e = attempt(lambda: write("/in/__probe"))
record("PR-FS-RO-IN", "EROFS/EACCES", errno.errorcode.get(e, e), e in (errno.EROFS, errno.EACCES))

e = attempt(lambda: write("/etc/__probe"))
record("PR-FS-ESC-1", "EROFS/EACCES", errno.errorcode.get(e, e), e in (errno.EROFS, errno.EACCES))

app = os.path.dirname(os.__file__)
e = attempt(lambda: write(os.path.join(app, "__probe")))
record("PR-FS-ESC-2", "EROFS/EACCES in " + app, errno.errorcode.get(e, e),
       e in (errno.EROFS, errno.EACCES))

e = attempt(lambda: write("/out/report.md"))
record("PR-FS-OUT-OK", "writable", errno.errorcode.get(e, "ok"), e == 0)

exe = sys.executable or "/usr/bin/python3"  # no PATH in an empty environment
e = attempt(lambda: os.execv(exe, [exe, "-c", "pass"]))
record("PR-EXEC-1", "EPERM", errno.errorcode.get(e, e), e == errno.EPERM)

mounts = {}
with open("/proc/self/mountinfo") as f:
    for ln in f:
        fields = ln.split()
        mounts[fields[4]] = fields[5].split(",")
def opt(path, o):
    return o in mounts.get(path, [])
ok = opt("/", "ro") and opt("/in", "ro") and opt("/out", "rw") and opt("/tmp", "noexec")
record("PR-MOUNT-1", "/ ro, /in ro, /out rw, /tmp noexec",
       {p: mounts.get(p) for p in ("/", "/in", "/out", "/tmp")}, ok)

record("PR-SOCK-DOCKER", "absent", os.path.exists("/var/run/docker.sock"),
       not os.path.exists("/var/run/docker.sock"))

libc = ctypes.CDLL(None, use_errno=True)
rc = libc.ptrace(0, 0, 0, 0)
en = ctypes.get_errno()
record("PR-PTRACE-1", "EPERM", {"rc": rc, "errno": errno.errorcode.get(en, en)},
       rc != 0 and en == errno.EPERM)

print(json.dumps(probes))
"""

DENY = ("--profile", "deny-by-default")


@pytest.fixture
def in_out(hostdir):
    d_in, d_out = hostdir / "in", hostdir / "out"
    d_in.mkdir()
    d_out.mkdir()
    (d_in / "packet.json").write_text('{"packet": "attestation-fixture"}\n')
    d_out.chmod(0o777)  # written by the sandbox's uid 65532, mapped to some host uid
    return d_in, d_out


def test_seed_attestation_probes(kn, in_out, tcp_listener_port):
    d_in, d_out = in_out
    env = dict(os.environ, SECRET_TOKEN="tok", PGPASSWORD="pw", API_KEY="k")
    r = kn.run(*DENY, "--ro-bind", f"{d_in}:/in", "--bind", f"{d_out}:/out",
               "--", "python3", "-c", HARNESS, str(tcp_listener_port), env=env)
    assert r.rc == 0, r
    probes = json.loads(r.out.strip().splitlines()[-1])
    assert len(probes) == 12, probes
    failed = [p for p in probes if p["verdict"] != "PASS"]
    assert not failed, "failed probes:\n" + "\n".join(json.dumps(p) for p in failed)
    assert (d_out / "report.md").read_text() == "probe\n"
    assert not (d_in / "__probe").exists()


@pytest.fixture
def tcp_listener_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.settimeout(0.1)
    try:
        conn, _ = s.accept()
        conn.close()
        pytest.fail("a connection from the deny-by-default sandbox reached the host")
    except (socket.timeout, BlockingIOError):
        pass
    s.close()


def test_profile_limits_in_json(kn):
    r = kn.probe_run("caps", opts=(*DENY, "--json"))
    assert r.rc == 0, r
    j = r.json()
    assert j["profile"] == "deny-by-default"
    lim = j["limits"]
    assert lim["memory_bytes"] == 256 * 1024 * 1024, lim
    assert lim["pids"] == 64, lim
    assert lim["cpus"] == 1, lim


def test_uid_65532_and_no_capabilities(kn):
    r, p = kn.probe("caps", opts=DENY)
    assert (p["uid"], p["euid"], p["gid"], p["egid"]) == (65532, 65532, 65532, 65532), p
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(p[field], 16) == 0, (field, p)
    assert p["NoNewPrivs"] == "1" and p["Seccomp"] == "2", p


def test_environment_empty(kn):
    env = dict(os.environ, SECRET_TOKEN="tok")
    r, p = kn.probe("env", opts=DENY, env=env)
    assert p["env"] == {}, p


@pytest.mark.parametrize("probe", [["socket", "unix"], ["socket", "inet6"], ["socketpair"]])
def test_sockets_denied(kn, probe):
    r, p = kn.probe(*probe, opts=DENY)
    assert p["result"] == "EPERM", p


def test_execve_after_entry_denied(kn):
    r, p = kn.probe("exec", "/probe/kennel-probe", "caps", opts=DENY)
    assert p["probe"] == "exec" and p["result"] == "EPERM", r
    r, p = kn.probe("execveat", "/probe/kennel-probe", "caps", opts=DENY)
    assert p["probe"] == "execveat" and p["result"] == "EPERM", r
    r = kn.run(*DENY, "--", "bash", "-c", "/bin/true && echo EXECUTED")
    assert "EXECUTED" not in r.out, r


def test_tmp_is_small_and_noexec(kn):
    r, p = kn.probe("fill", "/tmp/big", "64", opts=DENY)
    assert p["result"] == "ENOSPC", p
    assert 15 * 1024 * 1024 <= p["bytes"] <= 16 * 1024 * 1024, p


@pytest.mark.parametrize("path", ["/", "/etc", "/usr", "/work", "/var/tmp", "/run", "/in", "/probe"])
def test_nothing_else_writable(kn, path, in_out, marker):
    d_in, _ = in_out
    target = os.path.join(path, f"kennel-deny-{marker}")
    r, p = kn.probe("write", target, opts=(*DENY, "--ro-bind", f"{d_in}:/in"))
    if os.path.exists(target):
        os.unlink(target)
        pytest.fail(f"{target} was written on the host")
    assert p["result"] in ("EROFS", "EACCES", "EPERM", "ENOENT"), p


def test_pids_limit_64(kn):
    r, p = kn.probe("forkmax", "200", opts=DENY)
    assert p["result"] == "EAGAIN" and p["children"] <= 63, p


def test_no_network(kn):
    r, p = kn.probe("ifaces", opts=DENY)
    assert set(p["ifaces"]) <= {"lo"}, p


SPIN2 = ("spin() { s=${EPOCHREALTIME/./}; while (( ${EPOCHREALTIME/./} - s < 1500000 )); do :; done; }; "
         "spin & spin & wait")


def test_one_cpu(kn):
    # two busy subshells (forks, no execve) for 1.5 s on a 2-CPU host
    r = kn.run(*DENY, "--json", "--", "bash", "-c", SPIN2)
    j = r.json()
    assert j["exit_code"] == 0, j
    used = j["cpu"]["user_ms"] + j["cpu"]["sys_ms"]
    assert used <= 1750, f"1 CPU for 1.5 s, yet {used:.0f} ms of CPU used"


def test_memory_256m(kn):
    r = kn.probe_run("mem", "400", opts=(*DENY, "--json"))
    j = r.json()
    assert j["exit_code"] == 137 and j["oom_killed"] is True, j


def test_upload_to_in_and_download_from_out(kn, hostdir):
    """Without binds, /in and /out are the profile's own: --upload places
    inputs in /in (read-only to the program), --download collects /out."""
    src = hostdir / "input.txt"
    src.write_text("input data\n")
    src.chmod(0o644)
    out = hostdir / "result.txt"
    code = ("import errno\n"
            "data = open('/in/input.txt').read()\n"
            "open('/out/result.txt', 'w').write(data.upper())\n"
            "try:\n"
            "    open('/in/input.txt', 'w')\n"
            "    print('in-writable')\n"
            "except OSError as e:\n"
            "    print(errno.errorcode[e.errno])\n")
    r = kn.run(*DENY, "--upload", f"{src}:/in/input.txt", "--download", f"/out/result.txt:{out}",
               "-c", code)
    assert r.rc == 0, r
    assert r.out in ("EROFS\n", "EACCES\n"), r
    assert out.read_text() == "INPUT DATA\n"
