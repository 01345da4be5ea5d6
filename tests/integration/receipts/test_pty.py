"""PTY sessions through the server (docs/receipts.md "PTY sessions"): POST
/pty is a system.pty.open pending/outcome pair; its WebSocket's data frames
are hashed both ways; the shell's exit, a DELETE, or the sandbox's end
writes the one system.pty.close receipt, paired with the open by its
correlation id."""
import hashlib
import json
import socket
import time

import pytest

from ..server.conftest import API_KEY
from .test_receipts import canon, chain, cli, sha, srv, summary  # noqa: F401

websocket = pytest.importorskip("websocket", reason="python3-websocket (scripts/setup) is needed")


class Transcript:
    """A WebSocket to a PTY through the server's proxy, keeping what passed
    each way (data frames' payloads), as the close receipt's io_hash does."""

    def __init__(self, server, sid, pty, query=""):
        url = f"ws://127.0.0.1:{server.port}/sandboxes/{sid}/proxy/44772/pty/{pty}/ws{query}"
        self.ws = websocket.create_connection(url, header=[f"OPEN-SANDBOX-API-KEY: {API_KEY}"],
                                              timeout=20)
        self.sent = b""
        self.got = b""
        self.frames = []

    def send(self, data: bytes):
        self.ws.send_binary(b"\x00" + data)
        self.sent += b"\x00" + data

    def send_text(self, text: str):
        self.ws.send(text)
        self.sent += text.encode()

    def recv(self):
        op, data = self.ws.recv_data()
        if op in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            self.got += data
            self.frames.append((op, data))
        return op, data

    def until(self, pred, limit=20):
        deadline = time.monotonic() + limit
        out = b""
        while time.monotonic() < deadline:
            op, data = self.recv()
            if op == websocket.ABNF.OPCODE_CLOSE:
                return out, data
            if op == websocket.ABNF.OPCODE_BINARY:
                out += data[1:]
            if pred(op, data, out):
                return out, None
        raise AssertionError(f"timed out; got {out[-300:]!r}")


def io_hash(sent, got, complete=True):
    """The close receipt's response_hash: {"io_hash"} over both directions."""
    io = sha({"input": "sha256:" + hashlib.sha256(sent).hexdigest(),
              "output": "sha256:" + hashlib.sha256(got).hexdigest()})
    return sha({"io_hash": io} if complete else {"io_hash": io, "io_complete": False})


def pty_receipts(items):
    return [i for i in items if i["credentialSubject"]["action"]["type"].startswith("system.pty.")]


def is_exit(op, data, _out):
    return op == websocket.ABNF.OPCODE_TEXT and json.loads(data).get("type") == "exit"


def test_a_pty_session_has_an_open_and_a_close_receipt(srv):
    s = srv()
    sid = s.create()
    r = s.execd(sid, "POST", "/pty", {"cwd": "/tmp"})
    assert r.status == 201, r
    pty = r.json()["session_id"]
    st = s.execd(sid, "GET", f"/pty/{pty}")
    assert st.status == 200 and st.json()["running"] is False
    t = Transcript(s, sid, pty)
    op, data = t.recv()
    assert json.loads(data) == {"type": "connected", "session_id": pty, "mode": "pty"}
    t.send(b"tty; echo val-$((6*7))\n")
    out, _ = t.until(lambda op, d, o: b"val-42" in o)
    assert b"/dev/pts/" in out
    t.send(b"exit 5\n")
    _, _ = t.until(is_exit)
    assert json.loads(t.frames[-1][1]) == {"type": "exit", "exit_code": 5}
    # The close is written when the exit frame passes, before it reaches us.
    items = chain(s, sid)
    prs = pty_receipts(items)
    assert summary(prs) == [("system.pty.open", "pending"), ("system.pty.open", "success"),
                            ("system.pty.close", "success")], summary(prs)
    corr = {p["credentialSubject"]["correlation_id"] for p in prs}
    assert len(corr) == 1
    op_, close = prs[1]["credentialSubject"], prs[2]["credentialSubject"]
    assert op_["action"]["risk_level"] == "critical" and close["action"]["risk_level"] == "high"
    assert op_["action"]["parameters_hash"] == sha({"command": None})
    assert op_["outcome"]["response_hash"] == sha({"pty_id": pty})
    assert close["action"]["parameters_hash"] == sha({"exit_code": 5})
    assert close["outcome"]["response_hash"] == io_hash(t.sent, t.got)
    assert close["action"]["target"]["resource"] == f"/pty/{pty}"
    # Status reads and the WebSocket itself are not actions.
    assert not [i for i in items if i["credentialSubject"]["action"]["type"] == "unknown"]
    t.ws.close()
    assert s.request("DELETE", f"/v1/sandboxes/{sid}").status == 204
    assert "OK" in cli(s.kennel, "verify", s.db, check=0).stdout


def test_delete_closes_the_pty_and_the_sandbox_end_closes_the_rest(srv):
    s = srv()
    sid = s.create()
    a = s.execd(sid, "POST", "/pty", {"command": "sleep 600"}).json()["session_id"]
    b = s.execd(sid, "POST", "/pty", {}).json()["session_id"]
    t = Transcript(s, sid, a)
    t.recv()
    assert s.execd(sid, "DELETE", f"/pty/{a}").status == 200
    _, close = t.until(lambda *x: False)  # the socket closes
    assert s.execd(sid, "GET", f"/pty/{a}").status == 404
    # A DELETE of a PTY the server never opened is no action of it.
    assert s.execd(sid, "DELETE", "/pty/nosuchpty").status == 404
    prs = pty_receipts(chain(s, sid))
    mine = [p for p in prs if p["credentialSubject"]["correlation_id"] ==
            prs[0]["credentialSubject"]["correlation_id"]]
    assert summary(mine) == [("system.pty.open", "pending"), ("system.pty.open", "success"),
                             ("system.pty.close", "pending"), ("system.pty.close", "success")]
    cl = mine[-1]["credentialSubject"]
    # execd sends the exit frame (SIGHUP: 128 + 1) before it answers the DELETE.
    assert cl["action"]["parameters_hash"] == sha({"exit_code": 129, "signal": "SIGHUP"})
    assert cl["outcome"]["response_hash"] == io_hash(t.sent, t.got)
    assert mine[0]["credentialSubject"]["action"]["parameters_hash"] == sha({"command": "sleep 600"})
    # b was never attached and never closed: the sandbox's end closes it.
    assert s.request("DELETE", f"/v1/sandboxes/{sid}").status == 204
    items = chain(s, sid)
    closes = [p for p in pty_receipts(items) if p["credentialSubject"]["action"]["type"] ==
              "system.pty.close" and p["credentialSubject"]["outcome"]["status"] == "failure"]
    assert len(closes) == 1
    c = closes[0]["credentialSubject"]
    assert c["outcome"]["error"] == "the sandbox ended before the PTY closed"
    assert c["outcome"]["response_hash"] == io_hash(b"", b"")  # no socket ever attached
    opens = [p for p in pty_receipts(items) if p["credentialSubject"]["action"]["type"] ==
             "system.pty.open" and p["credentialSubject"]["outcome"]["status"] == "success"]
    assert {o["credentialSubject"]["correlation_id"] for o in opens} == \
        {p["credentialSubject"]["correlation_id"] for p in pty_receipts(items)
         if p["credentialSubject"]["action"]["type"] == "system.pty.close"}
    assert items[-1]["credentialSubject"]["chain"]["terminal"] is True
    assert "OK" in cli(s.kennel, "verify", s.db, check=0).stdout


def test_a_pty_outlives_a_server_restart_and_its_close_says_what_it_missed(srv):
    s = srv()
    sid = s.create()
    pty = s.execd(sid, "POST", "/pty", {}).json()["session_id"]
    t = Transcript(s, sid, pty)
    t.recv()
    t.send(b"Z=$((40+2))\n")
    t.ws.close()
    s.kill9()
    s.start()
    t = Transcript(s, sid, pty, "?since=999999")  # nothing replayed
    t.recv()
    t.send(b"echo z=$Z; exit 9\n")
    out, _ = t.until(is_exit)
    assert b"z=42" in out
    prs = pty_receipts(chain(s, sid))
    assert summary(prs)[-1] == ("system.pty.close", "success")
    c = prs[-1]["credentialSubject"]
    assert c["correlation_id"] == prs[0]["credentialSubject"]["correlation_id"]
    assert c["action"]["parameters_hash"] == sha({"exit_code": 9})
    # This server saw only the second socket's traffic, and says so.
    assert c["outcome"]["response_hash"] == io_hash(t.sent, t.got, complete=False)
    assert "OK" in cli(s.kennel, "verify", s.db, check=0).stdout
