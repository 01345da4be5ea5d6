"""Trying to break out through processes and credentials: host processes,
capabilities, setuid and file-capability binaries, inherited descriptors,
the caller's environment and its terminal."""
import ctypes
import fcntl
import json
import os
import pty
import shutil
import socket
import subprocess
import termios
import time
import tty

import pytest

from .conftest import (PROBE_IN_SANDBOX, PY_GUARD, SH_GUARD, make_world_dir, probe_guard_args,
                       remove_tree)


def test_host_processes_invisible_and_unkillable(kn):
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        code = PY_GUARD + ("import json, os, signal\n"
                "pid = %d\n"
                "res = {'visible': sorted(int(p) for p in os.listdir('/proc') if p.isdigit())}\n"
                "res['cmdlines'] = [open('/proc/%%d/cmdline' %% p, 'rb').read().decode(errors='replace')\n"
                "                   for p in res['visible'] if os.path.exists('/proc/%%d/cmdline' %% p)]\n"
                "for sig in (0, signal.SIGKILL):\n"
                "    try: os.kill(pid, sig); res['kill%%d' %% sig] = 'ok'\n"
                "    except OSError as e: res['kill%%d' %% sig] = e.strerror\n"
                "print(json.dumps(res), flush=True)\n"
                "try: os.kill(-1, signal.SIGKILL)\n"
                "except OSError: pass\n") % sleeper.pid
        r = kn.run("-t", "10", "--", "python3", "-c", code)
        res = json.loads(r.out.splitlines()[0])
        assert res["kill0"] != "ok" and res["kill9"] != "ok", res
        assert len(res["visible"]) < 10, f"too many processes visible: {res['cmdlines']}"
        assert not any("sleep\x00300" in c or "pytest" in c for c in res["cmdlines"]), res
        time.sleep(0.2)
        assert sleeper.poll() is None, "the host process was killed from inside"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_init_shows_no_launcher_arguments(kn, hostdir, marker):
    """Init (pid 1 inside) is a copy of the launcher and /proc/1/cmdline is
    readable by everyone: the launcher's command line (host paths, the code
    of the other sources of the same run) must not be in it."""
    secret = f"other-source-{marker}"
    reader = PY_GUARD + ("import json\n"
                         "print(json.dumps([open('/proc/1/cmdline', 'rb').read().decode(errors='replace'),\n"
                         "                  open('/proc/1/comm').read()]))\n")
    # Two sources run at once, each in its own sandbox: the reader must not
    # see the other one's code, nor the host path of the bind.
    r = kn.run("-t", "10", "--ro-bind", f"{hostdir}:/data", "-c", f"print('{secret}')",
               "-c", reader)
    assert r.rc == 0, r
    lines = [l for l in r.out.splitlines() if l.startswith("[code2]")]
    assert lines, r
    cmdline, comm = json.loads(lines[0].split(" ", 1)[1])
    assert secret not in cmdline and str(hostdir) not in cmdline, cmdline
    assert cmdline.rstrip("\x00") == "kennel-init", cmdline


def test_init_is_filtered_and_has_no_new_privs(kn):
    """Init gets no_new_privs and a seccomp filter too (after forking the
    program), in both profiles."""
    code = "grep -E '^(NoNewPrivs|Seccomp):' /proc/1/status"
    r = kn.run("--", "sh", "-c", code)
    assert r.rc == 0, r
    st = dict(l.split(":\t") for l in r.out.splitlines())
    assert st == {"NoNewPrivs": "1", "Seccomp": "2"}, st
    # deny-by-default: one execve only, so read it without a second program.
    r = kn.run("--profile", "deny-by-default", "--", "python3", "-c",
               "print([l for l in open('/proc/1/status') if l.startswith(('NoNewPrivs', 'Seccomp:'))])")
    assert r.rc == 0, r
    assert "NoNewPrivs:\\t1" in r.out and "Seccomp:\\t2" in r.out, r


def test_own_pid_namespace(kn):
    r, p = kn.probe("ps")
    pids = {x["pid"] for x in p["procs"]}
    assert max(pids) < 100, f"host-sized pids visible: {sorted(pids)}"
    names = {x["name"] for x in p["procs"]}
    assert "kthreadd" not in names and "process_api" not in names, names


def parse_map(text):
    return [tuple(int(x) for x in line.split()) for line in text.splitlines() if line.strip()]


def test_capabilities_gone_and_root_is_not_host_root(kn):
    r, p = kn.probe("caps")
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(p[field], 16) == 0, f"{field} = {p[field]}"
    assert p["NoNewPrivs"] == "1", p
    assert p["Seccomp"] == "2", p
    uid_map = parse_map(p["uid_map"])
    assert uid_map, p
    for inside, outside, count in uid_map:
        assert not (outside <= 0 < outside + count), f"host root is mapped inside: {uid_map}"
    for inside, outside, count in parse_map(p["gid_map"]):
        assert not (outside <= 0 < outside + count), f"host root group is mapped: {p['gid_map']}"


def test_setuid_gives_nothing(kn):
    r, p = kn.probe("setuid")
    assert int(p["CapEff"], 16) == 0, p
    assert p["setgroups"] == "EPERM", p  # no CAP_SETGID, even as root inside
    r, p = kn.probe("setuid", opts=("--profile", "deny-by-default"))
    assert p["result"] == "EPERM" and p["euid"] == 65532, p


@pytest.fixture
def privileged_copies(probe_dir):
    """Copies of the probe with the classic ways to gain privilege: setuid
    root, setuid to the uid that is root inside, and file capabilities."""
    d = make_world_dir("kennel-run-priv-")
    made = {}
    suid = d / "suid-root"
    shutil.copy2(probe_dir / "kennel-probe", suid)
    os.chown(suid, 0, 0)
    suid.chmod(0o4755)
    made["suid-root"] = suid
    if shutil.which("setcap"):
        fcap = d / "filecaps"
        shutil.copy2(probe_dir / "kennel-probe", fcap)
        fcap.chmod(0o755)
        rc = subprocess.run(["setcap", "cap_sys_admin,cap_net_raw,cap_setuid,cap_dac_override+eip",
                             str(fcap)], capture_output=True)
        if rc.returncode == 0:
            made["filecaps"] = fcap
    yield d, made
    remove_tree(d)


def test_setuid_root_binary_gives_nothing(kn, privileged_copies):
    d, made = privileged_copies
    r = kn.run("--ro-bind", f"{d}:/priv", "--", "/priv/suid-root", "caps")
    p = r.probe()
    assert int(p["CapEff"], 16) == 0 and int(p["CapPrm"], 16) == 0, p
    # as the deny-by-default profile's uid 65532 the setuid bit must not make us root
    r = kn.run("--profile", "deny-by-default", "--ro-bind", f"{d}:/priv", "--", "/priv/suid-root", "caps")
    p = r.probe()
    assert p["euid"] == 65532 and p["uid"] == 65532, p
    assert int(p["CapEff"], 16) == 0, p


def test_setuid_to_inside_root_gives_nothing(kn, privileged_copies):
    # A setuid binary owned by the host uid that inside-root maps to: the
    # one the kernel would honour without no_new_privs.
    d, made = privileged_copies
    r, p = kn.probe("caps", opts=("--profile", "deny-by-default"))
    root_host = [o for i, o, c in parse_map(p["uid_map"]) if i == 0]
    if not root_host:
        r, p = kn.probe("caps")
        root_host = [o for i, o, c in parse_map(p["uid_map"]) if i == 0]
    if not root_host:
        pytest.skip("inside uid 0 is not mapped: no such binary can exist")
    mapped = d / "suid-mapped"
    shutil.copy2(d / "suid-root", mapped)
    os.chown(mapped, root_host[0], root_host[0])
    mapped.chmod(0o4755)
    r = kn.run("--profile", "deny-by-default", "--ro-bind", f"{d}:/priv", "--", "/priv/suid-mapped", "caps")
    p = r.probe()
    assert p["euid"] == 65532, f"setuid to inside-root honoured: {p}"
    assert int(p["CapEff"], 16) == 0, p


def test_file_capabilities_give_nothing(kn, privileged_copies):
    d, made = privileged_copies
    if "filecaps" not in made:
        pytest.skip("setcap is missing or the temporary filesystem refuses file capabilities")
    r = kn.run("--ro-bind", f"{d}:/priv", "--", "/priv/filecaps", "caps")
    p = r.probe()
    assert int(p["CapEff"], 16) == 0 and int(p["CapPrm"], 16) == 0, p
    r = kn.run("--ro-bind", f"{d}:/priv", "--", "/priv/filecaps", "raw")
    assert r.probe()["result"] == "EPERM", r


def test_inherited_descriptors_closed(kn, hostdir):
    secret = hostdir / "inherited-secret.txt"
    secret.write_text("secret\n")
    f = os.open(secret, os.O_RDONLY)
    d = os.open(hostdir, os.O_RDONLY | os.O_DIRECTORY)
    a, b = socket.socketpair()
    high = 200
    os.dup2(f, high)
    fds = (f, d, a.fileno(), high)
    for fd in fds:
        os.set_inheritable(fd, True)
    try:
        r = kn.probe_run("fds", "all", pass_fds=fds)
        p = r.probe()
        assert set(p["fds"]) <= {"0", "1", "2"}, f"descriptors inside: {p['fds']}"
        everywhere = [t for fdmap in p.get("others", {}).values() if isinstance(fdmap, dict)
                      for t in fdmap.values()]
        everywhere += list(p["fds"].values())
        for t in everywhere:
            assert str(hostdir) not in t, f"a host file or directory is open inside: {t}"
    finally:
        for fd in (f, d, high):
            os.close(fd)
        a.close()
        b.close()


def test_host_environment_not_leaked(kn):
    env = dict(os.environ)
    token = "tok-" + os.urandom(8).hex()
    env.update(SECRET_TOKEN=token, AWS_SECRET_ACCESS_KEY=token, DATABASE_URL=f"pg://{token}")
    r, p = kn.probe("env", env=env)
    keys = set(p["env"])
    assert keys <= {"PATH", "HOME", "LANG"}, f"unexpected variables inside: {sorted(keys)}"
    assert p["env"].get("HOME") == "/work", p
    assert token not in json.dumps(p), "the caller's secret is visible"
    # nor through any visible process's /proc/PID/environ
    code = ("import os\n"
            "print(any(%r.encode() in open('/proc/%%s/environ' %% p, 'rb').read()\n"
            "          for p in os.listdir('/proc') if p.isdigit()\n"
            "          if os.access('/proc/%%s/environ' %% p, os.R_OK)))\n") % token
    r = kn.run("-c", code, env=env)
    assert r.out == "False\n", r


def test_env_flag_adds_only_what_is_asked(kn):
    env = dict(os.environ, SECRET_TOKEN="tok")
    r, p = kn.probe("env", opts=("-e", "FOO=bar"), env=env)
    assert p["env"].get("FOO") == "bar"
    assert set(p["env"]) <= {"PATH", "HOME", "LANG", "FOO"}, sorted(p["env"])


def test_no_terminal_injection(kn, probe_dir):
    """Runs kennel on a pty that is its controlling terminal, as in an
    interactive shell, and checks that nothing typed from inside arrives
    in the terminal's input queue."""
    master, slave = pty.openpty()
    tty.setraw(slave)  # so injected bytes are readable without a newline

    def become_session_with_ctty():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    argv = [kn.binary, "run", "--ro-bind", f"{probe_dir}:/probe", "--", PROBE_IN_SANDBOX,
            *probe_guard_args(), "tiocsti"]
    try:
        proc = subprocess.run(argv, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              preexec_fn=become_session_with_ctty, timeout=30)
        out = proc.stdout.decode(errors="replace")
        flags = fcntl.fcntl(slave, fcntl.F_GETFL)
        fcntl.fcntl(slave, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        try:
            queued = os.read(slave, 4096)
        except BlockingIOError:
            queued = b""
        assert b"KENNEL_TIOCSTI" not in queued, f"input injected into the caller's terminal: {queued!r}"
        p = json.loads(out.strip().splitlines()[-1])
        assert p["result"] != "ok", p
        assert p["stdin"] == "EPERM" and p["stdin_highbits"] == "EPERM", p
        assert p["tioclinux"] == "EPERM", p
        assert p["dev_tty"] != "ok", p
    finally:
        os.close(master)
        os.close(slave)


def test_no_controlling_terminal_inside(kn, probe_dir):
    # setsid: /dev/tty must not reach the caller's terminal
    master, slave = pty.openpty()
    try:
        argv = [kn.binary, "run", "--ro-bind", f"{probe_dir}:/probe", "--", PROBE_IN_SANDBOX,
                *probe_guard_args(), "open-w", "/dev/tty"]

        def ctty():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        proc = subprocess.run(argv, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              preexec_fn=ctty, timeout=30)
        p = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        assert p["result"] in ("ENXIO", "EIO", "ENOENT", "EACCES", "EPERM"), p
    finally:
        os.close(master)
        os.close(slave)


def test_tiocsti_detector_works(probe_dir):
    """Control for test_no_terminal_injection: the probe run directly on a
    pty it controls does inject, and the test's check sees it."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    try:
        def ctty():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        proc = subprocess.run([str(probe_dir / "kennel-probe"), "tiocsti"], stdin=slave,
                              stdout=subprocess.PIPE, preexec_fn=ctty, timeout=30)
        p = json.loads(proc.stdout.decode().strip())
        if p["result"] != "ok":
            pytest.skip(f"TIOCSTI is refused even on the host here: {p}")
        fcntl.fcntl(slave, fcntl.F_SETFL, fcntl.fcntl(slave, fcntl.F_GETFL) | os.O_NONBLOCK)
        assert b"KENNEL_TIOCSTI" in os.read(slave, 4096)
    finally:
        os.close(master)
        os.close(slave)


def test_sysv_ipc_is_private(kn):
    libc = ctypes.CDLL(None, use_errno=True)
    key = 0x6B6E6E6C  # "knnl"
    IPC_CREAT, IPC_RMID = 0o1000, 0
    shmid = libc.shmget(key, 4096, IPC_CREAT | 0o666)
    if shmid < 0:
        pytest.skip(f"cannot create a SysV segment on the host (errno {ctypes.get_errno()})")
    try:
        code = ("import ctypes\n"
                "libc = ctypes.CDLL(None, use_errno=True)\n"
                f"print(libc.shmget({key}, 0, 0), ctypes.get_errno())\n")
        r = kn.run("-c", code)
        assert r.rc == 0, r
        rc, err = r.out.split()
        assert int(rc) < 0, f"the host's SysV shared memory segment is visible inside: {r.out}"
    finally:
        libc.shmctl(shmid, IPC_RMID, None)


def test_oom_score_cannot_be_lowered(kn):
    # With -1000 a process could make the OOM killer pick someone else.
    code = ("try:\n"
            "    open('/proc/self/oom_score_adj', 'w').write('-1000'); print('lowered')\n"
            "except OSError as e:\n"
            "    print('refused')\n")
    r = kn.run("-c", code)
    assert r.out == "refused\n", r


def test_init_cannot_be_stopped_or_killed_from_inside(kn):
    # Whatever pid 1 inside is, stopping or killing it from inside must not
    # keep the timeout from ending the run.
    r = kn.run("-t", "1", "--", "bash", "-c",
               SH_GUARD + "kill -STOP 1; kill -KILL 1; kill -STOP -1; sleep 30", timeout=30)
    assert r.rc == 124, r
    assert r.elapsed < 5, r


def test_no_way_to_host_root_through_proc(kn, hostdir, marker):
    """/proc/PID/root and /proc/PID/cwd of every visible process (the
    runtime's own helper included) must lead into the sandbox, never to the
    host's /: a marker file that exists only in the host's /tmp must stay
    out of reach."""
    (hostdir / marker).write_text("host only\n")
    (hostdir / marker).chmod(0o644)
    host_path = str(hostdir / marker)
    code = ("import json, os\n"
            f"target = {host_path!r}\n"
            "reached = []\n"
            "for pid in [p for p in os.listdir('/proc') if p.isdigit()] + ['self', 'thread-self']:\n"
            "    for link in ('root', 'cwd'):\n"
            "        base = '/proc/%s/%s' % (pid, link)\n"
            "        for rel in (target, '/root/.bashrc'):\n"
            "            p = base + rel if link == 'root' else base + '/../../../../../..' + rel\n"
            "            try:\n"
            "                with open(p) as f: f.read(1)\n"
            "                reached.append(p)\n"
            "            except OSError:\n"
            "                pass\n"
            "print(json.dumps(reached))\n")
    r = kn.run("-c", code)
    assert r.rc == 0, r
    assert json.loads(r.out) == [], f"host files reached through /proc: {r.out}"


def test_descriptors_of_pid1_cannot_be_stolen(kn):
    r, p = kn.probe("steal-fds", "1")
    assert p["result"] != "ok", f"descriptors copied out of pid 1: {p['stolen']}"


def test_cgroup_namespace_hides_host_paths(kn):
    r, p = kn.probe("read", "/proc/self/cgroup")
    paths = [line.split(":", 2)[2] for line in p["data"].splitlines() if line.count(":") >= 2]
    assert paths and all(x == "/" for x in paths), f"host cgroup paths visible: {p['data']}"


@pytest.mark.parametrize("profile", ["default", "deny-by-default"])
def test_host_su_gives_nothing(kn, profile):
    if not os.path.exists("/usr/bin/su"):
        pytest.skip("the host has no /usr/bin/su")
    r = kn.run("--profile", profile, "-t", "10", "--", "/usr/bin/su", "-c",
               "grep -E '^(Uid|CapEff)' /proc/self/status", "root", input=b"\n")
    fields = dict(line.split(":", 1) for line in r.out.splitlines() if ":" in line)
    if "CapEff" in fields:
        assert int(fields["CapEff"].strip(), 16) == 0, r
    if profile == "deny-by-default" and "Uid" in fields:
        assert fields["Uid"].split()[1] != "0", f"su made uid 65532 root\n{r}"


def test_setuid_mount_helper_gives_nothing(kn):
    if not os.path.exists("/usr/bin/mount"):
        pytest.skip("the host has no /usr/bin/mount")
    # /out: a target that does not exist on the host, should this ever run there
    r = kn.run("--profile", "deny-by-default", "--", "/usr/bin/mount", "-t", "tmpfs", "kennel", "/out")
    assert r.rc != 0, r


def test_host_ptys_invisible(kn):
    master, slave = pty.openpty()
    try:
        name = os.ttyname(slave)
        r, p = kn.probe("ls", "/dev/pts")
        assert os.path.basename(name) not in p["entries"], f"host {name} visible inside: {p}"
        r, p = kn.probe("open-w", name)
        assert p["result"] != "ok", p
    finally:
        os.close(master)
        os.close(slave)
