"""After a run nothing is left: no mount, cgroup, process or file on the host,
whether the run ended normally, by timeout, by the OOM killer, or failed
while the sandbox was being set up."""
import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from .conftest import (descendants, host_processes_matching, is_foreign_cgroup,
                       kennel_cgroups, orphaned_sandbox_processes)

FILE_DIRS = ["/tmp", "/run", "/var/tmp", "/dev/shm", "/run/kennel", "/var/run/kennel", "/var/lib/kennel"]


def mounts():
    with open("/proc/self/mounts") as f:
        return sorted(f.read().splitlines())


def kennel_files():
    found = []
    for d in FILE_DIRS:
        try:
            for name in os.listdir(d):
                # the suite's own directories are made by the fixtures
                if "kennel" in name and not name.startswith("kennel-run-"):
                    found.append(os.path.join(d, name))
        except OSError:
            pass
    return sorted(found)


def snapshot(marker):
    return {
        "mounts": mounts(),
        "cgroups": kennel_cgroups(),
        "files": kennel_files(),
    }


def settled_diff(before, marker, wait=3.0):
    """Other people's sandboxes may come and go on a shared host: entries of
    live foreign sandboxes are ignored, and vanished cgroups (someone else's
    sandbox ended) too; what our runs leave behind never settles away."""
    deadline = time.monotonic() + wait
    while True:
        after = snapshot(marker)
        mine = set(descendants(os.getpid())) | {os.getpid()}
        diff = {}
        for k in before:
            gone = sorted(set(before[k]) - set(after[k]))
            new = sorted(set(after[k]) - set(before[k]))
            if k == "cgroups":
                gone = []
                new = [c for c in new if not is_foreign_cgroup(c, mine)]
            if gone or new:
                diff[k] = (gone, new)
        if not diff or time.monotonic() > deadline:
            return diff
        time.sleep(0.2)


def test_nothing_left_after_a_batch_of_runs(kn, hostdir, marker):
    upload = hostdir / "up.txt"
    upload.write_text("data\n")
    upload.chmod(0o644)
    before = snapshot(marker)
    my_children_before = descendants(os.getpid())
    orphans_before = orphaned_sandbox_processes()

    results = [
        kn.probe_run("caps"),
        kn.probe_run("orphans", marker, "3", opts=("-t", "0.5")),
        kn.probe_run("mem", "512", opts=("-m", "32")),
        kn.probe_run("forkmax", "100", opts=("--pids", "8")),
        kn.run("--bind", f"/nonexistent/{marker}:/x", "-c", "pass"),
        kn.run("--image", f"/nonexistent/{marker}", "-c", "pass"),
        kn.run("--ro-bind", f"{hostdir}:/etc/passwd/{marker}", "-c", "pass"),
        kn.run("--", f"/nonexistent/{marker}"),
        kn.run("--upload", f"{upload}:/work/up.txt", "--download", f"/work/up.txt:{hostdir}/down.txt",
               "-c", "pass"),
        kn.run("-c", "print(1)", "-c", "import time; time.sleep(5)", "-t", "0.5"),
        kn.run("--profile", "deny-by-default", "-c", "print(1)"),
        kn.run("-m", "-5", "-c", "pass"),
    ]
    codes = [r.rc for r in results]
    assert codes[0] == 0 and codes[1] == 124 and codes[2] == 137, [str(r) for r in results[:3]]
    assert codes[4] == 125 and codes[5] == 125, [str(r) for r in results[4:6]]

    leftovers = host_processes_matching(marker)
    assert leftovers == [], f"processes left: {leftovers}"
    assert descendants(os.getpid()) == my_children_before, "child processes left behind"
    orphans = sorted(set(orphaned_sandbox_processes()) - set(orphans_before))
    assert orphans == [], f"sandbox processes without a kennel parent: {orphans}"
    diff = settled_diff(before, marker)
    assert not diff, f"host state changed (gone, new): {diff}"


def test_nothing_left_after_concurrent_runs(kn, marker):
    """Eight runs at once, of every ending, then the same checks."""
    before = snapshot(marker)
    orphans_before = orphaned_sandbox_processes()
    jobs = [
        lambda: kn.probe_run("orphans", marker, "2", opts=("-t", "0.7")),
        lambda: kn.probe_run("mem", "512", opts=("-m", "32")),
        lambda: kn.probe_run("forkmax", "100", opts=("--pids", "8")),
        lambda: kn.probe_run("spin", "0.5"),
        lambda: kn.run("--bind", f"/nonexistent/{marker}:/x", "-c", "pass"),
        lambda: kn.run("-c", "print(1)", "-c", "print(2)"),
        lambda: kn.run("--profile", "deny-by-default", "-t", "0.5", "--", "bash", "-c", "while :; do :; done"),
        lambda: kn.probe_run("caps"),
    ]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(lambda job: job(), jobs))
    assert [results[i].rc for i in (0, 1, 4, 6)] == [124, 137, 125, 124], \
        [str(r) for r in results]
    assert host_processes_matching(marker) == []
    orphans = sorted(set(orphaned_sandbox_processes()) - set(orphans_before))
    assert orphans == [], f"sandbox processes without a kennel parent: {orphans}"
    diff = settled_diff(before, marker)
    assert not diff, f"host state changed (gone, new): {diff}"


def host_network_objects():
    """Interfaces (index -> name), nftables tables and routes of the host."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    ifaces = {}
    for line in links.splitlines():
        index, name = line.split(":")[:2]
        ifaces[int(index)] = name.strip().split("@")[0]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    return ifaces, tables.splitlines(), routes.splitlines()


def sandbox_eth0(kennel_pid):
    """(link partner's name on the host, eth0's IPv4 address) of the sandbox
    run by kennel_pid, found through the sandbox's netns."""
    for pid in descendants(kennel_pid):
        out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "-4", "addr", "show",
                              "dev", "eth0"], capture_output=True, text=True).stdout
        links = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "link"],
                               capture_output=True, text=True).stdout
        m = re.search(r"^\d+: eth0@if(\d+):", links, re.M)
        a = re.search(r"inet (10\.231\.\d+\.\d+)/30", out)
        if m and a:
            return host_network_objects()[0].get(int(m.group(1))), a.group(1)
    return None


@pytest.mark.parametrize("ending", ["normal", "timeout", "sigterm"])
def test_network_runs_leave_no_interfaces_or_rules(kn, ending):
    """--network makes host-side objects (a gateway address, its route, a
    neighbour entry); whatever way the run ends, they go with it, and none
    lingers for the kernel to finish. The program sends nothing: it only
    sleeps."""
    if not shutil.which("ip") or not shutil.which("nft") or not shutil.which("nsenter"):
        pytest.skip("ip (iproute2), nft or nsenter is not installed")
    timeout = "0.8" if ending == "timeout" else "10"
    proc = subprocess.Popen([kn.binary, "run", "--network", "-t", timeout, "--", "sleep",
                             "1.5" if ending == "normal" else "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        found = None
        deadline = time.monotonic() + 0.7
        while found is None and time.monotonic() < deadline and proc.poll() is None:
            found = sandbox_eth0(proc.pid)
            time.sleep(0.05)
        if ending == "sigterm":
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode == 125:
        pytest.skip(f"--network is not available here: {err.decode(errors='replace').strip()}")
    assert found, "no eth0 in the sandbox found while it ran"
    # eth0 is a macvlan of the shared pair's kennel1 (src/core/uplink.c); what
    # is the sandbox's on the host: the slot's gateway address on kennel0,
    # its /30 route and neighbour entry, an exception element naming it.
    partner, addr = found
    assert partner == "kennel1", found
    a = [int(x) for x in addr.split(".")]
    net = f"10.231.{a[2]}.{a[3] & ~3}"
    gw = f"10.231.{a[2]}.{(a[3] & ~3) + 1}"
    slot = (a[2] * 256 + (a[3] & ~3)) // 4

    def ours():
        ifaces, tables, routes = host_network_objects()
        addrs = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
        neigh = subprocess.run(["ip", "-4", "neigh"], capture_output=True, text=True).stdout
        shared = subprocess.run(["nft", "list", "table", "inet", "kennel_host"],
                                capture_output=True, text=True).stdout
        return ([n for n in ifaces.values() if n == f"knh{slot}"] +
                [t for t in tables if t.endswith(f"kennel_{slot}")] +
                [r for r in routes if r.startswith(f"{net}/30 ")] +
                [l for l in addrs.splitlines() if f" {gw}/" in l] +
                [l for l in neigh.splitlines() if l.startswith(f"{addr} ")] +
                [l for l in shared.splitlines() if f"{addr} . " in l])

    # At once: nothing is left for the kernel to finish after kennel exits.
    left = ours()
    assert left == [], f"left on the host after a {ending} --network run: {left}"
