"""The official OpenSandbox JS SDK's execd adapters drive kennel-execd unchanged.

Uses the SDK already installed in tests/sdk/js (no network access here); skips
with the reason when node or the SDK is missing.
"""
import os
import pathlib
import shutil
import socket
import subprocess

import pytest

from conftest import Daemon, ROOT

SDK = ROOT / "tests" / "sdk" / "js" / "node_modules" / "@alibaba-group" / "opensandbox"


def test_js_sdk_against_execd(execd_bin, tmpdir_path):
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    if not (SDK / "dist" / "internal.js").exists():
        pytest.skip(f"the OpenSandbox JS SDK is not installed at {SDK}")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    root = os.path.join(tmpdir_path, "sdkroot")
    os.makedirs(root)
    d = Daemon(execd_bin, tmpdir_path, args=["--listen-tcp", f"127.0.0.1:{port}"], root=root)
    files_dir = "/sdkfiles"  # inside the throwaway root
    try:
        r = subprocess.run([node, str(pathlib.Path(__file__).with_name("sdk_execd.mjs")),
                            str(SDK), f"http://127.0.0.1:{port}"],
                           env={**os.environ, "SDK_FILES_DIR": files_dir},
                           capture_output=True, text=True, timeout=120)
        print(r.stdout)
    finally:
        d.stop()
    assert r.returncode == 0 and "ALL PASS" in r.stdout, r.stdout + r.stderr + d.output[-4000:]
    assert d.proc.returncode == 0, d.output[-6000:]
