#!/usr/bin/env python3
"""Cost of receipts on the command round trip through the server proxy, as markdown.

    bench/receipts_bench.py [BUILD_DIR] [--n N] [--rounds R]

Two `kennel serve` on loopback, each with its own SQLite file: one as shipped
(receipts on: the call's intent committed before it is forwarded, its one
signed receipt written once the answer has gone out) and one with
--no-receipts. Each gets one
sandbox; POST /sandboxes/{id}/proxy/44772/command running `true` is timed
N times per round, client-side, new connection per request (as the SDKs do),
until the stream closes. The servers alternate R rounds so that drift of
the machine's load falls on both. Also GET /files/info (a small non-stream
call) and the receipts written per command.
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
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Srv:
    def __init__(self, kennel, receipts):
        self.dir = tempfile.mkdtemp(prefix="kn-rb-", dir="/tmp")
        os.chmod(self.dir, 0o711)
        self.port = free_port()
        args = [kennel, "serve", "--listen", f"127.0.0.1:{self.port}", "--db",
                f"{self.dir}/k.db", "--run-dir", f"{self.dir}/run", "-q"]
        if not receipts:
            args.append("--no-receipts")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=open(f"{self.dir}/log", "wb"))
        for _ in range(500):
            try:
                if self.call("GET", "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.01)
        st, body = self.call("POST", "/v1/sandboxes", {
            "image": {"uri": "host"}, "entrypoint": ["tail", "-f", "/dev/null"],
            "resourceLimits": {"cpu": "1", "memory": "512Mi"}, "timeout": 3600})
        assert st == 202, body
        self.sid = json.loads(body)["id"]

    def call(self, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request(method, path, body=json.dumps(body) if body is not None else None)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def command(self):
        st, body = self.call("POST", f"/sandboxes/{self.sid}/proxy/44772/command",
                             {"command": "true"})
        assert st == 200 and b"execution_complete" in body, body

    def info(self):
        st, _ = self.call("GET", f"/sandboxes/{self.sid}/proxy/44772/files/info?path=%2Ftmp")
        assert st == 200

    def receipts(self):
        st, body = self.call("GET", f"/v1/sandboxes/{self.sid}/receipts?limit=10000")
        return len(json.loads(body)["items"]) if st == 200 else 0

    def close(self):
        self.call("DELETE", f"/v1/sandboxes/{self.sid}")
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def timed(fn, n):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def stats(xs):
    xs = sorted(xs)
    return statistics.median(xs), xs[int(len(xs) * 0.99) - 1], statistics.fmean(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=str(ROOT / "build"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    kennel = str(pathlib.Path(a.build) / "kennel")
    load0 = os.getloadavg()
    on, off = Srv(kennel, True), Srv(kennel, False)
    try:
        for s in (on, off):  # warm-up
            timed(s.command, 20)
            timed(s.info, 20)
        before = on.receipts()
        res = {k: {"cmd": [], "info": []} for k in ("on", "off")}
        for _ in range(a.rounds):
            for name, s in (("on", on), ("off", off)):
                res[name]["cmd"] += timed(s.command, a.n)
                res[name]["info"] += timed(s.info, a.n // 2)
        per_cmd = (on.receipts() - before) / (a.rounds * (a.n + a.n // 2))
    finally:
        on.close()
        off.close()
    load1 = os.getloadavg()
    print(f"n = {a.n} x {a.rounds} rounds per server; load average before {load0[0]:.2f}, "
          f"after {load1[0]:.2f}; receipts per call with receipts on: {per_cmd:.2f}\n")
    print("| call (ms) | receipts on p50 | p99 | mean | off p50 | p99 | mean | added (p50) |")
    print("|---|---|---|---|---|---|---|---|")
    for key, label in (("cmd", "POST /command `true`"), ("info", "GET /files/info")):
        m1, p1, a1 = stats(res["on"][key])
        m0, p0, a0 = stats(res["off"][key])
        print(f"| {label} | {m1:.3f} | {p1:.3f} | {a1:.3f} | {m0:.3f} | {p0:.3f} | {a0:.3f} | "
              f"{(m1 - m0) / m0 * 100:+.1f}% ({(m1 - m0) * 1000:+.0f} us) |")


if __name__ == "__main__":
    main()
