#!/usr/bin/env python3
"""Latency and memory benchmark of kennel-execd over its unix socket, as markdown.

    bench/execd_bench [BUILD_DIR] [--n N]

1. GET /ping round trip on a kept-alive connection (the HTTP floor).
2. POST /command running `true`: full round trip until the stream closes.
   `true` is a simple command, which execd execs without a shell (direct.c);
   `true;` is the same through `bash -c`. Beside them, the fork+exec alone
   (posix_spawn of /usr/bin/true and of `bash -c true` from this process,
   waited for): the floors of the two paths.
3. POST /code with a one-line Python expression in a warm context.
4. execd's VmRSS before and after N sequential commands (after a warm-up).

Times are client-side wall clock (median/p50, p99, min) in milliseconds.
"""
import argparse
import http.client
import json
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


class Conn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.unix_path)
        self.sock = s


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def row(name, xs):
    ms = [x * 1000 for x in xs]
    return (f"| {name} | {len(ms)} | {statistics.median(ms):.3f} | {pct(ms, 99):.3f} "
            f"| {min(ms):.3f} |")


def timed(conn, method, url, body=None):
    h = {"Content-Type": "application/json"} if body is not None else {}
    data = json.dumps(body) if body is not None else None
    t0 = time.perf_counter()
    conn.request(method, url, body=data, headers=h)
    r = conn.getresponse()
    payload = r.read()
    dt = time.perf_counter() - t0
    assert r.status == 200, (r.status, payload)
    return dt, payload


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def spawn_cost(n, argv=None):
    bash = shutil.which("bash") or "/bin/sh"
    argv = argv or [bash, "-c", "true"]
    xs = []
    for _ in range(n):
        t0 = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, os.environ)
        os.waitpid(pid, 0)
        xs.append(time.perf_counter() - t0)
    return xs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.environ.get("KENNEL_BUILD", ROOT / "build"))
    ap.add_argument("--n", type=int, default=1000)
    a = ap.parse_args()
    binary = pathlib.Path(a.build) / "kennel-execd"
    if not binary.exists():
        sys.exit(f"{binary} missing: build the kennel-execd target first")
    tmp = tempfile.mkdtemp(prefix="kn-execd-bench-")
    sock = os.path.join(tmp, "execd.sock")
    proc = subprocess.Popen([str(binary), "--socket", sock], stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.01)
        c = Conn(sock)
        for _ in range(50):
            timed(c, "GET", "/ping")
        ping = [timed(c, "GET", "/ping")[0] for _ in range(a.n)]

        cmd = {"command": "true"}
        # Warm up past the 256 finished commands execd remembers for /command/status,
        # so the RSS comparison shows steady state rather than that table filling.
        for _ in range(300):
            timed(c, "POST", "/command", cmd)
        rss_before = rss_kib(proc.pid)
        cmds = []
        for _ in range(a.n):
            dt, payload = timed(c, "POST", "/command", cmd)
            assert b"execution_complete" in payload, payload
            cmds.append(dt)
        rss_after = rss_kib(proc.pid)
        shelled = []
        for _ in range(a.n):
            dt, payload = timed(c, "POST", "/command", {"command": "true;"})
            assert b"execution_complete" in payload, payload
            shelled.append(dt)
        spawn = spawn_cost(a.n)
        spawn_true = spawn_cost(a.n, [shutil.which("true")])

        code = None
        if shutil.which("python3"):
            st = c.request("POST", "/code/context", body=json.dumps({"language": "python"}),
                           headers={"Content-Type": "application/json"})
            ctx = json.loads(c.getresponse().read())["id"]
            body = {"code": "1 + 1", "context": {"id": ctx}}
            for _ in range(50):
                timed(c, "POST", "/code", body)
            code = []
            for _ in range(a.n):
                dt, payload = timed(c, "POST", "/code", body)
                assert b'"text/plain":"2"' in payload, payload
                code.append(dt)

        print(f"kennel-execd bench ({binary}, {os.cpu_count()} CPUs, n={a.n})\n")
        print("| round trip | n | p50 ms | p99 ms | min ms |")
        print("|---|---|---|---|---|")
        print(row("GET /ping", ping))
        print(row("POST /command `true` (whole stream; no shell)", cmds))
        print(row("POST /command `true;` (whole stream; through bash)", shelled))
        print(row("fork+exec+wait of /usr/bin/true alone", spawn_true))
        print(row("fork+exec+wait of `bash -c true` alone", spawn))
        if code:
            print(row("POST /code `1 + 1`, warm python context", code))
        p50_over = (statistics.median(cmds) - statistics.median(spawn_true)) * 1000
        p50_sh = (statistics.median(shelled) - statistics.median(spawn)) * 1000
        print(f"\ncommand overhead beyond fork+exec (p50): {p50_over:.3f} ms without a shell, "
              f"{p50_sh:.3f} ms through bash")
        print(f"execd VmRSS before/after {a.n} commands: {rss_before} KiB / {rss_after} KiB "
              f"({rss_after - rss_before:+d} KiB)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
