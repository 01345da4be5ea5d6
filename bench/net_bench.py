#!/usr/bin/env python3
"""What a network policy adds to `kennel run` (docs/benchmarks.md, Network).

    bench/net_bench.py BUILD_DIR [--rounds N]

Interleaved rounds of `kennel run -q -- /bin/true` without and with a policy
(`--allow-domain example.com`), wall time from fork to wait; then the
launcher's own --json figures for the network phase and teardown. Nothing is
sent anywhere: the program is /bin/true and the DNS upstream is 127.0.0.1.
Needs root (a policy needs root).
"""
import argparse
import json
import statistics
import subprocess
import time


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--rounds", type=int, default=50)
    a = ap.parse_args()
    k = f"{a.build}/kennel"
    policy = ["--allow-domain", "example.com", "--dns-upstream", "127.0.0.1"]
    cmds = {"none": [k, "run", "-q", "--", "/bin/true"],
            "allowlist": [k, "run", "-q", *policy, "--", "/bin/true"]}
    times = {n: [] for n in cmds}
    for r in range(a.rounds + 3):
        order = list(cmds) if r % 2 == 0 else list(reversed(cmds))
        for n in order:
            t = time.perf_counter()
            subprocess.run(cmds[n], check=True)
            if r >= 3:
                times[n].append((time.perf_counter() - t) * 1e3)
    print("| `kennel run -q` ... `-- /bin/true` | median ms | p90 ms | min ms |")
    print("|---|---:|---:|---:|")
    for n, xs in times.items():
        label = "no network" if n == "none" else "`--allow-domain example.com`"
        print(f"| {label} | {statistics.median(xs):.1f} | {pct(xs, 0.9):.1f} | {min(xs):.1f} |")
    added = statistics.median(times["allowlist"]) - statistics.median(times["none"])
    print(f"\nAdded by the policy (difference of medians): {added:.1f} ms\n")
    net, down = [], []
    for _ in range(a.rounds):
        out = subprocess.run([k, "run", "--json", *policy, "--", "/bin/true"], check=True,
                             capture_output=True, text=True).stdout
        t = json.loads(out)["timing"]
        net.append(t["setup_phases_us"]["network"] / 1e3)
        down.append(t["teardown_ms"])
    print("| phase (--json) | median ms | p90 ms | min ms |")
    print("|---|---:|---:|---:|")
    for label, xs in (("network set-up", net), ("teardown (all of it)", down)):
        print(f"| {label} | {statistics.median(xs):.1f} | {pct(xs, 0.9):.1f} | {min(xs):.1f} |")


if __name__ == "__main__":
    main()
