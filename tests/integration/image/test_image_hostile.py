"""Malicious images: each is refused with a clear error, or (devices,
setuid bits) made harmless, and nothing appears outside the store."""
import os
import stat

import pytest


def hostile_layers(images):
    out = str(images.canary)
    host_file = str(images.canary / "host-file")
    rel_up = "../" * 12 + out.lstrip("/")
    return {
        "dotdot": ([{"name": "../outside/pwned", "data": "x"}], "contains '..'"),
        "dotdot-deep": ([{"name": "etc/../../outside/pwned", "data": "x"}], "contains '..'"),
        "absolute": ([{"name": f"{out}/pwned", "data": "x"}], "is an absolute path"),
        "symlink-out-relative": ([{"name": "evil", "type": "symlink", "link": rel_up},
                                  {"name": "evil/pwned", "data": "x"}],
                                 "points outside the layer"),
        "symlink-absolute-write-through": ([{"name": "evil", "type": "symlink", "link": out},
                                            {"name": "evil/pwned", "data": "x"}],
                                           "passes through the symlink 'evil'"),
        "hardlink-absolute": ([{"name": "hl", "type": "hardlink", "link": host_file}],
                              "points outside the layer"),
        "hardlink-relative": ([{"name": "hl", "type": "hardlink", "link": rel_up + "/host-file"}],
                              "contains '..'"),
        "hardlink-via-symlink": ([{"name": "up", "type": "symlink", "link": out},
                                  {"name": "hl", "type": "hardlink", "link": "up/host-file"}],
                                 "passes through the symlink 'up'"),
    }


CASES = ["dotdot", "dotdot-deep", "absolute", "symlink-out-relative",
         "symlink-absolute-write-through", "hardlink-absolute", "hardlink-relative",
         "hardlink-via-symlink"]


def assert_nothing_written(images, before):
    assert images.canary_listing() == before, "something appeared outside the store"
    assert (images.canary / "host-file").read_text() == "host secret\n"
    assert os.stat(images.canary / "host-file").st_nlink == 1
    assert not list((images.store / "tmp").iterdir()), "staging left behind"
    assert not list((images.store / "layers" / "sha256").iterdir()), "a layer was stored"
    assert not list((images.store / "images").iterdir()), "an image was recorded"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_hostile_layer_is_refused(images, mk, case, fmt):
    entries, message = hostile_layers(images)[case]
    before = images.canary_listing()
    if fmt == "oci":
        src = images.path("oci")
        mk.oci_layout(src, [mk.busybox_entries(), entries], name="evil:1")
    else:
        src = images.path("docker.tar")
        mk.docker_save(src, [mk.busybox_entries(), entries], tag="evil:1")
    r = images.image("import", src)
    assert r.rc == 125, r
    assert message in r.err and "layer" in r.err, r
    # The good first layer may stay; the hostile one never does.
    for p in (images.store / "layers" / "sha256").glob("*"):
        assert not (p / "fs" / "evil").exists() and not (p / "fs" / "hl").exists()
    assert images.canary_listing() == before
    assert (images.canary / "host-file").read_text() == "host secret\n"
    assert os.stat(images.canary / "host-file").st_nlink == 1
    assert not list((images.store / "tmp").iterdir()), "staging left behind"
    assert not list((images.store / "images").iterdir()), "an image was recorded"


@pytest.mark.parametrize("case", CASES)
def test_hostile_single_layer_leaves_nothing(images, mk, case):
    entries, message = hostile_layers(images)[case]
    before = images.canary_listing()
    mk.oci_layout(images.path("oci"), [entries])
    r = images.image("import", images.path("oci"))
    assert r.rc == 125 and message in r.err, r
    assert_nothing_written(images, before)


def test_digest_mismatch_is_refused(images, mk):
    before = images.canary_listing()
    mk.oci_layout(images.path("oci"), [mk.busybox_entries()], corrupt=0)
    r = images.image("import", images.path("oci"))
    assert r.rc == 125, r
    assert "does not match its digest" in r.err and "blob sha256:" in r.err, r
    assert_nothing_written(images, before)


def test_diff_id_mismatch_is_refused(images, mk):
    before = images.canary_listing()
    raw = mk.layer_tar(mk.busybox_entries())
    src = images.path("docker.tar")
    mk.docker_save(src, [raw], tag="x:1")
    # Swap in a different layer.tar of the same length under the same name.
    data = bytearray(src.read_bytes())
    i = data.find(b"root:x:0:0:root")
    data[i] = ord("R")
    src.write_bytes(bytes(data))
    r = images.image("import", src)
    assert r.rc == 125 and "does not match its digest" in r.err, r
    assert_nothing_written(images, before)


def test_devices_skipped_and_setid_cleared(images, mk):
    layer = mk.busybox_entries() + [
        {"name": "dev/sda", "type": "blk", "dev": (8, 0)},
        {"name": "dev/mem", "type": "chr", "dev": (1, 1)},
        {"name": "bin/suid", "data": "#!/bin/sh\n", "mode": 0o4755},
        {"name": "bin/sgid", "data": "#!/bin/sh\n", "mode": 0o2755},
        {"name": "etc/owned", "data": "x", "uid": 1234, "gid": 2345},
    ]
    mk.oci_layout(images.path("oci"), [layer], name="dev:1")
    r = images.image("import", images.path("oci"))
    assert r.rc == 0, r
    assert "skipped 2 device nodes" in r.out and "setuid/setgid on 2 files" in r.out, r
    fs = next(images.store.glob("layers/sha256/*/fs"))
    assert not (fs / "dev" / "sda").exists() and not (fs / "dev" / "mem").exists()
    for n in ("suid", "sgid"):
        assert stat.S_IMODE(os.lstat(fs / "bin" / n).st_mode) == 0o755
    st = os.lstat(fs / "etc" / "owned")
    assert (st.st_uid, st.st_gid) == (1000000 + 1234, 1000000 + 2345)
    assert os.lstat(fs / "bin" / "busybox").st_uid == 1000000
    r = images.run("--image", "dev:1", "--", "/bin/busybox", "sh", "-c",
                   "ls -ln /etc/owned /bin/busybox; ls /dev/sda 2>&1")
    assert " 1234 " in r.out and " 2345 " in r.out and "No such file" in r.out, r


def test_compressed_outer_archive_and_zstd_are_clear_errors(images, mk):
    import gzip
    mk.oci_layout(images.path("oci"), [mk.busybox_entries()])
    mk.tar_dir(images.path("oci"), images.path("oci.tar"))
    images.path("oci.tar.gz").write_bytes(gzip.compress(images.path("oci.tar").read_bytes()))
    r = images.image("import", images.path("oci.tar.gz"))
    assert r.rc == 125 and "compressed" in r.err, r
