"""Warm pools: a create that matches a pool is served by a sandbox that is
already running; the pool refills; members are invisible to the API, survive
a restart, and are cleaned up like any sandbox."""
import json
import os
import statistics
import time

SDK_DEFAULT = {"image": {"uri": "host"}, "entrypoint": ["tail", "-f", "/dev/null"],
               "resourceLimits": {"cpu": "1", "memory": "2Gi"}, "timeout": 600,
               "env": {}, "metadata": {}, "extensions": {}, "secureAccess": False}


def warm_count(s, name="default"):
    r = s.request("GET", f"/v1/pools/{name}")
    assert r.status == 200, r
    return r.json()["status"]["available"]


def wait_warm(s, n, name="default", timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if warm_count(s, name) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"pool {name} did not reach {n}: {s.request('GET', '/v1/pools').json()}")


def test_pool_serves_matching_creates(fresh_server):
    s = fresh_server(extra_args=["--pool", "default=3"])
    s.start()
    # While members start and wait, they are nobody's sandboxes.
    deadline = time.monotonic() + 15
    while warm_count(s) < 3 and time.monotonic() < deadline:
        assert s.request("GET", "/v1/sandboxes").json()["items"] == []
    wait_warm(s, 3)
    # Members are not sandboxes of anyone's yet.
    assert s.request("GET", "/v1/sandboxes").json()["items"] == []
    members = set(os.listdir(s.run_dir))
    assert len(members) == 3
    t0 = time.monotonic()
    r = s.request("POST", "/v1/sandboxes", dict(SDK_DEFAULT, metadata={"from": "pool"}))
    warm_ms = (time.monotonic() - t0) * 1000
    assert r.status == 202, r
    sid = r.json()["id"]
    assert sid in members  # served by a member, not made cold
    s.note_cgroups(sid)
    got = s.request("GET", f"/v1/sandboxes/{sid}").json()
    assert got["status"]["state"] == "Running" and got["metadata"] == {"from": "pool"}
    assert got["entrypoint"] == ["tail", "-f", "/dev/null"]
    assert "expiresAt" in got
    deadline = time.monotonic() + 3
    while True:  # the entrypoint starts right after the create's answer
        out, _ = s.run(sid, "ps -eo args | grep -c '^tail -f /dev/null'; echo ok")
        if out == ["1", "ok"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert out == ["1", "ok"]
    # A request with other limits is made cold, and the pool is untouched.
    cold = s.create(resourceLimits={"cpu": "1", "memory": "256Mi"})
    assert cold not in members
    # The pool refills.
    wait_warm(s, 3)
    # Timing: a handful of creates from the pool against cold ones.
    warm, coldt = [warm_ms], []
    for _ in range(4):
        wait_warm(s, 2)
        t0 = time.monotonic()
        assert s.request("POST", "/v1/sandboxes", SDK_DEFAULT).status == 202
        warm.append((time.monotonic() - t0) * 1000)
        t0 = time.monotonic()
        s.create(resourceLimits={"cpu": "1", "memory": "256Mi"})
        coldt.append((time.monotonic() - t0) * 1000)
    print(f"create from the pool p50 {statistics.median(warm):.1f} ms, "
          f"cold p50 {statistics.median(coldt):.1f} ms")
    # No timing assertion: this machine is shared, and the figures belong to bench/.
    m = s.request("GET", "/metrics").body.decode()
    assert 'kennel_sandboxes{state="Warm"}' in m


def test_pool_ref_and_restart(fresh_server):
    s = fresh_server(extra_args=["--pool", "small=1"])
    s.start()
    wait_warm(s, 1, "small")
    # poolRef: image, limits and entrypoint come from the pool.
    r = s.request("POST", "/v1/sandboxes", {"extensions": {"poolRef": "small"}, "timeout": 120})
    assert r.status == 202, r
    sid = r.json()["id"]
    s.note_cgroups(sid)
    assert s.run(sid, "echo hi")[0] == ["hi"]
    r = s.request("POST", "/v1/sandboxes", {"extensions": {"poolRef": "nope"}})
    assert r.status == 400 and "nope" in r.json()["message"]
    wait_warm(s, 1, "small")
    assert s.request("GET", "/v1/pools/other").status == 404
    # A pool of the config is read-only through the API.
    r = s.request("PUT", "/v1/pools/small", {"capacitySpec": {"bufferMax": 2, "bufferMin": 2,
                                                              "poolMax": 4, "poolMin": 0}})
    assert r.status == 409 and r.json()["code"] == "POOL::READ_ONLY", r
    assert s.request("DELETE", "/v1/pools/small").status == 409
    # A killed server leaves the members; a new one keeps them.
    s.kill9()
    s.start()
    wait_warm(s, 1, "small", timeout=5)
    assert s.request("GET", f"/v1/sandboxes/{sid}").json()["status"]["state"] == "Running"
    for d in os.listdir(s.run_dir):
        s.note_cgroups(d)


def members_of(s, name):
    """Run directories of a pool's warm members (from their records)."""
    found = []
    for d in os.listdir(s.run_dir):
        try:
            with open(os.path.join(s.run_dir, d, "state.json")) as f:
                warm = json.load(f).get("state") == "Warm"
            with open(os.path.join(s.run_dir, d, "spec.json")) as f:
                if warm and json.load(f).get("pool") == name:
                    found.append(d)
        except (OSError, ValueError):
            pass
    return found


def test_pool_serves_env_and_isolates_it(fresh_server):
    """A request with env is served from the pool; every later command,
    bash session and code context of that sandbox sees it; no other
    sandbox's env reaches it, and execd takes the env only once."""
    s = fresh_server(extra_args=["--pool", "default=3"])
    s.start()
    wait_warm(s, 3)
    members = set(os.listdir(s.run_dir))
    a = s.request("POST", "/v1/sandboxes", dict(SDK_DEFAULT, env={"WHO": "a", "ONLY_A": "1"}))
    b = s.request("POST", "/v1/sandboxes", dict(SDK_DEFAULT, env={"WHO": "b",
                                                                  "PATH": "/opt/b:/usr/bin:/bin"}))
    assert a.status == 202 and b.status == 202, (a, b)
    a, b = a.json()["id"], b.json()["id"]
    assert {a, b} <= members  # both served warm
    for sid in (a, b):
        s.note_cgroups(sid)
    out, _ = s.run(a, 'echo "$WHO ${ONLY_A:-unset} $PATH"')
    assert out[0].startswith("a 1 ") and "/opt/b" not in out[0], out
    out, _ = s.run(b, 'echo "$WHO ${ONLY_A:-unset} $PATH"')
    assert out == ["b unset /opt/b:/usr/bin:/bin"], out
    # A bash session and a code context start from the same environment.
    r = s.execd(a, "POST", "/session", {})
    assert r.status == 200, r
    sess = r.json()["session_id"]
    r = s.execd(a, "POST", f"/session/{sess}/run", {"command": "echo sess-$WHO"})
    assert r.status == 200 and b'"sess-a"' in r.body, r
    r = s.execd(b, "POST", "/code", {"code": "import os; print(os.environ.get('WHO'), "
                                             "os.environ.get('ONLY_A'))",
                                     "context": {"language": "python"}})
    assert r.status == 200 and b"b None" in r.body, r
    # The supervisor's routes are not a client's: the proxy refuses them,
    # however the path is spelled (execd would decode these).
    for path in ("/_kennel/env", "/%5Fkennel/env", "//_kennel/env", "/%5fkennel%2Fenv",
                 "/_kennel/env?x=1"):
        r = s.execd(a, "POST", path, {"envs": {"WHO": "mallory"}})
        assert r.status == 404, (path, r)
    assert s.run(a, "echo $WHO")[0] == ["a"]
    # A member that was never claimed has none of it.
    wait_warm(s, 3)
    for m in members_of(s, "default"):
        with open(os.path.join(s.run_dir, m, "spec.json")) as f:
            assert "WHO" not in f.read()


def test_pool_api(fresh_server):
    s = fresh_server()
    s.start()
    tmpl = {"image": {"uri": "host"}, "resourceLimits": {"cpu": "500m", "memory": "256Mi"}}
    cap = {"bufferMax": 2, "bufferMin": 1, "poolMax": 5, "poolMin": 0}
    r = s.request("POST", "/v1/pools", {"name": "api-pool", "template": tmpl, "capacitySpec": cap})
    assert r.status == 201, r
    p = r.json()
    assert p["name"] == "api-pool" and p["capacitySpec"] == cap and "createdAt" in p
    assert p["status"]["revision"] == "1" and p["fromConfig"] is False
    created = p["createdAt"]
    # Errors: the spec's shape, nothing made.
    bad = [
        ({"name": "api-pool", "template": tmpl, "capacitySpec": cap}, 409, "POOL::ALREADY_EXISTS"),
        ({"name": "Bad_Name", "template": tmpl, "capacitySpec": cap}, 400, "name"),
        ({"name": "x", "template": tmpl}, 400, "capacitySpec"),
        ({"name": "x", "template": tmpl, "capacitySpec": dict(cap, bufferMin=3)}, 400, "bufferMin"),
        ({"name": "x", "template": tmpl, "capacitySpec": dict(cap, poolMax=1)}, 400, "poolMax"),
        ({"name": "x", "template": tmpl, "capacitySpec": dict(cap, bufferMax=-1)}, 400,
         "bufferMax"),
        ({"name": "x", "template": tmpl, "capacitySpec": dict(cap, extra=1)}, 400, "extra"),
        ({"name": "x", "template": dict(tmpl, volumes=[]), "capacitySpec": cap}, 400, "volumes"),
        ({"name": "x", "template": {"image": {"uri": "nope:1"}}, "capacitySpec": cap}, 400,
         "nope:1"),
        ({"name": "x", "template": dict(tmpl, resourceLimits={"memory": "lots"}),
          "capacitySpec": cap}, 400, "memory"),
        ({"name": "x", "template": tmpl, "capacitySpec": cap, "size": 3}, 400, "size"),
    ]
    for body, status, word in bad:
        r = s.request("POST", "/v1/pools", body)
        assert r.status == status and word in r.json()["message"] + r.json()["code"], (body, r)
    r = s.request("POST", "/v1/pools", raw=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.json()["code"] == "POOL::INVALID_PARAMETER", r
    assert [x["name"] for x in s.request("GET", "/v1/pools").json()["items"]] == ["api-pool"]
    wait_warm(s, 2, "api-pool")
    # Served: poolRef and a matching request alike.
    sid = s.request("POST", "/v1/sandboxes", {"extensions": {"poolRef": "api-pool"},
                                              "timeout": 120, "env": {"X": "1"}}).json()["id"]
    s.note_cgroups(sid)
    assert s.run(sid, "echo $X")[0] == ["1"]
    r = s.request("GET", "/v1/pools/api-pool").json()
    assert r["status"]["allocated"] == 1, r
    # PUT changes the capacity only; the pool shrinks and grows to it.
    r = s.request("PUT", "/v1/pools/api-pool", {"capacitySpec": dict(cap, bufferMax=1,
                                                                    bufferMin=1)})
    assert r.status == 200 and r.json()["status"]["revision"] == "2", r
    r = s.request("PUT", "/v1/pools/api-pool", {"template": tmpl, "capacitySpec": cap})
    assert r.status == 400 and "template" in r.json()["message"], r
    assert s.request("PUT", "/v1/pools/none", {"capacitySpec": cap}).status == 404
    deadline = time.monotonic() + 15
    while warm_count(s, "api-pool") != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert warm_count(s, "api-pool") == 1
    r = s.request("PUT", "/v1/pools/api-pool", {"capacitySpec": dict(cap, bufferMax=3,
                                                                    bufferMin=3)})
    assert r.status == 200, r
    wait_warm(s, 3, "api-pool")
    # Kept across a restart (kill -9): same pool, same members.
    before = set(members_of(s, "api-pool"))
    s.kill9()
    s.start()
    p = s.request("GET", "/v1/pools/api-pool").json()
    assert p["createdAt"] == created and p["capacitySpec"]["bufferMax"] == 3, p
    assert p["status"]["revision"] == "3"
    wait_warm(s, 3, "api-pool", timeout=5)
    assert set(members_of(s, "api-pool")) == before
    # DELETE: its members go, the sandbox taken from it stays.
    assert s.request("DELETE", "/v1/pools/api-pool").status == 204
    assert s.request("DELETE", "/v1/pools/api-pool").status == 404
    assert s.request("GET", "/v1/pools/api-pool").status == 404
    assert members_of(s, "api-pool") == []
    assert s.request("GET", f"/v1/sandboxes/{sid}").json()["status"]["state"] == "Running"
    s.kill9()
    s.start()
    assert s.request("GET", "/v1/pools").json()["items"] == []
    assert s.request("PATCH", "/v1/pools/x").status == 405
