"""Faults: the server killed with SIGKILL in the middle of concurrent creates
and commands, and many concurrent clients. Every sandbox the server
acknowledged must survive a restart and stay usable; nothing may leak (the
fixture's teardown checks processes, run directories and cgroups)."""
import http.client
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

CREATE = {"image": {"uri": "host"}, "entrypoint": ["tail", "-f", "/dev/null"],
          "resourceLimits": {"cpu": "1", "memory": "256Mi"}, "timeout": 600}


def test_kill9_during_concurrent_creates(fresh_server):
    s = fresh_server()
    s.start()
    acked, lock = [], threading.Lock()
    stop = threading.Event()

    def client(i):
        while not stop.is_set():
            try:
                r = s.request("POST", "/v1/sandboxes", CREATE, timeout=30)
            except (OSError, http.client.HTTPException):
                return  # the server died under it
            if r.status != 202:
                return
            sid = r.json()["id"]
            with lock:
                acked.append(sid)
            try:
                s.run(sid, "echo ok")
            except (OSError, http.client.HTTPException, AssertionError):
                return

    threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    time.sleep(0.6)
    s.kill9()
    stop.set()
    for t in threads:
        t.join(30)
    assert acked, "no create was acknowledged before the kill"
    s.start()
    listed = {x["id"]: x for x in
              s.request("GET", "/v1/sandboxes?pageSize=1000").json()["items"]}
    # Every acknowledged sandbox is there, Running, and usable.
    for sid in acked:
        assert sid in listed, sid
        assert listed[sid]["status"]["state"] == "Running", listed[sid]
    pending = [sid for sid, x in listed.items() if x["status"]["state"] != "Running"]
    for sid in pending:
        try:
            with open(os.path.join(s.run_dir, sid, "shim.log")) as f:
                print(f"shim.log of {sid}:\n{f.read()}")
        except OSError as e:
            print(f"no shim.log for {sid}: {e}")
    with open(s.log, errors="replace") as f:
        events = [line for line in f if '"method"' not in line]
    assert not pending, (pending, "".join(events))
    with ThreadPoolExecutor(8) as ex:
        outs = list(ex.map(lambda sid: s.run(sid, "echo still")[0], listed))
    assert outs == [["still"]] * len(listed)
    # Nothing half-made is left: no Pending rows, and run directories match rows.
    assert all(x["status"]["state"] == "Running" for x in listed.values())
    assert sorted(os.listdir(s.run_dir)) == sorted(listed)
    for sid in listed:
        s.note_cgroups(sid)
    print(f"{len(acked)} acknowledged, {len(listed) - len(acked)} adopted unacknowledged")


def test_concurrent_clients(server):
    sid = server.create(metadata={"suite": "load"})
    errors = []

    def client(i):
        for k in range(200):
            if k % 4 == 0:
                r = server.request("GET", f"/v1/sandboxes/{sid}")
            elif k % 4 == 1:
                r = server.request("GET", "/v1/sandboxes?metadata=suite%3Dload")
            elif k % 4 == 2:
                r = server.execd(sid, "GET", "/ping")
            else:
                r = server.request("GET", f"/v1/sandboxes/{sid}/endpoints/44772")
            if r.status != 200:
                errors.append((i, k, r))

    with ThreadPoolExecutor(50) as ex:
        list(ex.map(client, range(50)))
    assert not errors, errors[:5]
    assert server.request("DELETE", f"/v1/sandboxes/{sid}").status == 204
