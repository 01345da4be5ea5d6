"""Fixtures for the image tests: a fresh world-readable work directory per
test (the store, the images and a canary directory live in it and nowhere
else), and helpers that run `kennel image` and `kennel run --image` against
that store only."""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import ocimake  # noqa: E402

HARD_TIMEOUT = 60


class Res:
    def __init__(self, argv, p, elapsed):
        self.argv, self.rc, self.elapsed = argv, p.returncode, elapsed
        self.out = p.stdout.decode(errors="replace")
        self.err = p.stderr.decode(errors="replace")

    def __repr__(self):
        return (f"$ {' '.join(self.argv)}\n-> exit {self.rc}\nstdout: {self.out[:1500]!r}\n"
                f"stderr: {self.err[:1500]!r}")


class Images:
    """One test's store, images and canary."""

    def __init__(self, kennel, work):
        self.kennel = kennel
        self.work = work
        self.store = work / "store"
        self.canary = work / "outside"  # next to the store: nothing may appear here
        self.canary.mkdir()
        (self.canary / "host-file").write_text("host secret\n")
        self.env = {"PATH": "/usr/bin:/bin", "KENNEL_STORE": str(self.store)}

    def path(self, name):
        return self.work / name

    def image(self, *args):
        argv = [self.kennel, "image", "--store", str(self.store), *map(str, args)]
        t = time.monotonic()
        p = subprocess.run(argv, capture_output=True, timeout=HARD_TIMEOUT, env=self.env)
        return Res(argv, p, time.monotonic() - t)

    def run(self, *args, timeout=HARD_TIMEOUT):
        argv = [self.kennel, "run", "-q", *map(str, args)]
        t = time.monotonic()
        p = subprocess.run(argv, capture_output=True, timeout=timeout, env=self.env)
        return Res(argv, p, time.monotonic() - t)

    def canary_listing(self):
        out = []
        for d, dirs, files in os.walk(self.canary):
            for n in sorted(dirs + files):
                p = os.path.join(d, n)
                st = os.lstat(p)
                out.append((p, st.st_mode, st.st_size, st.st_nlink))
        return sorted(out)

    def store_snapshot(self):
        """Names, modes, owners and contents of everything in the store."""
        snap = {}
        for d, dirs, files in os.walk(self.store):
            for n in dirs + files:
                p = os.path.join(d, n)
                st = os.lstat(p)
                data = None
                if os.path.isfile(p) and not os.path.islink(p) and n != "lock":
                    with open(p, "rb") as f:
                        data = f.read()
                snap[p] = (st.st_mode, st.st_uid, st.st_gid, data)
        return snap


@pytest.fixture
def images(kennel):
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed")
    if os.geteuid() != 0:
        pytest.skip("the image tests run as root (sandboxes map root to 1000000)")
    work = pathlib.Path(tempfile.mkdtemp(prefix="kn-image-test-", dir="/tmp"))
    work.chmod(0o755)  # the sandbox's root (an unprivileged host id) reaches the store
    try:
        yield Images(kennel, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def mk():
    return ocimake
