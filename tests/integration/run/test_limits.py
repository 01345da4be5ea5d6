"""Resource attacks: fork bomb, memory bomb, disk filler, CPU hog, and a
timeout with a process tree that tries to survive it."""
import json
import os
import signal
import subprocess
import time

import pytest

from .conftest import (SH_GUARD, host_processes_matching, kennel_cgroups, new_leaked_cgroups,
                       probe_guard_args, remove_cgroups_of)

MiB = 1024 * 1024


def host_fork_latency(n=10):
    """Worst time for the host to fork+exec /bin/true, n times."""
    worst = 0.0
    for _ in range(n):
        t = time.monotonic()
        subprocess.run(["/bin/true"], check=True)
        worst = max(worst, time.monotonic() - t)
    return worst


def test_fork_bomb_contained(kn, marker):
    # The classic bomb, except that it stops at 400 visible processes: bounded
    # even if the runtime failed to apply --pids, and a no-op in the host's
    # pid namespace (far more than 400 processes there, and SH_GUARD).
    bomb = (SH_GUARD + "bomb() { local p=(/proc/[0-9]*); [ ${#p[@]} -lt 400 ] || return; "
            "bomb | bomb & }; bomb; sleep 30")
    proc = subprocess.Popen([kn.binary, "run", "--pids", "32", "-t", "4", "--", "bash", "-c", bomb,
                             marker], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # let it reach the limit
        latency = host_fork_latency()
        inside = len([pid for pid, _ in host_processes_matching(marker) if pid != proc.pid])
        assert latency < 1.0, f"the host needed {latency:.2f}s to fork during the bomb"
        assert inside <= 32, f"{inside} bomb processes on the host despite --pids 32"
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 124, proc.returncode
    assert host_processes_matching(marker) == [], "bomb processes survived the run"


def test_pids_limit_is_exact(kn):
    r, p = kn.probe("forkmax", "200", opts=("--pids", "16"))
    assert p["result"] == "EAGAIN", p
    assert p["children"] <= 15, f"{p['children']} children with --pids 16"
    assert p["children"] >= 8, f"only {p['children']} children with --pids 16"


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def test_memory_bomb_killed_inside(kn):
    sentinel = subprocess.Popen(["sleep", "60"])
    try:
        r = kn.probe_run("mem", "2048", opts=("--json", "-m", "64", "-t", "20"))
        assert r.rc == 137, r
        j = r.json()
        assert j["oom_killed"] is True, j
        assert j["exit_code"] == 137 and j["signal"] == 9, j
        assert j["peak_memory_bytes"] <= 72 * MiB, j["peak_memory_bytes"]
        assert sentinel.poll() is None, "the OOM killer hit a host process"
    finally:
        sentinel.kill()
        sentinel.wait()


def test_memory_within_limit_is_fine(kn):
    r, p = kn.probe("mem", "32", opts=("-m", "64"))
    assert r.rc == 0 and p["result"] == "ok", r


def disk_free():
    out = {}
    for path in ("/", "/tmp", "/dev/shm", "/var/tmp"):
        st = os.statvfs(path)
        out[path] = st.f_bavail * st.f_frsize
    return out


@pytest.fixture
def host_cleanup():
    """Paths a broken sandbox might create on the host: removed afterwards."""
    paths = []
    yield paths
    for p in paths:
        if os.path.lexists(p):
            os.unlink(p)


@pytest.mark.parametrize("directory", ["/tmp", "/work", "/var/tmp"])
def test_disk_filler_bounded(kn, directory, marker, host_cleanup):
    target = f"{directory}/filler-{marker}"
    host_cleanup.append(target)
    before = disk_free()
    r, p = kn.probe("fill", target, "4096", opts=("-t", "30"))
    after = disk_free()
    assert not os.path.exists(target), f"{target} was written on the host"
    assert r.rc == 0, r
    assert p["result"] in ("ENOSPC", "EFBIG", "EDQUOT"), \
        f"wrote {p['bytes'] // MiB} MiB to {target} without hitting a limit: {p}"
    for path in before:
        # one-sided: others on this host may free space meanwhile, not fill 256 MiB
        assert before[path] - after[path] < 256 * MiB, \
            f"host free space on {path} fell by {(before[path] - after[path]) // MiB} MiB"


def test_cpu_limit(kn):
    r = kn.probe_run("spin", "1.5", opts=("--json", "--cpus", "0.5"))
    j = r.json()
    lines = [line for line in j["stdout"].splitlines() if line.startswith("{")]
    assert lines, j
    spin = json.loads(lines[-1])
    used = spin["user_ms"] + spin["sys_ms"]
    assert used <= 1050, f"--cpus 0.5 let a 1.5 s spin use {used} ms of CPU"
    assert used >= 200, f"the spin got only {used} ms of CPU: did it run?"


def test_timeout_kills_whole_tree(kn, marker):
    r = kn.probe_run("orphans", marker, "3", opts=("-t", "1"))
    left = host_processes_matching(marker)
    assert r.rc == 124, r
    assert r.elapsed < 5, r
    assert "spawned" in r.out, f"output written before the timeout was lost\n{r}"
    assert left == [], f"processes survived the timeout: {left}"


def test_timeout_kills_tree_started_by_bash(kn, marker):
    script = (f"trap '' TERM HUP; (trap '' TERM; setsid bash -c 'exec -a {marker}-a sleep 300' & ); "
              f"nohup bash -c 'exec -a {marker}-b sleep 301' >/dev/null 2>&1 & "
              f"exec -a {marker}-c sleep 302")
    r = kn.run("-t", "1", "--", "bash", "-c", script, marker)
    left = host_processes_matching(marker)
    assert r.rc == 124, r
    assert left == [], f"processes survived the timeout: {left}"


def test_tmp_filler_with_small_memory_limit(kn, marker, host_cleanup):
    # /tmp is memory: with -m 64 a full /tmp should be a full disk (ENOSPC),
    # not an OOM kill of a program that only wrote files.
    host_cleanup.append(f"/tmp/filler-{marker}")
    r, p = kn.probe("fill", f"/tmp/filler-{marker}", "1024", opts=("-m", "64", "-t", "20"))
    assert r.rc == 0, f"the filler was killed instead of getting ENOSPC\n{r}"
    assert p["result"] in ("ENOSPC", "EFBIG", "EDQUOT"), p


def start_orphans(kn, marker):
    proc = subprocess.Popen([kn.binary, "run", "--ro-bind", f"{kn.probe_dir}:/probe", "--",
                             "/probe/kennel-probe", *probe_guard_args(), "orphans", marker, "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while len(host_processes_matching(marker)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def kill_leftovers(marker):
    for pid, _ in host_processes_matching(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_caller_signal_ends_sandbox_and_cleans_up(kn, marker, sig):
    """Ctrl-C, a closed terminal or a supervisor's SIGTERM on kennel: it
    kills the whole sandbox, removes its cgroups, and exits 128+N itself
    (instead of dying and leaving the kernel to clean up)."""
    cgroups_before = kennel_cgroups()
    proc = start_orphans(kn, marker)
    try:
        assert len(host_processes_matching(marker)) >= 4, "the sandbox did not start"
        proc.send_signal(sig)
        proc.communicate(timeout=5)
        left = host_processes_matching(marker)
        leaked = new_leaked_cgroups(cgroups_before)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_leftovers(marker)
        remove_cgroups_of(proc.pid)
    assert left == [], f"processes still there when kennel returned: {left}"
    assert proc.returncode == 128 + sig, \
        f"kennel ended with {proc.returncode} (negative: killed by the signal, nothing cleaned up)"
    assert leaked == [], f"cgroups left behind: {leaked}"


def test_sigkill_of_kennel_kills_sandbox(kn, marker):
    """Nothing can clean up after SIGKILL of the launcher, but the sandbox's
    processes must not outlive it (die-with-parent)."""
    proc = start_orphans(kn, marker)
    proc.kill()
    proc.communicate()
    deadline = time.monotonic() + 2
    while host_processes_matching(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = host_processes_matching(marker)
    kill_leftovers(marker)
    time.sleep(0.1)
    remove_cgroups_of(proc.pid)
    assert left == [], f"processes outlived a SIGKILLed kennel: {left}"


def test_inode_bomb_bounded_by_memory_limit(kn):
    # Empty files cost no data blocks but kernel memory (inodes, dentries):
    # -m must bound that too.
    code = ("import os, errno\n"
            "n = 0\n"
            "try:\n"
            "    while n < 3000000:\n"
            "        os.close(os.open('/tmp/f%d' % n, os.O_CREAT | os.O_WRONLY, 0o644)); n += 1\n"
            "    print('unbounded', n)\n"
            "except OSError as e:\n"
            "    print('stopped', n, errno.errorcode[e.errno])\n")
    before = mem_available()
    r = kn.run("--json", "-m", "64", "-t", "30", "-c", code)
    j = r.json()
    assert "unbounded" not in j["stdout"], j["stdout"]
    assert j["exit_code"] == 137 or j["stdout"].startswith("stopped"), j
    # generous: others share this host; an unbounded bomb would take gigabytes
    assert before - mem_available() < 1024 * MiB, "the host lost memory to the sandbox's inodes"
