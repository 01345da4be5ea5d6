#!/usr/bin/env python3
"""What a network policy adds to `kennel run` (docs/benchmarks.md, Network).

    bench/net_bench.py BUILD_DIR [--rounds N] [--throughput]

Interleaved rounds of `kennel run -q -- /bin/true` without and with a policy
(`--allow-domain example.com`), wall time from fork to wait; then the
launcher's own --json figures for the network phase and teardown. Nothing is
sent anywhere: the program is /bin/true and the DNS upstream is 127.0.0.1.

--throughput adds TCP throughput out of a sandbox through the NAT, against
the host's own loopback, using the network tests' private internet
(tests/integration/net/conftest.py: its own namespace and addresses, routes
checked first, a guard that counts anything headed for a real uplink).

Needs root (a policy needs root).
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

# One program for both ends: "sink PORT ADDR" counts what it is sent and
# answers with the count; "send ADDR PORT MB" sends and prints MB/s.
TCP_TOOL = r"""
import socket, sys, time
if sys.argv[1] == "sink":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[3], int(sys.argv[2]))); s.listen(4)
    print("ready", flush=True)
    while True:
        c, _ = s.accept(); n = 0
        while True:
            d = c.recv(1 << 20)
            if not d: break
            n += len(d)
        c.sendall(str(n).encode()); c.close()
else:
    addr, port, mb = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    buf = b"x" * (1 << 20)
    c = socket.create_connection((addr, port))
    t = time.perf_counter()
    for _ in range(mb):
        c.sendall(buf)
    c.shutdown(socket.SHUT_WR)
    got = int(c.recv(64))
    dt = time.perf_counter() - t
    assert got == mb << 20, got
    print(f"{mb / dt:.0f}")
"""


def throughput(kennel, mb=1024, rounds=5, mtu=None):
    root = pathlib.Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "tests" / "integration"))
    from testnet import DNS_ADDR, HOST_IF, NS, NS_IF, Internet, check_routes, sh  # noqa: E402
    net = Internet()
    sinks = []
    try:
        net.build()
        if mtu:
            # The test internet's own link, as fast a link as the host's
            # loopback: what is left is what Kennel's path costs.
            sh("ip", "link", "set", HOST_IF, "mtu", str(mtu))
            sh("ip", "link", "set", NS_IF, "mtu", str(mtu), ns=NS)
        tool = net.tmp / "kn_tcp_tool.py"
        tool.write_text(TCP_TOOL)
        for argv in (["ip", "netns", "exec", NS, "/usr/bin/python3", str(tool), "sink", "5001",
                      "203.0.113.10"],
                     ["/usr/bin/python3", str(tool), "sink", "5002", "127.0.0.1"]):
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
            p.stdout.readline()
            sinks.append(p)
        rows = {"host loopback (127.0.0.1)": [], "host to the test namespace (veth)": [],
                "sandbox through NAT (`--allow-cidr`)": []}
        for _ in range(rounds):
            check_routes()
            out = subprocess.run(["/usr/bin/python3", str(tool), "send", "127.0.0.1", "5002",
                                  str(mb)], capture_output=True, text=True, check=True).stdout
            rows["host loopback (127.0.0.1)"].append(float(out))
            out = subprocess.run(["/usr/bin/python3", str(tool), "send", "203.0.113.10", "5001",
                                  str(mb)], capture_output=True, text=True, check=True).stdout
            rows["host to the test namespace (veth)"].append(float(out))
            out = subprocess.run([kennel, "run", "-q", "--cpus", "2", "--allow-cidr",
                                  "203.0.113.10/32", "--dns-upstream", DNS_ADDR, "-t", "120",
                                  "--ro-bind", f"{tool}:/kn_tcp_tool.py", "--",
                                  "/usr/bin/python3", "/kn_tcp_tool.py", "send", "203.0.113.10",
                                  "5001", str(mb)], capture_output=True, text=True, check=True)
            rows["sandbox through NAT (`--allow-cidr`)"].append(float(out.stdout))
    finally:
        for p in sinks:
            p.terminate()
            p.wait()
        count = net.finish()
    assert count == 0, f"the guard dropped {count} packets headed for a real uplink"
    link = f"test internet link MTU {mtu}" if mtu else "test internet link MTU 1500"
    print(f"\n| TCP, {mb} MiB per run, python sender, {link} | median MiB/s | min | max |")
    print("|---|---:|---:|---:|")
    for label, xs in rows.items():
        print(f"| {label} | {statistics.median(xs):.0f} | {min(xs):.0f} | {max(xs):.0f} |")
    base = statistics.median(rows["host loopback (127.0.0.1)"])
    nat = statistics.median(rows["sandbox through NAT (`--allow-cidr`)"])
    print(f"\nThrough the NAT: {100 * nat / base:.0f}% of the host's loopback")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--throughput", action="store_true")
    ap.add_argument("--test-mtu", type=int, default=None,
                    help="MTU of the test internet's link (default 1500)")
    ap.add_argument("--tcp-rounds", type=int, default=5)
    a = ap.parse_args()
    k = os.path.realpath(f"{a.build}/kennel")
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
    if a.throughput:
        throughput(k, rounds=a.tcp_rounds, mtu=a.test_mtu)


if __name__ == "__main__":
    main()
