"""The server proxy to any port of a sandbox (HTTP, SSE, WebSocket) against a
real `kennel serve`: programs started inside the sandbox through execd
(tests/integration/server/proxy_apps.py, standard library only) are reached
through /sandboxes/{id}/proxy/{port}/..., and the ways a sandbox could make
the server reach a host service are tried and must fail."""
import base64
import hashlib
import http.client
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from . import proxy_apps as apps
from .conftest import API_KEY

HTTP_PORT = 8000
WS_PORT = 9000
APPS = os.path.join(os.path.dirname(__file__), "proxy_apps.py")


def assert_error(r, status, code=None):
    assert r.status == status, r
    body = r.json()
    assert isinstance(body.get("code"), str) and body["code"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    if code:
        assert body["code"] == code, body


def start_apps(server, sid):
    """Copies proxy_apps.py into the sandbox and starts both servers in the
    background through execd; returns when both answer through the proxy."""
    src = base64.b64encode(open(APPS, "rb").read()).decode()
    out, _ = server.run(sid, f"echo {src} | base64 -d > /tmp/apps.py && echo copied")
    assert out == ["copied"]
    for kind, port in [("http", HTTP_PORT), ("ws", WS_PORT)]:
        r = server.execd(sid, "POST", "/command", {
            "command": f"exec python3 /tmp/apps.py {kind} {port} /tmp/{kind}.log",
            "background": True})
        assert r.status == 200, r
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server.request("GET", f"/sandboxes/{sid}/proxy/{HTTP_PORT}/").status == 200 and \
                "listening" in inside(server, sid, f"cat /tmp/ws.log 2>/dev/null || true"):
            return
        time.sleep(0.1)
    raise AssertionError("the programs inside did not come up")


def inside(server, sid, command):
    return "\n".join(server.run(sid, command)[0])


def state(server, sid):
    with open(os.path.join(server.run_dir, sid, "state.json")) as f:
        return json.load(f)


def execd_pid(server, sid):
    """The host pid of the sandbox's execd (the process of the sandbox's
    pid namespace running kennel-execd; the recorded pid may be a helper
    above it)."""
    ns = state(server, sid)["pidns"]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if b"kennel-execd" in f.read().split(b"\0")[0]:
                    found.append(int(entry))
        except OSError:
            pass
    assert found, "execd not found"
    return min(found)


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fds(pid):
    """The descriptor count once connections of earlier requests are gone
    (libmicrohttpd closes them on its own threads, a moment later)."""
    last, stable_since = fds(pid), time.monotonic()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and time.monotonic() - stable_since < 0.3:
        time.sleep(0.05)
        n = fds(pid)
        if n != last:
            last, stable_since = n, time.monotonic()
    return last


def tcp_established(server, sid, port):
    """ESTABLISHED TCP connections to port inside the sandbox (its own
    network namespace, read from its /proc/net)."""
    out = inside(server, sid, "cat /proc/net/tcp /proc/net/tcp6")
    n = 0
    for line in out.splitlines()[1:]:
        f = line.split()
        if len(f) > 3 and ":" in f[1] and f[3] == "01":
            if int(f[1].rsplit(":", 1)[1], 16) == port:
                n += 1
    return n


def wait_for(pred, timeout=8, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def sbx(server):
    sid = server.create()
    start_apps(server, sid)
    yield sid
    server.request("DELETE", f"/v1/sandboxes/{sid}")


def conn(server, timeout=30):
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)


def key_headers(extra=None):
    h = {"OPEN-SANDBOX-API-KEY": API_KEY}
    h.update(extra or {})
    return h


def ws_connect(server, path, extra_headers=b"", key=True):
    """Opens a WebSocket through the server; returns (socket, status, head)."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    k = base64.b64encode(os.urandom(16)).decode()
    s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
              b"%s\r\n" % (path.encode(),
                           b"OPEN-SANDBOX-API-KEY: %s\r\n" % API_KEY.encode() if key else b"",
                           k.encode(), extra_headers))
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(1)
        if not b:
            break
        head += b
    status = int(head.split(b" ", 2)[1]) if head else 0
    if status == 101:
        accept = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                  if line.lower().startswith(b"sec-websocket-accept:")]
        assert accept == [apps.ws_accept(k).encode()], head
        # Hop-by-hop headers once each (RFC 9110 7.6.1), whoever adds them.
        names = [line.split(b":", 1)[0].strip().lower() for line in head.split(b"\r\n")[1:]
                 if b":" in line]
        for h in (b"connection", b"upgrade"):
            assert names.count(h) == 1, head
    return s, status, head


def read_http_body(s, head):
    """The rest of a response on a raw socket (Content-Length only)."""
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    body = b""
    while len(body) < n:
        b = s.recv(n - len(body))
        if not b:
            break
        body += b
    return body


# ---- HTTP ---------------------------------------------------------------------

def test_methods_and_status(server, sbx):
    base = f"/sandboxes/{sbx}/proxy/{HTTP_PORT}"
    r = server.request("GET", base + "/")
    assert r.status == 200 and r.body == b"hello from inside\n"
    r = server.request("GET", f"/v1{base}/")  # under /v1 too
    assert r.status == 200 and r.body == b"hello from inside\n"
    r = server.request("DELETE", base + "/thing?x=1&y=%2F")
    assert r.status == 200 and r.body == b"deleted /thing?x=1&y=%2F"  # path and query as sent
    r = server.request("PUT", base + "/echo", raw=b"put body")
    assert r.status == 200 and r.body == b"put body"
    r = server.request("GET", base + "/redirect?to=/elsewhere")
    assert r.status == 302 and r.header("Location") == "/elsewhere"
    c = conn(server)
    c.request("HEAD", base + "/", headers=key_headers())
    h = c.getresponse()
    assert h.status == 200 and h.getheader("Content-Length") == "1234" and h.read() == b""
    # The id is percent-decoded, as the /v1 routes' ids are.
    escaped = "".join(f"%{ord(ch):02X}" for ch in sbx)
    r = server.request("GET", f"/sandboxes/{escaped}/proxy/{HTTP_PORT}/")
    assert r.status == 200 and r.body == b"hello from inside\n"
    assert server.request("GET", f"/sandboxes/{sbx[:4]}%2F{sbx[4:]}/proxy/{HTTP_PORT}/").status \
        == 404


def test_bodies_of_10_mb_both_ways(server, sbx):
    base = f"/sandboxes/{sbx}/proxy/{HTTP_PORT}"
    data = os.urandom(10 << 20)
    r = server.request("POST", base + "/echo", raw=data)
    assert r.status == 200 and r.header("X-Was-Chunked") == "false"
    assert len(r.body) == len(data) and r.body == data
    # A chunked upload reaches the program chunked, whole.
    c = conn(server)
    pieces = [data[i:i + 700_001] for i in range(0, len(data), 700_001)]
    c.request("POST", base + "/sha", body=iter(pieces), headers=key_headers(),
              encode_chunked=True)
    got = json.loads(c.getresponse().read())
    assert got == {"len": len(data), "sha256": hashlib.sha256(data).hexdigest(), "chunked": True}
    # 10 MB down, with Content-Length and chunked.
    r = server.request("GET", base + f"/bytes?n={10 << 20}")
    assert r.status == 200 and r.body == apps.pattern(10 << 20)
    assert r.header("Content-Length") == str(10 << 20)
    r = server.request("GET", base + f"/chunked?n={10 << 20}&parts=37")
    assert r.status == 200 and r.body == apps.pattern(10 << 20)


def test_keep_alive_client_connection(server, sbx):
    """One client connection carries many requests, to a user port and to
    execd, bodies and chunked answers included."""
    c = conn(server)
    base = f"/sandboxes/{sbx}/proxy/{HTTP_PORT}"
    local = None
    for i in range(30):
        kind = i % 4
        if kind == 0:
            c.request("GET", base + f"/bytes?n={1000 + i}", headers=key_headers())
            want = apps.pattern(1000 + i)
        elif kind == 1:
            body = os.urandom(50_000 + i)
            c.request("POST", base + "/echo", body=body, headers=key_headers())
            want = body
        elif kind == 2:
            c.request("GET", base + f"/chunked?n={70_000 + i}&parts=3", headers=key_headers())
            want = apps.pattern(70_000 + i)
        else:
            c.request("GET", f"/sandboxes/{sbx}/proxy/44772/ping", headers=key_headers())
            want = b""
        r = c.getresponse()
        assert r.status == 200 and r.read() == want, i
        assert r.getheader("Connection", "").lower() != "close"
        name = c.sock.getsockname()
        assert local in (None, name), "the client connection was not kept"
        local = name


def test_concurrent_connections(server, sbx):
    base = f"/sandboxes/{sbx}/proxy/{HTTP_PORT}"
    errors = []

    def client(n):
        try:
            c = conn(server)
            for j in range(10):
                body = os.urandom(100_000)
                c.request("POST", base + "/echo", body=body, headers=key_headers())
                r = c.getresponse()
                got = r.read()
                if r.status != 200 or got != body:
                    errors.append((n, j, r.status, got[:200]))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((n, repr(e)))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_forwarded_headers_and_credentials(server, sbx):
    r = server.request("GET", f"/sandboxes/{sbx}/proxy/{HTTP_PORT}/headers",
                       headers={"Cookie": "session=secret", "Authorization": "Bearer x",
                                "X-Forwarded-For": "6.6.6.6", "X-Custom": "kept"})
    h = {k.lower(): v for k, v in r.json()}
    assert h["host"] == f"localhost:{HTTP_PORT}"
    assert h["x-custom"] == "kept"
    assert h["x-forwarded-for"] == "127.0.0.1"  # the client's own claim is replaced
    assert h["x-forwarded-prefix"] == f"/sandboxes/{sbx}/proxy/{HTTP_PORT}"
    assert h["x-forwarded-host"] == f"127.0.0.1:{server.port}"
    for gone in ["open-sandbox-api-key", "cookie", "authorization"]:
        assert gone not in h, h


def test_sse_arrives_event_by_event(server, sbx):
    c = conn(server)
    c.request("GET", f"/sandboxes/{sbx}/proxy/{HTTP_PORT}/sse?n=5&gap=0.4",
              headers=key_headers())
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    arrivals = []
    while True:
        line = r.readline()
        if not line:
            break
        if line.startswith(b"data: "):
            _, i, sent = line.split()
            arrivals.append((int(i), time.time() - float(sent)))
    assert [i for i, _ in arrivals] == list(range(5))
    # Each event arrives as it is written, not when the stream ends.
    assert all(lag < 0.2 for _, lag in arrivals), arrivals


def wait_log(server, sid, name, word, timeout=8):
    return wait_for(lambda: word in inside(server, sid, f"cat /tmp/{name}.log"), timeout,
                    f"'{word}' in {name}.log")


def test_client_hangup_closes_the_connection_inside(server, sbx):
    srv_pid, ex_pid = server.proc.pid, execd_pid(server, sbx)
    before = inside(server, sbx, "grep -c 'gone forever' /tmp/http.log || true")
    base_srv, base_execd = settled_fds(srv_pid), settled_fds(ex_pid)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(b"GET /sandboxes/%s/proxy/%d/forever HTTP/1.1\r\nHost: x\r\n"
              b"OPEN-SANDBOX-API-KEY: %s\r\n\r\n" % (sbx.encode(), HTTP_PORT, API_KEY.encode()))
    got = b""
    while got.count(b"tick") < 3:
        got += s.recv(4096)
    assert fds(srv_pid) > base_srv and fds(ex_pid) > base_execd
    assert tcp_established(server, sbx, HTTP_PORT) == 1
    s.close()
    wait_for(lambda: inside(server, sbx, "grep -c 'gone forever' /tmp/http.log || true")
             != before, what="the program to see the hang-up")
    wait_for(lambda: tcp_established(server, sbx, HTTP_PORT) == 0, what="no connection inside")
    wait_for(lambda: fds(srv_pid) <= base_srv, what=f"server fds back to {base_srv}")
    wait_for(lambda: fds(ex_pid) <= base_execd, what=f"execd fds back to {base_execd}")


def test_nobody_listening_is_a_clear_502(server, sbx):
    r = server.request("GET", f"/sandboxes/{sbx}/proxy/8999/x")
    assert_error(r, 502, "PROXY::PORT_UNREACHABLE")
    assert "8999" in r.json()["message"] and "refused" in r.json()["message"]
    s, status, head = ws_connect(server, f"/sandboxes/{sbx}/proxy/8999/ws")
    assert status == 502 and b"PORT_UNREACHABLE" in read_http_body(s, head)
    s.close()
    for bad in ["0", "65536", "999999"]:
        assert_error(server.request("GET", f"/sandboxes/{sbx}/proxy/{bad}/"), 400)


# ---- WebSocket ----------------------------------------------------------------

def test_websocket_echo(server, sbx):
    s, status, head = ws_connect(server, f"/sandboxes/{sbx}/proxy/{WS_PORT}/chat?room=1",
                                 b"Sec-WebSocket-Protocol: chat, superchat\r\n")
    assert status == 101, head
    assert b"sec-websocket-protocol: chat" in head.lower()
    apps.ws_send(s, 1, "héllo ✓".encode(), True)
    assert apps.ws_recv(s) == (1, "héllo ✓".encode())
    blob = os.urandom(3000)
    apps.ws_send(s, 2, blob, True)
    assert apps.ws_recv(s) == (2, blob)
    big = os.urandom(8 << 20)  # a large frame, both ways
    apps.ws_send(s, 2, big, True)
    assert apps.ws_recv(s) == (2, big)
    apps.ws_send(s, 9, b"are you there", True)
    assert apps.ws_recv(s) == (10, b"are you there")
    for i in range(200):  # many small frames, in order
        apps.ws_send(s, 1, b"%d" % i, True)
    assert [apps.ws_recv(s)[1] for _ in range(200)] == [b"%d" % i for i in range(200)]
    # Close from the client: the program answers and both ends close.
    apps.ws_send(s, 8, b"\x03\xe8", True)
    assert apps.ws_recv(s) == (8, b"\x03\xe8")
    assert s.recv(10) == b""
    s.close()
    wait_log(server, sbx, "ws", "closed by client")


def test_websocket_close_from_the_program(server, sbx):
    s, status, _ = ws_connect(server, f"/sandboxes/{sbx}/proxy/{WS_PORT}/")
    assert status == 101
    apps.ws_send(s, 1, b"close please", True)
    assert apps.ws_recv(s) == (8, b"\x03\xe8bye")
    assert s.recv(10) == b""  # the program closed: so does the proxy
    s.close()
    wait_log(server, sbx, "ws", "closed by server")


def test_websocket_client_hangup_leaks_nothing(server, sbx):
    srv_pid, ex_pid = server.proc.pid, execd_pid(server, sbx)
    before = inside(server, sbx, "grep -c 'gone ws' /tmp/ws.log || true")
    base_srv, base_execd = settled_fds(srv_pid), settled_fds(ex_pid)
    socks = []
    for _ in range(5):
        s, status, _ = ws_connect(server, f"/sandboxes/{sbx}/proxy/{WS_PORT}/")
        assert status == 101
        apps.ws_send(s, 1, b"x" * 100_000, True)
        socks.append(s)
    assert tcp_established(server, sbx, WS_PORT) >= 5
    for s in socks:  # gone without a close frame, the echo unread
        s.close()
    wait_for(lambda: inside(server, sbx, "grep -c 'gone ws' /tmp/ws.log || true")
             == str(int(before) + 5), what="the program to see 5 hang-ups")
    wait_for(lambda: tcp_established(server, sbx, WS_PORT) == 0, what="no connection inside")
    wait_for(lambda: fds(srv_pid) <= base_srv, what=f"server fds back to {base_srv}")
    wait_for(lambda: fds(ex_pid) <= base_execd, what=f"execd fds back to {base_execd}")


def test_websocket_refused_by_the_program(server, sbx):
    """An upgrade the program does not accept is its plain answer."""
    s, status, head = ws_connect(server, f"/sandboxes/{sbx}/proxy/{HTTP_PORT}/")
    assert status == 200 and read_http_body(s, head) == b"hello from inside\n"
    s.close()


def test_upgrade_to_execd_itself_and_the_raw_tunnel(server, sbx):
    """Port 44772 goes to execd, upgrades included: execd's tunnel is usable
    through the proxy as a raw byte stream to a port inside (an extension)."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(b"GET /sandboxes/%s/proxy/44772/tunnel/%d HTTP/1.1\r\nHost: x\r\n"
              b"OPEN-SANDBOX-API-KEY: %s\r\nConnection: Upgrade\r\nUpgrade: kennel-tunnel\r\n\r\n"
              % (sbx.encode(), HTTP_PORT, API_KEY.encode()))
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    s.sendall(b"GET /bytes?n=5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    got = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    assert got.startswith(b"HTTP/1.1 200") and got.endswith(apps.pattern(5)), got
    s.close()
    # A WebSocket request to execd's port gets execd's own answer.
    s, status, head = ws_connect(server, f"/sandboxes/{sbx}/proxy/44772/ping")
    assert status == 200, head
    s.close()


# ---- refusals -------------------------------------------------------------------

def test_auth_unknown_and_paused(server, sbx):
    for key, code in [(False, "MISSING_API_KEY")]:
        r = server.request("GET", f"/sandboxes/{sbx}/proxy/{HTTP_PORT}/", key=key)
        assert_error(r, 401, code)
        s, status, _ = ws_connect(server, f"/sandboxes/{sbx}/proxy/{WS_PORT}/", key=False)
        assert status == 401
        s.close()
    r = server.request("GET", f"/sandboxes/{sbx}/proxy/{HTTP_PORT}/",
                       key=False, headers={"OPEN-SANDBOX-API-KEY": "wrong"})
    assert_error(r, 401, "INVALID_API_KEY")
    assert_error(server.request("GET", f"/sandboxes/nope/proxy/{HTTP_PORT}/"), 404)
    s, status, _ = ws_connect(server, f"/sandboxes/nope/proxy/{WS_PORT}/")
    assert status == 404
    s.close()
    assert server.request("POST", f"/v1/sandboxes/{sbx}/pause").status == 202
    try:
        t0 = time.monotonic()
        assert_error(server.request("GET", f"/sandboxes/{sbx}/proxy/{HTTP_PORT}/"), 409)
        s, status, _ = ws_connect(server, f"/sandboxes/{sbx}/proxy/{WS_PORT}/")
        assert status == 409
        s.close()
        assert time.monotonic() - t0 < 2
    finally:
        assert server.request("POST", f"/v1/sandboxes/{sbx}/resume").status == 202
    assert server.request("GET", f"/sandboxes/{sbx}/proxy/{HTTP_PORT}/").status == 200


class HostService:
    """A service on the host's loopback that a sandbox must never reach; it
    counts every connection it gets."""

    def __init__(self):
        hits = self.hits = []

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "11")
                self.end_headers()
                self.wfile.write(b"host secret")

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def test_sandbox_cannot_make_the_server_reach_host_loopback(server, sbx):
    host = HostService()
    try:
        p = host.port
        # The service is there and counts: a direct request reaches it.
        c = http.client.HTTPConnection("127.0.0.1", p, timeout=5)
        c.request("GET", "/direct")
        assert c.getresponse().read() == b"host secret"
        assert host.hits == ["/direct"]
        host.hits.clear()
        attempts = []
        # 1. Its port through the proxy: the sandbox's own loopback has nothing there.
        r = server.request("GET", f"/sandboxes/{sbx}/proxy/{p}/")
        attempts.append(("port", r.status))
        assert_error(r, 502, "PROXY::PORT_UNREACHABLE")
        s, status, _ = ws_connect(server, f"/sandboxes/{sbx}/proxy/{p}/")
        attempts.append(("websocket", status))
        s.close()
        # 2. execd's tunnel through the proxy and from inside, on execd's own socket.
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(b"GET /sandboxes/%s/proxy/44772/tunnel/%d HTTP/1.1\r\nHost: x\r\n"
                  b"OPEN-SANDBOX-API-KEY: %s\r\nConnection: Upgrade\r\n"
                  b"Upgrade: kennel-tunnel\r\n\r\n" % (sbx.encode(), p, API_KEY.encode()))
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        attempts.append(("tunnel via proxy", int(head.split()[1])))
        assert head.startswith(b"HTTP/1.1 502"), head
        s.close()
        probe = (
            "import socket,sys\n"
            "def try_(f):\n"
            "    try: return f()\n"
            "    except OSError as e: return type(e).__name__\n"
            f"print(try_(lambda: socket.create_connection(('127.0.0.1',{p}),2) and 'CONNECTED'))\n"
            "u=socket.socket(socket.AF_UNIX); u.connect('/run/kennel/execd.sock')\n"
            f"u.sendall(b'GET /tunnel/{p} HTTP/1.1\\r\\nHost: x\\r\\nConnection: Upgrade\\r\\n"
            "Upgrade: kennel-tunnel\\r\\n\\r\\n')\n"
            "print(u.recv(200).split(b'\\r\\n')[0].decode())\n")
        out = inside(server, sbx, "python3 - <<'EOF'\n" + probe + "EOF")
        attempts.append(("inside", out))
        assert out.splitlines() == ["ConnectionRefusedError", "HTTP/1.1 502 Bad Gateway"], out
        # 3. A program that redirects there: the proxy does not follow.
        r = server.request("GET", f"/sandboxes/{sbx}/proxy/{HTTP_PORT}/redirect?"
                                  f"to=http://127.0.0.1:{p}/redirected")
        attempts.append(("redirect", r.status))
        assert r.status == 302
        # 4. Request-line and header tricks.
        for raw in [
            b"GET http://127.0.0.1:%d/abs HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (p, p),
            b"GET /sandboxes/%s/proxy/%d/../../%d/ HTTP/1.1\r\nHost: x\r\n" % (
                sbx.encode(), HTTP_PORT, p),
            b"GET /sandboxes/%s/proxy/%d@127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\n" % (
                sbx.encode(), HTTP_PORT, p),
            b"GET /sandboxes/%s/proxy/%d%%2f..%%2f%d/ HTTP/1.1\r\nHost: x\r\n" % (
                sbx.encode(), HTTP_PORT, p),
            b"GET /sandboxes/%s/proxy/%d/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            b"X-Forwarded-Host: 127.0.0.1:%d\r\n" % (sbx.encode(), HTTP_PORT, p, p),
            b"GET /sandboxes/%s/proxy/0%d/ HTTP/1.1\r\nHost: x\r\n" % (sbx.encode(), p),
        ]:
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(raw + b"OPEN-SANDBOX-API-KEY: %s\r\nConnection: close\r\n\r\n"
                      % API_KEY.encode())
            got = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
            s.close()
            attempts.append((raw.split(b"\r\n")[0].decode(), got.split(b"\r\n")[0].decode()))
            assert b"host secret" not in got, got
        time.sleep(0.3)
        assert host.hits == [], (host.hits, attempts)
    finally:
        host.close()


def test_graceful_stop_ends_upgraded_connections(fresh_server):
    s = fresh_server()
    s.start()
    sid = s.create()
    start_apps(s, sid)
    ws, status, _ = ws_connect(s, f"/sandboxes/{sid}/proxy/{WS_PORT}/")
    assert status == 101
    t0 = time.monotonic()
    s.stop()
    assert s.proc.returncode == 0
    assert time.monotonic() - t0 < 5
    ws.settimeout(5)
    assert ws.recv(10) == b""  # closed by the stop
    ws.close()
    s.start()  # the sandbox and its program are still there
    assert s.request("GET", f"/sandboxes/{sid}/proxy/{HTTP_PORT}/").status == 200


def test_endpoint_for_a_user_port_is_usable(server, sbx):
    for proxy in ["false", "true"]:
        r = server.request("GET", f"/v1/sandboxes/{sbx}/endpoints/{HTTP_PORT}"
                                  f"?use_server_proxy={proxy}")
        assert r.status == 200, r
        ep = r.json()
        host, path = ep["endpoint"].split("/", 1)
        assert host == f"127.0.0.1:{server.port}"
        hdrs = dict(ep.get("headers", {}))
        hdrs.setdefault("OPEN-SANDBOX-API-KEY", API_KEY)
        c = conn(server)
        c.request("GET", f"/{path}/bytes?n=10", headers=hdrs)
        got = c.getresponse()
        assert got.status == 200 and got.read() == apps.pattern(10)


def test_kept_execd_connections_do_not_outlive_their_sandbox(server, sbx):
    """Connections to execd kept for reuse are closed once idle (5 s) or
    dead: a deleted sandbox leaves no descriptor in the server."""
    srv_pid = server.proc.pid
    assert server.request("GET", f"/sandboxes/{sbx}/proxy/44772/ping").status == 200
    base = settled_fds(srv_pid)
    other = server.create()
    for _ in range(3):
        assert server.request("GET", f"/sandboxes/{other}/proxy/44772/ping").status == 200
    assert server.request("DELETE", f"/v1/sandboxes/{other}").status == 204
    time.sleep(5.5)
    # The next proxied request sweeps what is idle too long or dead.
    assert server.request("GET", f"/sandboxes/{sbx}/proxy/44772/ping").status == 200
    wait_for(lambda: fds(srv_pid) <= base, what=f"server fds back to {base}")
