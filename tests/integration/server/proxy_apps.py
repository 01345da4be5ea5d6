"""Programs that the proxy tests (and bench/proxy_bench.py) run INSIDE a
sandbox, with the standard library only (there is no websockets package):

    python3 proxy_apps.py http PORT LOG   HTTP/1.1 server: /bytes, /chunked, /echo, /sha,
                                          /sse, /forever, /headers, /redirect
    python3 proxy_apps.py ws PORT LOG     WebSocket echo server (RFC 6455)

LOG gets one line per event the tests look at ("open", "gone", "closed").
This file is also imported on the host for its WebSocket client helpers.
"""
import base64
import hashlib
import json
import os
import socket
import socketserver
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LOG_LOCK = threading.Lock()


def log(path, line):
    with LOG_LOCK, open(path, "a") as f:
        f.write(line + "\n")


def pattern(n):
    """n deterministic bytes (so both ends can check them)."""
    block = bytes(range(256)) * 4096  # 1 MiB
    out = bytearray()
    while len(out) < n:
        out += block[: n - len(out)]
    return bytes(out)


def read_body(h):
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out), True
            out += h.rfile.read(size)
            h.rfile.readline()
    return h.rfile.read(int(h.headers.get("Content-Length") or 0)), False


class Http(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    log_path = "/dev/null"

    def log_message(self, *a):
        pass

    def send(self, status, body, ctype="application/octet-stream", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        if u.path == "/bytes":
            self.send(200, pattern(int(q.get("n", "0"))))
        elif u.path == "/chunked":
            n, parts = int(q.get("n", "0")), int(q.get("parts", "4"))
            data = pattern(n)
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            step = max(1, -(-n // parts))
            for i in range(0, n, step):
                piece = data[i:i + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif u.path == "/sse":
            n, gap = int(q.get("n", "5")), float(q.get("gap", "0.2"))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for i in range(n):
                self.wfile.write(b"data: %d %.6f\n\n" % (i, time.time()))
                self.wfile.flush()
                time.sleep(gap)
        elif u.path == "/forever":
            # Writes until the reader goes away, then says so in the log.
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            log(self.log_path, "open forever")
            try:
                while True:
                    self.wfile.write(b"data: tick\n\n")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                log(self.log_path, "gone forever")
        elif u.path == "/headers":
            body = json.dumps([[k, v] for k, v in self.headers.items()]).encode()
            self.send(200, body, "application/json")
        elif u.path == "/redirect":
            self.send(302, b"", extra=[("Location", q.get("to", "/"))])
        else:
            self.send(200, b"hello from inside\n", "text/plain")

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "1234")
        self.end_headers()

    def do_POST(self):
        body, chunked = read_body(self)
        u = urlparse(self.path)
        if u.path == "/sha":
            self.send(200, json.dumps({"len": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                                       "chunked": chunked}).encode(), "application/json")
        else:  # /echo
            self.send(200, body, extra=[("X-Was-Chunked", str(chunked).lower())])

    do_PUT = do_POST

    def do_DELETE(self):
        self.send(200, b"deleted " + self.path.encode(), "text/plain")


# ---- WebSocket (both ends) ---------------------------------------------------

def recv_exact(s, n):
    out = bytearray()
    while len(out) < n:
        b = s.recv(n - len(out))
        if not b:
            raise EOFError
        out += b
    return bytes(out)


def ws_send(s, opcode, payload, mask):
    head = bytearray([0x80 | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head.append(bit | n)
    elif n < 65536:
        head.append(bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(bit | 127)
        head += struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        head += key
        payload = _mask_fast(payload, key)
    s.sendall(bytes(head) + payload)


def _mask_fast(payload, key):
    n = len(payload)
    whole = n - n % 8
    out = bytearray(n)
    if whole:
        x = int.from_bytes(payload[:whole], "big")
        kk = int.from_bytes(key * (whole // 4), "big")
        out[:whole] = (x ^ kk).to_bytes(whole, "big")
    for i in range(whole, n):
        out[i] = payload[i] ^ key[i % 4]
    return bytes(out)


def ws_recv(s):
    """One whole message: (opcode, payload). Control frames are returned too."""
    b0, b1 = recv_exact(s, 2)
    opcode, n = b0 & 0x0F, b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(s, 8))[0]
    key = recv_exact(s, 4) if b1 & 0x80 else None
    payload = recv_exact(s, n)
    if key:
        payload = _mask_fast(payload, key)
    if not b0 & 0x80:  # fragmented: gather continuation frames
        while True:
            _, (fin, more) = ws_recv_frame_raw(s)
            payload += more
            if fin:
                break
    return opcode, payload


def ws_recv_frame_raw(s):
    b0, b1 = recv_exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(s, 8))[0]
    key = recv_exact(s, 4) if b1 & 0x80 else None
    payload = recv_exact(s, n)
    if key:
        payload = _mask_fast(payload, key)
    return b0 & 0x0F, (bool(b0 & 0x80), payload)


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


class Ws(socketserver.BaseRequestHandler):
    log_path = "/dev/null"

    def handle(self):
        s = self.request
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = b""
        while b"\r\n\r\n" not in head:
            b = s.recv(4096)
            if not b:
                return
            head += b
        lines = head.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
        hdr = {k.strip().lower(): v.strip() for k, v in
               (line.split(":", 1) for line in lines[1:] if ":" in line)}
        if hdr.get("upgrade", "").lower() != "websocket":
            s.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n"
                      b"Connection: close\r\n\r\nnot a ws\r\n")
            return
        proto = hdr.get("sec-websocket-protocol", "").split(",")[0].strip()
        s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n"
                   % (ws_accept(hdr["sec-websocket-key"]),
                      "Sec-WebSocket-Protocol: %s\r\n" % proto if proto else "")).encode())
        log(self.log_path, "open ws")
        why = "closed"
        try:
            while True:
                op, payload = ws_recv(s)
                if op == 8:  # close: answer and end
                    ws_send(s, 8, payload[:2] or struct.pack("!H", 1000), False)
                    why = "closed by client"
                    break
                if op == 9:
                    ws_send(s, 10, payload, False)
                elif op in (1, 2):
                    if op == 1 and payload == b"close please":
                        ws_send(s, 8, struct.pack("!H", 1000) + b"bye", False)
                        why = "closed by server"
                        break
                    ws_send(s, op, payload, False)
        except (EOFError, OSError):
            why = "gone"
        finally:
            log(self.log_path, why + " ws")
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class ThreadingTCP(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class ThreadingHTTP(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops connections under load


def main():
    kind, port, logp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if kind == "http":
        Http.log_path = logp
        srv = ThreadingHTTP(("127.0.0.1", port), Http)
    else:
        Ws.log_path = logp
        srv = ThreadingTCP(("127.0.0.1", port), Ws)
    log(logp, "listening")
    srv.serve_forever()


if __name__ == "__main__":
    main()
