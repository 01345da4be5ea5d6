"""A launcher killed with SIGKILL cannot remove its cgroup; its sandbox dies
with it (PDEATHSIG), and the next kennel run removes the empty cgroups of
launchers that are gone, so they do not pile up."""
import glob
import os
import signal
import subprocess
import time

import pytest


def cgroups_of(pid):
    pats = [f"/sys/fs/cgroup/*/kennel-{pid}-*", f"/sys/fs/cgroup/*/*/kennel-{pid}-*",
            f"/sys/fs/cgroup/*/*/*/kennel-{pid}-*"]
    return sorted({p for pat in pats for p in glob.glob(pat)})


def test_next_run_removes_cgroups_of_a_killed_launcher(kn):
    if os.geteuid() != 0:
        pytest.skip("needs root: unprivileged runs have no cgroup")
    proc = subprocess.Popen([kn.binary, "run", "-q", "--", "sleep", "30"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not cgroups_of(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    made = cgroups_of(proc.pid)
    assert made, "kennel made no cgroup"
    # Wait until the sandbox is inside before killing the launcher.
    while time.monotonic() < deadline:
        if any(open(os.path.join(d, "cgroup.procs")).read().strip() for d in made):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    while time.monotonic() < deadline:
        if not any(open(os.path.join(d, "cgroup.procs")).read().strip()
                   for d in made if os.path.isdir(d)):
            break
        time.sleep(0.02)
    # (Another kennel running at the same time on this host may already have
    # removed them; either way none may be left after the next run.)
    r = kn.run("--", "true")
    assert r.rc == 0, r
    left = [d for d in made if os.path.isdir(d)]
    assert not left, f"stale cgroups left after the next run: {left}"
