"""scripts/dist and the verification commands of docs/release.md."""
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


def run(argv, cwd):
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


def verify(out):
    """The two commands of docs/release.md, as written there."""
    a = run(["sha256sum", "-c", "SHA256SUMS"], out)
    b = run(["minisign", "-Vm", "SHA256SUMS", "-p", "kennel-release.pub"], out)
    return a.returncode == 0, b.returncode == 0


@pytest.fixture(autouse=True)
def need_minisign():
    if not shutil.which("minisign"):
        pytest.skip("minisign is not installed (scripts/setup installs it)")


def test_dist_verifies_and_tampering_is_caught(tmp_path):
    r = run([str(ROOT / "scripts" / "dist"), str(tmp_path)], ROOT)
    assert r.returncode == 0, r.stderr
    tarballs = list(tmp_path.glob("kennel-*.tar.gz"))
    assert len(tarballs) == 1
    assert (tmp_path / "kennel-release.key").stat().st_mode & 0o077 == 0
    assert verify(tmp_path) == (True, True)
    out = run(["minisign", "-Vm", "SHA256SUMS", "-p", "kennel-release.pub"], tmp_path).stdout
    assert "Trusted comment: kennel " in out, out
    listing = run(["tar", "-tzf", str(tarballs[0])], tmp_path).stdout
    assert "/src/core/spawn.c" in listing and "/README.md" in listing

    sums = (tmp_path / "SHA256SUMS").read_bytes()
    data = tarballs[0].read_bytes()
    tarballs[0].write_bytes(data + b"\0")           # a changed archive
    assert verify(tmp_path) == (False, True)
    tarballs[0].write_bytes(data)
    (tmp_path / "SHA256SUMS").write_bytes(sums.replace(b"  ", b" *", 1))  # a changed sums file
    assert verify(tmp_path)[1] is False
    (tmp_path / "SHA256SUMS").write_bytes(sums)
    assert verify(tmp_path) == (True, True)

    # The published key string works in place of the file (-P).
    pub = (tmp_path / "kennel-release.pub").read_text().splitlines()[1]
    assert run(["minisign", "-Vm", "SHA256SUMS", "-P", pub], tmp_path).returncode == 0

    # A signature by another key is refused.
    other = tmp_path / "other"
    other.mkdir()
    assert run(["minisign", "-G", "-W", "-s", "o.key", "-p", "o.pub"], other).returncode == 0
    sig = (tmp_path / "SHA256SUMS.minisig").read_bytes()
    assert run(["minisign", "-S", "-s", str(other / "o.key"), "-m", "SHA256SUMS"],
               tmp_path).returncode == 0
    assert verify(tmp_path)[1] is False
    (tmp_path / "SHA256SUMS.minisig").write_bytes(sig)
    assert verify(tmp_path) == (True, True)


def test_dist_with_a_given_key(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    assert run(["minisign", "-G", "-W", "-s", "rel.key", "-p", "rel.pub"], keys).returncode == 0
    out = tmp_path / "out"
    r = run([str(ROOT / "scripts" / "dist"), str(out), str(keys / "rel.key")], ROOT)
    assert r.returncode == 0, r.stderr
    assert not (out / "kennel-release.key").exists()
    # The public key written is the given key's.
    assert (out / "kennel-release.pub").read_text().splitlines()[1] == \
        (keys / "rel.pub").read_text().splitlines()[1]
    assert verify(out) == (True, True)
