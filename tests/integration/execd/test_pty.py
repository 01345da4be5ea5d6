"""execd's /pty (API-NOTES b.6): shells in a terminal or with pipes, driven
over a WebSocket on the daemon's unix socket; replay, takeover, signals,
resize, delete, and bad input of every kind."""
import json
import os
import socket
import struct
import time

import pytest

from conftest import Daemon, children_of

websocket = pytest.importorskip("websocket", reason="python3-websocket (scripts/setup) is needed")
ABNF = websocket.ABNF


def open_ws(daemon, pty, query=""):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(daemon.sock)
    return websocket.create_connection(f"ws://localhost/pty/{pty}/ws{query}", socket=s,
                                       timeout=20)


def new_pty(client, **body):
    st, r = client.json("POST", "/pty", body)
    assert st == 201, (st, r)
    return r["session_id"]


def read_until(ws, pred, limit=20):
    """Reads frames until pred(op, data, stdout so far); returns (stdout, stderr, frames)."""
    out, err, frames = b"", b"", []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        f = ws.recv_frame()  # raw frames: a close is not answered for us
        op, data = f.opcode, f.data
        frames.append((op, data))
        if op == ABNF.OPCODE_BINARY:
            if data[0] == 1:
                out += data[1:]
            elif data[0] == 2:
                err += data[1:]
        if op == ABNF.OPCODE_CLOSE or pred(op, data, out):
            return out, err, frames
    raise AssertionError(f"timed out: {out[-300:]!r} {err[-300:]!r}")


def text(op, data):
    return json.loads(data) if op == ABNF.OPCODE_TEXT else None


def exited(op, data, _out):
    t = text(op, data)
    return bool(t) and t.get("type") == "exit"


def test_a_terminal_shell_keeps_state_and_reports_its_exit(client, daemon, tmp_path):
    pty = new_pty(client, cwd=str(tmp_path))
    st, s = client.json("GET", f"/pty/{pty}")
    assert st == 200 and s == {"session_id": pty, "running": False, "output_offset": 0}
    ws = open_ws(daemon, pty)
    op, data = ws.recv_data()
    assert text(op, data) == {"type": "connected", "session_id": pty, "mode": "pty"}
    ws.send_binary(b"\x00X=kept; tty; pwd; echo do$((1))ne\n")
    out, _, _ = read_until(ws, lambda o, d, out: b"do1ne" in out)
    assert b"/dev/pts/" in out and f"\n{tmp_path}\r\n".encode() in out
    ws.send(json.dumps({"type": "resize", "cols": 123, "rows": 45}))
    ws.send(json.dumps({"type": "stdin", "data": "stty size; echo $X\n"}))
    out, _, _ = read_until(ws, lambda o, d, out: b"kept\r\n" in out)
    assert b"45 123" in out
    ws.send(json.dumps({"type": "ping"}))
    _, _, frames = read_until(ws, lambda o, d, out: text(o, d) == {"type": "pong"})
    ws.send_binary(b"\x00exit 7\n")
    _, _, frames = read_until(ws, exited)
    assert text(*frames[-1]) == {"type": "exit", "exit_code": 7}
    f = ws.recv_frame()
    assert f.opcode == ABNF.OPCODE_CLOSE and struct.unpack("!H", f.data[:2])[0] == 1000
    st, s = client.json("GET", f"/pty/{pty}")
    assert s["running"] is False and s["exit_code"] == 7 and s["output_offset"] > 0


def test_pipe_mode_splits_stdout_and_stderr(client, daemon):
    pty = new_pty(client)
    ws = open_ws(daemon, pty, "?pty=0")
    assert text(*ws.recv_data()) == {"type": "connected", "session_id": pty, "mode": "pipe"}
    ws.send_binary(b"\x00echo to-out; echo to-err >&2; test -t 0 || echo notty\n")
    out, err, _ = read_until(ws, lambda o, d, out: b"notty" in out)
    assert out == b"to-out\nnotty\n"
    for _ in range(50):
        if err:
            break
        _, e2, _ = read_until(ws, lambda o, d, out: True, limit=5)
        err += e2
    assert err == b"to-err\n"


def test_a_command_runs_instead_of_a_shell(client, daemon):
    pty = new_pty(client, command="echo from-command; exit 3")
    ws = open_ws(daemon, pty)
    out, _, frames = read_until(ws, exited)
    assert b"from-command" in b"".join(d[1:] for o, d in frames if o == ABNF.OPCODE_BINARY)
    assert text(*frames[-1])["exit_code"] == 3


def test_reconnect_replays_from_an_offset(client, daemon):
    pty = new_pty(client)
    ws = open_ws(daemon, pty, "?pty=0")
    ws.recv_data()
    ws.send_binary(b"\x00echo first\n")
    read_until(ws, lambda o, d, out: b"first" in out)
    ws.close()
    st, s = client.json("GET", f"/pty/{pty}")
    assert s["running"] is True and s["output_offset"] == 6
    # While nobody is attached the shell runs on and its output is kept.
    ws = open_ws(daemon, pty, "?pty=0&since=6")
    op, data = ws.recv_data()
    assert text(op, data)["type"] == "connected"  # nothing new: no replay frame
    ws.send_binary(b"\x00echo second; sleep 0.2\n")
    read_until(ws, lambda o, d, out: b"second" in out)
    ws.close()
    ws = open_ws(daemon, pty, "?since=2")
    op, data = ws.recv_data()
    assert op == ABNF.OPCODE_BINARY and data[0] == 3
    assert struct.unpack("!Q", data[1:9])[0] == 2 and data[9:] == b"rst\nsecond\n"
    assert text(*ws.recv_data())["type"] == "connected"
    ws.close()
    ws = open_ws(daemon, pty)  # no since: all that is kept
    op, data = ws.recv_data()
    assert data[0] == 3 and struct.unpack("!Q", data[1:9])[0] == 0 and \
        data[9:] == b"first\nsecond\n"
    ws.close()


def test_one_client_at_a_time_unless_it_takes_over(client, daemon):
    pty = new_pty(client)
    a = open_ws(daemon, pty)
    a.recv_data()
    a.send_binary(b"\x00Y=still-$((1+1))\n")
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        open_ws(daemon, pty)
    assert e.value.status_code == 409
    # The refusal is JSON, as every execd error (seen without a handshake too).
    st, _, data = client.request("GET", f"/pty/{pty}/ws", headers={
        "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"})
    assert st == 409 and json.loads(data)["code"] == "ALREADY_CONNECTED"
    b = open_ws(daemon, pty, "?takeover=1")
    f = a.recv_frame()
    while f.opcode != ABNF.OPCODE_CLOSE:
        f = a.recv_frame()
    assert struct.unpack("!H", f.data[:2])[0] == 4001 and f.data[2:] == b"TAKEN_OVER"
    b.send_binary(b"\x00echo $Y\n")
    read_until(b, lambda o, d, out: b"still-2\r\n" in out)


def test_signals_reach_the_foreground_job(client, daemon):
    pty = new_pty(client)
    ws = open_ws(daemon, pty)
    ws.recv_data()
    ws.send_binary(b"\x00sleep 100\n")
    time.sleep(0.5)
    ws.send(json.dumps({"type": "signal", "signal": "SIGINT"}))
    ws.send_binary(b"\x00echo rc=$?\n")
    read_until(ws, lambda o, d, out: b"rc=130" in out, limit=10)


def test_delete_kills_the_whole_group(client, daemon):
    pty = new_pty(client)
    ws = open_ws(daemon, pty)
    ws.recv_data()
    n = 100000 + os.getpid() % 50000
    ws.send_binary(f"\x00(sleep {n} &) ; sleep {n + 1} & echo st$((1+1))arted\n".encode())
    read_until(ws, lambda o, d, out: b"st2arted\r\n" in out)
    time.sleep(0.2)

    def sleepers():
        found = []
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    cmd = open(f"/proc/{p}/cmdline", "rb").read()
                except OSError:
                    continue
                if cmd in (f"sleep\x00{n}\x00".encode(), f"sleep\x00{n + 1}\x00".encode()):
                    found.append(int(p))
        return found

    assert len(sleepers()) == 2
    st, _, _ = client.request("DELETE", f"/pty/{pty}")
    assert st == 200
    _, _, frames = read_until(ws, lambda o, d, out: False)
    assert frames[-1][0] == ABNF.OPCODE_CLOSE
    # Everything of the terminal's session is gone: the shell's own job and
    # the one a subshell put in the background (no longer the shell's job).
    deadline = time.monotonic() + 5
    while sleepers() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = sleepers()
    for p in left:
        os.kill(p, 9)
    assert not left
    assert client.request("GET", f"/pty/{pty}")[0] == 404
    assert client.request("DELETE", f"/pty/{pty}")[0] == 404


def test_bad_input_gets_clear_errors(client, daemon, tmp_path):
    for body in ("{", "[]", '{"cwd": 5}', '{"command": ["ls"]}'):
        st, _, data = client.request("POST", "/pty", body, {"Content-Type": "application/json"})
        assert st == 400 and b"INVALID_REQUEST_BODY" in data, (body, st, data)
    st, _, data = client.request("POST", "/pty", json.dumps({"cwd": str(tmp_path / "nope")}))
    assert st == 400 and b"no such directory" in data
    assert client.request("GET", "/pty/unknown")[0] == 404
    assert client.request("GET", "/pty/unknown/ws")[0] == 404
    pty = new_pty(client)
    st, _, data = client.request("GET", f"/pty/{pty}/ws")  # not a handshake
    assert st == 400
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        open_ws(daemon, pty, "?since=-4")
    assert e.value.status_code == 400
    ws = open_ws(daemon, pty)
    ws.recv_data()
    ws.send("not json")
    ws.send_binary(b"\x07junk")
    ws.send(json.dumps({"type": "resize", "cols": 0, "rows": 5}))
    ws.send(json.dumps({"type": "signal", "signal": "SIGNOPE"}))
    ws.send(json.dumps({"type": "what"}))
    errors = []
    while len(errors) < 5:
        op, data = ws.recv_data()
        if op == ABNF.OPCODE_TEXT:
            errors.append(json.loads(data))
    assert [e["code"] for e in errors] == ["INVALID_FRAME"] * 5
    # Still alive after all that.
    ws.send_binary(b"\x00echo al$((1))ive\n")
    read_until(ws, lambda o, d, out: b"al1ive\r\n" in out)
    # A message over 1 MiB closes with 1009; an unmasked frame with 1002.
    try:
        ws.send_binary(b"\x00" + b"x" * (1024 * 1024 + 10))
    except (BrokenPipeError, ConnectionResetError):
        pass  # execd refused it at its header and closed
    _, _, frames = read_until(ws, lambda o, d, out: False)
    assert frames[-1][0] == ABNF.OPCODE_CLOSE and struct.unpack("!H", frames[-1][1][:2])[0] == 1009
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(daemon.sock)
    raw.sendall((f"GET /pty/{pty}/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += raw.recv(4096)
    # RFC 6455's own example key and accept value.
    assert b"101" in head.split(b"\r\n")[0]
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    raw.sendall(b"\x82\x02\x00a")  # unmasked: a protocol error
    got = b""
    raw.settimeout(10)
    while True:
        chunk = raw.recv(4096)
        if not chunk:
            break
        got += chunk
    assert b"\x88" in got and b"\x03\xea" in got  # close 1002


def test_sessions_are_bounded(client, daemon):
    ids = [new_pty(client, command="exit 2") for _ in range(32)]
    st, _, data = client.request("POST", "/pty", "{}")
    assert st == 503 and b"TOO_MANY_SESSIONS" in data
    # When full, a session whose shell has ended makes room: the oldest.
    for i in ids[:2]:
        ws = open_ws(daemon, i)
        read_until(ws, exited)
        ws.close()
        time.sleep(0.05)
    newer = new_pty(client)
    assert client.request("GET", f"/pty/{ids[0]}")[0] == 404
    assert client.json("GET", f"/pty/{ids[1]}")[1]["exit_code"] == 2
    for i in ids[1:] + [newer]:
        assert client.request("DELETE", f"/pty/{i}")[0] == 200
    new_pty(client)


def test_shutdown_ends_shells_and_sockets(execd_bin, tmpdir_path):

    d = Daemon(execd_bin, tmpdir_path)
    pty = new_pty(d.client)
    ws = open_ws(d, pty)
    ws.recv_data()
    ws.send_binary(b"\x00echo u$((1))p\n")
    read_until(ws, lambda o, d_, out: b"u1p\r\n" in out)
    shells = children_of(d.proc.pid)
    assert shells
    d.stop()
    assert d.proc.returncode == 0
    for p in shells:
        assert not os.path.exists(f"/proc/{p}") or \
            open(f"/proc/{p}/stat").read().split()[2] == "Z"
