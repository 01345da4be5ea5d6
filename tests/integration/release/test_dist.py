"""scripts/dist and the verification commands of docs/release.md."""
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[3]


def run(argv, cwd):
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)


def verify(out):
    a = run(["sha256sum", "-c", "SHA256SUMS"], out)
    b = run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "kennel-release.pub.pem",
             "-rawin", "-in", "SHA256SUMS", "-sigfile", "SHA256SUMS.sig"], out)
    return a.returncode == 0, b.returncode == 0


def test_dist_verifies_and_tampering_is_caught(tmp_path):
    r = run([str(ROOT / "scripts" / "dist"), str(tmp_path)], ROOT)
    assert r.returncode == 0, r.stderr
    tarballs = list(tmp_path.glob("kennel-*.tar.gz"))
    assert len(tarballs) == 1
    assert (tmp_path / "kennel-release.key.pem").stat().st_mode & 0o077 == 0
    assert verify(tmp_path) == (True, True)
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
