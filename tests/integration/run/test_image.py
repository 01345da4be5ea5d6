"""--image with a root filesystem directory: a busybox root that holds
nothing of the host."""
import os
import shutil

import pytest

BUSYBOX = "/bin/busybox"


def is_static_elf(path):
    """True for a 64-bit little-endian ELF without a PT_INTERP (no loader)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff = int.from_bytes(head[32:40], "little")
        phentsize = int.from_bytes(head[54:56], "little")
        phnum = int.from_bytes(head[56:58], "little")
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(int.from_bytes(table[i:i + 4], "little") != 3  # PT_INTERP
               for i in range(0, len(table), phentsize))


@pytest.fixture
def busybox_root(hostdir, probe_dir):
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed")
    if not is_static_elf(BUSYBOX):
        pytest.skip(f"{BUSYBOX} is not static (install busybox-static)")
    root = hostdir / "rootfs"
    for d in ("bin", "etc", "tmp", "work", "proc", "dev"):
        (root / d).mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "echo", "ls", "cat", "id", "touch"):
        os.symlink("busybox", root / "bin" / applet)
    shutil.copy2(probe_dir / "kennel-probe", root / "bin" / "kennel-probe")
    (root / "etc" / "image-marker").write_text("busybox-image\n")
    return root


def test_image_directory_runs(kn, busybox_root):
    r = kn.run("--image", str(busybox_root), "--", "/bin/sh", "-c", "cat /etc/image-marker; echo ok")
    assert r.rc == 0, r
    assert r.out == "busybox-image\nok\n", r


def test_image_hides_host(kn, busybox_root):
    r = kn.run("--image", str(busybox_root), "--", "/bin/sh", "-c",
               "ls /usr/bin/python3 /etc/hostname 2>&1; echo done")
    assert "done" in r.out, r
    assert "/usr/bin/python3\n" not in r.out.replace(" ", "\n"), r
    r = kn.run("--image", str(busybox_root), "--", "/usr/bin/python3", "-c", "print(1)")
    assert r.rc == 127, r


def test_image_is_not_modified(kn, busybox_root):
    r = kn.run("--image", str(busybox_root), "--", "/bin/sh", "-c",
               "echo x > /etc/image-marker; touch /bin/new-file; echo wrote")
    assert not (busybox_root / "bin" / "new-file").exists(), r
    assert (busybox_root / "etc" / "image-marker").read_text() == "busybox-image\n", r


def test_image_probe_isolation(kn, busybox_root):
    r = kn.run("--image", str(busybox_root), "--", "/bin/kennel-probe", "caps")
    p = r.probe()
    assert int(p["CapEff"], 16) == 0 and p["Seccomp"] == "2", p


@pytest.fixture
def hostile_root(busybox_root):
    """A rootfs whose directories point out of it: what an untrusted image
    could ship. The runtime must resolve every path inside the root."""
    root = busybox_root
    os.rmdir(root / "work")
    os.rmdir(root / "tmp")
    os.symlink("/etc", root / "work")  # absolute: the host's /etc if resolved outside
    os.symlink("../../../../../../../../etc", root / "tmp")  # climbs out if resolved outside
    os.symlink("/etc/shadow", root / "shadow")
    os.symlink("/root", root / "run")
    return root


def test_image_symlinks_do_not_reach_host(kn, hostile_root, hostdir, marker):
    payload = hostdir / "payload.txt"
    payload.write_text("payload\n")
    payload.chmod(0o644)
    out = hostdir / "shadow-copy"
    try:
        r = kn.run("--image", str(hostile_root), "--upload", f"{payload}:/work/{marker}-up",
                   "--download", f"/shadow:{out}", "--", "/bin/sh", "-c",
                   f"echo x > /work/{marker}; echo y > /tmp/{marker}; echo z > /run/{marker}; echo ran")
        for p in (f"/etc/{marker}", f"/etc/{marker}-up", f"/root/{marker}"):
            assert not os.path.exists(p), f"{p} was written on the host through an image symlink\n{r}"
        if out.exists() and os.path.exists("/etc/shadow"):
            with open("/etc/shadow") as f:
                assert out.read_text(errors="replace") != f.read(), "host /etc/shadow was downloaded"
    finally:
        for p in (f"/etc/{marker}", f"/etc/{marker}-up", f"/root/{marker}"):
            if os.path.exists(p):
                os.unlink(p)
