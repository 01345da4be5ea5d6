"""`kennel serve` configured by a JSON file: API keys, image aliases, host
volumes under allowed prefixes, the maximum timeout."""
import json
import os

from .conftest import Server


def test_config_file(kennel, fresh_server):
    s = fresh_server(key=None)
    shared = os.path.join(s.dir, "shared")
    os.makedirs(os.path.join(shared, "sub"))
    with open(os.path.join(shared, "sub", "hello.txt"), "w") as f:
        f.write("from the host\n")
    os.chmod(shared, 0o755)
    os.chmod(os.path.join(shared, "sub"), 0o777)
    cfg = os.path.join(s.dir, "kennel.json")
    with open(cfg, "w") as f:
        json.dump({"apiKeys": ["k-one", "k-two"],
                   "imageAliases": {"ubuntu:22.04": "host", "python:3.11": "host"},
                   "allowedHostPaths": [shared], "maxTimeoutSeconds": 3600}, f)
    s.extra = ["-c", cfg]
    s.key = "k-two"
    s.start()
    assert s.request("GET", "/v1/sandboxes", key=False).status == 401
    assert s.request("GET", "/v1/sandboxes", headers={"OPEN-SANDBOX-API-KEY": "k-one"},
                     key=False).status == 200
    sid = s.create(image={"uri": "ubuntu:22.04"}, volumes=[
        {"name": "ro", "host": {"path": shared}, "subPath": "sub", "mountPath": "/data",
         "readOnly": True},
        {"name": "rw", "host": {"path": shared + "/sub"}, "mountPath": "/out"}])
    assert s.request("GET", f"/v1/sandboxes/{sid}").json()["image"] == {"uri": "ubuntu:22.04"}
    out, _ = s.run(sid, "cat /data/hello.txt; touch /data/x 2>/dev/null || echo read-only; "
                        "echo made > /out/made.txt && echo wrote")
    assert out == ["from the host", "read-only", "wrote"]
    with open(os.path.join(shared, "sub", "made.txt")) as f:
        assert f.read() == "made\n"
    r = s.request("POST", "/v1/sandboxes", {
        "image": {"uri": "host"}, "entrypoint": ["x"], "resourceLimits": {}, "timeout": 7200})
    assert r.status == 400 and "3600" in r.json()["message"]
    r = s.request("POST", "/v1/sandboxes", {
        "image": {"uri": "alpine"}, "entrypoint": ["x"], "resourceLimits": {}})
    assert r.status == 400 and "alpine" in r.json()["message"]
    assert s.request("DELETE", f"/v1/sandboxes/{sid}").status == 204


def test_bad_config_is_refused(kennel, tmp_path):
    import subprocess
    cfg = tmp_path / "bad.json"
    cfg.write_text('{"apiKeys": [1]}')
    r = subprocess.run([kennel, "serve", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 125 and "apiKeys" in r.stderr
    cfg.write_text("{not json")
    r = subprocess.run([kennel, "serve", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 125 and "bad.json" in r.stderr


def test_max_sandboxes_and_public_host(fresh_server):
    s = fresh_server(extra_args=["--max-sandboxes", "2", "--public-host", "sandboxes.example:443"])
    s.start()
    a, b = s.create(), s.create()
    r = s.request("POST", "/v1/sandboxes", {"image": {"uri": "host"}, "entrypoint": ["x"],
                                            "resourceLimits": {}})
    assert r.status == 409 and "maxSandboxes" in r.json()["message"]
    ep = s.request("GET", f"/v1/sandboxes/{a}/endpoints/44772").json()["endpoint"]
    assert ep == f"sandboxes.example:443/sandboxes/{a}/proxy/44772"
    assert s.request("DELETE", f"/v1/sandboxes/{b}").status == 204
    s.create()


def test_a_taken_port_is_refused(fresh_server):
    """A second server on the port of a running one must fail, not share it
    (SO_REUSEPORT would have the kernel split the clients between them)."""
    import subprocess
    first = fresh_server()
    first.start()
    second = fresh_server()
    r = subprocess.run([first.kennel, "serve", "--listen", f"127.0.0.1:{first.port}",
                        "--db", second.db, "--run-dir", second.run_dir,
                        "--image-store", second.store],
                       capture_output=True, text=True, timeout=10,
                       env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                            "KENNEL_API_KEY": "k"})
    assert r.returncode != 0, r.stderr
    assert "cannot listen" in r.stderr, r.stderr
    # ... and a restarted server gets its port back at once.
    first.kill9()
    first.start()
    assert first.request("GET", "/health").status == 200
