"""Code contexts (/code*) and bash sessions (/session*) against the real daemon."""
import json
import os
import shutil
import threading
import time

import pytest

from conftest import children_of


def need(runtime):
    if not shutil.which(runtime):
        pytest.skip(f"{runtime} is not installed")


def create(client, language, **kw):
    st, b = client.json("POST", "/code/context", {"language": language, **kw})
    assert st == 200, b
    assert b["language"] in (language, "javascript") and b["id"]
    return b["id"]


def code(client, cid, src, **kw):
    return client.events("/code", {"code": src, "context": {"id": cid}, **kw})


def of(evs, kind):
    return [e for e in evs if e["type"] == kind]


def out(evs, kind="stdout"):
    return "".join(e["text"] for e in of(evs, kind))


def test_python_state_result_error(client):
    need("python3")
    cid = create(client, "python")
    evs = code(client, cid, "import math\nx = 41\ndef f(a):\n    return a * 2\nprint('hi')\nx + 1")
    assert evs[0] == {**evs[0], "type": "init", "text": cid}
    assert out(evs) == "hi\n"
    assert of(evs, "result")[0]["results"]["text/plain"] == "42"
    assert evs[-1]["type"] == "execution_complete"
    evs = code(client, cid, "f(x) + math.floor(0.5)")
    assert of(evs, "result")[0]["results"]["text/plain"] == "82"
    evs = code(client, cid, "y = 1\nundefined_var")
    err = evs[-1]["error"]
    assert evs[-1]["type"] == "error" and err["ename"] == "NameError"
    assert "undefined_var" in err["evalue"]
    assert err["traceback"][0].startswith("Traceback") and "NameError" in err["traceback"][-1]
    assert not of(evs, "execution_complete")
    evs = code(client, cid, "import sys; print('e', file=sys.stderr); None")
    assert out(evs, "stderr") == "e\n" and not of(evs, "result")
    st, b = client.json("GET", f"/code/contexts/{cid}")
    assert st == 200 and b == {"id": cid, "language": "python"}


def test_javascript_state_result_error(client):
    need("node")
    cid = create(client, "javascript")
    evs = code(client, cid, "const os = require('os'); let a = 5; function g(x) { return x + a; }\n"
                            "console.log('hey'); g(2)")
    assert out(evs) == "hey\n"
    assert of(evs, "result")[0]["results"]["text/plain"] == "7"
    evs = code(client, cid, "a = 10; g(1)")
    assert of(evs, "result")[0]["results"]["text/plain"] == "11"
    evs = code(client, cid, "null.x")
    assert evs[-1]["error"]["ename"] == "TypeError"
    assert evs[-1]["error"]["traceback"]
    evs = code(client, cid, "Promise.resolve(3).then((v) => v * 2)")
    assert of(evs, "result")[0]["results"]["text/plain"] == "6"


def test_bash_context_and_default_contexts(client):
    need("bash")
    evs = client.events("/code", {"code": "f() { echo in-f $1; }; X=3; f 1",
                                  "context": {"language": "bash"}})
    cid = evs[0]["text"]
    assert out(evs) == "in-f 1\n" and evs[-1]["type"] == "execution_complete"
    evs = client.events("/code", {"code": "f $X; false", "context": {"language": "bash"}})
    assert evs[0]["text"] == cid
    assert out(evs) == "in-f 3\n"
    assert evs[-1]["error"]["evalue"] == "1"
    st, lst = client.json("GET", "/code/contexts?language=bash")
    assert [c["id"] for c in lst] == [cid]


def test_code_without_language_runs_a_command(client):
    evs = client.events("/code", {"code": "echo plain"})
    assert [e["text"] for e in of(evs, "stdout")] == ["plain"]


def test_timeout_resets_context_and_others_survive(client):
    need("python3")
    a = create(client, "python")
    b = create(client, "python")
    code(client, a, "keep = 1")
    code(client, b, "keep = 2")
    t0 = time.time()
    evs = code(client, a, "import time\ntime.sleep(30)", timeout=500)
    assert time.time() - t0 < 5
    assert evs[-1]["type"] == "error" and evs[-1]["error"]["ename"] == "TimeoutError"
    assert "reset" in evs[-1]["error"]["evalue"]
    evs = code(client, a, "keep")
    assert evs[-1]["error"]["ename"] == "NameError"  # fresh process
    evs = code(client, a, "2 + 2")
    assert of(evs, "result")[0]["results"]["text/plain"] == "4"
    evs = code(client, b, "keep")
    assert of(evs, "result")[0]["results"]["text/plain"] == "2"


def test_crash_resets_context(client):
    need("python3")
    cid = create(client, "python")
    code(client, cid, "z = 5")
    evs = code(client, cid, "import os\nos._exit(3)")
    assert evs[-1]["error"]["ename"] == "ContextReset"
    assert "status 3" in evs[-1]["error"]["evalue"]
    evs = code(client, cid, "'alive'")
    assert of(evs, "result")[0]["results"]["text/plain"] == "'alive'"


def test_interrupt_code(client):
    need("python3")
    cid = create(client, "python")
    res = {}

    def go():
        res["evs"] = code(client, cid, "import time\nfor i in range(300):\n    time.sleep(0.1)")

    t = threading.Thread(target=go)
    t.start()
    time.sleep(0.5)
    st, h, _ = client.request("DELETE", f"/code?id={cid}")
    assert st == 200 and h["content-length"] == "0"
    t.join(10)
    assert res["evs"][-1]["error"]["ename"] == "KeyboardInterrupt"
    evs = code(client, cid, "i >= 0")
    assert of(evs, "result")[0]["results"]["text/plain"] == "True"
    st, b = client.json("DELETE", "/code?id=nope")
    assert st >= 400 and b["message"]


def test_busy_context_is_409(client):
    need("python3")
    cid = create(client, "python")
    t = threading.Thread(target=lambda: code(client, cid, "import time; time.sleep(1)"))
    t.start()
    time.sleep(0.3)
    st, h, data = client.request("POST", "/code", {"code": "1", "context": {"id": cid}})
    assert st == 409 and json.loads(data)["message"]
    t.join()


def test_context_errors(client):
    st, b = client.json("POST", "/code/context", {"language": "cobol"})
    assert st == 400 and "cobol" in b["message"]
    st, b = client.json("POST", "/code/context", {"language": 5})
    assert st == 400
    st, b = client.json("GET", "/code/contexts/nope")
    assert st == 404 and b["code"] == "CONTEXT_NOT_FOUND"
    st, b = client.json("DELETE", "/code/contexts/nope")
    assert st == 404
    st, h, data = client.request("POST", "/code", {"code": "1", "context": {"id": "nope"}})
    assert st == 500 and json.loads(data)["code"] == "CONTEXT_NOT_FOUND"
    st, b = client.json("POST", "/code", {"code": 1})
    assert st == 400
    st, b = client.json("DELETE", "/code/contexts")
    assert st == 400


def test_missing_runtime_is_clear_4xx(execd_bin, tmpdir_path):
    from conftest import Daemon
    empty = os.path.join(tmpdir_path, "emptybin")
    os.makedirs(empty)
    os.symlink(shutil.which("sh"), os.path.join(empty, "sh"))
    old = os.environ["PATH"]
    os.environ["PATH"] = empty
    try:
        d = Daemon(execd_bin, tmpdir_path)
    finally:
        os.environ["PATH"] = old
    try:
        for lang, rt in [("python", "python3"), ("javascript", "node"), ("bash", "bash")]:
            st, b = d.client.json("POST", "/code/context", {"language": lang})
            assert st == 400 and rt in b["message"] and b["code"] == "NOT_SUPPORTED"
            st, h, data = d.client.request("POST", "/code", {"code": "1",
                                                             "context": {"language": lang}})
            assert st == 400 and rt.encode() in data
    finally:
        d.stop()


def test_delete_contexts_kills_processes(client, daemon):
    need("python3")
    ids = [create(client, "python") for _ in range(3)]
    n_before = len(children_of(daemon.proc.pid))
    st, lst = client.json("GET", "/code/contexts?language=python")
    assert set(ids) <= {c["id"] for c in lst}
    st, h, _ = client.request("DELETE", f"/code/contexts/{ids[0]}")
    assert st == 200 and h["content-length"] == "0"
    st, h, _ = client.request("DELETE", "/code/contexts?language=python")
    assert st == 200
    st, lst = client.json("GET", "/code/contexts")
    assert lst == []
    time.sleep(0.3)
    assert len(children_of(daemon.proc.pid)) <= n_before - 3


def test_session_state_persists(client):
    need("bash")
    st, b = client.json("POST", "/session", {"cwd": "/tmp"})
    assert st == 200
    sid = b["session_id"]
    evs = client.events(f"/session/{sid}/run", {"command": "pwd; export FOO=bar; g() { echo gee; }; V=1"})
    assert evs[0]["type"] == "init" and evs[0]["text"] == sid
    assert [e["text"] for e in of(evs, "stdout")] == ["/tmp"]
    assert evs[-1]["type"] == "execution_complete"
    evs = client.events(f"/session/{sid}/run",
                        {"command": "pwd; echo $FOO $V; g; echo err >&2; echo; sh -c 'exit 7'",
                         "cwd": "/var"})
    assert [e["text"] for e in of(evs, "stdout")] == ["/var", "bar 1", "gee", "err"]
    assert evs[-1]["type"] == "error" and evs[-1]["error"]["evalue"] == "7"
    assert not of(evs, "execution_complete")
    evs = client.events(f"/session/{sid}/run", {"command": "pwd"})
    assert [e["text"] for e in of(evs, "stdout")] == ["/var"]
    evs = client.events(f"/session/{sid}/run", {"command": "sleep 20", "timeout": 300})
    assert evs[-1]["type"] == "error" and "timed out" in evs[-1]["error"]["evalue"]
    evs = client.events(f"/session/{sid}/run", {"command": "echo back"})
    assert [e["text"] for e in of(evs, "stdout")] == ["back"]
    st, h, _ = client.request("DELETE", f"/session/{sid}")
    assert st == 200 and h["content-length"] == "0"
    st, b = client.json("DELETE", f"/session/{sid}")
    assert st == 404
    st, h, data = client.request("POST", f"/session/{sid}/run", {"command": "true"})
    assert st == 500 and json.loads(data)["message"]


def test_session_exit_restarts_shell(client):
    need("bash")
    st, b = client.json("POST", "/session", {})
    sid = b["session_id"]
    evs = client.events(f"/session/{sid}/run", {"command": "exit 4"})
    assert evs[-1]["error"]["evalue"] == "4"
    evs = client.events(f"/session/{sid}/run", {"command": "echo again"})
    assert [e["text"] for e in of(evs, "stdout")] == ["again"]


def test_abandoned_code_run_is_interrupted(client, daemon):
    need("python3")
    cid = create(client, "python")
    c = client.conn()
    c.request("POST", "/code", body=json.dumps({"code": "import time\ntime.sleep(100)",
                                                "context": {"id": cid}}),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    r.readline()
    c.close()
    time.sleep(0.5)
    evs = code(client, cid, "'still here'")
    assert of(evs, "result")[0]["results"]["text/plain"] == "'still here'"


def test_delete_command_with_session_id_interrupts_it(client):
    need("bash")
    st, b = client.json("POST", "/session", {})
    sid = b["session_id"]
    res = {}
    t = threading.Thread(target=lambda: res.setdefault(
        "evs", client.events(f"/session/{sid}/run", {"command": "sleep 30; echo after"})))
    t0 = time.time()
    t.start()
    time.sleep(0.5)
    st, h, _ = client.request("DELETE", f"/command?id={sid}")
    assert st == 200
    t.join(10)
    assert time.time() - t0 < 8
    assert res["evs"][-1]["type"] in ("error", "execution_complete")
