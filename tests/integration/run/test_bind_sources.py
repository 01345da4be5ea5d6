"""Bind sources are reached with the launcher's rights: a root launcher can
bind a file from a directory that the sandbox's own user could not traverse
(CI's clone lives in a 0700 temporary directory), and the bind stays
read-only, nosuid and nodev inside."""
import os
import tempfile

import pytest


@pytest.fixture
def private_dir():
    d = tempfile.mkdtemp(prefix="kennel-private-")  # mode 0700
    os.chmod(d, 0o700)
    yield d
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)


def test_file_in_private_dir_binds(kn, private_dir):
    if os.geteuid() != 0:
        pytest.skip("needs a root launcher: unprivileged binds are made with the caller's rights")
    src = os.path.join(private_dir, "input.txt")
    with open(src, "w") as f:
        f.write("reachable\n")
    os.chmod(src, 0o644)
    r = kn.run("--ro-bind", f"{src}:/data/input.txt", "--", "sh", "-c",
               "cat /data/input.txt; echo x > /data/input.txt && echo WROTE; "
               "grep ' /data/input.txt ' /proc/self/mountinfo")
    assert r.rc == 0, r
    assert "reachable" in r.out, r
    assert "WROTE" not in r.out, r
    line = [l for l in r.out.splitlines() if " /data/input.txt " in l]
    assert line and " ro," in line[0] and "nosuid" in line[0] and "nodev" in line[0], r
    with open(src) as f:
        assert f.read() == "reachable\n"
