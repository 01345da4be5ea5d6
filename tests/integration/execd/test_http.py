"""HTTP plumbing of kennel-execd: ping, errors, limits, unix socket and TCP."""
import json
import os
import socket
import subprocess
import time

from conftest import Client, Daemon


def test_ping_empty_200_with_content_length(client):
    st, h, data = client.request("GET", "/ping")
    assert st == 200
    assert h["content-length"] == "0"
    assert data == b""


def test_unknown_route_is_json_404(client):
    st, body = client.json("GET", "/no/such/route")
    assert st == 404
    assert body["code"] == "NOT_FOUND" and body["message"]


def test_wrong_method_is_json_405(client):
    st, body = client.json("PUT", "/ping")
    assert st == 405
    assert body["code"]


def test_malformed_json_is_400(client):
    for raw in [b"{", b"[1,2", b"\xff\xfe", b'{"command": "a", "command": "b"}']:
        st, h, data = client.request("POST", "/command", raw,
                                     headers={"Content-Type": "application/json"})
        assert st == 400, raw
        body = json.loads(data)
        assert body["code"] == "INVALID_REQUEST_BODY"


def test_wrong_types_are_400(client):
    for body in [[], {"command": 1}, {"command": "true", "timeout": "x"},
                 {"command": "true", "envs": {"A": 1}}, {"command": "true", "gid": 5},
                 {"command": "true", "background": "yes"}, {"command": "true", "cwd": 3}]:
        st, b = client.json("POST", "/command", body)
        assert st == 400, body
        assert b["code"] == "INVALID_REQUEST_BODY" and b["message"]


def _raw(path, data, timeout=5):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.settimeout(timeout)
    try:
        s.sendall(data)
    except BrokenPipeError:
        pass
    resp = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            resp += chunk
            if b"\r\n\r\n" in resp and b"Content-Length: " in resp:
                head, _, rest = resp.partition(b"\r\n\r\n")
                n = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                if len(rest) >= n:
                    break
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    return resp


def test_huge_body_is_413_before_upload(client):
    resp = _raw(client.path, b"POST /command HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 99999999\r\n\r\n{")
    assert resp.startswith(b"HTTP/1.1 413"), resp[:100]
    assert b"REQUEST_TOO_LARGE" in resp
    assert client.request("GET", "/ping")[0] == 200


def test_huge_chunked_body_is_413(client):
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(140)) + b"0\r\n\r\n"
    resp = _raw(client.path, b"POST /command HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: application/json\r\n\r\n" + body)
    assert resp.startswith(b"HTTP/1.1 413"), resp[:100]
    assert client.request("GET", "/ping")[0] == 200


def test_huge_headers_get_4xx_and_daemon_survives(client):
    s = socket.socket(socket.AF_UNIX)
    s.connect(client.path)
    s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n")
    resp = b""
    s.settimeout(5)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            resp += chunk
    except (ConnectionResetError, socket.timeout, BrokenPipeError):
        pass
    s.close()
    status = int(resp.split(b" ")[1]) if resp else 0
    assert status in (400, 413, 431), resp[:200]
    assert client.request("GET", "/ping")[0] == 200


def test_access_token(execd_bin, tmpdir_path):
    d = Daemon(execd_bin, tmpdir_path, args=["--access-token", "s3cret"])
    try:
        st, h, data = d.client.request("GET", "/ping")
        assert st == 401 and json.loads(data)["message"]
        st, h, data = d.client.request("GET", "/ping", headers={"X-EXECD-ACCESS-TOKEN": "s3cret"})
        assert st == 200
    finally:
        d.stop()


def test_tcp_listener(execd_bin, tmpdir_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    d = Daemon(execd_bin, tmpdir_path, args=["--listen-tcp", f"127.0.0.1:{port}"])
    try:
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/ping")
        assert c.getresponse().status == 200
    finally:
        d.stop()


def test_request_id_is_echoed(client):
    st, h, _ = client.request("GET", "/nope", headers={"X-Request-ID": "abc-123"})
    assert h.get("x-request-id") == "abc-123"


def test_sigterm_shuts_down_cleanly_and_kills_children(execd_bin, tmpdir_path):
    d = Daemon(execd_bin, tmpdir_path)
    st, h, data = d.client.request("POST", "/command", {"command": "sleep 300", "background": True})
    assert st == 200
    from conftest import children_of
    kids = children_of(d.proc.pid)
    assert kids
    t0 = time.time()
    d.stop()
    assert d.proc.returncode == 0
    assert time.time() - t0 < 8
    for k in kids:
        assert not os.path.exists(f"/proc/{k}") or open(f"/proc/{k}/stat").read().split()[2] == "Z"
    assert not os.path.exists(d.sock)
