"""Network policy through the lifecycle server (issue 5): create's
networkPolicy, and the egress API (GET/PATCH/DELETE /policy) reached through
the server proxy on the egress port 18080, against a real `kennel serve`
whose sandboxes talk only to the private test internet (testnet.py: its own
namespace and addresses, routes checked before anything is sent, the uplink
guard counting for the whole session).

Every probe runs inside a sandbox through execd; the code first refuses to
run in the host's network namespace."""
import base64
import json
import os
import pathlib
import shutil
import subprocess
import threading
import time

import pytest

from ..testnet import DNS_ADDR, check_routes, leftovers, slot_of
from .conftest import API_KEY, Server

SDK_DIR = pathlib.Path(__file__).resolve().parents[2] / "sdk" / "js"
HOST_NET = os.readlink("/proc/self/ns/net")

PRELUDE = f'''
import json, os, socket, sys
if os.readlink("/proc/self/ns/net") == {HOST_NET!r}:
    sys.exit("kennel-test: refusing to run in the host network namespace")
out = {{}}
def resolve(name):
    try:
        return socket.gethostbyname(name)
    except OSError:
        return "gaierror"
def get(addr, port=80, timeout=3):
    try:
        s = socket.create_connection((addr, port), timeout=timeout)
    except OSError as e:
        return "error:" + (str(e.errno) if e.errno else type(e).__name__)
    try:
        s.settimeout(timeout)
        s.sendall(b"GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
        data = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            data += d
        return data.decode(errors="replace").split("\\r\\n\\r\\n", 1)[-1].strip()
    except OSError as e:
        return "error:" + type(e).__name__
    finally:
        s.close()
'''


def probe(s, sid, code):
    """Runs python code in the sandbox; returns the dict it prints as `out`."""
    check_routes()
    src = PRELUDE + code + "\nprint(json.dumps(out))\n"
    b64 = base64.b64encode(src.encode()).decode()
    lines, events = s.run(sid, f"echo {b64} | base64 -d | python3 -")
    assert lines, events
    return json.loads(lines[-1])


def policy(s, sid, method="GET", body=None):
    return s.request(method, f"/sandboxes/{sid}/proxy/18080/policy", body)


def nameserver(s, sid):
    lines, _ = s.run(sid, "cat /etc/resolv.conf")
    return [l.split()[1] for l in lines if l.startswith("nameserver")][0]


@pytest.fixture
def egress_server(internet, kennel):
    made = []

    def make(extra=()):
        srv = Server(kennel, extra_args=["--dns-upstream", DNS_ADDR, *extra])
        made.append(srv)
        srv.start()
        return srv

    yield make
    problems = []
    for srv in made:
        problems += srv.cleanup()
    assert not problems, problems


POLICY = {"defaultAction": "deny", "egress": [{"action": "allow", "target": "allowed.test"}]}


def test_create_policy_is_enforced_and_reported(egress_server):
    s = egress_server()
    sid = s.create(networkPolicy=POLICY)
    r = policy(s, sid)
    assert r.status == 200, r
    assert r.json() == {"status": "ok", "mode": "enforcing", "enforcementMode": "dns+nft",
                        "policy": POLICY}
    out = probe(s, sid, '''
out["allowed"] = resolve("allowed.test")
out["get_allowed"] = get("203.0.113.10")
out["other"] = resolve("other.test")
out["get_other"] = get("203.0.113.20")
out["metadata"] = get("169.254.169.254")
''')
    assert out == {"allowed": "203.0.113.10", "get_allowed": "served-by 203.0.113.10",
                   "other": "gaierror", "get_other": out["get_other"],
                   "metadata": out["metadata"]}, out
    assert out["get_other"].startswith("error:") and out["metadata"].startswith("error:"), out
    slot = slot_of(nameserver(s, sid))
    assert leftovers([slot]) != []  # the veth and host table exist while it runs
    assert s.request("DELETE", f"/v1/sandboxes/{sid}").status == 204
    assert leftovers([slot]) == []
    assert not [d for d in os.listdir("/run/kennel/net") if d.endswith(sid[:8])]


def test_patch_opens_and_delete_closes_at_once(egress_server):
    """PATCH merges (incoming first, the first of a target wins); DELETE
    removes by target; a removed name stops at once, even for a connection
    opened before."""
    s = egress_server()
    sid = s.create(networkPolicy=POLICY)
    assert probe(s, sid, 'out["o"] = resolve("other.test")') == {"o": "gaierror"}
    r = policy(s, sid, "PATCH", [{"action": "allow", "target": "Other.Test."},
                                 {"action": "deny", "target": "other.test"}])
    assert r.status == 200, r
    assert r.json()["policy"]["egress"] == [{"action": "allow", "target": "other.test"},
                                            {"action": "allow", "target": "allowed.test"}]
    out = probe(s, sid, 'out["o"] = resolve("other.test"); out["g"] = get("203.0.113.20")')
    assert out == {"o": "203.0.113.20", "g": "served-by 203.0.113.20"}

    # A connection to allowed.test, opened before its rule goes.
    held = s.execd(sid, "POST", "/command", {"background": True, "command": (
        "python3 -c '\nimport socket, time, os\n"
        "a = socket.gethostbyname(\"allowed.test\")\n"
        "s = socket.create_connection((a, 80), timeout=3)\n"
        "open(\"/tmp/connected\", \"w\").close()\n"
        "while not os.path.exists(\"/tmp/go\"): time.sleep(0.02)\n"
        "s.settimeout(3)\n"
        "try:\n"
        "    s.sendall(b\"GET / HTTP/1.0\\r\\n\\r\\n\"); r = s.recv(4096).decode()\n"
        "    r = \"got \" + r.split(chr(10))[0]\n"
        "except OSError as e:\n"
        "    r = \"error \" + type(e).__name__\n"
        "open(\"/tmp/result\", \"w\").write(r)\n'")})
    assert held.status == 200, held
    for _ in range(200):
        if probe(s, sid, 'out["c"] = os.path.exists("/tmp/connected")')["c"]:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the held connection was never made")
    r = policy(s, sid, "DELETE", ["ALLOWED.test", "not-there.test"])
    assert r.status == 200, r
    assert r.json()["policy"]["egress"] == [{"action": "allow", "target": "other.test"}]
    s.run(sid, "touch /tmp/go")
    result = None
    for _ in range(200):
        result = probe(s, sid, '''
out["r"] = open("/tmp/result").read() if os.path.exists("/tmp/result") else None''')["r"]
        if result:
            break
        time.sleep(0.05)
    assert result and result.startswith("error"), result
    out = probe(s, sid, 'out["a"] = resolve("allowed.test"); out["g"] = get("203.0.113.10")')
    assert out["a"] == "gaierror" and out["g"].startswith("error:"), out
    assert probe(s, sid, 'out["g"] = get("203.0.113.20")') == {"g": "served-by 203.0.113.20"}


def test_rule_order_first_match_wins(egress_server):
    """OpenSandbox evaluates rules in order: an allow before a wider deny
    wins, and a patch's rules come before the rules in force."""
    s = egress_server()
    sid = s.create(networkPolicy={"defaultAction": "deny", "egress": [
        {"action": "deny", "target": "*.wild.test"}, {"action": "allow", "target": "wild.test"},
        {"action": "allow", "target": "203.0.113.40/32"},
        {"action": "deny", "target": "203.0.113.32/27"}]})
    out = probe(s, sid, '''
out["api"] = resolve("api.wild.test")
out["wild"] = resolve("wild.test")
out["cidr"] = get("203.0.113.40")
out["cidr_denied"] = get("203.0.113.32")  # served, in the denied /27
''')
    assert out["cidr_denied"].startswith("error:"), out
    del out["cidr_denied"]
    assert out == {"api": "gaierror", "wild": "203.0.113.31", "cidr": "served-by 203.0.113.40"}
    r = policy(s, sid, "PATCH", [{"action": "allow", "target": "api.wild.test"}])
    assert r.status == 200, r
    out = probe(s, sid, '''
out["api"] = resolve("api.wild.test")
out["get"] = get("203.0.113.30")
out["deep"] = resolve("deep.a.wild.test")
''')
    assert out == {"api": "203.0.113.30", "get": "served-by 203.0.113.30", "deep": "gaierror"}


def test_default_allow_with_deny(egress_server):
    s = egress_server()
    sid = s.create(networkPolicy={"defaultAction": "allow",
                                  "egress": [{"action": "deny", "target": "other.test"}]})
    assert policy(s, sid).json()["mode"] == "enforcing"
    out = probe(s, sid, '''
out["other"] = resolve("other.test")
out["allowed"] = get(resolve("allowed.test"))
out["metadata"] = get("169.254.169.254")
out["private"] = get("10.99.0.1")
''')
    assert out["other"] == "gaierror" and out["allowed"] == "served-by 203.0.113.10", out
    assert out["metadata"].startswith("error:") and out["private"].startswith("error:"), out


def test_without_network_policy(egress_server):
    """No networkPolicy: only lo, as always; GET says so, changes are 409."""
    s = egress_server()
    sid = s.create()
    r = policy(s, sid)
    assert r.status == 200, r
    j = r.json()
    assert j["mode"] == "deny_all" and j["policy"] == {"defaultAction": "deny", "egress": []}
    assert "networkPolicy" in j["reason"]
    r = policy(s, sid, "PATCH", [{"action": "allow", "target": "allowed.test"}])
    assert r.status == 409, r
    lines, _ = s.run(sid, "cat /proc/net/dev")
    assert [l.split(":")[0].strip() for l in lines[2:]] == ["lo"], lines
    # deny-only policies keep working as before, and can be opened later
    sid2 = s.create(networkPolicy={"defaultAction": "deny"})
    assert policy(s, sid2).json()["mode"] == "deny_all"
    assert probe(s, sid2, 'out["g"] = get("203.0.113.40")')["g"].startswith("error:")
    r = policy(s, sid2, "PATCH", [{"action": "allow", "target": "203.0.113.40/32"}])
    assert r.status == 200, r
    assert probe(s, sid2, 'out["g"] = get("203.0.113.40")') == {"g": "served-by 203.0.113.40"}


BAD_POLICIES = [
    "deny",
    {"defaultAction": "block"},
    {"defaultAction": "deny", "egress": {"action": "allow"}},
    {"defaultAction": "deny", "egress": [{"action": "allow"}]},
    {"defaultAction": "deny", "egress": [{"action": "permit", "target": "a.test"}]},
    {"defaultAction": "deny", "egress": [{"action": "allow", "target": "*"}]},
    {"defaultAction": "deny", "egress": [{"action": "allow", "target": "2001:db8::/32"}]},
    {"defaultAction": "deny", "egress": [{"action": "allow", "target": "a..test"}]},
    {"defaultAction": "deny", "egress": [{"action": "allow", "target": "a.test", "port": 1}]},
    {"defaultAction": "deny", "egress": [{"action": "allow", "target": 7}]},
    {"defaultaction": "deny"},
    {"defaultAction": "deny",
     "egress": [{"action": "allow", "target": f"n{i}.test"} for i in range(65)]},
]


def test_bad_policies_are_refused(egress_server):
    s = egress_server()
    before = sorted(os.listdir(s.run_dir)) if os.path.isdir(s.run_dir) else []
    body = {"image": {"uri": "host"}, "entrypoint": ["tail", "-f", "/dev/null"],
            "resourceLimits": {"cpu": "1", "memory": "512Mi"}}
    for bad in BAD_POLICIES:
        r = s.request("POST", "/v1/sandboxes", dict(body, networkPolicy=bad))
        assert r.status == 400, (bad, r)
        assert "networkPolicy" in r.json()["message"], (bad, r)
    after = sorted(os.listdir(s.run_dir)) if os.path.isdir(s.run_dir) else []
    assert after == before
    assert s.request("GET", "/v1/sandboxes").json()["items"] == []

    sid = s.create(networkPolicy=POLICY)
    for method, raw in [("PATCH", b"[]"), ("PATCH", b"{}"), ("PATCH", b"not json"),
                        ("PATCH", b'[{"action": "allow", "target": "a.test", "x": 1}]'),
                        ("PATCH", b'[{"action": "allow", "target": "a.test"}, 7]'),
                        ("PATCH", b'[{"action": "allow", "target": "bad name"}]'),
                        ("PATCH", b""), ("DELETE", b"[]"), ("DELETE", b'[7]'),
                        ("DELETE", b'["*"]'), ("DELETE", b'{"target": "a.test"}')]:
        r = s.request(method, f"/sandboxes/{sid}/proxy/18080/policy", raw=raw,
                      headers={"Content-Type": "application/json"})
        assert r.status == 400, (method, raw, r)
    many = [{"action": "allow", "target": f"n{i}.test"} for i in range(64)]
    assert policy(s, sid, "PATCH", many).status == 400
    assert policy(s, sid).json()["policy"] == POLICY  # nothing changed
    assert policy(s, sid, "PUT", []).status == 405
    assert s.request("GET", f"/sandboxes/{sid}/proxy/18080/other").status == 404
    r = s.request("GET", f"/sandboxes/{sid}/proxy/18080/credential-vault")
    assert r.status == 501 and r.json()["code"] == "NOT_IMPLEMENTED", r
    r = s.request("GET", "/sandboxes/00000000-0000-4000-8000-000000000000/proxy/18080/policy")
    assert r.status == 404, r
    r = s.request("GET", f"/sandboxes/{sid}/proxy/18080/policy", key=False)
    assert r.status == 401, r
    big = b'["' + b"a" * (2 << 20) + b'"]'
    r = s.request("PATCH", f"/sandboxes/{sid}/proxy/18080/policy", raw=big)
    assert r.status == 413, r


def test_concurrent_patches_lose_nothing(egress_server):
    s = egress_server()
    sid = s.create(networkPolicy=POLICY)
    statuses = []

    def patch(i):
        r = policy(s, sid, "PATCH", [{"action": "allow", "target": f"n{i}.test"}])
        statuses.append(r.status)

    threads = [threading.Thread(target=patch, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 8
    targets = {r["target"] for r in policy(s, sid).json()["policy"]["egress"]}
    assert targets == {"allowed.test"} | {f"n{i}.test" for i in range(8)}


def test_policy_survives_a_server_restart(egress_server):
    s = egress_server()
    sid = s.create(networkPolicy=POLICY)
    assert policy(s, sid, "PATCH", [{"action": "allow", "target": "other.test"}]).status == 200
    s.kill9()
    s.start()
    j = policy(s, sid).json()
    assert [r["target"] for r in j["policy"]["egress"]] == ["other.test", "allowed.test"]
    assert policy(s, sid, "DELETE", ["other.test"]).status == 200
    out = probe(s, sid, 'out["o"] = resolve("other.test"); out["a"] = resolve("allowed.test")')
    assert out == {"o": "gaierror", "a": "203.0.113.10"}


def test_paused_sandbox_policy_changes(egress_server):
    s = egress_server()
    sid = s.create(networkPolicy=POLICY)
    assert s.request("POST", f"/v1/sandboxes/{sid}/pause").status == 202
    assert policy(s, sid, "PATCH", [{"action": "allow", "target": "other.test"}]).status == 200
    assert s.request("POST", f"/v1/sandboxes/{sid}/resume").status == 202
    assert probe(s, sid, 'out["o"] = resolve("other.test")') == {"o": "203.0.113.20"}


def test_official_sdk_egress_with_traffic(egress_server):
    """The official SDK: create with networkPolicy, read it, patch and delete
    rules, and see each change in what the sandbox can reach."""
    node = shutil.which("node")
    mod = SDK_DIR / "node_modules" / "@alibaba-group" / "opensandbox" / "package.json"
    if not node or not mod.exists():
        pytest.skip("node and the SDK (tests/sdk/js, npm ci in scripts/setup) are needed")
    s = egress_server()
    check_routes()
    env = dict(os.environ, KENNEL_DOMAIN=f"127.0.0.1:{s.port}", KENNEL_CLIENT_KEY=API_KEY,
               OPENSANDBOX_DISABLE_METRICS="1", KENNEL_HOST_NETNS=HOST_NET)
    r = subprocess.run([node, "egress.mjs"], cwd=SDK_DIR, capture_output=True, text=True,
                       timeout=120, env=env)
    print(r.stdout)
    print(r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "EGRESS OK" in r.stdout


def test_policy_changes_have_receipts(egress_server):
    """Each PATCH and DELETE of /policy: system.settings.modify in the
    sandbox's chain, pending before the change and its outcome after, the
    request and the policy in force hashed; a change whose receipt cannot be
    written is not made; a refused request (400) has none."""
    from ..receipts.test_receipts import block, sha, summary, unblock
    s = egress_server()
    sid = s.create(networkPolicy=POLICY)
    patch = [{"action": "allow", "target": "other.test"}]
    r = policy(s, sid, "PATCH", patch)
    assert r.status == 200, r
    after_patch = r.json()["policy"]
    r = policy(s, sid, "DELETE", ["other.test"])
    assert r.status == 200, r
    after_delete = r.json()["policy"]
    assert policy(s, sid, "PATCH", {"not": "a list"}).status == 400
    assert policy(s, sid).status == 200  # reading is not an action
    items = s.request("GET", f"/v1/sandboxes/{sid}/receipts").json()["items"]
    mods = [i["credentialSubject"] for i in items
            if i["credentialSubject"]["action"]["type"] == "system.settings.modify"]
    assert [(m["action"]["type"], m["outcome"]["status"]) for m in mods] == [
        ("system.settings.modify", "pending"), ("system.settings.modify", "success")] * 2, mods
    for n, (method, body, now) in enumerate([("PATCH", patch, after_patch),
                                             ("DELETE", ["other.test"], after_delete)]):
        pend, out = mods[2 * n], mods[2 * n + 1]
        assert pend["correlation_id"] == out["correlation_id"]
        assert out["action"]["risk_level"] == "high"
        assert out["action"]["target"] == {"system": "kennel:egress", "resource": "/policy"}
        assert out["action"]["parameters_hash"] == sha({"method": method, "body": body})
        assert out["outcome"]["response_hash"] == sha({"policy": now})
    # Fail closed: no receipt, no change.
    block(s.db)
    r = policy(s, sid, "PATCH", patch)
    assert r.status == 503 and r.json()["code"] == "RECEIPTS::UNAVAILABLE", r
    unblock(s.db)
    assert summary(s.request("GET", f"/v1/sandboxes/{sid}/receipts").json()["items"][-1:]) == \
        [("system.settings.modify", "success")]
    assert policy(s, sid).json()["policy"] == after_delete
    assert probe(s, sid, 'out["o"] = resolve("other.test")') == {"o": "gaierror"}
    assert s.request("DELETE", f"/v1/sandboxes/{sid}").status == 204
