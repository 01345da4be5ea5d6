"""Fixtures for the lifecycle server tests: a real `kennel serve` on a loopback
port, with its SQLite file and run directory in a fresh temporary directory,
driven over HTTP. Teardown deletes every sandbox, stops the server and checks
that nothing is left: no shim or sandbox process, no run directory, no cgroup.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

API_KEY = "kennel-test-key"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


class Server:
    """One `kennel serve` process and the files it owns."""

    def __init__(self, kennel, key=API_KEY, extra_args=()):
        # Short paths: the run directory holds unix sockets (108-byte limit).
        self.dir = tempfile.mkdtemp(prefix="kn-srv-", dir="/tmp")
        os.chmod(self.dir, 0o711)  # the sandboxes' user passes through to its run dir
        self.run_dir = os.path.join(self.dir, "run")
        self.db = os.path.join(self.dir, "kennel.db")
        self.store = os.path.join(self.dir, "images")
        self.log = os.path.join(self.dir, "serve.log")
        self.port = free_port()
        self.kennel = kennel
        self.key = key
        self.extra = list(extra_args)
        self.proc = None
        self.cgroups = set()  # cgroup directories of the sandboxes made here

    def start(self):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        # Sanitizer builds: their options (log_path, ...) reach server and shims.
        env.update({k: v for k, v in os.environ.items()
                    if k.split("_")[0] in ("ASAN", "UBSAN", "LSAN")})
        if self.key:
            env["KENNEL_API_KEY"] = self.key
        # The image store and disk layers are the test's own too: snapshots
        # are written into the store, never into the host's.
        own = []
        if "--image-store" not in self.extra:
            own += ["--image-store", self.store]
        if "--layer-dir" not in self.extra:
            own += ["--layer-dir", os.path.join(self.dir, "layers")]
        self.proc = subprocess.Popen(
            [self.kennel, "serve", "--listen", f"127.0.0.1:{self.port}", "--db", self.db,
             "--run-dir", self.run_dir, *own, *self.extra],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"), env=env)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/health").status == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"kennel serve did not come up:\n{self.read_log()}")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def read_log(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def request(self, method, path, body=None, headers=None, key=True, raw=None, timeout=60):
        h = {}
        if key and self.key:
            h["OPEN-SANDBOX-API-KEY"] = self.key
        if body is not None:
            raw = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=raw, headers=h)
            r = c.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            c.close()

    def create(self, **fields):
        body = {"image": {"uri": "host"}, "entrypoint": ["tail", "-f", "/dev/null"],
                "resourceLimits": {"cpu": "1", "memory": "512Mi"}, "timeout": 600}
        body.update(fields)
        r = self.request("POST", "/v1/sandboxes", body)
        assert r.status == 202, r
        sid = r.json()["id"]
        self.note_cgroups(sid)
        return sid

    def note_cgroups(self, sid):
        """Remembers the sandbox's cgroups so that teardown can check them."""
        try:
            with open(os.path.join(self.run_dir, sid, "state.json")) as f:
                pid = json.load(f)["pid"]
            with open(f"/proc/{pid}/cgroup") as f:
                for line in f:
                    _, ctrl, path = line.strip().split(":", 2)
                    if "kennel-" not in path:
                        continue
                    for c in (ctrl.split(",") if ctrl else [""]):
                        c = c.replace("name=", "")
                        base = "/sys/fs/cgroup" + (f"/{c}" if c else "")
                        self.cgroups.add(base + path)
        except (OSError, ValueError, KeyError):
            pass

    def execd(self, sid, method, path, body=None, headers=None):
        return self.request(method, f"/sandboxes/{sid}/proxy/44772{path}", body, headers)

    def run(self, sid, command):
        """Runs a command through the proxy; returns (stdout lines, events)."""
        r = self.execd(sid, "POST", "/command", {"command": command})
        assert r.status == 200, r
        events = [json.loads(b) for b in r.body.split(b"\n\n") if b.strip()]
        return [e["text"] for e in events if e["type"] == "stdout"], events

    def shim_processes(self):
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if self.run_dir.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
        return found

    def cleanup(self):
        """Deletes what is left through the API, stops the server, and
        checks that nothing of it remains on the host."""
        problems = []
        if self.proc and self.proc.poll() is not None and os.path.isdir(self.run_dir):
            self.start()  # a killed server: a new one adopts what is left
        if self.proc and self.proc.poll() is None:
            r = self.request("GET", "/v1/sandboxes?pageSize=1000")
            for s in r.json().get("items", []) if r.status == 200 else []:
                self.request("DELETE", f"/v1/sandboxes/{s['id']}")
        self.stop()
        deadline = time.monotonic() + 5
        while self.shim_processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self.shim_processes()
        if left:
            problems.append(f"processes left: {left}")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if os.path.isdir(self.run_dir) and os.listdir(self.run_dir):
            problems.append(f"run directories left: {os.listdir(self.run_dir)}")
        deadline = time.monotonic() + 3
        while [c for c in self.cgroups if os.path.exists(c)] and time.monotonic() < deadline:
            time.sleep(0.05)
        cgs = [c for c in self.cgroups if os.path.exists(c)]
        if cgs:
            problems.append(f"cgroups left: {cgs}")
        shutil.rmtree(self.dir, ignore_errors=True)
        return problems


@pytest.fixture(scope="module")
def server(kennel):
    s = Server(kennel)
    s.start()
    yield s
    problems = s.cleanup()
    assert not problems, problems


@pytest.fixture
def fresh_server(kennel):
    """A server of the test's own, for tests that kill or restart it."""
    servers = []

    def make(**kw):
        s = Server(kennel, **kw)
        servers.append(s)
        return s

    yield make
    problems = []
    for s in servers:
        problems += s.cleanup()
    assert not problems, problems
