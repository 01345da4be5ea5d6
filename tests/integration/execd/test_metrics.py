"""GET /metrics and /metrics/watch."""
import json
import os
import time

import pytest

from conftest import Daemon


def check(m):
    assert set(m) == {"cpu_count", "cpu_used_pct", "mem_total_mib", "mem_used_mib", "timestamp"}
    assert m["cpu_count"] > 0
    assert 0 <= m["cpu_used_pct"] <= 100
    assert m["mem_total_mib"] > 0 and 0 <= m["mem_used_mib"] <= m["mem_total_mib"]
    assert abs(m["timestamp"] - time.time() * 1000) < 120000


def test_metrics_shape(client):
    st, m = client.json("GET", "/metrics")
    assert st == 200
    check(m)


def test_metrics_watch_streams_every_second(client):
    c = client.conn()
    c.request("GET", "/metrics/watch")
    r = c.getresponse()
    assert r.status == 200
    got = []
    t0 = time.time()
    while len(got) < 3:
        line = r.readline().strip()
        if line:
            got.append(json.loads(line))
    c.close()
    assert time.time() - t0 >= 1.5
    for m in got:
        check(m)
    assert got[0]["timestamp"] < got[-1]["timestamp"]
    assert client.request("GET", "/ping")[0] == 200


def _own_memory_cgroup_v1():
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if "memory" in ctrls.split(","):
                d = "/sys/fs/cgroup/memory" + (path if path != "/" else "")
                if os.path.exists(os.path.join(d, "memory.limit_in_bytes")):
                    return d
    return None


def test_metrics_report_the_cgroup_limit(execd_bin, tmpdir_path):
    base = _own_memory_cgroup_v1()
    if base is None:
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            base = None
        pytest.skip("no writable cgroup v1 memory hierarchy here")
    cg = os.path.join(base, f"kn-execd-test-{os.getpid()}")
    try:
        os.mkdir(cg)
        with open(os.path.join(cg, "memory.limit_in_bytes"), "w") as f:
            f.write(str(300 * 1024 * 1024))
    except OSError as e:
        pytest.skip(f"cannot create a memory cgroup: {e}")

    def enter():
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    d = Daemon(execd_bin, tmpdir_path, pre_exec=enter)
    try:
        st, m = d.client.json("GET", "/metrics")
        check(m)
        assert m["mem_total_mib"] == pytest.approx(300, abs=1)
        assert m["mem_used_mib"] < 300
    finally:
        d.stop()
        time.sleep(0.2)
        try:
            os.rmdir(cg)
        except OSError:
            pass
