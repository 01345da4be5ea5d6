"""Warm pools: a create that matches a pool is served by a sandbox that is
already running; the pool refills; members are invisible to the API, survive
a restart, and are cleaned up like any sandbox."""
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
    # A request that differs (env, limits) is made cold, and the pool is untouched.
    cold = s.create(env={"A": "1"})
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
        s.create(env={"B": "2"})
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
    assert s.request("POST", "/v1/pools").status == 501
    # A killed server leaves the members; a new one keeps them.
    s.kill9()
    s.start()
    wait_warm(s, 1, "small", timeout=5)
    assert s.request("GET", f"/v1/sandboxes/{sid}").json()["status"]["state"] == "Running"
    for d in os.listdir(s.run_dir):
        s.note_cgroups(d)
