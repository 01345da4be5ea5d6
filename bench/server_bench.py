#!/usr/bin/env python3
"""Speed and scale of `kennel serve` (issue 4), standard library only.

Starts a real `kennel serve` on a free loopback port with its own SQLite file
and run directory, and prints markdown tables:

  cold      create -> 202 (the server answers once execd answers /ping), then
            the first /ping through the server proxy; p50/p90/p99
  warm      the same from a warm pool (SDK-default request, with and without
            env); p50/p90/p99
  rate      sustained creates per second with C clients in parallel (cold,
            and served by a pool)
  idle      N idle sandboxes at once: host memory each adds, from
            /proc/meminfo before and after (MemAvailable, MemFree, and the
            kernel's own: Slab, KernelStack, PageTables, Percpu), beside the
            processes' private memory (smaps_rollup); and the same for
            bubblewrap and unshare sandboxes sleeping, as peers

Host limits that matter for N sandboxes are checked first (pid_max, threads,
open files, user namespaces, the server's own fd limit) and printed.
Everything it made is removed at the end, also on Ctrl-C or SIGTERM: every
sandbox is deleted through the API, the server stopped, and it checks that no
shim process, run directory or cgroup of its own is left (and kills what is,
by pid). Requests go to 127.0.0.1 only.

  bench/server_bench.py BUILD [--rounds 200] [--idle 1000] [--clients 4]
                              [--skip cold,warm,rate,idle,peers]
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

KEY = "bench-key"
SDK_DEFAULT = {"image": {"uri": "host"}, "entrypoint": ["tail", "-f", "/dev/null"],
               "resourceLimits": {"cpu": "1", "memory": "2Gi"}, "timeout": 3600,
               "env": {}, "metadata": {}, "extensions": {}, "secureAccess": False}


class Interrupted(Exception):
    pass


def on_signal(signum, frame):
    raise Interrupted(f"signal {signum}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Conn:
    """One kept-alive HTTP/1.1 connection, requests written in one send."""

    def __init__(self, port):
        self.port = port
        self.sock = None
        self.buf = b""

    def _connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"OPEN-SANDBOX-API-KEY: {KEY}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        for attempt in (0, 1):
            try:
                if self.sock is None:
                    self._connect()
                self.sock.sendall(head + data)
                return self._read()
            except (OSError, ConnectionError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _read(self):
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        n = 0
        close = False
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v)
            if k.strip().lower() == b"connection" and b"close" in v.lower():
                close = True
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        body, self.buf = self.buf[:n], self.buf[n:]
        if close:
            self.close()
        return status, body

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock = None


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def row(name, v):
    return (f"| {name} | {statistics.median(v):.2f} | {pct(v, 90):.2f} | {pct(v, 99):.2f} | "
            f"{min(v):.2f} | {len(v)} |")


def meminfo():
    d = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":")
            d[k] = int(v.split()[0])
    return d


def slabinfo():
    """Bytes held by each slab cache (num_objs x objsize)."""
    d = {}
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                if line.startswith(("slabinfo", "#")):
                    continue
                x = line.split()
                d[x[0]] = int(x[2]) * int(x[3])
    except OSError:
        pass
    return d


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                x = f.read().rsplit(")", 1)[1].split()
            total += int(x[11]) + int(x[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


class Bench:
    def __init__(self, build, args):
        self.kennel = os.path.join(build, "kennel")
        self.args = args
        # Short paths: the run directory holds unix sockets (108-byte limit).
        self.dir = tempfile.mkdtemp(prefix="kn-bench-", dir="/tmp")
        os.chmod(self.dir, 0o711)
        self.run_dir = os.path.join(self.dir, "run")
        self.port = free_port()
        self.proc = None
        self.conn = None
        self.cgroups = set()
        self.peers = []  # processes of the peer measurement (bwrap, unshare)
        self.out = []

    # --- the server ----------------------------------------------------------
    def start(self, pools=()):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KENNEL_API_KEY": KEY}
        cmd = [self.kennel, "serve", "--listen", f"127.0.0.1:{self.port}", "--db",
               os.path.join(self.dir, "kennel.db"), "--run-dir", self.run_dir, "-q"]
        for p in pools:
            cmd += ["--pool", p]
        self.log = open(os.path.join(self.dir, "serve.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log, env=env,
                                     start_new_session=True)
        self.conn = Conn(self.port)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if self.conn.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("kennel serve did not come up: " +
                           read(os.path.join(self.dir, "serve.log"))[-2000:])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.conn:
            self.conn.close()

    def create(self, body, conn=None):
        st, data = (conn or self.conn).request("POST", "/v1/sandboxes", body)
        if st != 202:
            raise RuntimeError(f"create: {st} {data[:300]!r}")
        return json.loads(data)["id"]

    def delete(self, sid, conn=None):
        return (conn or self.conn).request("DELETE", f"/v1/sandboxes/{sid}")[0]

    def pool_available(self, name):
        st, data = self.conn.request("GET", f"/v1/pools/{name}")
        return json.loads(data)["status"]["available"] if st == 200 else -1

    def wait_pool(self, name, n, timeout=120):
        deadline = time.monotonic() + timeout
        while self.pool_available(name) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"pool {name} did not reach {n}")
            time.sleep(0.02)

    def note_cgroups(self, sid):
        try:
            pid = json.loads(read(os.path.join(self.run_dir, sid, "state.json")))["pid"]
            for line in read(f"/proc/{pid}/cgroup").splitlines():
                _, ctrl, path = line.split(":", 2)
                if "kennel-" not in path:
                    continue
                for c in (ctrl.split(",") if ctrl else [""]):
                    c = c.replace("name=", "")
                    self.cgroups.add("/sys/fs/cgroup" + (f"/{c}" if c else "") + path)
        except (OSError, ValueError, KeyError):
            pass

    def shims(self):
        found = []
        for e in os.listdir("/proc"):
            if e.isdigit():
                try:
                    with open(f"/proc/{e}/cmdline", "rb") as f:
                        if self.run_dir.encode() in f.read():
                            found.append(int(e))
                except OSError:
                    pass
        return found

    def cleanup(self):
        """Deletes every sandbox, stops the server, checks nothing is left."""
        problems = []
        for p in self.peers:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                problems.append(f"peer {p.pid} did not end")
        self.peers = []
        if self.proc and self.proc.poll() is None:
            try:
                c = Conn(self.port)
                st, data = c.request("GET", "/v1/sandboxes?pageSize=1000")
                while st == 200 and json.loads(data)["items"]:
                    for s in json.loads(data)["items"]:
                        self.note_cgroups(s["id"])
                        c.request("DELETE", f"/v1/sandboxes/{s['id']}")
                    st, data = c.request("GET", "/v1/sandboxes?pageSize=1000")
                c.close()
            except OSError as e:
                problems.append(f"cleanup through the API failed: {e}")
        self.stop()
        deadline = time.monotonic() + 10
        while self.shims() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = self.shims()
        if left:
            problems.append(f"{len(left)} shim/sandbox processes left (killed): {left[:10]}")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if os.path.isdir(self.run_dir) and os.listdir(self.run_dir):
            problems.append(f"run directories left: {os.listdir(self.run_dir)[:5]}")
        deadline = time.monotonic() + 5
        while [c for c in self.cgroups if os.path.exists(c)] and time.monotonic() < deadline:
            time.sleep(0.1)
        cgs = [c for c in self.cgroups if os.path.exists(c)]
        if cgs:
            problems.append(f"{len(cgs)} cgroups left: {cgs[:5]}")
        shutil.rmtree(self.dir, ignore_errors=True)
        return problems

    # --- measurements ----------------------------------------------------------
    def emit(self, line=""):
        print(line, flush=True)
        self.out.append(line)

    def bench_cold(self):
        body = dict(SDK_DEFAULT, resourceLimits={"cpu": "1", "memory": "512Mi"})
        create, ping = [], []
        for i in range(self.args.rounds + 3):
            t0 = time.perf_counter()
            sid = self.create(body)
            t1 = time.perf_counter()
            st, _ = self.conn.request("GET", f"/sandboxes/{sid}/proxy/44772/ping")
            t2 = time.perf_counter()
            if st != 200:
                raise RuntimeError(f"ping through the proxy: {st}")
            if i >= 3:
                create.append((t1 - t0) * 1000)
                ping.append((t2 - t0) * 1000)
            self.note_cgroups(sid)
            self.delete(sid)
        self.emit("#### Create, cold (no pool): one client, sequential, each sandbox deleted "
                  "before the next")
        self.emit()
        self.emit("| | p50 ms | p90 ms | p99 ms | min ms | n |")
        self.emit("|---|---:|---:|---:|---:|---:|")
        self.emit(row("create -> 202 (execd answered /ping)", create))
        self.emit(row("create -> 202 -> first GET /ping through the proxy", ping))
        self.emit()
        return create

    def bench_warm(self):
        results = {}
        self.emit("#### Create from a warm pool (`--pool bench=8`, SDK-default request): one "
                  "client, one create every 50 ms while the pool refills behind")
        self.emit()
        self.emit("| | p50 ms | p90 ms | p99 ms | min ms | n |")
        self.emit("|---|---:|---:|---:|---:|---:|")
        for label, env in (("no env", {}), ("with env (3 variables)",
                                            {"A": "1", "B": "two", "GREETING": "hi"})):
            body = dict(SDK_DEFAULT, env=env)
            create, ping, ids = [], [], []
            self.wait_pool("bench", 8)
            time.sleep(0.5)
            for i in range(self.args.rounds):
                if self.pool_available("bench") < 1:
                    self.wait_pool("bench", 4)
                t0 = time.perf_counter()
                sid = self.create(body)
                t1 = time.perf_counter()
                st, _ = self.conn.request("GET", f"/sandboxes/{sid}/proxy/44772/ping")
                t2 = time.perf_counter()
                if st != 200:
                    raise RuntimeError(f"ping through the proxy: {st}")
                create.append((t1 - t0) * 1000)
                ping.append((t2 - t0) * 1000)
                ids.append(sid)
                if len(ids) >= 8:  # keep the host's load flat: delete as we go
                    self.note_cgroups(ids[0])
                    self.delete(ids.pop(0))
                time.sleep(0.05)
            for sid in ids:
                self.note_cgroups(sid)
                self.delete(sid)
            self.emit(row(f"{label}: create -> 202", create))
            self.emit(row(f"{label}: create -> 202 -> first /ping", ping))
            results[label] = create
        self.emit()
        served = sum(1 for line in read(os.path.join(self.dir, "serve.log")).splitlines()
                     if "taken from a warm pool" in line)
        self.emit(f"Served by the pool: {served} of {2 * self.args.rounds} creates "
                  "(any other found it empty and was made cold).")
        self.emit()
        return results

    def bench_rate(self, label, body, total, clients, pool=None):
        ids, errors = [], []
        lock = threading.Lock()
        counter = iter(range(total))

        def worker():
            c = Conn(self.port)
            while True:
                with lock:
                    if next(counter, None) is None:
                        break
                try:
                    sid = self.create(body, c)
                    with lock:
                        ids.append(sid)
                except (RuntimeError, OSError) as e:
                    with lock:
                        errors.append(str(e)[:200])
            c.close()

        if pool:
            self.wait_pool(pool, self.args.rate_pool)
            time.sleep(0.5)
        threads = [threading.Thread(target=worker) for _ in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        el = time.perf_counter() - t0
        rate = len(ids) / el
        self.emit(f"| {label} | {clients} | {len(ids)} | {el:.2f} | {rate:.1f} | {len(errors)} |")
        for sid in ids:
            self.note_cgroups(sid)
        self.delete_all(ids)
        if errors:
            self.emit(f"first error: {errors[0]}")
        return rate

    def delete_all(self, ids, clients=4):
        ids = list(ids)
        lock = threading.Lock()

        def worker():
            c = Conn(self.port)
            while True:
                with lock:
                    if not ids:
                        break
                    sid = ids.pop()
                c.request("DELETE", f"/v1/sandboxes/{sid}")
            c.close()

        ts = [threading.Thread(target=worker) for _ in range(clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def limits(self, n):
        self.emit("#### Host limits for the idle run")
        self.emit()
        srv = read(f"/proc/{self.proc.pid}/limits") if self.proc else ""
        nofile = next((" ".join(line.split()[3:5]) for line in srv.splitlines()
                       if line.startswith("Max open files")), "?")
        tasks = int(read("/proc/loadavg").split()[3].split("/")[1])
        pid_max = int(read("/proc/sys/kernel/pid_max", "0"))
        rows = [("kernel.pid_max", pid_max, f"{tasks} tasks now; each sandbox adds about 5 "
                 "(shim, init, execd with 2 threads, entrypoint)"),
                ("kernel.threads-max", read("/proc/sys/kernel/threads-max"), ""),
                ("fs.file-nr (open, -, max)", read("/proc/sys/fs/file-nr"), ""),
                ("user.max_user_namespaces", read("/proc/sys/user/max_user_namespaces"), ""),
                ("user.max_net_namespaces", read("/proc/sys/user/max_net_namespaces"), ""),
                ("fs.inotify.max_user_instances", read("/proc/sys/fs/inotify/max_user_instances"),
                 "per user: every sandbox is host uid 1000000, so `tail -f` past that many "
                 "falls back to polling"),
                ("server's open files (soft hard)", nofile, "raised by the server to its hard "
                 "limit"),
                ("memory cgroups now", next((line.split()[2] for line in
                                             read("/proc/cgroups").splitlines()
                                             if line.startswith("memory")), "?"), "")]
        self.emit("| limit | value | note |")
        self.emit("|---|---|---|")
        for k, v, note in rows:
            self.emit(f"| {k} | {v} | {note} |")
        self.emit()
        need = tasks + 6 * n + 2000
        if pid_max and pid_max < need:
            raise RuntimeError(f"kernel.pid_max {pid_max} is below the {need} tasks {n} "
                               "sandboxes need; not raised (a host setting)")

    def settle(self, seconds=3):
        time.sleep(seconds)
        return meminfo()

    def delta_rows(self, a, b, n):
        """KiB per instance from two meminfo readings."""
        free = lambda k: (a[k] - b[k]) / n  # noqa: E731
        grow = lambda k: (b[k] - a[k]) / n  # noqa: E731
        return {"MemAvailable": free("MemAvailable"), "MemFree": free("MemFree"),
                "Slab": grow("Slab"), "SUnreclaim": grow("SUnreclaim"),
                "KernelStack": grow("KernelStack"), "PageTables": grow("PageTables"),
                "Percpu": grow("Percpu"), "AnonPages": grow("AnonPages")}

    def sandbox_pids(self, ids):
        """Every process of the sandboxes: each one's init (from the shim's
        record) and its descendants (init hides its command line)."""
        found = []
        for sid in ids:
            try:
                todo = [json.loads(read(os.path.join(self.run_dir, sid, "state.json")))["pid"]]
            except (ValueError, KeyError):
                continue
            while todo:
                pid = todo.pop()
                found.append(pid)
                for t in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}") else []:
                    todo += [int(x) for x in read(f"/proc/{pid}/task/{t}/children").split()]
        return found

    def private_kib(self, pids):
        total = 0
        for pid in pids:
            for line in read(f"/proc/{pid}/smaps_rollup").splitlines():
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1])
        return total

    def bench_idle(self, n):
        self.limits(n)
        body = dict(SDK_DEFAULT, resourceLimits={"cpu": "1", "memory": "512Mi"})
        before = self.settle()
        slab_before = slabinfo()
        t0 = time.perf_counter()
        ids = []
        batch = 100
        while len(ids) < n:
            k = min(batch, n - len(ids))
            got = []
            lock = threading.Lock()
            left = iter(range(k))

            def worker():
                c = Conn(self.port)
                while True:
                    with lock:
                        if next(left, None) is None:
                            break
                    sid = self.create(body, c)
                    with lock:
                        got.append(sid)
                c.close()

            ts = [threading.Thread(target=worker) for _ in range(self.args.clients)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            ids += got
            for sid in got:
                self.note_cgroups(sid)
        made = time.perf_counter() - t0
        after = self.settle(5)
        slab_after = slabinfo()
        # What N idle sandboxes cost in CPU: the server (its reaper) and every
        # process of theirs, over ten seconds of nothing.
        hz = os.sysconf("SC_CLK_TCK")
        procs = self.shims() + self.sandbox_pids(ids)
        watched = [self.proc.pid] + procs
        c0, w0 = cpu_ticks(watched), time.monotonic()
        time.sleep(10)
        c1, w1 = cpu_ticks(watched), time.monotonic()
        srv_ticks = cpu_ticks([self.proc.pid])
        # Every one is alive and answers through the proxy.
        bad = 0
        for sid in ids:
            st, _ = self.conn.request("GET", f"/sandboxes/{sid}/proxy/44772/ping")
            bad += st != 200
        priv = self.private_kib(procs) / n
        d = self.delta_rows(before, after, n)
        tasks = int(read("/proc/loadavg").split()[3].split("/")[1])
        st, data = self.conn.request("GET", "/v1/sandboxes?state=Running&pageSize=1")
        running = json.loads(data)["pagination"]["totalItems"] if st == 200 else -1
        t1 = time.perf_counter()
        st, _ = self.conn.request("GET", "/v1/sandboxes?pageSize=100")
        list_ms = (time.perf_counter() - t1) * 1000
        # A create and a command while N are running.
        t1 = time.perf_counter()
        extra = self.create(body)
        busy_create = (time.perf_counter() - t1) * 1000
        self.note_cgroups(extra)
        self.delete(extra)
        self.emit(f"#### {n} idle sandboxes at once (`tail -f /dev/null` each, cpu 1, memory "
                  f"512Mi; made by {self.args.clients} clients in {made:.1f} s, "
                  f"{n / made:.0f}/s)")
        self.emit()
        self.emit(f"Running (listed): {running}; answering /ping through the proxy: "
                  f"{n - bad} of {n}; tasks on the host: {tasks}; processes of theirs "
                  f"(shims; init, execd, entrypoint in each): {len(procs)}. "
                  f"With all of them up: a create took "
                  f"{busy_create:.1f} ms, a list (page of 100) {list_ms:.1f} ms.")
        self.emit()
        self.emit("| host memory per sandbox | KiB |")
        self.emit("|---|---:|")
        for k, v in d.items():
            what = {"MemAvailable": "MemAvailable fell by (the figure that counts)",
                    "MemFree": "MemFree fell by"}.get(k, f"{k} grew by")
            self.emit(f"| {what} | {v:.0f} |")
        self.emit(f"| private memory of the shim, init, execd and entrypoint processes "
                  f"(smaps_rollup Private_*) | {priv:.0f} |")
        self.emit()
        grew = sorted(((slab_after.get(k, 0) - v0) / n / 1024, k)
                      for k, v0 in list(slab_before.items()) + [(k, 0) for k in slab_after
                                                                if k not in slab_before])
        top = [f"{k} {v:.0f}" for v, k in reversed(grew[-10:]) if v > 1]
        self.emit("Slab caches that grew most, KiB per sandbox (/proc/slabinfo): " +
                  ", ".join(top) + ".")
        self.emit()
        self.emit(f"CPU while the {n} sat idle for 10 s: {100 * (c1 - c0) / hz / (w1 - w0):.1f}% "
                  f"of one CPU for the server and all their processes together (the server "
                  f"alone has used {srv_ticks / hz:.1f} s since it started).")
        self.emit()
        t0 = time.perf_counter()
        self.delete_all(ids)
        gone = time.perf_counter() - t0
        back = self.settle(5)
        diff = (before["MemAvailable"] - back["MemAvailable"]) / 1024
        self.emit(f"Deleting all {n} took {gone:.1f} s ({n / gone:.0f}/s); five seconds later "
                  f"MemAvailable was {abs(diff):.0f} MiB {'below' if diff > 0 else 'above'} "
                  "where it started (the kernel frees namespaces and cgroups lazily; other "
                  "engineers' work moves it too).")
        self.emit()
        return d["MemAvailable"]

    def bench_peers(self, n):
        self.emit(f"#### Peers: {n} idle sandboxes of each, `sleep infinity` inside, measured "
                  "the same way")
        self.emit()
        self.emit("| peer | MemAvailable fell by, KiB each | Slab grew by, KiB each | "
                  "PageTables, KiB each |")
        self.emit("|---|---:|---:|---:|")
        peers = []
        if shutil.which("bwrap"):
            peers.append(("bwrap --unshare-all --die-with-parent --ro-bind / / --dev /dev "
                          "--proc /proc --tmpfs /tmp sleep infinity",
                          ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                           "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "sleep",
                           "infinity"]))
        if shutil.which("unshare"):
            peers.append(("unshare -Urpfn --mount-proc sleep infinity",
                          ["unshare", "-Urpfn", "--mount-proc", "sleep", "infinity"]))
            peers.append(("unshare -n sleep infinity (a network namespace alone)",
                          ["unshare", "-n", "sleep", "infinity"]))
        for label, cmd in peers:
            before = self.settle()
            for _ in range(n):
                self.peers.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                                   stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL,
                                                   start_new_session=True))
            after = self.settle(5)
            alive = sum(p.poll() is None for p in self.peers)
            d = self.delta_rows(before, after, n)
            self.emit(f"| `{label}` ({alive} alive) | {d['MemAvailable']:.0f} | {d['Slab']:.0f} | "
                      f"{d['PageTables']:.0f} |")
            for p in self.peers:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
            for p in self.peers:
                p.wait(10)
            self.peers = []
        self.emit()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rate-total", type=int, default=400)
    ap.add_argument("--rate-pool", type=int, default=100)
    ap.add_argument("--peers", type=int, default=300)
    ap.add_argument("--skip", default="")
    args = ap.parse_args()
    skip = set(args.skip.split(",")) - {""}
    if os.geteuid() != 0:
        sys.exit("server_bench: run as root (the server makes cgroups and run directories)")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    b = Bench(args.build, args)
    problems = []
    summary = {}
    try:
        b.emit(f"- machine: {os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs, "
               f"{meminfo()['MemTotal'] // 1024} MiB RAM; load average at the start "
               f"{loadavg()}")
        b.emit(f"- kennel: `{b.kennel}`; client: this script, one kept-alive HTTP/1.1 "
               "connection per client on 127.0.0.1")
        b.emit()
        b.start(pools=[f"bench=8"] if "warm" not in skip else [])
        if "cold" not in skip:
            summary["cold p50"] = statistics.median(b.bench_cold())
        if "warm" not in skip:
            w = b.bench_warm()
            summary["warm p50"] = statistics.median(w["no env"])
            summary["warm p99"] = pct(w["no env"], 99)
            summary["warm+env p50"] = statistics.median(w["with env (3 variables)"])
        b.stop()
        b.start(pools=[f"rate={args.rate_pool}"] if "rate" not in skip else [])
        if "rate" not in skip:
            b.emit("#### Sustained creation rate (each sandbox kept until the run ends, then "
                   "deleted)")
            b.emit()
            b.emit("| creates | clients | made | seconds | per second | errors |")
            b.emit("|---|---:|---:|---:|---:|---:|")
            body = dict(SDK_DEFAULT, resourceLimits={"cpu": "1", "memory": "512Mi"})
            for c in sorted({1, 2, args.clients}):
                summary[f"cold rate, {c} clients"] = b.bench_rate(
                    "cold", body, args.rate_total, c)
            summary["pool rate"] = b.bench_rate(
                f"from a pool of {args.rate_pool}", SDK_DEFAULT, args.rate_pool, args.clients,
                pool="rate")
            b.emit()
            b.stop()
            b.start()
        if "idle" not in skip:
            summary["idle KiB each"] = b.bench_idle(args.idle)
        if "peers" not in skip:
            b.bench_peers(args.peers)
        b.emit(f"Load average at the end: {loadavg()}")
        b.emit()
        b.emit("Summary: " + ", ".join(f"{k} {v:.2f}" for k, v in summary.items()))
    except Interrupted as e:
        print(f"server_bench: interrupted ({e}); cleaning up", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        problems = b.cleanup()
    if problems:
        print("server_bench: LEFT BEHIND: " + "; ".join(problems), file=sys.stderr)
        sys.exit(1)
    print("server_bench: cleaned up (no sandbox, shim, run directory or cgroup left)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
