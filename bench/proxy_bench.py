#!/usr/bin/env python3
"""Round trips through the server proxy beside the same calls made without
it, as markdown.

    bench/proxy_bench [BUILD_DIR] [--n N]

Starts its own `kennel serve` on loopback (temporary SQLite file and run
directory), creates one sandbox, starts tests/integration/server/proxy_apps.py
inside it (an HTTP server on 8000 and a WebSocket echo server on 9000), then:

1. POST /command `true`, to the end of the SSE stream: through the server
   proxy (/sandboxes/{id}/proxy/44772/command), once as shipped (each
   call commits an intent and writes one signed receipt) and once on a
   second server started with --no-receipts, straight to execd's unix socket; `true;` through the
   proxy (the `;` sends it through `bash -c`; `true` alone execd execs
   without a shell); and plain fork+exec+waits of /usr/bin/true and of
   `bash -c true` on the host (the floors of the two paths).
2. GET /ping: the proxy's own cost to execd.
3. HTTP GET of 100 bytes from the program on port 8000: through the proxy
   (execd's tunnel, a new connection inside per request), and directly from
   inside the sandbox's network namespace (this process enters it with
   setns for the socket only), on a new connection each time and on a
   kept-alive one.
4. WebSocket echo of a 32-byte text frame: through the proxy and directly.
5. Download of 64 MiB: through the proxy and directly (MiB/s).

Clients keep their connection to the server alive, as the SDK does. Times
are client-side wall clock in milliseconds.
"""
import argparse
import base64
import ctypes
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
sys.path.insert(0, str(ROOT / "tests" / "integration" / "server"))
import proxy_apps as apps  # noqa: E402

KEY = "bench-key"
CLONE_NEWNET = 0x40000000


class UnixConn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.unix_path)
        self.sock = s


class NetnsConn(http.client.HTTPConnection):
    """An HTTP connection whose socket is made inside a network namespace."""

    def __init__(self, netns, port):
        super().__init__("127.0.0.1", port, timeout=60)
        self.netns = netns

    def connect(self):
        self.sock = netns_socket(self.netns, ("127.0.0.1", self.port))


_libc = ctypes.CDLL(None, use_errno=True)


def netns_socket(netns_path, addr):
    """A TCP socket connected to addr from inside the network namespace at
    netns_path: this thread enters it for socket() and connect() and comes
    back. A socket stays in the namespace it was made in."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(netns_path, os.O_RDONLY)
    try:
        if _libc.setns(there, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            s = socket.create_connection(addr, timeout=60)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
        return s
    finally:
        os.close(home)
        os.close(there)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def row(name, xs):
    ms = [x * 1000 for x in xs]
    return (f"| {name} | {len(ms)} | {statistics.median(ms):.3f} | {pct(ms, 99):.3f} "
            f"| {min(ms):.3f} |")


def timed(conn, method, url, body=None, headers=None):
    h = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body)
        h["Content-Type"] = "application/json"
    t0 = time.perf_counter()
    conn.request(method, url, body=data, headers=h)
    r = conn.getresponse()
    payload = r.read()
    dt = time.perf_counter() - t0
    assert r.status == 200, (r.status, payload[:300])
    return dt, payload


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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ws_open_proxy(port, sid, ws_port):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ws_handshake(s, f"/sandboxes/{sid}/proxy/{ws_port}/", True)


def ws_handshake(s, path, key):
    k = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\n"
               + (f"OPEN-SANDBOX-API-KEY: {KEY}\r\n" if key else "")
               + f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {k}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(1)
        assert b, head
        head += b
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def ws_rtt(s, n):
    msg = b"x" * 32
    for _ in range(50):
        apps.ws_send(s, 1, msg, True)
        apps.ws_recv(s)
    xs = []
    for _ in range(n):
        t0 = time.perf_counter()
        apps.ws_send(s, 1, msg, True)
        got = apps.ws_recv(s)
        xs.append(time.perf_counter() - t0)
        assert got == (1, msg)
    return xs


def throughput(conn, url, headers, size):
    conn.request("GET", url, headers=headers)
    r = conn.getresponse()
    t0 = time.perf_counter()
    got = 0
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        got += len(b)
    dt = time.perf_counter() - t0
    assert r.status == 200 and got == size, (r.status, got)
    return size / dt / (1 << 20)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.environ.get("KENNEL_BUILD", ROOT / "build"))
    ap.add_argument("--n", type=int, default=1000)
    a = ap.parse_args()
    kennel = pathlib.Path(a.build) / "kennel"
    if not kennel.exists():
        sys.exit(f"{kennel} missing: build first")
    auth = {"OPEN-SANDBOX-API-KEY": KEY}
    servers = []  # (process, port, temporary directory, sandbox id)

    def start(extra):
        tmp = tempfile.mkdtemp(prefix="kn-pxb-", dir="/tmp")
        os.chmod(tmp, 0o711)
        port = free_port()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KENNEL_API_KEY": KEY}
        srv = subprocess.Popen([str(kennel), "serve", "--listen", f"127.0.0.1:{port}", "--db",
                                os.path.join(tmp, "kennel.db"), "--run-dir",
                                os.path.join(tmp, "run"), "-q", *extra],
                               stdout=subprocess.DEVNULL,
                               stderr=open(os.path.join(tmp, "log"), "w"), env=env)
        servers.append([srv, port, tmp, None])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(500):
            try:
                timed(c, "GET", "/health")
                break
            except OSError:
                c.close()
                time.sleep(0.02)
        c.request("POST", "/v1/sandboxes", body=json.dumps({
            "image": {"uri": "host"}, "entrypoint": ["tail", "-f", "/dev/null"],
            "resourceLimits": {"cpu": "2", "memory": "2Gi"}, "timeout": 3600}),
            headers={**auth, "Content-Type": "application/json"})
        r = c.getresponse()
        created = json.loads(r.read())
        assert r.status == 202, created
        servers[-1][3] = created["id"]
        return c, created["id"], os.path.join(tmp, "run")

    try:
        c, sid, run_dir = start([])
        c2, sid2, _ = start(["--no-receipts"])
        px = f"/sandboxes/{sid}/proxy"
        px2 = f"/sandboxes/{sid2}/proxy"
        src = base64.b64encode((ROOT / "tests/integration/server/proxy_apps.py").read_bytes())
        timed(c, "POST", f"{px}/44772/command",
              {"command": f"echo {src.decode()} | base64 -d > /tmp/apps.py"}, auth)
        for kind, p in [("http", 8000), ("ws", 9000)]:
            timed(c, "POST", f"{px}/44772/command",
                  {"command": f"exec python3 /tmp/apps.py {kind} {p} /tmp/{kind}.log",
                   "background": True}, auth)
        for _ in range(200):
            c.request("GET", f"{px}/8000/bytes?n=1", headers=auth)
            rr = c.getresponse()
            rr.read()
            if rr.status == 200:
                break
            time.sleep(0.05)
        with open(os.path.join(run_dir, sid, "state.json")) as f:
            st = json.load(f)
        execd_sock = os.path.join(run_dir, sid, "sandbox", "execd.sock")
        netns = f"/proc/{st['pid']}/ns/net"
        load_before = os.getloadavg()

        # The two paths alternate, so that a change in the machine's load
        # weighs on both alike.
        cmd = {"command": "true"}
        d = UnixConn(execd_sock)
        for _ in range(100):
            timed(c, "POST", f"{px}/44772/command", cmd, auth)
            timed(c2, "POST", f"{px2}/44772/command", cmd, auth)
            timed(d, "POST", "/command", cmd)
        via_proxy, via_plain, direct, ping_proxy, ping_direct = [], [], [], [], []
        for _ in range(a.n):
            via_proxy.append(timed(c, "POST", f"{px}/44772/command", cmd, auth)[0])
            via_plain.append(timed(c2, "POST", f"{px2}/44772/command", cmd, auth)[0])
            direct.append(timed(d, "POST", "/command", cmd)[0])
        shelled = [timed(c, "POST", f"{px}/44772/command", {"command": "true;"}, auth)[0]
                   for _ in range(a.n)]
        spawn = spawn_cost(a.n)
        spawn_true = spawn_cost(a.n, [shutil.which("true")])
        for _ in range(a.n):
            ping_proxy.append(timed(c, "GET", f"{px}/44772/ping", headers=auth)[0])
            ping_direct.append(timed(d, "GET", "/ping")[0])

        url = "/bytes?n=100"
        kc = NetnsConn(netns, 8000)
        for _ in range(100):
            timed(c, "GET", f"{px}/8000{url}", headers=auth)
            timed(kc, "GET", url)
        http_proxy, http_new, http_kept = [], [], []
        for _ in range(a.n):
            http_proxy.append(timed(c, "GET", f"{px}/8000{url}", headers=auth)[0])
            t0 = time.perf_counter()
            nc = NetnsConn(netns, 8000)
            nc.request("GET", url)
            nr = nc.getresponse()
            nr.read()
            nc.close()
            http_new.append(time.perf_counter() - t0)
            assert nr.status == 200
            http_kept.append(timed(kc, "GET", url)[0])

        ws = ws_open_proxy(servers[0][1], sid, 9000)
        ws_proxy = ws_rtt(ws, a.n)
        ws.close()
        ws = ws_handshake(netns_socket(netns, ("127.0.0.1", 9000)), "/", False)
        ws_direct = ws_rtt(ws, a.n)
        ws.close()

        size = 64 << 20
        tp_proxy = throughput(c, f"{px}/8000/bytes?n={size}", auth, size)
        tp_direct = throughput(kc, f"/bytes?n={size}", {}, size)
        load_after = os.getloadavg()

        print(f"kennel proxy bench ({kennel}, {os.cpu_count()} CPUs, n={a.n}; "
              f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after)\n")
        print("| round trip | n | p50 ms | p99 ms | min ms |")
        print("|---|---|---|---|---|")
        print(row("POST /command `true` through the server proxy (whole stream)", via_proxy))
        print(row("the same, server started with --no-receipts", via_plain))
        print(row("POST /command `true` straight to execd's socket", direct))
        print(row("POST /command `true;` through the proxy (through bash)", shelled))
        print(row("fork+exec+wait of /usr/bin/true on the host", spawn_true))
        print(row("fork+exec+wait of `bash -c true` on the host", spawn))
        print(row("GET /ping through the server proxy", ping_proxy))
        print(row("GET /ping straight to execd's socket", ping_direct))
        print(row("GET 100 B from port 8000 through the proxy (tunnel)", http_proxy))
        print(row("GET 100 B from port 8000 inside the netns, new connection", http_new))
        print(row("GET 100 B from port 8000 inside the netns, kept alive", http_kept))
        print(row("WebSocket echo, 32 B text, through the proxy", ws_proxy))
        print(row("WebSocket echo, 32 B text, inside the netns", ws_direct))
        print(f"\n64 MiB download: {tp_proxy:.0f} MiB/s through the proxy, "
              f"{tp_direct:.0f} MiB/s inside the netns")
        print(f"proxy overhead on `true` (p50): "
              f"{(statistics.median(via_proxy) - statistics.median(direct)) * 1000:.3f} ms "
              f"with receipts, "
              f"{(statistics.median(via_plain) - statistics.median(direct)) * 1000:.3f} ms "
              f"without")
    finally:
        for srv, port, tmp, sb in servers:
            if sb:
                try:
                    k = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    k.request("DELETE", f"/v1/sandboxes/{sb}", headers=auth)
                    k.getresponse().read()
                except OSError:
                    pass
            srv.send_signal(signal.SIGTERM)
            try:
                srv.wait(10)
            except subprocess.TimeoutExpired:
                srv.kill()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
