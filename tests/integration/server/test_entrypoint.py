"""The entrypoint is the sandbox's main process, as a container's is: when it
exits, the sandbox ends (Terminated for 0, Failed with the status otherwise),
its processes and cgroups are freed at once, and it stays listed with that
state until it is deleted or expires. Cold and from a warm pool alike."""
import os
import time

import pytest

SDK_LIMITS = {"cpu": "1", "memory": "2Gi"}


def wait_state(s, sid, states, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = s.request("GET", f"/v1/sandboxes/{sid}").json()
        if got["status"]["state"] in states:
            return got
        time.sleep(0.02)
    raise AssertionError(f"{sid} did not reach {states}: {got}")


def processes_of(s, sid):
    found = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open(f"/proc/{e}/cmdline", "rb") as f:
                    if sid.encode() in f.read():
                        found.append(int(e))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("pooled", [False, True], ids=["cold", "warm-pool"])
def test_entrypoint_exit_ends_the_sandbox(fresh_server, pooled):
    s = fresh_server(extra_args=["--pool", "default=2"] if pooled else [])
    s.start()
    if pooled:
        deadline = time.monotonic() + 15
        while s.request("GET", "/v1/pools/default").json()["status"]["available"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    members = set(os.listdir(s.run_dir))
    ok = s.create(entrypoint=["sh", "-c", "sleep 0.5; exit 0"], resourceLimits=SDK_LIMITS)
    bad = s.create(entrypoint=["sh", "-c", 'echo "$GREETING" > /tmp/seen; sleep 0.5; exit 3'],
                   resourceLimits=SDK_LIMITS, env={"GREETING": "hi there"})
    assert ({ok, bad} <= members) == pooled
    # While it runs, the entrypoint saw the request's env (it starts right
    # after the create is answered).
    out, _ = s.run(bad, "for i in $(seq 50); do [ -s /tmp/seen ] && break; sleep 0.01; done; "
                        "cat /tmp/seen")
    assert out == ["hi there"], out
    got = wait_state(s, ok, {"Terminated", "Failed"})
    assert got["status"]["state"] == "Terminated", got["status"]
    assert got["status"]["reason"] == "CONTAINER_EXITED"
    assert "status 0" in got["status"]["message"]
    got = wait_state(s, bad, {"Terminated", "Failed"})
    assert got["status"]["state"] == "Failed", got
    assert got["status"]["reason"] == "CONTAINER_EXITED_ERROR"
    assert "status 3" in got["status"]["message"], got
    # Still listed, as the reference lists an exited container, until deleted.
    listed = {x["id"]: x["status"]["state"]
              for x in s.request("GET", "/v1/sandboxes?pageSize=100").json()["items"]}
    assert listed[ok] == "Terminated" and listed[bad] == "Failed"
    assert s.request("GET", "/v1/sandboxes?state=Failed").json()["items"][0]["id"] == bad
    # Its resources are gone: no process, no cgroup; execd is not reachable.
    deadline = time.monotonic() + 5
    while (processes_of(s, ok) or processes_of(s, bad)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of(s, ok) == [] and processes_of(s, bad) == []
    for c in list(s.cgroups):
        if ok in c or bad in c:
            assert not os.path.exists(c), c
    r = s.execd(ok, "GET", "/ping")
    assert r.status == 409, r
    # The supervisor's record says why (diagnostics).
    r = s.request("GET", f"/v1/sandboxes/{bad}/diagnostics/events?scope=runtime")
    assert "The entrypoint exited with status 3" in r.json()["content"]
    assert s.request("POST", f"/v1/sandboxes/{ok}/pause").status == 409
    for sid in (ok, bad):
        assert s.request("DELETE", f"/v1/sandboxes/{sid}").status == 204
        assert s.request("GET", f"/v1/sandboxes/{sid}").status == 404
        assert not os.path.exists(os.path.join(s.run_dir, sid))


def test_entrypoint_is_started_once(fresh_server):
    """execd takes the entrypoint once: a client cannot swap the main process."""
    s = fresh_server()
    s.start()
    sid = s.create()
    # The proxy refuses the supervisor's routes outright (404)...
    r = s.execd(sid, "POST", "/_kennel/entrypoint", {"command": "exit 9"})
    assert r.status == 404, r
    time.sleep(0.3)
    assert s.request("GET", f"/v1/sandboxes/{sid}").json()["status"]["state"] == "Running"
    # The main process is the entrypoint; killing it ends the sandbox (and
    # with it every command, this one too: it runs in the background).
    r = s.execd(sid, "POST", "/command", {"command": "sleep 0.2; pkill -f '^tail -f /dev/null'",
                                          "background": True})
    assert r.status == 200, r
    got = wait_state(s, sid, {"Terminated", "Failed"})
    assert got["status"]["state"] == "Failed" and "status 143" in got["status"]["message"], got


def test_entrypoint_that_cannot_run(fresh_server):
    s = fresh_server()
    s.start()
    sid = s.create(entrypoint=["/no/such/program"])
    got = wait_state(s, sid, {"Terminated", "Failed"})
    assert got["status"]["state"] == "Failed" and "status 127" in got["status"]["message"], got
