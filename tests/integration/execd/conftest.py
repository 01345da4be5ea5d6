"""Fixtures for kennel-execd integration tests: a real daemon on a unix socket.

KENNEL_BUILD names the build tree holding kennel-execd. Unlike the shared
build_dir fixture these tests need only kennel-execd, not the kennel CLI.
"""
import http.client
import json
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def execd_bin() -> str:
    d = pathlib.Path(os.environ.get("KENNEL_BUILD", ROOT / "build"))
    p = d / "kennel-execd"
    if not p.exists():
        pytest.fail(f"{p} is missing: build the kennel-execd target first")
    return str(p)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Client:
    """Minimal HTTP client for the daemon's unix socket."""

    def __init__(self, path):
        self.path = path

    def conn(self, timeout=60):
        return UnixHTTPConnection(self.path, timeout)

    def request(self, method, url, body=None, headers=None, timeout=60):
        c = self.conn(timeout)
        h = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        c.request(method, url, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data

    def json(self, method, url, body=None, **kw):
        st, h, data = self.request(method, url, body, **kw)
        return st, (json.loads(data) if data else None)

    def events(self, url, body, timeout=60):
        """POSTs body and returns the list of stream events (raw JSON lines)."""
        st, h, data = self.request("POST", url, body, timeout=timeout)
        assert st == 200, (st, data)
        assert h["content-type"].startswith("text/event-stream")
        return [json.loads(chunk) for chunk in data.decode().split("\n\n") if chunk.strip()]


class Daemon:
    def __init__(self, binary, tmp, args=(), root=None, pre_exec=None):
        self.sock = os.path.join(tmp, "execd.sock")
        cmd = [binary, "--socket", self.sock, *args]
        if not root:
            # Never let a test daemon serve the host's "/" through the files API.
            root = tempfile.mkdtemp(prefix="root-", dir=tmp)
        cmd += ["--root", root]
        self.log = open(os.path.join(tmp, "execd.log"), "w+")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=pre_exec)
        deadline = time.time() + 10
        while time.time() < deadline:
            if os.path.exists(self.sock):
                try:
                    if Client(self.sock).request("GET", "/ping", timeout=2)[0]:
                        break
                except OSError:
                    pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        else:
            raise RuntimeError("kennel-execd did not come up")
        if self.proc.poll() is not None:
            self.log.seek(0)
            raise RuntimeError("kennel-execd exited: " + self.log.read())
        self.client = Client(self.sock)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.seek(0)
            self.output = self.log.read()
            self.log.close()


@pytest.fixture
def tmpdir_path():
    with tempfile.TemporaryDirectory(prefix="kn-execd-") as d:
        yield d


@pytest.fixture
def daemon(execd_bin, tmpdir_path):
    # Even tests that only run commands get a throwaway --root: a files API
    # call (DELETE /directories, mv, replace ...) from any test must never be
    # able to reach the host's own files.
    root = os.path.join(tmpdir_path, "droot")
    os.makedirs(root)
    d = Daemon(execd_bin, tmpdir_path, root=root)
    d.root = root
    yield d
    d.stop()
    assert d.proc.returncode == 0, f"execd exited with {d.proc.returncode}: {d.output[-6000:]}"


@pytest.fixture
def client(daemon) -> Client:
    return daemon.client


@pytest.fixture
def rooted(execd_bin, tmpdir_path):
    """A daemon serving files from a fresh root directory (--root)."""
    root = os.path.join(tmpdir_path, "root")
    os.makedirs(root)
    d = Daemon(execd_bin, tmpdir_path, root=root)
    d.root = root
    yield d
    d.stop()
    assert d.proc.returncode == 0, f"execd exited with {d.proc.returncode}: {d.output[-6000:]}"


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def children_of(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    st = f.read()
                ppid = int(st.rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == pid:
                out.append(int(p))
    return out
