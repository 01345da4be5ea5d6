"""Kennel's own errors: exit 125, a message that starts with "kennel:", and
nothing run. Every case carries a program that would print RAN if kennel
went ahead anyway."""
import pytest

RAN = ["-c", "print('RAN')"]

CASES = {
    "unknown flag": ["--no-such-flag", *RAN],
    "memory negative": ["-m", "-5", *RAN],
    "memory zero": ["-m", "0", *RAN],
    "memory word": ["-m", "abc", *RAN],
    "memory bad suffix": ["-m", "5x", *RAN],
    "memory missing value": ["-m"],
    "memory overflow": ["-m", "99999999999999999999999", *RAN],
    "memory overflow after unit": ["-m", "99999999999999g", *RAN],
    "pids word": ["--pids", "abc", *RAN],
    "pids overflow": ["--pids", "99999999999999999999", *RAN],
    "pids zero": ["--pids", "0", *RAN],
    "pids negative": ["--pids", "-3", *RAN],
    "timeout zero": ["-t", "0", *RAN],
    "timeout negative": ["-t", "-1", *RAN],
    "timeout word": ["-t", "abc", *RAN],
    "timeout nan": ["-t", "nan", *RAN],
    "timeout inf": ["-t", "inf", *RAN],
    "timeout overflow": ["-t", "1e400", *RAN],
    "cpus zero": ["--cpus", "0", *RAN],
    "cpus negative": ["--cpus", "-1", *RAN],
    "cpus word": ["--cpus", "abc", *RAN],
    "unknown profile": ["--profile", "no-such-profile", *RAN],
    "unknown image": ["--image", "no-such-image", *RAN],
    "missing image dir": ["--image", "/nonexistent/kennel/rootfs", *RAN],
    "unknown language": ["-l", "cobol", *RAN],
    "env without =": ["-e", "NOEQUALS", *RAN],
    "env empty key": ["-e", "=value", *RAN],
    "upload missing file": ["--upload", "/nonexistent/kennel/file:/work/x", *RAN],
    "upload without guest path": ["--upload", "/etc/hostname", *RAN],
    "bind missing source": ["--bind", "/nonexistent/kennel/dir:/x", *RAN],
    "ro-bind missing source": ["--ro-bind", "/nonexistent/kennel/dir:/x", *RAN],
    "bind relative destination": ["--bind", "/etc:relative", *RAN],
    "missing source file": ["/nonexistent/kennel/prog.py"],
    "nothing to run": [],
}


@pytest.mark.parametrize("args", list(CASES.values()), ids=list(CASES))
def test_kennel_error_is_125(kn, args):
    r = kn.run(*args, timeout=20)
    assert r.rc == 125, r
    first = r.err.lstrip().splitlines()[0] if r.err.strip() else ""
    assert first.startswith("kennel:"), f"first stderr line is {first!r}\n{r}"
    assert "RAN" not in r.out, r
    assert r.elapsed < 5, r


def test_unknown_extension_is_125(kn, hostdir):
    src = hostdir / "prog.xyz"
    src.write_text("print('RAN')\n")
    r = kn.run(str(src))
    assert r.rc == 125, r
    assert r.err.lstrip().startswith("kennel:"), r
    assert "RAN" not in r.out


def test_unreadable_source_is_125(kn, hostdir):
    src = hostdir / "dir.py"
    src.mkdir()
    r = kn.run(str(src))
    assert r.rc == 125, r
    assert r.err.lstrip().startswith("kennel:"), r
