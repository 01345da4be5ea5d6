"""Conformance with the official OpenSandbox JavaScript SDK from npm.

tests/sdk/js pins @alibaba-group/opensandbox in package-lock.json; scripts/setup
installs it with `npm ci`. The node script runs each
family of SDK calls against a real `kennel serve` with an API key; known gaps
must fail loudly (GAP lines), anything else failing fails this test."""
import json
import re
import time
import os
import pathlib
import shutil
import subprocess

import pytest

from .conftest import API_KEY, Server

SDK_DIR = pathlib.Path(__file__).resolve().parents[2] / "sdk" / "js"
KNOWN_GAPS = set()


@pytest.fixture(scope="module")
def sdk():
    node = shutil.which("node")
    if not node:
        pytest.skip("node is needed for the SDK conformance test")
    mod = SDK_DIR / "node_modules" / "@alibaba-group" / "opensandbox" / "package.json"
    if not mod.exists():
        # scripts/setup runs `npm ci` before any test: here, the network tests'
        # uplink guard may be up and would count npm's requests as leaks.
        pytest.skip(f"the SDK is not installed in {SDK_DIR} (scripts/setup runs npm ci; "
                    "it was offline or failed)")
    return node


@pytest.mark.parametrize("pool", [False, True], ids=["cold", "warm-pool"])
def test_official_js_sdk(kennel, sdk, pool):
    # With a pool of the SDK's defaults (image aside), Sandbox.create is served warm.
    s = Server(kennel, extra_args=["--pool", "default=2"] if pool else [])
    s.start()
    try:
        env = dict(os.environ, KENNEL_DOMAIN=f"127.0.0.1:{s.port}", KENNEL_CLIENT_KEY=API_KEY,
                   OPENSANDBOX_DISABLE_METRICS="1")
        if pool:
            for _ in range(200):  # let the pool fill before the SDK creates
                if s.request("GET", "/v1/pools/default").json()["status"]["available"] >= 2:
                    break
                time.sleep(0.05)
        r = subprocess.run([sdk, "conformance.mjs"], cwd=SDK_DIR, capture_output=True,
                           text=True, timeout=120, env=env)
        print(r.stdout)
        print(r.stderr)
        summary = None
        for line in r.stdout.splitlines():
            if line.startswith("SUMMARY "):
                summary = json.loads(line[len("SUMMARY "):])
        assert summary, f"no summary (exit {r.returncode})"
        failed = [x for x in summary["results"] if x["status"] not in ("PASS", "GAP")]
        assert not failed, failed
        gaps = {x["name"] for x in summary["results"] if x["status"] == "GAP"}
        assert gaps == KNOWN_GAPS, gaps
        assert r.returncode == 0
        assert summary["passed"] >= 17
        if pool:
            sid = re.search(r"sandbox (\S+) ready", r.stdout).group(1)
            with open(s.log) as f:
                log = f.read()
            assert "a warm sandbox could not be claimed" not in log
            assert f'"msg":"taken from a warm pool","sandboxId":"{sid}"' in log
    finally:
        problems = s.cleanup()
    assert not problems, problems
