"""Importing OCI layouts and docker save tarballs, and running sandboxes
from them: layers stacked with overlayfs, whiteouts, the image config, pins."""
import json
import os
import subprocess
import time

import pytest

CONFIG = {"Env": ["FOO=from-image", "PATH=/bin"], "Entrypoint": ["/bin/sh", "-c"],
          "Cmd": ["echo entry FOO=$FOO; id -u; id -g; pwd"], "WorkingDir": "/root",
          "User": "app"}


def two_layers(mk):
    top = [{"name": "etc/.wh.group"},                       # a whiteout
           {"name": "etc/motd", "data": "layer two\n"},
           {"name": "root", "type": "dir", "mode": 0o777},
           {"name": "root/.wh..wh..opq"},                     # an opaque dir
           {"name": "root/new", "data": "only in two\n"}]
    base = mk.busybox_entries() + [{"name": "root/old", "data": "only in one\n"}]
    return [base, top]


def digest_of(images, name):
    r = images.image("inspect", name)
    assert r.rc == 0, r
    return json.loads(r.out)["digest"]


def test_import_oci_directory_and_run(images, mk):
    mk.oci_layout(images.path("oci"), two_layers(mk), config=CONFIG, name="bb:1")
    r = images.image("import", images.path("oci"))
    assert r.rc == 0, r
    assert "name bb:1" in r.out and "2 layers, 2 new" in r.out, r
    r = images.run("--image", "bb:1", "--", "/bin/busybox", "sh", "-c",
                   "cat /etc/motd; ls /etc; ls /root; echo done")
    assert r.rc == 0, r
    assert r.out == "layer two\nmotd\npasswd\nnew\ndone\n", r  # group whited out, root/old hidden


def test_image_config_applies(images, mk):
    mk.oci_layout(images.path("oci"), two_layers(mk), config=CONFIG, name="bb:1")
    assert images.image("import", images.path("oci")).rc == 0
    r = images.run("--image", "bb:1")  # no command: entrypoint + cmd
    assert r.rc == 0, r
    assert r.out == "entry FOO=from-image\n1234\n2345\n/root\n", r


def test_request_overrides_image_config(images, mk):
    mk.oci_layout(images.path("oci"), two_layers(mk), config=CONFIG, name="bb:1")
    assert images.image("import", images.path("oci")).rc == 0
    r = images.run("--image", "bb:1", "-e", "FOO=from-request", "--", "/bin/busybox", "sh", "-c",
                   "echo FOO=$FOO; env | grep -c ^PATH=/bin$")
    assert r.rc == 0, r
    assert r.out == "FOO=from-request\n1\n", r


def test_overlay_writes_do_not_touch_the_store(images, mk):
    mk.oci_layout(images.path("oci"), two_layers(mk), name="bb:1")  # runs as root inside
    assert images.image("import", images.path("oci")).rc == 0
    before = images.store_snapshot()
    r = images.run("--image", "bb:1", "--", "/bin/busybox", "sh", "-c",
                   "echo changed > /etc/motd && echo x > /etc/added && rm /bin/cat && "
                   "chmod 700 /etc && cat /etc/motd")
    assert r.rc == 0, r
    assert r.out == "changed\n", r
    assert images.store_snapshot() == before
    r = images.run("--image", "bb:1", "--", "/bin/busybox", "sh", "-c",
                   "cat /etc/motd; ls /etc/added /bin/cat 2>&1")
    assert r.out.startswith("layer two\n") and "/bin/cat\n" in r.out and "added: No such" in r.out, r


def test_root_readonly_profile_on_an_image(images, mk):
    mk.oci_layout(images.path("oci"), [mk.busybox_entries()], name="bb:1")
    assert images.image("import", images.path("oci")).rc == 0
    r = images.run("--profile", "deny-by-default", "--image", "bb:1", "--", "/bin/busybox", "sh",
                   "-c", "echo x > /etc/x || echo refused; id -u")
    assert "refused" in r.out and "65532" in r.out, r


def test_oci_archive_docker_save_and_rootfs(images, mk):
    mk.oci_layout(images.path("oci"), two_layers(mk), name="bb:1")
    mk.tar_dir(images.path("oci"), images.path("oci.tar"))
    r = images.image("import", images.path("oci.tar"), "--name", "archive:v1")
    assert r.rc == 0 and "name archive:v1" in r.out and "0 new" not in r.out, r
    mk.docker_save(images.path("docker.tar"), two_layers(mk), config={"Cmd": ["/bin/cat", "/etc/motd"]},
                   tag="dock:1")
    r = images.image("import", images.path("docker.tar"))
    assert r.rc == 0 and "name dock:1" in r.out and "0 new" in r.out, r  # same layers: unpacked once
    r = images.run("--image", "dock:1")
    assert r.rc == 0 and r.out == "layer two\n", r
    import gzip
    with open(images.path("rootfs.tar.gz"), "wb") as f:
        f.write(gzip.compress(mk.layer_tar(mk.busybox_entries() + [
            {"name": "etc/motd", "data": "rootfs\n"}])))
    r = images.image("import", "--rootfs", images.path("rootfs.tar.gz"), "--name", "rfs")
    assert r.rc == 0, r
    r = images.run("--image", "rfs", "--", "/bin/cat", "/etc/motd")
    assert r.rc == 0 and r.out == "rootfs\n", r
    r = images.image("ls")
    assert all(n in r.out for n in ("archive:v1", "dock:1", "rfs:latest")), r


def test_pinned_digest_is_verified_on_use(images, mk):
    mk.oci_layout(images.path("oci"), two_layers(mk), name="bb:1")
    assert images.image("import", images.path("oci")).rc == 0
    d = digest_of(images, "bb:1")
    for ref in (f"bb:1@{d}", d):
        r = images.run("--image", ref, "--", "/bin/cat", "/etc/motd")
        assert r.rc == 0 and r.out == "layer two\n", r
    motd = next(images.store.glob("layers/sha256/*/fs/etc/motd"))
    motd.write_text("tampered\n")
    r = images.run("--image", f"bb:1@{d}", "--", "/bin/cat", "/etc/motd")
    assert r.rc == 125 and "was modified in the store" in r.err, r
    assert "tampered" not in r.out


def test_tampered_manifest_is_refused_even_unpinned(images, mk):
    mk.oci_layout(images.path("oci"), two_layers(mk), name="bb:1")
    assert images.image("import", images.path("oci")).rc == 0
    d = digest_of(images, "bb:1")
    blob = images.store / "blobs" / "sha256" / d[7:]
    blob.write_bytes(blob.read_bytes().replace(b'"schemaVersion"', b'"schemaVersion" '))
    r = images.run("--image", "bb:1", "--", "/bin/true")
    assert r.rc == 125 and "was modified" in r.err, r


def test_a_moved_tag_does_not_move_a_pin(images, mk):
    a = [mk.busybox_entries() + [{"name": "etc/motd", "data": "A\n"}]]
    b = [mk.busybox_entries() + [{"name": "etc/motd", "data": "B\n"}]]
    mk.oci_layout(images.path("a"), a)
    mk.oci_layout(images.path("b"), b)
    assert images.image("import", images.path("a"), "--name", "t:1").rc == 0
    da = digest_of(images, "t:1")
    assert images.image("import", images.path("b"), "--name", "t:1").rc == 0
    assert images.run("--image", "t:1", "--", "/bin/cat", "/etc/motd").out == "B\n"
    assert images.run("--image", f"t:1@{da}", "--", "/bin/cat", "/etc/motd").out == "A\n"


def test_rm_refuses_while_in_use_and_prune(images, mk):
    mk.oci_layout(images.path("oci"), [mk.busybox_entries()], name="bb:1")
    assert images.image("import", images.path("oci")).rc == 0
    argv = [images.kennel, "run", "-q", "--image", "bb:1", "--", "/bin/sh", "-c",
            "echo started; read x"]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=images.env)
    try:
        assert p.stdout.readline() == b"started\n"
        r = images.image("rm", "bb:1")
        assert r.rc == 125 and "in use" in r.err, r
    finally:
        p.communicate(b"go\n", timeout=30)
    r = images.image("rm", "bb:1")
    assert r.rc == 0, r
    assert "bb:1" not in images.image("ls").out
    assert list(images.store.glob("layers/sha256/*"))  # layers stay until prune
    r = images.image("prune")
    assert r.rc == 0, r
    assert not list(images.store.glob("layers/sha256/*")), r
    assert not list(images.store.glob("blobs/sha256/*")), r
    r = images.run("--image", "bb:1", "--", "/bin/true")
    assert r.rc == 125 and "not in the store" in r.err, r


def test_unknown_image_is_a_clear_error(images):
    r = images.run("--image", "nope:1", "--", "/bin/true")
    assert r.rc == 125 and "not in the store" in r.err, r
    r = images.run("--image", "sha256:" + "0" * 64, "--", "/bin/true")
    assert r.rc == 125 and "not in the store" in r.err, r


def test_unprivileged_import_and_run(images, mk):
    """An unprivileged caller keeps its own store: files get its own ids
    (which its sandboxes map to root), whiteouts and opaque markers work
    without privilege, and setuid bits are still cleared."""
    import os
    import shutil
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    kennel = images.work / "kennel"
    shutil.copy2(images.kennel, kennel)
    store = images.work / "ustore"
    store.mkdir()
    os.chown(store, 65534, 65534)
    top = [{"name": "etc/.wh.group"}, {"name": "etc/motd", "data": "unprivileged\n"},
           {"name": "tmp/.wh..wh..opq"}, {"name": "bin/s", "data": "x", "mode": 0o4755}]
    mk.oci_layout(images.path("oci"), [mk.busybox_entries(), top], name="u:1")
    pre = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    env = {"PATH": "/usr/bin:/bin", "KENNEL_STORE": str(store)}
    r = subprocess.run(pre + [str(kennel), "image", "import", str(images.path("oci"))],
                       capture_output=True, env=env, timeout=60)
    assert r.returncode == 0, r
    fs = next(store.glob("layers/sha256/*/fs/bin/busybox"))
    assert os.lstat(fs).st_uid == 65534
    r = subprocess.run(pre + [str(kennel), "run", "-q", "--image", "u:1", "--", "/bin/sh", "-c",
                              "id -u; cat /etc/motd; ls /etc; echo x > /etc/new && ls -l /bin/s"],
                       capture_output=True, env=env, timeout=60)
    out = r.stdout.decode()
    assert r.returncode == 0, r
    assert out.startswith("0\nunprivileged\nmotd\npasswd\n") and "-rwxr-xr-x" in out, r
    assert not list(store.glob("layers/sha256/*/fs/etc/new"))


def test_image_sandbox_keeps_every_layer(images, mk, build_dir):
    """An image root changes the file system, nothing else: capabilities,
    seccomp and no_new_privs are as with host, and nothing of the host's
    file system (the store included) is reachable."""
    import json
    import shutil
    probe_dir = images.work / "probe"
    probe_dir.mkdir()
    shutil.copy2(build_dir / "kennel-probe", probe_dir / "kennel-probe")
    mk.oci_layout(images.path("oci"), [mk.busybox_entries()], name="bb:1")
    assert images.image("import", images.path("oci")).rc == 0
    r = images.run("--image", "bb:1", "--ro-bind", f"{probe_dir}:/probe", "--",
                   "/probe/kennel-probe", "caps")
    assert r.rc == 0, r
    p = json.loads([l for l in r.out.splitlines() if l.startswith("{")][-1])
    assert int(p["CapEff"], 16) == 0 and p["Seccomp"] == "2" and p["NoNewPrivs"] == "1", p
    r = images.run("--image", "bb:1", "--", "/bin/sh", "-c",
                   f"ls /usr/bin/python3 /oldroot {images.store} /overlay 2>&1; "
                   "grep -c ' / / ' /proc/self/mountinfo; echo done")
    assert r.out.count("No such file") == 4 and r.out.endswith("done\n"), r


def test_size_is_the_unpacked_bytes(images, mk):
    big = b"\0" * (12 << 20)  # eight digits of size: once truncated the record
    mk.oci_layout(images.path("oci"), [mk.busybox_entries(), [{"name": "big", "data": big}]],
                  name="big:1")
    assert images.image("import", images.path("oci")).rc == 0
    r = images.image("inspect", "big:1")
    bb = os.path.getsize("/bin/busybox")
    size = json.loads(r.out)["size"]
    assert len(big) + bb <= size < len(big) + bb + 4096, r


def test_dynamic_binaries_from_a_gnu_tar_layer(images, mk):
    """A layer written by GNU tar (gnu format: long names as 'L' records)
    holding the host's bash and its libraries under a merged /usr, with the
    usual absolute and relative symlinks: the loader and libraries resolve
    inside the image."""
    import shutil
    stage = images.path("stage")
    libs = subprocess.run(["ldd", "/usr/bin/bash"], capture_output=True, text=True).stdout
    paths = ["/usr/bin/bash"] + [w for w in libs.split() if w.startswith("/")]
    for p in paths:
        real = os.path.realpath(p)
        dst = stage / real.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(real, dst)
        if p != real and not p.startswith("/lib64"):
            link = stage / p.lstrip("/").replace("lib/", "usr/lib/", 1)
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(os.path.basename(real), link)
    os.symlink("usr/bin", stage / "bin")
    os.symlink("usr/lib", stage / "lib")
    os.symlink("usr/lib64", stage / "lib64")
    loader = [p for p in paths if p.startswith("/lib64/")][0]
    (stage / "usr" / "lib64").mkdir(parents=True, exist_ok=True)
    target = os.path.realpath(loader)
    (stage / "usr" / "lib64" / os.path.basename(loader)).symlink_to(target)  # absolute
    deep = stage / "usr" / "share" / ("d" * 90) / ("f" * 90)
    deep.parent.mkdir(parents=True)
    deep.write_text("long names\n")
    (stage / "etc").mkdir()
    raw = subprocess.run(["tar", "-C", str(stage), "--format=gnu", "--numeric-owner", "-cf", "-",
                          "."], capture_output=True, check=True).stdout
    assert b"././@LongLink" in raw  # the gnu long-name records are really there
    mk.oci_layout(images.path("oci"), [raw], name="bash:1",
                  config={"Env": ["PATH=/usr/bin"], "Cmd": ["bash", "-c", "echo $BASH_VERSION"]})
    r = images.image("import", images.path("oci"))
    assert r.rc == 0, r
    r = images.run("--image", "bash:1")
    assert r.rc == 0 and r.out.strip() and r.out[0].isdigit(), r
    r = images.run("--image", "bash:1", "--", "bash", "-c",
                   f"read l < /usr/share/{'d' * 90}/{'f' * 90}; echo $l")
    assert r.rc == 0 and r.out == "long names\n", r


def test_ls_and_prune_create_nothing(images):
    r = images.image("ls")
    assert r.rc == 0 and r.out.startswith("NAME") and len(r.out.splitlines()) == 1, r
    assert images.image("prune").rc == 0
    assert not images.store.exists()


def test_relative_workdir_is_below_root(images, mk):
    mk.oci_layout(images.path("oci"), [mk.busybox_entries()], name="wd:1",
                  config={"WorkingDir": "etc", "Cmd": ["/bin/pwd"]})
    assert images.image("import", images.path("oci")).rc == 0
    r = images.run("--image", "wd:1")
    assert r.rc == 0 and r.out == "/etc\n", r
