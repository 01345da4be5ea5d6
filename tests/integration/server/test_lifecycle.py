"""The lifecycle API of specs/sandbox-lifecycle.yml against a real server:
shapes, states, filters, the proxy to execd, auth, and bad input."""
import http.client
import json
import os
import time
from datetime import datetime, timedelta, timezone

import pytest

from .conftest import API_KEY


def rfc3339(dt):
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_time(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def assert_error(r, status, code=None):
    assert r.status == status, r
    body = r.json()
    assert isinstance(body.get("code"), str) and body["code"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    if code:
        assert body["code"] == code, body
    assert r.header("X-Request-ID")


def test_health_needs_no_key(server):
    r = server.request("GET", "/health", key=False)
    assert r.status == 200 and r.json() == {"status": "healthy"}


@pytest.mark.parametrize("key,code", [(None, "MISSING_API_KEY"), ("wrong", "INVALID_API_KEY")])
def test_auth_401_shape(server, key, code):
    h = {"X-Request-ID": "req-401"}
    if key:
        h["OPEN-SANDBOX-API-KEY"] = key
    for path in ["/v1/sandboxes", "/sandboxes/x/proxy/44772/ping"]:
        r = server.request("GET", path, key=False, headers=h)
        assert_error(r, 401, code)
        assert r.header("X-Request-ID") == "req-401"


def test_create_get_shapes(server):
    before = datetime.now(timezone.utc)
    body = {"image": {"uri": "host"}, "entrypoint": ["tail", "-f", "/dev/null"],
            "resourceLimits": {"cpu": "500m", "memory": "256Mi"}, "env": {"A": "1"},
            "metadata": {"tag": "shape"}, "timeout": 300, "extensions": {}, "secureAccess": False}
    r = server.request("POST", "/v1/sandboxes", body, headers={"X-Request-ID": "req-create"})
    assert r.status == 202, r
    assert r.header("X-Request-ID") == "req-create"
    c = r.json()
    server.note_cgroups(c["id"])
    assert r.header("Location").endswith(f"/sandboxes/{c['id']}")
    assert c["status"]["state"] == "Running"
    assert c["metadata"] == {"tag": "shape"}
    assert c["entrypoint"] == ["tail", "-f", "/dev/null"]
    assert "image" not in c
    created = parse_time(c["createdAt"])
    assert before - timedelta(seconds=1) <= created <= datetime.now(timezone.utc)
    assert parse_time(c["expiresAt"]) - created == timedelta(seconds=300)
    g = server.request("GET", f"/v1/sandboxes/{c['id']}")
    assert g.status == 200
    s = g.json()
    assert s["image"] == {"uri": "host"}
    assert s["id"] == c["id"] and s["createdAt"] == c["createdAt"]
    # The same routes answer without the /v1 prefix, as the reference does.
    assert server.request("GET", f"/sandboxes/{c['id']}").json()["id"] == c["id"]
    # env reaches the sandbox; the entrypoint runs through execd (started
    # right after the create's answer).
    deadline = time.monotonic() + 3
    while True:
        out, _ = server.run(c["id"], "echo $A; ps -eo args | grep -c '^tail -f /dev/null' || true")
        if out == ["1", "1"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert out == ["1", "1"]
    assert server.request("DELETE", f"/v1/sandboxes/{c['id']}").status == 204


def test_manual_cleanup_has_no_expiry(server):
    sid = server.create(timeout=None)
    s = server.request("GET", f"/v1/sandboxes/{sid}").json()
    assert "expiresAt" not in s
    r = server.request("POST", f"/v1/sandboxes/{sid}/renew-expiration",
                       {"expiresAt": rfc3339(datetime.now(timezone.utc) + timedelta(hours=1))})
    assert_error(r, 409)
    server.request("DELETE", f"/v1/sandboxes/{sid}")


def test_proxy_streams_sse_unbuffered(server):
    sid = server.create()
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    c.request("POST", f"/sandboxes/{sid}/proxy/44772/command",
              body=json.dumps({"command": "echo first; sleep 2; echo second"}),
              headers={"OPEN-SANDBOX-API-KEY": API_KEY, "Content-Type": "application/json"})
    t0 = time.monotonic()
    r = c.getresponse()
    assert r.status == 200
    assert r.getheader("Content-Type").startswith("text/event-stream")
    seen = {}
    buf = b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        buf += chunk
        for text in (b"first", b"second"):
            if text in buf and text not in seen:
                seen[text] = time.monotonic() - t0
    c.close()
    assert seen[b"first"] < 1.5, seen  # arrived well before the command ended
    assert seen[b"second"] >= 1.9, seen
    # Empty execd answers keep Content-Length: 0 (the SDK needs it).
    p = server.execd(sid, "GET", "/ping")
    assert p.status == 200 and p.header("Content-Length") == "0"
    server.request("DELETE", f"/v1/sandboxes/{sid}")


def test_proxy_relays_bodies_both_ways(server):
    sid = server.create()
    boundary = "kennelboundary"
    data = os.urandom(300000)
    parts = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"; "
             f"filename=\"metadata\"\r\nContent-Type: application/json\r\n\r\n"
             f"{{\"path\":\"/tmp/blob\",\"mode\":644}}\r\n--{boundary}\r\n"
             f"Content-Disposition: form-data; name=\"file\"; filename=\"blob\"\r\n"
             f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    r = server.request("POST", f"/sandboxes/{sid}/proxy/44772/files/upload", raw=parts,
                       headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status == 200, r
    d = server.execd(sid, "GET", "/files/download?path=%2Ftmp%2Fblob")
    assert d.status == 200 and d.body == data
    server.request("DELETE", f"/v1/sandboxes/{sid}")


def test_list_filters_and_pagination(server):
    ids = [server.create(metadata={"suite": "list", "n": str(i), "team": "a-b"}) for i in range(3)]
    r = server.request("GET", "/v1/sandboxes?metadata=suite%3Dlist&pageSize=2")
    assert r.status == 200
    page1 = r.json()
    assert page1["pagination"] == {"page": 1, "pageSize": 2, "totalItems": 3, "totalPages": 2,
                                   "hasNextPage": True}
    # Newest first.
    assert [s["id"] for s in page1["items"]] == ids[::-1][:2]
    page2 = server.request("GET", "/v1/sandboxes?metadata=suite%3Dlist&pageSize=2&page=2").json()
    assert [s["id"] for s in page2["items"]] == [ids[0]]
    assert page2["pagination"]["hasNextPage"] is False
    one = server.request("GET", "/v1/sandboxes?metadata=suite%3Dlist%26n%3D1%26team%3Da-b").json()
    assert [s["id"] for s in one["items"]] == [ids[1]]
    server.request("POST", f"/v1/sandboxes/{ids[2]}/pause")
    st = server.request("GET", "/v1/sandboxes?state=paused&metadata=suite%3Dlist").json()
    assert [s["id"] for s in st["items"]] == [ids[2]]
    both = server.request(
        "GET", "/v1/sandboxes?state=Paused&state=RUNNING&metadata=suite%3Dlist").json()
    assert both["pagination"]["totalItems"] == 3
    for bad in ["metadata=novalue", "metadata=a%3D1%26%26b%3D2", "metadata=%25zz%3D1",
                "page=0", "pageSize=x", "page=-1"]:
        assert_error(server.request("GET", f"/v1/sandboxes?{bad}"), 400)
    for sid in ids:
        assert server.request("DELETE", f"/v1/sandboxes/{sid}").status == 204


def test_pause_resume(server):
    sid = server.create()
    r = server.request("POST", f"/v1/sandboxes/{sid}/pause")
    assert r.status == 202 and r.body == b"" and r.header("Content-Length") == "0"
    assert server.request("GET", f"/v1/sandboxes/{sid}").json()["status"]["state"] == "Paused"
    assert_error(server.request("POST", f"/v1/sandboxes/{sid}/pause"), 409)
    assert_error(server.execd(sid, "GET", "/ping"), 409)
    r = server.request("POST", f"/v1/sandboxes/{sid}/resume")
    assert r.status == 202 and r.header("Content-Length") == "0"
    assert server.request("GET", f"/v1/sandboxes/{sid}").json()["status"]["state"] == "Running"
    assert_error(server.request("POST", f"/v1/sandboxes/{sid}/resume"), 409)
    assert server.run(sid, "echo alive")[0] == ["alive"]
    # A paused sandbox can be deleted.
    server.request("POST", f"/v1/sandboxes/{sid}/pause")
    assert server.request("DELETE", f"/v1/sandboxes/{sid}").status == 204


def test_renew_and_expiry(server):
    sid = server.create(timeout=60)
    url = f"/v1/sandboxes/{sid}/renew-expiration"
    past = rfc3339(datetime.now(timezone.utc) - timedelta(seconds=5))
    assert_error(server.request("POST", url, {"expiresAt": past}), 400)
    for bad in [{}, {"expiresAt": "tomorrow"}, {"expiresAt": 5}, []]:
        assert_error(server.request("POST", url, bad), 400)
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    r = server.request("POST", url, {"expiresAt": later.isoformat(timespec="milliseconds")})
    assert r.status == 200
    assert abs(parse_time(r.json()["expiresAt"]) - later) < timedelta(milliseconds=2)
    # The reaper deletes a sandbox whose time is up, like DELETE does.
    soon = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert server.request("POST", url, {"expiresAt": rfc3339(soon)}).status == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if server.request("GET", f"/v1/sandboxes/{sid}").status == 404:
            break
        time.sleep(0.1)
    assert server.request("GET", f"/v1/sandboxes/{sid}").status == 404
    assert not os.path.exists(os.path.join(server.run_dir, sid))


def test_metadata_patch(server):
    sid = server.create(metadata={"keep": "1", "drop": "2"})
    r = server.request("PATCH", f"/v1/sandboxes/{sid}/metadata",
                       {"add": "3", "drop": None, "absent": None})
    assert r.status == 200
    assert r.json()["metadata"] == {"keep": "1", "add": "3"}
    assert server.request("PATCH", f"/v1/sandboxes/{sid}/metadata", {}).json()["metadata"] == \
        {"keep": "1", "add": "3"}
    for bad in [{"opensandbox.io/x": "1"}, {"k": 5}, {"k": "not valid!"}, ["x"], {"-k": "1"}]:
        assert_error(server.request("PATCH", f"/v1/sandboxes/{sid}/metadata", bad), 400)
    server.request("DELETE", f"/v1/sandboxes/{sid}")


def test_endpoints(server):
    sid = server.create()
    for port in [44772, 18080]:
        for proxy in ["false", "true"]:
            r = server.request("GET", f"/v1/sandboxes/{sid}/endpoints/{port}?use_server_proxy={proxy}")
            assert r.status == 200, r
            ep = r.json()["endpoint"]
            assert "://" not in ep
            assert ep == f"127.0.0.1:{server.port}/sandboxes/{sid}/proxy/{port}"
    for bad in ["0", "65536", "x"]:
        assert_error(server.request("GET", f"/v1/sandboxes/{sid}/endpoints/{bad}"), 400)
    assert_error(server.request("GET", "/v1/sandboxes/nope/endpoints/44772"), 404)
    # Any port is proxied (test_proxy.py); nothing listens on this one.
    assert_error(server.request("GET", f"/sandboxes/{sid}/proxy/8080/"), 502,
                 "PROXY::PORT_UNREACHABLE")
    server.request("DELETE", f"/v1/sandboxes/{sid}")


def test_unknown_ids_and_routes(server):
    for method, path in [("GET", "/v1/sandboxes/nope"), ("DELETE", "/v1/sandboxes/nope"),
                         ("POST", "/v1/sandboxes/nope/pause"),
                         ("POST", "/v1/sandboxes/0000/resume"),
                         ("GET", "/sandboxes/nope/proxy/44772/ping"),
                         ("GET", "/v1/sandboxes/../../etc/endpoints/1"),
                         ("GET", "/v1/nothing-here")]:
        assert_error(server.request(method, path), 404)
    assert_error(server.request("PUT", "/v1/sandboxes"), 405)
    # Ids that are not UTF-8 once decoded: still a JSON answer that names them
    # (U+FFFD for the bad bytes), never a dropped connection.
    for method, path, code in [("GET", "/v1/sandboxes/%ff%fe", "SANDBOX::SANDBOX_NOT_FOUND"),
                               ("DELETE", "/v1/sandboxes/a%c0%afb", None),
                               ("GET", "/v1/sandboxes/%ff/receipts", None),
                               ("GET", "/v1/snapshots/%ff%fe", "SNAPSHOT::NOT_FOUND"),
                               ("GET", "/v1/snapshots/%ed%a0%80/receipts", "SNAPSHOT::NOT_FOUND"),
                               ("DELETE", "/v1/snapshots/%ff", "SNAPSHOT::NOT_FOUND"),
                               ("GET", "/v1/pools/%ff", "POOL::NOT_FOUND"),
                               ("DELETE", "/v1/pools/%fe%ff", "POOL::NOT_FOUND")]:
        r = server.request(method, path)
        assert_error(r, 404, code)
        assert "\ufffd" in r.json()["message"], (path, r.json())
    # The proxy's routes decode the id too (test_proxy.py has a real one).
    assert_error(server.request("GET", "/sandboxes/%ff/proxy/44772/ping"), 404)
    assert "\ufffd" in server.request("GET", "/sandboxes/%ff/proxy/44772/ping").json()["message"]


BAD_CREATES = [
    (b"{not json", "invalid JSON"),
    (b"[]", "JSON object"),
    (b"", "required"),
    ({"entrypoint": ["x"], "resourceLimits": {}}, "image"),
    ({"image": {"uri": "ubuntu:22.04"}, "entrypoint": ["x"], "resourceLimits": {}}, "ubuntu:22.04"),
    ({"image": {"uri": "host"}, "resourceLimits": {}}, "entrypoint"),
    ({"image": {"uri": "host"}, "entrypoint": [], "resourceLimits": {}}, "entrypoint"),
    ({"image": {"uri": "host"}, "entrypoint": [1], "resourceLimits": {}}, "entrypoint"),
    ({"image": {"uri": "host"}, "entrypoint": ["x"]}, "resourceLimits"),
    ({"image": {"uri": "host"}, "entrypoint": ["x"], "resourceLimits": {}, "timeout": 10}, "timeout"),
    ({"image": {"uri": "host"}, "entrypoint": ["x"], "resourceLimits": {}, "timeout": "60"},
     "timeout"),
    ({"image": {"uri": "host"}, "entrypoint": ["x"], "resourceLimits": {"memory": "lots"}},
     "memory"),
    ({"image": {"uri": "host"}, "entrypoint": ["x"], "resourceLimits": {"cpu": "-1"}}, "cpu"),
    ({"image": {"uri": "host"}, "entrypoint": ["x"], "resourceLimits": {"gpu": "1"}}, "gpu"),
    ({"image": {"uri": "host"}, "entrypoint": ["x"], "resourceLimits": {}, "env": {"A": 1}},
     "env"),
    ({"image": {"uri": "host"}, "entrypoint": ["x"], "resourceLimits": {},
      "metadata": {"opensandbox.io/x": "y"}}, "reserved"),
    ({"image": {"uri": "host"}, "entrypoint": ["x"], "resourceLimits": {},
      "networkPolicy": {"defaultAction": "deny", "egress": [{"action": "allow",
                                                            "target": "*"}]}}, "networkPolicy"),
    ({"image": {"uri": "host"}, "entrypoint": ["x"], "resourceLimits": {},
      "volumes": [{"name": "v", "host": {"path": "@DIR@"}, "mountPath": "/mnt"}]}, "allowed"),
    ({"image": {"uri": "host"}, "entrypoint": ["x"], "resourceLimits": {},
      "volumes": [{"name": "v", "pvc": {"claimName": "c"}, "mountPath": "/mnt"}]}, "host"),
    ({"image": {"uri": "host"}, "entrypoint": ["x"], "resourceLimits": {},
      "platform": {"os": "windows", "arch": "amd64"}}, "platform"),
    ({"image": {"uri": "host"}, "entrypoint": ["x"], "resourceLimits": {}, "secureAccess": True},
     "secureAccess"),
    ({"snapshotId": "snap-1", "image": {"uri": "host"}, "resourceLimits": {}}, "snapshotId"),
    ({"snapshotId": 7, "resourceLimits": {}}, "snapshotId"),
    ({"image": {"uri": "host"}, "entrypoint": ["x"], "resourceLimits": {},
      "extensions": {"poolRef": "p"}}, "pool"),
    ({"image": {"uri": "host"}, "entrypoint": ["x"], "resourceLimits": {},
      "extensions": {"access.renew.extend.seconds": "5"}}, "renew"),
]


@pytest.mark.parametrize("body,words", BAD_CREATES)
def test_bad_create_is_400_and_leaves_nothing(server, body, words):
    before = sorted(os.listdir(server.run_dir))
    listed = server.request("GET", "/v1/sandboxes?pageSize=1000").json()["pagination"]["totalItems"]
    if isinstance(body, dict) and "volumes" in body and body["volumes"][0].get("host"):
        body = json.loads(json.dumps(body).replace("@DIR@", server.dir))  # exists, not allowed
    if isinstance(body, bytes):
        r = server.request("POST", "/v1/sandboxes", raw=body,
                           headers={"Content-Type": "application/json"})
    else:
        r = server.request("POST", "/v1/sandboxes", body)
    assert_error(r, 400)
    assert words.lower() in r.json()["message"].lower(), r.json()
    assert sorted(os.listdir(server.run_dir)) == before
    assert server.request("GET", "/v1/sandboxes?pageSize=1000").json()["pagination"][
        "totalItems"] == listed


def test_oversized_body_is_413(server):
    import socket
    # Announced too large: refused before the body is read.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as c:
        c.sendall(b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"OPEN-SANDBOX-API-KEY: " + API_KEY.encode() +
                  b"\r\nContent-Length: 2097152\r\n\r\n{")
        head = c.recv(65536)
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b'"code":"REQUEST_TOO_LARGE"' in head or b"REQUEST_TOO_LARGE" in head
    # Chunked (no length): cut when it passes the cap.
    body = b"{" + b" " * (2 << 20) + b"}"
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    c.putrequest("POST", "/v1/sandboxes")
    c.putheader("OPEN-SANDBOX-API-KEY", API_KEY)
    c.putheader("Content-Type", "application/json")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    for i in range(0, len(body), 65536):
        part = body[i:i + 65536]
        c.send(b"%x\r\n%s\r\n" % (len(part), part))
    c.send(b"0\r\n\r\n")
    r = c.getresponse()
    assert r.status == 413 and json.loads(r.read())["code"] == "REQUEST_TOO_LARGE"
    c.close()


def test_concurrent_creates(server):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as ex:
        ids = list(ex.map(lambda i: server.create(metadata={"suite": "conc"}), range(12)))
    assert len(set(ids)) == 12
    with ThreadPoolExecutor(8) as ex:
        outs = list(ex.map(lambda sid: server.run(sid, "echo ok")[0], ids))
    assert outs == [["ok"]] * 12
    with ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(lambda sid: server.request("DELETE", f"/v1/sandboxes/{sid}").status,
                            ids))
    assert codes == [204] * 12


def test_metrics_and_sdk_events(server):
    r = server.request("POST", "/v1/metrics/events",
                       {"eventType": "sandbox.create", "createDurationMs": 5, "success": True})
    assert r.status == 204
    m = server.request("GET", "/metrics")
    assert m.status == 200
    text = m.body.decode()
    assert 'kennel_sandboxes{state="Running"}' in text
    assert "kennel_create_seconds_bucket" in text


def test_survives_kill9_and_adopts(fresh_server):
    s = fresh_server()
    s.start()
    a = s.create(metadata={"who": "a"})
    b = s.create(metadata={"who": "b"}, timeout=None)
    s.request("POST", f"/v1/sandboxes/{b}/pause")
    s.kill9()
    # The sandboxes outlive the server...
    assert s.shim_processes()
    s.start()
    # ...and a new server adopts them from SQLite and the run directories.
    items = {x["id"]: x for x in s.request("GET", "/v1/sandboxes").json()["items"]}
    assert items[a]["status"]["state"] == "Running"
    assert items[b]["status"]["state"] == "Paused"
    assert s.run(a, "echo still here")[0] == ["still here"]
    assert s.request("POST", f"/v1/sandboxes/{b}/resume").status == 202
    assert s.run(b, "echo b too")[0] == ["b too"]
    assert s.request("DELETE", f"/v1/sandboxes/{a}").status == 204


def test_no_key_means_loopback_only(kennel):
    import subprocess
    r = subprocess.run([kennel, "serve", "--listen", "0.0.0.0:1", "--db", "/nonexistent/x"],
                       capture_output=True, text=True, timeout=10,
                       env={"PATH": os.environ.get("PATH", "")})
    assert r.returncode != 0
    assert "loopback" in r.stderr


@pytest.mark.parametrize("entrypoint,state,reason", [
    (["sh", "-c", "sleep 0.2; exit 0"], "Terminated", "CONTAINER_EXITED"),
    (["sh", "-c", "sleep 0.2; exit 3"], "Failed", "CONTAINER_EXITED_ERROR"),
])
def test_entrypoint_end_ends_the_sandbox(server, entrypoint, state, reason):
    sid = server.create(entrypoint=entrypoint)
    deadline = time.monotonic() + 8
    s = None
    while time.monotonic() < deadline:
        s = server.request("GET", f"/v1/sandboxes/{sid}").json()
        if s["status"]["state"] == state:
            break
        time.sleep(0.1)
    assert s["status"]["state"] == state, s
    assert s["status"]["reason"] == reason
    assert_error(server.execd(sid, "GET", "/ping"), 409)
    assert server.request("DELETE", f"/v1/sandboxes/{sid}").status == 204
    assert not os.path.exists(os.path.join(server.run_dir, sid))


def test_diagnostics(server):
    sid = server.create()
    server.request("POST", f"/v1/sandboxes/{sid}/pause")
    server.request("POST", f"/v1/sandboxes/{sid}/resume")
    base = f"/v1/sandboxes/{sid}/diagnostics"
    logs = server.request("GET", f"{base}/logs?scope=container")
    assert logs.status == 200, logs
    d = logs.json()
    assert {k: d[k] for k in ("sandboxId", "kind", "scope", "delivery", "truncated")} == \
        {"sandboxId": sid, "kind": "logs", "scope": "container", "delivery": "inline",
         "truncated": False}
    assert d["contentType"] == "text/plain; charset=utf-8"
    assert "kennel-execd" in d["content"] and "kennel-shim" not in d["content"]
    ev = server.request("GET", f"{base}/events?scope=lifecycle").json()
    assert ev["kind"] == "events"
    assert "ready in" in ev["content"] and "paused" in ev["content"] and "resumed" in ev["content"]
    assert_error(server.request("GET", f"{base}/logs"), 400)
    assert_error(server.request("GET", f"{base}/logs?scope=nope"), 400)
    assert_error(server.request("GET", "/v1/sandboxes/nope/diagnostics/logs?scope=all"), 404)
    server.request("DELETE", f"/v1/sandboxes/{sid}")


def test_planted_socket_symlink_leads_nowhere(server):
    """Code in a sandbox owns the directory of execd's socket: a symlink planted
    there must not make the server (or the shim) talk to a host socket."""
    import socket
    import threading
    trap_path = os.path.join(server.dir, "trap.sock")
    trap = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    trap.bind(trap_path)
    trap.listen(16)
    trap.settimeout(0.2)
    received = []
    stop = threading.Event()

    def listen():
        while not stop.is_set():
            try:
                c, _ = trap.accept()
            except OSError:
                continue
            c.settimeout(1)
            try:
                received.append(c.recv(65536))
            except OSError:
                received.append(b"")
            c.close()

    t = threading.Thread(target=listen)
    t.start()
    try:
        sid = server.create()
        out, _ = server.run(sid, f"rm /run/kennel/execd.sock && "
                                 f"ln -s {trap_path} /run/kennel/execd.sock && echo planted")
        assert out == ["planted"]
        r = server.execd(sid, "GET", "/ping")
        assert_error(r, 502)
        time.sleep(2.5)  # the shim's entrypoint checks try too
        assert all(b == b"" for b in received), received
        assert server.request("DELETE", f"/v1/sandboxes/{sid}").status == 204
    finally:
        stop.set()
        t.join()
        trap.close()


def open_stream(server, sid, command):
    """Starts a foreground command over a raw connection; returns the socket
    and the command id from the init event."""
    import socket
    c = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    body = json.dumps({"command": command}).encode()
    c.sendall(b"POST /sandboxes/%s/proxy/44772/command HTTP/1.1\r\nHost: x\r\n"
              b"OPEN-SANDBOX-API-KEY: %s\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (sid.encode(), API_KEY.encode(), len(body), body))
    buf = b""
    while b'"init"' not in buf or b"}" not in buf.split(b'"init"', 1)[1]:
        buf += c.recv(4096)
    cmd_id = json.loads(buf[buf.index(b'{"type":"init"'):].split(b"\n", 1)[0])["text"]
    return c, cmd_id


def test_client_hangup_ends_a_silent_stream(server):
    sid = server.create()
    c, cmd_id = open_stream(server, sid, "sleep 31; echo never")
    time.sleep(0.3)
    c.close()
    # The proxy closes its connection to execd, which kills the command.
    # (Checked on the process list: execd's status for the command is its own
    # business.)
    deadline = time.monotonic() + 8
    left = None
    while time.monotonic() < deadline:
        left = server.run(sid, "ps -eo args | grep -c '^sleep 31' || true")[0]
        if left == ["0"]:
            break
        time.sleep(0.2)
    assert left == ["0"], left
    server.request("DELETE", f"/v1/sandboxes/{sid}")


def test_graceful_stop_does_not_wait_for_silent_streams(fresh_server):
    s = fresh_server()
    s.start()
    sid = s.create()
    c, _ = open_stream(s, sid, "sleep 60")
    t0 = time.monotonic()
    s.stop()
    assert time.monotonic() - t0 < 5
    c.close()
    s.start()  # the sandbox is still there for the next server
    assert s.request("GET", f"/v1/sandboxes/{sid}").json()["status"]["state"] == "Running"


def test_renew_on_access(server):
    sid = server.create(timeout=60, extensions={"access.renew.extend.seconds": "300"})
    first = parse_time(server.request("GET", f"/v1/sandboxes/{sid}").json()["expiresAt"])
    assert server.execd(sid, "GET", "/ping").status == 200
    later = parse_time(server.request("GET", f"/v1/sandboxes/{sid}").json()["expiresAt"])
    assert later - first >= timedelta(seconds=230), (first, later)
    # Without the extension, access does not renew.
    plain = server.create(timeout=60)
    e1 = server.request("GET", f"/v1/sandboxes/{plain}").json()["expiresAt"]
    server.execd(plain, "GET", "/ping")
    assert server.request("GET", f"/v1/sandboxes/{plain}").json()["expiresAt"] == e1
    for x in (sid, plain):
        server.request("DELETE", f"/v1/sandboxes/{x}")
