"""Garbage on the socket: every request gets a clear error or is dropped, and the
daemon stays up and leaks nothing."""
import json
import os
import random
import socket

from conftest import children_of, fd_count

ROUTES = ["/ping", "/command", "/command/status/x", "/command/x/logs", "/files/info",
          "/files/upload", "/files/download", "/files/mv", "/files/replace",
          "/files/permissions", "/directories", "/directories/list", "/code", "/code/context",
          "/code/contexts", "/session/x/run", "/metrics"]
# (POST /session is left out: an empty body legitimately creates a session.)


def raw(path, data):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(path)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        out = b""
    finally:
        s.close()
    return out


def test_random_requests_and_bodies(rooted):
    # Garbage includes DELETE /directories?path=/tmp: it must only ever reach a
    # daemon confined to a throwaway root (--root), never the host's files.
    daemon, client = rooted, rooted.client
    rnd = random.Random(1234)
    base = fd_count(daemon.proc.pid)
    for i in range(300):
        route = rnd.choice(ROUTES)
        method = rnd.choice(["GET", "POST", "DELETE", "PUT"])
        kind = rnd.randrange(5)
        if kind == 0:
            body = bytes(rnd.randrange(256) for _ in range(rnd.randrange(200)))
        elif kind == 1:
            body = json.dumps(rnd.choice([[], {}, 1, "x", None, {"command": [1]},
                                          {"code": {"a": 1}}, {"path": 5}])).encode()
        elif kind == 2:
            body = b'{"command": "echo \xff\xfe", "envs": {"A\x00": "b"}}'
        elif kind == 3:
            body = b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nxx\r\n--b--\r\n"
        else:
            body = b""
        ctype = rnd.choice(["application/json", "multipart/form-data; boundary=b",
                            "text/plain", "multipart/form-data"])
        q = rnd.choice(["", "?path=%ff", "?path=/../../etc", "?id=", "?cursor=-1",
                        "?path=/tmp&depth=zz", "?language=cobol"])
        req = (f"{method} {route}{q} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
        resp = raw(client.path, req)
        if resp:
            status = int(resp.split(b" ", 2)[1])
            assert status < 500 or b'"code"' in resp, resp[:300]
            if status >= 400:
                payload = resp.split(b"\r\n\r\n", 1)[1]
                assert payload, resp[:300]
    for junk in [b"\x00\x01\x02\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET\r\n\r\n",
                 b"POST /command HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                 b"GET /ping HTTP/1.1\r\n" + b"X: y\r\n" * 5000 + b"\r\n"]:
        raw(client.path, junk)
    assert client.request("GET", "/ping")[0] == 200
    assert fd_count(daemon.proc.pid) <= base + 2
    assert children_of(daemon.proc.pid) == []
