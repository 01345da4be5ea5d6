"""Fixtures for the `kennel run` integration tests.

Most tests run the static probe (tests/probe, built as KENNEL_BUILD/kennel-probe)
inside a sandbox: the probe is copied once into a world-readable temporary
directory and bound read-only at /probe, so it is reachable in every image and
profile, as root and as an unprivileged caller, and the build tree's copy can
never be damaged by a probe that attacks its own binary.
"""
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

# Guards against a hung kennel: no single run in this suite should take longer.
HARD_TIMEOUT = 60

PROBE_IN_SANDBOX = "/probe/kennel-probe"

# The caller's namespaces. Every probe run gets --unless-ns for each, and the
# tests' own destructive scripts (kill -1, a fork bomb) check them first: if
# a runtime under development fails to isolate, the probe refuses instead of
# unmounting the host's /proc or renaming the host.
GUARDED_NAMESPACES = ("pid", "mnt", "uts", "net")
HOST_NS = {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in GUARDED_NAMESPACES}


def probe_guard_args():
    args = []
    for link in HOST_NS.values():
        args += ["--unless-ns", link]
    return args


# Shell and python preludes that stop a script running in the host's pid namespace.
SH_GUARD = (f'[ "$(readlink /proc/self/ns/pid)" != "{HOST_NS["pid"]}" ] || '
            '{ echo "kennel-test: refusing to run in the host pid namespace" >&2; exit 99; }; ')
PY_GUARD = (f"import os, sys\n"
            f"if os.readlink('/proc/self/ns/pid') == {HOST_NS['pid']!r}:\n"
            f"    sys.exit('kennel-test: refusing to run in the host pid namespace')\n")


class Result:
    """What one `kennel run` did, seen from the caller."""

    def __init__(self, argv, rc, stdout, stderr, elapsed):
        self.argv = argv
        self.rc = rc
        self.stdout_bytes = stdout
        self.stderr_bytes = stderr
        self.out = stdout.decode(errors="replace")
        self.err = stderr.decode(errors="replace")
        self.elapsed = elapsed

    def json(self):
        try:
            return json.loads(self.out)
        except ValueError:
            raise AssertionError(f"stdout is not one JSON document:\n{self}") from None

    def probe(self):
        """The probe's JSON line (the last line of stdout that parses)."""
        for line in reversed(self.out.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    continue
        raise AssertionError(f"no probe output:\n{self}")

    def __repr__(self):
        return str(self)

    def __str__(self):
        cmd = " ".join(self.argv)
        return (f"$ {cmd}\n-> exit {self.rc} after {self.elapsed:.2f}s\n"
                f"stdout: {self.out[:2000]!r}\nstderr: {self.err[:2000]!r}")


def run_cmd(argv, input=None, timeout=HARD_TIMEOUT, env=None, cwd=None, pass_fds=()):
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        pass_fds=pass_fds,
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        remove_cgroups_of(proc.pid)  # a killed kennel cannot remove them itself
        pytest.fail(f"hung for more than {timeout}s: {' '.join(map(str, argv))}")
    return Result([str(a) for a in argv], proc.returncode, out, err, time.monotonic() - start)


def make_world_dir(prefix):
    """A fresh 0755 directory under /tmp (pytest's own tmp is 0700 and
    unreachable for the unprivileged ids a sandbox maps to)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    d.chmod(0o755)
    return d


def remove_tree(path):
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


class Kennel:
    """Runs `kennel run`, optionally as an unprivileged user (prefix)."""

    def __init__(self, binary, probe_dir, prefix=()):
        self.binary = str(binary)
        self.probe_dir = str(probe_dir)
        self.prefix = list(prefix)

    def run(self, *args, input=None, timeout=HARD_TIMEOUT, env=None, cwd=None, pass_fds=()):
        argv = self.prefix + [self.binary, "run", *[str(a) for a in args]]
        return run_cmd(argv, input=input, timeout=timeout, env=env, cwd=cwd, pass_fds=pass_fds)

    def probe_run(self, *probe_args, opts=(), **kw):
        """Runs the probe inside a sandbox (opts go before `--`)."""
        return self.run("--ro-bind", f"{self.probe_dir}:/probe", *opts, "--", PROBE_IN_SANDBOX,
                        *probe_guard_args(), *probe_args, **kw)

    def probe(self, *probe_args, opts=(), **kw):
        """Runs the probe inside a sandbox; returns (Result, probe JSON)."""
        r = self.probe_run(*probe_args, opts=opts, **kw)
        return r, r.probe()


@pytest.fixture(scope="session")
def probe_bin(build_dir):
    p = build_dir / "kennel-probe"
    if not p.exists():
        pytest.skip(f"{p} is missing: the tests/probe target was not built")
    return p


@pytest.fixture(scope="session")
def probe_dir(probe_bin):
    d = make_world_dir("kennel-run-probe-")
    shutil.copy2(probe_bin, d / "kennel-probe")
    (d / "kennel-probe").chmod(0o755)
    yield d
    remove_tree(d)


@pytest.fixture(scope="session")
def kn(kennel, probe_dir):
    return Kennel(kennel, probe_dir)


@pytest.fixture(scope="session")
def unpriv_kn(kennel, probe_dir):
    """`kennel run` as uid/gid 65534 from a copy in a 0755 directory."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    d = make_world_dir("kennel-run-unpriv-")
    shutil.copy2(kennel, d / "kennel")
    (d / "kennel").chmod(0o755)
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    yield Kennel(d / "kennel", probe_dir, prefix=prefix)
    remove_tree(d)


@pytest.fixture
def hostdir():
    d = make_world_dir("kennel-run-test-")
    yield d
    remove_tree(d)


@pytest.fixture
def marker():
    return "kennelmark" + uuid.uuid4().hex[:12]


def host_processes_matching(text):
    """Host pids whose command line contains text (any argument)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if text.encode() in cmd:
            found.append((int(entry), cmd.replace(b"\0", b" ").decode(errors="replace")))
    return found


CGROUP_ROOT = "/sys/fs/cgroup"


def kennel_cgroups():
    found = []
    if not os.path.isdir(CGROUP_ROOT):
        return found
    for controller in sorted(os.listdir(CGROUP_ROOT)):
        top = os.path.join(CGROUP_ROOT, controller)
        for d, dirs, _ in os.walk(top):
            for name in dirs:
                if "kennel" in name:
                    found.append(os.path.join(d, name))
    return sorted(found)


def descendants(root_pid):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        for c in children.get(pid, []):
            out.append(c)
            todo.append(c)
    return sorted(out)


def ppid_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def is_foreign_cgroup(path, mine):
    """A cgroup in use by someone else's live sandbox: one of its processes
    descends from a live process that is not ours (mine = our pids)."""
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            procs = [int(x) for x in f.read().split()]
    except OSError:
        return False
    for pid in procs:
        p = pid
        while p > 1:
            if p in mine:
                break
            p = ppid_of(p)
        else:
            return True
    return False


def new_leaked_cgroups(before, wait=3.0):
    """kennel cgroups that appeared since `before` and belong to no live
    sandbox of anyone else; waits a little for foreign ones to settle."""
    deadline = time.monotonic() + wait
    while True:
        mine = set(descendants(os.getpid())) | {os.getpid()}
        new = [c for c in kennel_cgroups() if c not in before and not is_foreign_cgroup(c, mine)]
        if not new or time.monotonic() > deadline:
            return new
        time.sleep(0.2)


def remove_cgroups_of(pid, wait=3.0):
    """Test hygiene after a deliberately killed kennel (pid): removes the
    cgroups named after it, which nothing else would ever remove, once the
    processes in them are gone."""
    deadline = time.monotonic() + wait
    while True:
        left = [c for c in kennel_cgroups() if os.path.basename(c).startswith(f"kennel-{pid}-")]
        for c in left:
            for d, dirs, _ in sorted(os.walk(c, topdown=False)):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        if not left or time.monotonic() > deadline:
            return
        time.sleep(0.1)


def proc_status(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {"uid": int(fields["Uid"].split()[0]), "ppid": int(fields["PPid"].strip())}


def cmdline_of(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def orphaned_sandbox_processes(min_uid=100000):
    """Processes running as a mapped sandbox uid (>= min_uid on the host)
    whose nearest ancestor outside that range is not a kennel launcher: a
    sandbox process that outlived its run, whoever started it."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = proc_status(int(entry))
        if not st or st["uid"] < min_uid:
            continue
        p = st["ppid"]
        while p > 1:
            pst = proc_status(p)
            if pst is None or pst["uid"] < min_uid:
                break
            p = pst["ppid"]
        if p <= 1 or "kennel" not in cmdline_of(p):
            found.append((int(entry), cmdline_of(int(entry))))
    return sorted(found)
