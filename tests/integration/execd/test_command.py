"""POST /command and friends against the real daemon."""
import json
import os
import threading
import time

from conftest import children_of, fd_count


def run(client, body, timeout=60):
    return client.events("/command", body, timeout=timeout)


def texts(evs, kind):
    return [e["text"] for e in evs if e["type"] == kind]


def test_echo_exact_events(client):
    evs = run(client, {"command": "echo 'Hello OpenSandbox E2E'", "background": False})
    assert evs[0]["type"] == "init" and len(evs[0]["text"]) == 32
    assert texts(evs, "stdout") == ["Hello OpenSandbox E2E"]
    assert evs[-1]["type"] == "execution_complete"
    assert isinstance(evs[-1]["execution_time"], int)
    assert all(isinstance(e["timestamp"], int) for e in evs)


def test_exit_code_stderr_cwd_envs(client):
    evs = run(client, {"command": "echo hi; echo err >&2; pwd; echo $X; exit 3",
                       "cwd": "/tmp", "timeout": 5000, "envs": {"X": "y"}})
    assert texts(evs, "stdout") == ["hi", "/tmp", "y"]
    assert texts(evs, "stderr") == ["err"]
    last = evs[-1]
    assert last["type"] == "error"
    assert last["error"]["ename"] == "CommandExecError"
    assert last["error"]["evalue"] == "3"
    assert not any(e["type"] == "execution_complete" for e in evs)


def test_line_splitting(client):
    evs = run(client, {"command": r"printf 'a\r\nb\rc\n\nd'"})
    assert texts(evs, "stdout") == ["a", "b", "c", "\n", "d"]


def test_signal_exit_is_128_plus_n(client):
    evs = run(client, {"command": "kill -TERM $$"})
    assert evs[-1]["error"]["evalue"] == str(128 + 15)


def test_timeout_kills(client):
    t0 = time.time()
    evs = run(client, {"command": "echo start; sleep 30", "timeout": 500})
    assert time.time() - t0 < 5
    assert texts(evs, "stdout") == ["start"]
    assert evs[-1]["type"] == "error"
    assert evs[-1]["error"]["evalue"] == "-1"  # exec-sandbox and the reference: timeout is -1
    assert "timed out" in evs[-1]["error"]["traceback"][0]
    st, s = client.json("GET", f"/command/status/{evs[0]['text']}")
    assert s["exit_code"] == -1 and s["error"] == "timeout"


def test_background_timeout(client):
    evs = run(client, {"command": "sleep 30", "background": True, "timeout": 300})
    time.sleep(1.0)
    st, s = client.json("GET", f"/command/status/{evs[0]['text']}")
    assert s["running"] is False and s["exit_code"] == -1 and s["error"] == "timeout"


def test_bad_cwd_is_error_event(client):
    evs = run(client, {"command": "true", "cwd": "/no/such/dir"})
    assert evs[0]["type"] == "init"
    assert evs[-1]["type"] == "error"
    assert "No such file" in evs[-1]["error"]["evalue"]


def test_binary_and_bad_utf8_output(client):
    evs = run(client, {"command": r"printf 'ok\xff\xfe\x00z\n'; head -c 3000 /dev/urandom"})
    assert evs[-1]["type"] == "execution_complete"
    assert texts(evs, "stdout")[0].startswith("ok\ufffd\ufffd\x00z")


def test_stdout_cap_truncation_marker(client):
    evs = run(client, {"command": "yes abcdefghij | head -c 3000000; echo done >&2"})
    out = texts(evs, "stdout")
    total = sum(len(t) + 1 for t in out[:-1])
    assert total <= 1024 * 1024 + 16
    assert "truncated" in out[-1]
    assert texts(evs, "stderr") == ["done"]
    assert evs[-1]["type"] == "execution_complete"


def test_stderr_cap(execd_bin, tmpdir_path):
    from conftest import Daemon
    d = Daemon(execd_bin, tmpdir_path, args=["--max-stderr", "100"])
    try:
        evs = run(d.client, {"command": "for i in $(seq 100); do echo line$i >&2; done"})
        err = texts(evs, "stderr")
        assert "truncated" in err[-1]
        assert sum(len(t) + 1 for t in err[:-1]) <= 101
    finally:
        d.stop()


def test_background_status_logs_cursor(client):
    t0 = time.time()
    evs = run(client, {"command": "echo one; echo two >&2; sleep 0.5; echo three",
                       "background": True})
    assert time.time() - t0 < 2
    assert [e["type"] for e in evs] == ["init", "execution_complete"]
    cid = evs[0]["text"]
    st, s = client.json("GET", f"/command/status/{cid}")
    assert st == 200 and s["running"] is True and s["id"] == cid
    assert "sleep" in s["content"] and s["started_at"].endswith("Z")
    time.sleep(1.0)
    st, s = client.json("GET", f"/command/status/{cid}")
    assert s["running"] is False and s["exit_code"] == 0 and s["finished_at"]
    st, h, data = client.request("GET", f"/command/{cid}/logs")
    assert st == 200
    assert data == b"one\ntwo\nthree\n"
    assert h["execd-commands-tail-cursor"] == str(len(data))
    st, h, data2 = client.request("GET", f"/command/{cid}/logs?cursor=4")
    assert data2 == b"two\nthree\n"
    st, h, data3 = client.request("GET", f"/command/{cid}/logs?cursor={len(data)}")
    assert data3 == b""


def test_status_unknown_is_404_and_logs_of_foreground_is_400(client):
    st, b = client.json("GET", "/command/status/nope")
    assert st == 404 and b["message"]
    evs = run(client, {"command": "true"})
    st, b = client.json("GET", f"/command/{evs[0]['text']}/logs")
    assert st == 400
    st, s = client.json("GET", f"/command/status/{evs[0]['text']}")
    assert st == 200 and s["exit_code"] == 0 and s["running"] is False


def test_interrupt_background_by_id(client):
    # Start a second command and interrupt it by id (background, reachable id).
    evs = run(client, {"command": "sleep 60", "background": True})
    cid = evs[0]["text"]
    t0 = time.time()
    st, h, data = client.request("DELETE", f"/command?id={cid}")
    assert st == 200 and h["content-length"] == "0"
    assert time.time() - t0 < 4
    st, s = client.json("GET", f"/command/status/{cid}")
    assert s["running"] is False and s["exit_code"] == 128 + 15
    st, b = client.json("DELETE", f"/command?id={cid}")
    assert st == 500 and b["code"] == "RUNTIME_ERROR"
    st, b = client.json("DELETE", "/command")
    assert st == 400 and b["code"] == "MISSING_QUERY"


def test_interrupt_foreground_stream_by_id(client):
    c = client.conn()
    c.request("POST", "/command", body=json.dumps({"command": "echo go; sleep 60"}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    first = json.loads(r.readline())
    assert first["type"] == "init"
    t0 = time.time()
    st, h, _ = client.request("DELETE", f"/command?id={first['text']}")
    assert st == 200
    rest = r.read().decode()
    evs = [json.loads(x) for x in rest.split("\n\n") if x.strip()]
    assert evs[-1]["type"] == "error" and evs[-1]["error"]["evalue"] == "143"
    assert time.time() - t0 < 4
    c.close()


def test_client_disconnect_kills_and_leaks_nothing(client, daemon):
    pid = daemon.proc.pid
    base_fds = fd_count(pid)
    for _ in range(5):
        c = client.conn()
        c.request("POST", "/command", body=json.dumps({"command": "sleep 100"}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.readline()
        c.close()
    deadline = time.time() + 5
    while time.time() < deadline:
        if not children_of(pid) and fd_count(pid) <= base_fds:
            break
        time.sleep(0.1)
    assert children_of(pid) == []
    assert fd_count(pid) <= base_fds


def test_100_concurrent_commands(client, daemon):
    results = [None] * 100

    def go(i):
        try:
            results[i] = run(client, {"command": f"echo n{i}; sleep 0.2"})
        except Exception as e:  # noqa: BLE001 - recorded and asserted below
            results[i] = e

    ts = [threading.Thread(target=go, args=(i,)) for i in range(100)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    for i, evs in enumerate(results):
        assert not isinstance(evs, Exception), evs
        assert texts(evs, "stdout") == [f"n{i}"]
        assert evs[-1]["type"] == "execution_complete"
    assert client.request("GET", "/ping")[0] == 200


def test_zombies_are_reaped(client, daemon):
    # An orphaned grandchild re-parents to execd (subreaper) and must be reaped.
    run(client, {"command": "(sleep 0.2 &) ; true"})
    time.sleep(0.8)
    for k in children_of(daemon.proc.pid):
        with open(f"/proc/{k}/stat") as f:
            assert f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_uid_gid(client):
    evs = run(client, {"command": "id -u; id -g", "uid": 65534, "gid": 65534})
    assert texts(evs, "stdout") == ["65534", "65534"]


def test_1000_sequential_commands_do_not_grow_rss_or_fds(client, daemon):
    pid = daemon.proc.pid
    c = client.conn()

    def one():
        c.request("POST", "/command", body=json.dumps({"command": "true"}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        assert b"execution_complete" in data

    def rss():
        with open(f"/proc/{pid}/status") as f:
            return int([l for l in f if l.startswith("VmRSS:")][0].split()[1])

    for _ in range(300):  # past the 256 finished commands kept for /command/status
        one()
    rss0, fds0 = rss(), fd_count(pid)
    for _ in range(1000):
        one()
    c.close()
    if "libasan" not in open(f"/proc/{pid}/maps").read():
        # (ASan's quarantine keeps freed memory resident by design.)
        assert rss() - rss0 < 512, (rss0, rss())
    deadline = time.time() + 3  # the server closes its end of the connection on its own time
    while fd_count(pid) > fds0 and time.time() < deadline:
        time.sleep(0.05)
    assert fd_count(pid) <= fds0


def test_simple_commands_see_what_bash_would_give_them(client, tmp_path):
    """A simple command runs without bash (direct.c); what it sees must be
    what `bash -c` would have given it. `env;` is the same program run through
    bash (the `;` keeps it off the direct path)."""
    for body in ({}, {"cwd": "/tmp"}, {"cwd": "/tmp", "envs": {"SHLVL": "4", "PWD": "/usr"}},
                 {"envs": {"SHLVL": "x", "A": "1"}}):
        direct = run(client, {"command": "/usr/bin/env", **body})
        shell = run(client, {"command": "/usr/bin/env;", **body})
        assert sorted(texts(direct, "stdout")) == sorted(texts(shell, "stdout")), body
        assert direct[-1]["type"] == shell[-1]["type"] == "execution_complete"
    # Failures keep bash's messages and codes.
    for cmd in ("nosuchprog", "ls -d /nonexistent", "/tmp", "./nothing", "false"):
        direct, shell = run(client, {"command": cmd}), run(client, {"command": cmd + ";"})
        assert texts(direct, "stderr") == texts(shell, "stderr"), cmd
        assert direct[-1]["type"] == shell[-1]["type"] == "error", cmd
        assert direct[-1]["error"]["evalue"] == shell[-1]["error"]["evalue"], cmd
    # What makes bash do more than exec keeps bash in the path.
    rc = tmp_path / "rc"
    rc.write_text("echo from-bash-env\n")
    evs = run(client, {"command": "true", "envs": {"BASH_ENV": str(rc)}})
    assert texts(evs, "stdout") == ["from-bash-env"]
    evs = run(client, {"command": "true", "envs": {"SHELLOPTS": "xtrace"}})
    assert texts(evs, "stderr") == ["+ true"]
    evs = run(client, {"command": "ls", "envs": {"BASH_FUNC_ls%%": "() {  echo fn; }"}})
    assert texts(evs, "stdout") == ["fn"]
    script = tmp_path / "noshebang"
    script.write_text("echo ran-as-script\n")
    script.chmod(0o755)
    evs = run(client, {"command": "./noshebang", "cwd": str(tmp_path)})
    assert texts(evs, "stdout") == ["ran-as-script"]
