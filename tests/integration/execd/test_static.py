"""kennel-execd needs nothing from the image: it runs in a busybox-only root,
as a normal process and as PID 1 of a fresh PID namespace."""
import os
import shutil
import subprocess
import time

import pytest

from conftest import Client, children_of

BUSYBOX = "/bin/busybox"


def _mkroot(tmp, execd_bin):
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed (/bin/busybox missing)")
    out = subprocess.run(["file", "-L", BUSYBOX], capture_output=True, text=True).stdout
    if "statically linked" not in out and "static-pie" not in out:
        pytest.skip(f"{BUSYBOX} is not static: {out.strip()}")
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    root = os.path.join(tmp, "bbroot")
    os.makedirs(os.path.join(root, "bin"))
    os.makedirs(os.path.join(root, "tmp"))
    shutil.copy(BUSYBOX, os.path.join(root, "bin", "busybox"))
    for applet in ("sh", "echo", "sleep", "ls", "cat", "true"):
        os.symlink("busybox", os.path.join(root, "bin", applet))
    shutil.copy(execd_bin, os.path.join(root, "kennel-execd"))
    return root


def _wait_sock(path, proc):
    deadline = time.time() + 10
    while time.time() < deadline:
        if os.path.exists(path):
            try:
                if Client(path).request("GET", "/ping", timeout=2)[0] == 200:
                    return Client(path)
            except OSError:
                pass
        if proc.poll() is not None:
            raise AssertionError(f"execd exited: {proc.stdout.read()}")
        time.sleep(0.05)
    raise AssertionError("execd did not answer")


def test_binary_is_static(execd_bin):
    out = subprocess.run(["file", "-L", execd_bin], capture_output=True, text=True).stdout
    if "ASan" in os.environ.get("KENNEL_BUILD", "") or "asan" in execd_bin:
        pytest.skip("sanitizer builds link dynamically")
    assert "statically linked" in out, out


def _run(client, cmd):
    evs = client.events("/command", {"command": cmd, "envs": {"PATH": "/bin"}})
    return evs


def test_runs_in_busybox_only_root(execd_bin, tmpdir_path):
    if "asan" in execd_bin:
        pytest.skip("sanitizer builds link dynamically and cannot run in a bare root")
    root = _mkroot(tmpdir_path, execd_bin)
    proc = subprocess.Popen([shutil.which("chroot"), root, "/kennel-execd", "--socket", "/execd.sock"],
                            env={"PATH": "/bin"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        c = _wait_sock(os.path.join(root, "execd.sock"), proc)
        evs = _run(c, "echo hello from busybox; ls /")
        out = [e["text"] for e in evs if e["type"] == "stdout"]
        assert out[0] == "hello from busybox"
        assert "kennel-execd" in out and "bin" in out
        assert evs[-1]["type"] == "execution_complete"
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_pid1_in_pid_namespace_reaps_and_shuts_down(execd_bin, tmpdir_path):
    if "asan" in execd_bin:
        pytest.skip("sanitizer builds link dynamically and cannot run in a bare root")
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is not installed")
    root = _mkroot(tmpdir_path, execd_bin)
    proc = subprocess.Popen([shutil.which("unshare"), "--pid", "--fork", "--kill-child",
                             shutil.which("chroot"), root,
                             "/kennel-execd", "--socket", "/execd.sock"],
                            env={"PATH": "/bin"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        c = _wait_sock(os.path.join(root, "execd.sock"), proc)
        evs = _run(c, "echo $$")
        kids = children_of(proc.pid)
        assert len(kids) == 1
        execd_pid = kids[0]
        # Orphans: each backgrounded subshell exits at once, re-parented to PID 1.
        _run(c, "for i in 1 2 3 4 5; do (sleep 0.1 &) ; done; true")
        bg = c.events("/command", {"command": "sleep 60", "background": True,
                                   "envs": {"PATH": "/bin"}})
        time.sleep(0.8)
        states = []
        for k in children_of(execd_pid):
            with open(f"/proc/{k}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        assert "Z" not in states, states
        assert len(states) == 1  # only the background sleep is left
        with open(f"/proc/{execd_pid}/status") as f:
            nspid = [l for l in f if l.startswith("NSpid:")][0].split()
        assert nspid[-1] == "1"
        os.kill(execd_pid, 15)
        t0 = time.time()
        out, _ = proc.communicate(timeout=10)
        assert time.time() - t0 < 8
        assert "shutting down" in out
        assert bg[0]["type"] == "init"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
