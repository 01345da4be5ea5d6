#!/usr/bin/env python3
"""Benchmark of `kennel run` against its peers, printed as markdown.

    bench/run_bench.sh [BUILD_DIR] [--rounds N] [--throughput-seconds S]

1. Start-up: N interleaved rounds (the order rotates every round) of
   `kennel run -q -- /bin/true`, the same under deny-by-default, bubblewrap
   with every namespace, `unshare -Urpfn --mount-proc`, and plain /bin/true;
   median, p90 and min wall time of each, and the kennel/bwrap ratio.
2. Python: `kennel run -l python -c 'print(1)'` against the same one-liner
   under the bwrap line above and on the host.
3. Peak RSS (GNU time's %M: the largest resident set among the launcher and
   the processes it waited for).
4. Throughput: one-shot runs completed per second with two at a time.

Times are wall-clock from the caller's side, including fork+exec of the
launcher, as a user of the command line would see them.
"""
import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")


def run_once(argv):
    start = time.perf_counter()
    rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL).returncode
    return (time.perf_counter() - start) * 1000.0, rc


def p90(values):
    s = sorted(values)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


def interleaved(cases, rounds, warmup=3):
    """cases: list of (label, argv). Returns label -> list of ms; a case that
    fails is reported once and dropped."""
    times = {label: [] for label, _ in cases}
    failed = {}
    live = list(cases)
    for i in range(warmup + rounds):
        shift = i % len(live) if live else 0
        for label, argv in live[shift:] + live[:shift]:
            if label in failed:
                continue
            ms, rc = run_once(argv)
            if rc != 0:
                failed[label] = rc
                continue
            if i >= warmup:
                times[label].append(ms)
    return times, failed


def peak_rss_kib(argv, repeat=5):
    gnu_time = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    if not gnu_time:
        return None
    best = []
    for _ in range(repeat):
        p = subprocess.run([gnu_time, "-f", "%M", *argv], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        last = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
        if p.returncode != 0 or not last.isdigit():
            return None
        best.append(int(last))
    return statistics.median(best)


def throughput(argv, seconds, parallel=2):
    done = [0] * parallel
    errors = [0] * parallel
    deadline = time.monotonic() + seconds

    def worker(i):
        while time.monotonic() < deadline:
            _, rc = run_once(argv)
            if rc == 0:
                done[i] += 1
            else:
                errors[i] += 1

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    return sum(done) / elapsed, sum(done), sum(errors), elapsed


def setup_phases(kennel, rounds):
    """Median and p90 of each set-up phase kennel reports in --json
    (timing.setup_phases_us), if it reports them."""
    phases = {}
    for _ in range(rounds):
        p = subprocess.run([kennel, "run", "-q", "--json", "--", "/bin/true"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True)
        try:
            timing = json.loads(p.stdout)["timing"]
        except (ValueError, KeyError, TypeError):
            return None
        for name, us in (timing.get("setup_phases_us") or {}).items():
            phases.setdefault(name, []).append(us / 1000.0)
        for name in ("setup_ms", "execute_ms", "teardown_ms", "total_ms"):
            if name in timing:
                phases.setdefault(name, []).append(timing[name])
    return phases


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) // 1024} MiB RAM"
    except OSError:
        pass
    return f"{platform.node()}: Linux {platform.release()}, {os.cpu_count()} CPUs ({cpu}), {mem}"


def fmt_table(times, failed, order):
    rows = ["| command | median ms | p90 ms | min ms | runs |", "|---|---:|---:|---:|---:|"]
    for label in order:
        if label in failed:
            rows.append(f"| `{label}` | failed (exit {failed[label]}) | | | 0 |")
            continue
        t = times[label]
        if not t:
            continue
        rows.append(f"| `{label}` | {statistics.median(t):.1f} | {p90(t):.1f} | {min(t):.1f} | {len(t)} |")
    return "\n".join(rows)


def ratio(times, a, b):
    if times.get(a) and times.get(b):
        return statistics.median(times[a]) / statistics.median(times[b])
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", nargs="?", default=os.path.join(os.path.dirname(__file__), "..", "build"))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("N", 50)))
    ap.add_argument("--throughput-seconds", type=float, default=5.0)
    args = ap.parse_args()

    kennel = os.path.abspath(os.path.join(args.build, "kennel"))
    if not os.access(kennel, os.X_OK):
        sys.exit(f"run_bench: {kennel} is missing: build first (cmake --build {args.build})")
    os.chdir("/")

    k_true = "kennel run -q -- /bin/true"
    k_deny = "kennel run -q --profile deny-by-default -- /bin/true"
    bwrap = ("bwrap --unshare-all --die-with-parent --ro-bind / / --dev /dev --proc /proc "
             "--tmpfs /tmp /bin/true")
    unshare = "unshare -Urpfn --mount-proc true"
    true = "/bin/true"
    argvs = {
        k_true: [kennel, "run", "-q", "--", "/bin/true"],
        k_deny: [kennel, "run", "-q", "--profile", "deny-by-default", "--", "/bin/true"],
        bwrap: bwrap.split(),
        unshare: unshare.split(),
        true: [true],
    }
    for tool in ("bwrap", "unshare"):
        if not shutil.which(tool):
            label = bwrap if tool == "bwrap" else unshare
            print(f"note: {tool} not installed, `{label}` skipped", file=sys.stderr)
            argvs.pop(label)

    print("## `kennel run` benchmark\n")
    print(f"- machine: {machine()}")
    print(f"- kennel: `{kennel}`")
    print(f"- rounds: {args.rounds} interleaved (3 warm-up rounds not counted); wall time seen by the caller\n")

    print("### Start-up: sandbox around /bin/true\n")
    times, failed = interleaved(list(argvs.items()), args.rounds)
    print(fmt_table(times, failed, list(argvs)))
    r = ratio(times, k_true, bwrap)
    if r:
        print(f"\nkennel/bwrap median ratio: **{r:.2f}x**")
    print()

    phases = setup_phases(kennel, args.rounds)
    if phases:
        print("### Where `kennel run -- /bin/true` spends its time (--json timing)\n")
        print("| phase | median ms | p90 ms | max ms |\n|---|---:|---:|---:|")
        for name, v in phases.items():
            print(f"| {name} | {statistics.median(v):.2f} | {p90(v):.2f} | {max(v):.2f} |")
        print()

    print("### Python one-liner\n")
    k_py = "kennel run -q -l python -c 'print(1)'"
    h_py = "python3 -c 'print(1)'"
    b_py = "bwrap ... python3 -c 'print(1)'"
    py = {k_py: [kennel, "run", "-q", "-l", "python", "-c", "print(1)"],
          b_py: bwrap.split()[:-1] + [PYTHON, "-c", "print(1)"],
          h_py: [PYTHON, "-c", "print(1)"]}
    if bwrap not in argvs:
        py.pop(b_py)
    ptimes, pfailed = interleaved(list(py.items()), args.rounds)
    print(fmt_table(ptimes, pfailed, list(py)))
    if ptimes.get(k_py) and ptimes.get(h_py):
        over = statistics.median(ptimes[k_py]) - statistics.median(ptimes[h_py])
        print(f"\nkennel overhead on a python one-liner (median difference): **{over:.1f} ms**")
    print()

    print("### Peak RSS (GNU time %M, median of 5)\n")
    print("| command | peak RSS KiB |\n|---|---:|")
    for label in (k_true, bwrap, true):
        if label in argvs:
            kib = peak_rss_kib(argvs[label])
            print(f"| `{label}` | {kib if kib is not None else 'n/a (install the time package)'} |")
    print()

    print(f"### Throughput: one-shot runs, 2 at a time, {args.throughput_seconds:g} s\n")
    print("| command | runs/s | completed | failed |\n|---|---:|---:|---:|")
    for label in (k_true, bwrap):
        if label in argvs:
            rate, n, errs, _ = throughput(argvs[label], args.throughput_seconds)
            print(f"| `{label}` | {rate:.1f} | {n} | {errs} |")
    rate, n, errs, _ = throughput(py[k_py], args.throughput_seconds)
    print(f"| `{k_py}` | {rate:.1f} | {n} | {errs} |")


if __name__ == "__main__":
    main()
