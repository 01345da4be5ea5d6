"""execd's tunnel, GET /tunnel/{port} with Upgrade: kennel-tunnel: the byte
stream the server proxy uses to reach a port inside a sandbox. Here execd
runs on the host, so the tunnel leads to the host's loopback: every target
is a listener this test started itself."""
import json
import socket
import threading
import time

import pytest

from conftest import fd_count


class Target:
    """A TCP listener of the test: echoes, and after the client's end of
    stream sends "bye" and closes. Records what happened."""

    def __init__(self, family=socket.AF_INET, host="127.0.0.1"):
        self.ls = socket.socket(family, socket.SOCK_STREAM)
        self.ls.bind((host, 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.events = []
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    def serve(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, c):
        self.events.append("open")
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                c.sendall(b)
            self.events.append("eof")
            c.sendall(b"bye")
        except OSError:
            self.events.append("error")
        finally:
            c.close()
            self.events.append("closed")

    def close(self):
        self.ls.close()


def tunnel(daemon, port, extra=b"", upgrade=True):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(daemon.sock)
    up = b"Connection: Upgrade\r\nUpgrade: kennel-tunnel\r\n" if upgrade else b""
    s.sendall(b"GET /tunnel/%s HTTP/1.1\r\nHost: x\r\n%s\r\n%s" % (str(port).encode(), up, extra))
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(1)
        if not b:
            break
        head += b
    return s, int(head.split(b" ")[1]), head


def body_of(s, head):
    n = int([line.split(b":")[1] for line in head.split(b"\r\n")
             if line.lower().startswith(b"content-length:")][0])
    out = b""
    while len(out) < n:
        out += s.recv(n - len(out))
    return json.loads(out)


def recv_all(s):
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            return out
        out += b


def test_bad_requests(daemon):
    for bad in ["0", "65536", "abc", "08", "1a"]:
        s, status, head = tunnel(daemon, bad)
        assert status == 400, (bad, head)
        assert body_of(s, head)["code"] == "INVALID_PORT"
        s.close()
    s, status, head = tunnel(daemon, 80, upgrade=False)
    assert status == 426 and body_of(s, head)["code"] == "UPGRADE_REQUIRED"
    s.close()


def test_nothing_listening_is_502(daemon):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    s, status, head = tunnel(daemon, port)
    assert status == 502, head
    err = body_of(s, head)
    assert err["code"] == "PORT_UNREACHABLE" and str(port) in err["message"]
    s.close()


def test_bytes_both_ways_with_half_close(daemon):
    t = Target()
    try:
        s, status, head = tunnel(daemon, t.port, extra=b"early ")  # sent with the head
        assert status == 101 and b"upgrade: kennel-tunnel" in head.lower(), head
        s.sendall(b"and later")
        got = b""
        while len(got) < len(b"early and later"):
            got += s.recv(100)
        assert got == b"early and later"
        big = bytes(range(256)) * 40000  # 10 MB through, echoed back
        sender = threading.Thread(target=s.sendall, args=(big,))
        sender.start()
        back = b""
        while len(back) < len(big):
            back += s.recv(1 << 20)
        sender.join()
        assert back == big
        s.shutdown(socket.SHUT_WR)  # our end of stream reaches the target...
        assert recv_all(s) == b"bye"  # ...which still answers, then closes
        s.close()
        deadline = time.monotonic() + 5
        while t.events[-1:] != ["closed"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert t.events == ["open", "eof", "closed"]
    finally:
        t.close()


def test_hangup_closes_the_target_and_leaks_nothing(daemon):
    t = Target()
    try:
        tunnel(daemon, t.port)[0].close()  # settle lazily made descriptors
        time.sleep(0.3)
        base = fd_count(daemon.proc.pid)
        socks = []
        for _ in range(8):
            s, status, _ = tunnel(daemon, t.port)
            assert status == 101
            s.sendall(b"x")
            assert s.recv(1) == b"x"
            socks.append(s)
        assert fd_count(daemon.proc.pid) >= base + 16
        for s in socks:
            s.close()
        deadline = time.monotonic() + 5
        while (t.events.count("closed") < 9 or fd_count(daemon.proc.pid) > base) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        assert t.events.count("closed") == 9
        assert fd_count(daemon.proc.pid) == base
    finally:
        t.close()


def test_ipv6_loopback_only_listener(daemon):
    try:
        t = Target(socket.AF_INET6, "::1")
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    try:
        s, status, _ = tunnel(daemon, t.port)
        assert status == 101
        s.sendall(b"six")
        assert s.recv(3) == b"six"
        s.close()
    finally:
        t.close()


def test_sigterm_with_an_open_tunnel_exits_cleanly(daemon):
    t = Target()
    try:
        s, status, _ = tunnel(daemon, t.port)
        assert status == 101
        t0 = time.monotonic()
        daemon.stop()
        assert daemon.proc.returncode == 0
        assert time.monotonic() - t0 < 8
        assert recv_all(s) == b""
        s.close()
    finally:
        t.close()
