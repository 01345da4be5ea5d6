"""`kennel attest`: the seed's probes run inside a sandbox of the profile.
deny-by-default must pass all twelve; the default profile (sockets and execve
allowed, no /in or /out) is the control that shows the probes can fail."""
import json
import subprocess

import pytest

SEED_PROBES = ["PR-NET-1", "PR-NET-2", "PR-SOCK-1", "PR-ENV-1", "PR-FS-RO-IN", "PR-FS-ESC-1",
               "PR-FS-ESC-2", "PR-FS-OUT-OK", "PR-EXEC-1", "PR-MOUNT-1", "PR-SOCK-DOCKER",
               "PR-PTRACE-1"]
KENNEL_PROBES = ["PR-KN-SECCOMP", "PR-KN-NNP", "PR-KN-CAPS", "PR-KN-UIDMAP", "PR-KN-CGROUP"]


def attest(kennel, tmp_path, *args, date="2026-06-10"):
    p = subprocess.run([kennel, "attest", "--out", str(tmp_path), "--run-date", date, *args],
                       capture_output=True, text=True, timeout=60,
                       env={"SECRET_TOKEN": "must-not-leak", "PATH": "/usr/bin:/bin"})
    profile = args[args.index("--profile") + 1] if "--profile" in args else "deny-by-default"
    out = tmp_path / f"sandbox-attestation-evidence-{profile}-{date}.json"
    return p, json.loads(out.read_text())


def test_deny_by_default_passes_every_seed_probe(kennel, tmp_path):
    p, b = attest(kennel, tmp_path, "--profile", "deny-by-default")
    assert p.returncode == 0, p.stderr
    assert b["verdict"] == "PASS" and b["profile"] == "deny-by-default"
    assert b["run_date"] == "2026-06-10"
    assert len(b["seccomp_sha256"]) == 64
    probes = b["inside"]["probes"]
    assert [x["probe_id"] for x in probes] == SEED_PROBES + KENNEL_PROBES
    assert all(x["verdict"] == "PASS" for x in probes), probes
    assert b["inside"]["summary"] == {"total": 17, "pass": 17, "fail": 0, "unverified": 0}
    cg = next(x for x in probes if x["probe_id"] == "PR-KN-CGROUP")
    assert cg["actual_stderr_or_value"] == "memory=268435456 pids=64"
    env = next(x for x in probes if x["probe_id"] == "PR-ENV-1")
    assert "SECRET_TOKEN" not in env["actual_stderr_or_value"]


def test_default_profile_is_not_deny_by_default(kennel, tmp_path):
    p, b = attest(kennel, tmp_path, "--profile", "default")
    assert p.returncode == 1, p.stderr
    assert b["verdict"] == "FAIL"
    failed = {x["probe_id"] for x in b["inside"]["probes"] if x["verdict"] == "FAIL"}
    # Sockets and execve are allowed there, and there is no /in or /out.
    assert failed == {"PR-SOCK-1", "PR-EXEC-1", "PR-FS-RO-IN", "PR-FS-OUT-OK", "PR-MOUNT-1"}
    passed = {x["probe_id"] for x in b["inside"]["probes"] if x["verdict"] == "PASS"}
    assert {"PR-NET-1", "PR-NET-2", "PR-ENV-1", "PR-PTRACE-1", "PR-FS-ESC-1"} <= passed
    assert set(KENNEL_PROBES) <= passed


def test_unknown_profile_is_kennels_error(kennel, tmp_path):
    p = subprocess.run([kennel, "attest", "--profile", "nope", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 125
    assert "unknown profile 'nope'" in p.stderr


def test_in_dir_is_bound_read_only(kennel, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "packet.json").write_text('{"packet":"attestation-fixture"}')
    out = tmp_path / "out"
    out.mkdir()
    p, b = attest(kennel, out, "--in", str(src))
    assert p.returncode == 0, p.stderr
    ro = next(x for x in b["inside"]["probes"] if x["probe_id"] == "PR-FS-RO-IN")
    assert ro["verdict"] == "PASS"
    assert sorted(x.name for x in src.iterdir()) == ["packet.json"]
