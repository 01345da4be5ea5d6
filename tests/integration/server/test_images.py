"""`kennel serve` with images of its store and snapshots (issue 7).

The images are made here from Debian's busybox-static with the image tests'
ocimake (a root image with a config, a non-root user's image, a
busybox-only image), imported into the test server's own store, and driven
over HTTP on loopback: the config applied and overridden, unknown images,
pinned digests, `kennel image rm` of an image a sandbox uses, snapshots
(round trip with deletions, opaque directories, hard links, setuid bits,
FIFOs; shapes, filters, pagination, errors; a capture that fills the
store's disk), and the disk-backed writable layer."""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from .conftest import Server

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "image"))
import ocimake  # noqa: E402

APPLETS = ("sh", "echo", "cat", "ls", "id", "env", "touch", "rm", "pwd", "tail", "mkdir", "stat",
           "sleep", "ps", "rmdir", "mv", "ln", "chmod", "dd", "df", "head", "wc", "grep", "find",
           "test", "true", "false", "mkfifo", "seq", "sync", "readlink", "uname", "cut")
LIMITS = {"cpu": "1", "memory": "512Mi"}
SNAP_KEYS = {"id", "sandboxId", "name", "status", "createdAt"}


def is_static(path):
    """True when the ELF file has no program interpreter (PT_INTERP)."""
    import struct
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def static_execd(kennel):
    """kennel-execd runs in any image because it is static; a sanitizer
    build's is not, so its tests use the release build's, which is."""
    here = os.path.join(os.path.dirname(kennel), "kennel-execd")
    if is_static(here):
        return []
    release = os.path.join(os.path.dirname(os.path.dirname(kennel)), "build", "kennel-execd")
    if os.path.exists(release) and is_static(release):
        return ["--execd", release]
    pytest.skip(f"{here} is dynamically linked (a sanitizer build) and no static release "
                "kennel-execd is built next to it: it cannot run inside a busybox image")


def bb_entries(extra=()):
    es = ocimake.busybox_entries(applets=APPLETS)
    es += [{"name": "etc/hello", "data": "from the image\n"},
           {"name": "etc/gone", "data": "delete me\n"},
           {"name": "srv", "type": "dir"},
           {"name": "srv/data", "data": "image data\n"},
           {"name": "opq", "type": "dir"},
           {"name": "opq/a", "data": "a\n"},
           {"name": "opq/b", "data": "b\n"}]
    return es + list(extra)


def kennel_image(kennel, store, *args, check=True):
    p = subprocess.run([kennel, "image", "--store", store, *map(str, args)], capture_output=True,
                       text=True, timeout=60)
    if check:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


def import_image(kennel, store, work, name, entries, config):
    path = os.path.join(work, name.replace(":", "_").replace("/", "_"))
    ocimake.oci_layout(path, [entries], config=config)
    kennel_image(kennel, store, "import", path, "--name", name)
    return json.loads(kennel_image(kennel, store, "inspect", name).stdout)


@pytest.fixture(scope="module")
def isrv(kennel):
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed")
    if os.geteuid() != 0:
        pytest.skip("the server's image tests run as root")
    s = Server(kennel, extra_args=["--image-alias", "opensandbox/code-interpreter:v1.0.2=bb:1",
                                   *static_execd(kennel)])
    work = tempfile.mkdtemp(prefix="kn-srv-img-", dir="/tmp")
    s.images = {}
    s.images["bb"] = import_image(kennel, s.store, work, "bb:1", bb_entries(), {
        "Env": ["PATH=/bin", "FROM_IMAGE=yes", "OVERRIDE=image"], "WorkingDir": "/srv",
        "Cmd": ["sleep", "1000"]})
    user = ocimake.busybox_entries(applets=APPLETS) + [
        {"name": "app", "type": "dir", "uid": 1234, "gid": 2345}]
    s.images["user"] = import_image(kennel, s.store, work, "bb-user:1", user, {
        "Env": ["PATH=/bin"], "WorkingDir": "/app", "User": "app",
        "Entrypoint": ["tail"], "Cmd": ["-f", "/dev/null"]})
    # busybox alone: no /etc, no /tmp, no /work, no passwd.
    only = [{"name": "bin", "type": "dir"},
            {"name": "bin/busybox", "data": open("/bin/busybox", "rb").read(), "mode": 0o755},
            {"name": "bin/sh", "type": "symlink", "link": "busybox"}]
    s.images["only"] = import_image(kennel, s.store, work, "bb-only:1", only, {
        "Entrypoint": ["/bin/busybox", "tail", "-f", "/dev/null"]})
    shutil.rmtree(work, ignore_errors=True)
    s.start()
    yield s
    problems = s.cleanup()
    assert not problems, problems


def wait_ready(srv, snap_id, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        r = srv.request("GET", f"/v1/snapshots/{snap_id}")
        assert r.status == 200, r
        st = r.json()["status"]["state"]
        if st != "Creating" or time.monotonic() > deadline:
            return r.json()
        time.sleep(0.02)


def snapshot(srv, sid, name=None):
    r = srv.request("POST", f"/v1/sandboxes/{sid}/snapshots", {"name": name} if name else {})
    assert r.status == 202, r
    snap = r.json()
    assert snap["status"]["state"] == "Creating"
    assert r.header("Location") == f"/v1/snapshots/{snap['id']}"
    done = wait_ready(srv, snap["id"])
    assert done["status"]["state"] == "Ready", done
    return done


def one(srv, sid, command):
    out, events = srv.run(sid, command)
    return "\n".join(out)


def delete(srv, sid):
    assert srv.request("DELETE", f"/v1/sandboxes/{sid}").status == 204


# --- images in the server ------------------------------------------------------


def test_create_applies_the_image_config(isrv):
    r = isrv.request("POST", "/v1/sandboxes", {"image": {"uri": "bb:1"}, "resourceLimits": LIMITS})
    assert r.status == 202, r
    sid = r.json()["id"]
    assert r.json()["entrypoint"] == ["sleep", "1000"]  # the image's Cmd
    try:
        got = isrv.request("GET", f"/v1/sandboxes/{sid}").json()
        assert got["image"] == {"uri": "bb:1"} and got["entrypoint"] == ["sleep", "1000"]
        assert one(isrv, sid, "id -u; pwd; echo $FROM_IMAGE $OVERRIDE; cat /etc/hello") == \
            "0\n/srv\nyes image\nfrom the image"
        assert "sleep 1000" in one(isrv, sid, "ps -o args")  # the entrypoint runs
        # /tmp and /work are the image's, in the one writable layer.
        assert one(isrv, sid, "touch /tmp/x /work/y /etc/z && echo ok") == "ok"
    finally:
        delete(isrv, sid)


def test_the_request_overrides_the_image_config(isrv):
    sid = isrv.create(image={"uri": "bb:1"}, env={"OVERRIDE": "request", "MORE": "1"},
                      entrypoint=["tail", "-f", "/dev/null"])
    try:
        assert isrv.request("GET", f"/v1/sandboxes/{sid}").json()["entrypoint"] == \
            ["tail", "-f", "/dev/null"]
        assert one(isrv, sid, "echo $FROM_IMAGE $OVERRIDE $MORE; ps -o args | grep -c '^sleep 1000'") \
            == "yes request 1\n0"
        # A command's own cwd and env still win over both.
        r = isrv.execd(sid, "POST", "/command", {"command": "pwd; echo $OVERRIDE", "cwd": "/etc",
                                                 "envs": {"OVERRIDE": "command"}})
        lines = [json.loads(b)["text"] for b in r.body.split(b"\n\n")
                 if b.strip() and json.loads(b)["type"] == "stdout"]
        assert lines == ["/etc", "command"], r
    finally:
        delete(isrv, sid)


def test_execd_runs_as_the_images_user(isrv):
    sid = isrv.create(image={"uri": "bb-user:1"}, entrypoint=None)
    try:
        info = isrv.request("GET", f"/v1/sandboxes/{sid}").json()
        assert info["entrypoint"] == ["tail", "-f", "/dev/null"]  # Entrypoint + Cmd
        assert one(isrv, sid, "id; pwd; echo hi > /app/f && cat /app/f; echo t > /tmp/t && "
                              "cat /tmp/t; touch /etc/x 2>/dev/null || echo denied") == \
            "uid=1234(app) gid=2345(app)\n/app\nhi\nt\ndenied"
        # execd itself is the user's, not root's.
        assert "app" in one(isrv, sid, "ps -o user,args | grep kennel-execd | grep -v grep")
    finally:
        delete(isrv, sid)


def test_execd_runs_in_a_busybox_only_image(isrv):
    sid = isrv.create(image={"uri": "bb-only:1"}, entrypoint=None)
    try:
        assert one(isrv, sid, "/bin/busybox echo static").startswith("static")
        assert isrv.execd(sid, "GET", "/ping").status == 200
        listing = one(isrv, sid, "/bin/busybox ls -d /tmp /work")
        assert "/tmp" in listing and "/work" in listing  # made for it
    finally:
        delete(isrv, sid)


def test_an_alias_maps_the_sdk_default_to_a_stored_image(isrv):
    sid = isrv.create(image={"uri": "opensandbox/code-interpreter:v1.0.2"})
    try:
        assert one(isrv, sid, "cat /etc/hello") == "from the image"
        assert isrv.request("GET", f"/v1/sandboxes/{sid}").json()["image"]["uri"] == \
            "opensandbox/code-interpreter:v1.0.2"
    finally:
        delete(isrv, sid)


def test_an_unknown_image_is_a_400_naming_it(isrv):
    before = sorted(os.listdir(isrv.run_dir))
    for uri in ("nosuch:1", "bb:2", "python:3.11", "bb@sha256:" + "0" * 64,
                "sha256:" + "1" * 64):
        r = isrv.request("POST", "/v1/sandboxes", {"image": {"uri": uri},
                                                  "entrypoint": ["true"],
                                                  "resourceLimits": LIMITS})
        assert r.status == 400, (uri, r)
        assert uri in r.json()["message"] or uri.split("@")[-1] in r.json()["message"], r
        assert r.json()["code"]
    r = isrv.request("POST", "/v1/sandboxes", {"image": {"uri": "bb:1", "auth": {
        "username": "u", "password": "p"}}, "resourceLimits": LIMITS})
    assert r.status == 400 and "registry" in r.json()["message"], r
    assert sorted(os.listdir(isrv.run_dir)) == before
    assert not [s for s in isrv.request("GET", "/v1/sandboxes").json()["items"]
                if s.get("image", {}).get("uri") in ("nosuch:1", "bb:2")]


def test_a_pinned_digest_is_verified_on_use(isrv, kennel):
    work = tempfile.mkdtemp(prefix="kn-pin-", dir="/tmp")
    try:
        info = import_image(kennel, isrv.store, work, "pin:1", ocimake.busybox_entries(
            applets=APPLETS) + [{"name": "etc/pinned", "data": "original\n"}], {
                "Env": ["PATH=/bin"]})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    digest = info["digest"]
    sid = isrv.create(image={"uri": f"pin@{digest}"})
    try:
        assert one(isrv, sid, "cat /etc/pinned") == "original"
    finally:
        delete(isrv, sid)
    layer = os.path.join(isrv.store, "layers", info["layers"][0].replace(":", "/"), "fs",
                         "etc", "pinned")
    with open(layer, "w") as f:
        f.write("changed\n")
    try:
        r = isrv.request("POST", "/v1/sandboxes", {"image": {"uri": f"pin@{digest}"},
                                                  "entrypoint": ["true"],
                                                  "resourceLimits": LIMITS})
        assert r.status == 409, r
        assert r.json()["code"] == "IMAGE::DIGEST_MISMATCH"
        assert "was modified in the store" in r.json()["message"], r
        # Unpinned, the tree is not re-hashed (docs/images.md says so).
        sid = isrv.create(image={"uri": "pin:1"})
        assert one(isrv, sid, "cat /etc/pinned") == "changed"
        delete(isrv, sid)
    finally:
        with open(layer, "w") as f:
            f.write("original\n")


def test_image_rm_is_refused_while_a_server_sandbox_uses_it(isrv, kennel):
    work = tempfile.mkdtemp(prefix="kn-rm-", dir="/tmp")
    try:
        import_image(kennel, isrv.store, work, "rmme:1", ocimake.busybox_entries(
            applets=APPLETS) + [{"name": "etc/rmme", "data": "x\n"}], {"Env": ["PATH=/bin"]})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sid = isrv.create(image={"uri": "rmme:1"})
    p = kennel_image(kennel, isrv.store, "rm", "rmme:1", check=False)
    assert p.returncode != 0 and "in use" in p.stderr, p.stderr
    # The image survives a server restart too: the lock is the shim's.
    isrv.kill9()
    isrv.start()
    p = kennel_image(kennel, isrv.store, "rm", "rmme:1", check=False)
    assert p.returncode != 0 and "in use" in p.stderr, p.stderr
    delete(isrv, sid)
    kennel_image(kennel, isrv.store, "rm", "rmme:1")


# --- snapshots -------------------------------------------------------------------


ROUND_TRIP_WRITES = """
set -e
echo new > /srv/new.txt
mkdir -p /srv/dir/deep && echo deep > /srv/dir/deep/f
echo tmp > /tmp/kept
echo work > /work/kept
rm /etc/gone
rm -rf /opq && mkdir /opq && echo c > /opq/c
echo linked > /srv/h1 && ln /srv/h1 /srv/h2
ln -s ../../../../../../etc/hello /srv/up
ln -s /etc/hello /srv/abs
echo suid > /srv/suid && chmod 4755 /srv/suid
mkfifo /srv/fifo
ln -s /etc/shadow /srv/evil
echo trick > /srv/.wh.trick
echo 'changed' > /srv/data
(sleep 300 &) ; echo written
"""


def test_snapshot_round_trip(isrv, kennel):
    src = isrv.create(image={"uri": "bb:1"}, entrypoint=["tail", "-f", "/dev/null"])
    try:
        assert one(isrv, src, ROUND_TRIP_WRITES) == "written"
        snap = snapshot(isrv, src, "round:1")
        assert set(snap) <= SNAP_KEYS and snap["sandboxId"] == src and snap["name"] == "round:1"
        assert "processes are not" in snap["status"]["message"]
        # The source goes on, unfrozen, its process still there.
        assert "sleep 300" in one(isrv, src, "ps -o args")
        assert one(isrv, src, "echo after > /srv/after; cat /srv/after") == "after"
    finally:
        delete(isrv, src)
    # The new layer, as stored: overlayfs form, nothing of the host in it.
    import stat as st_
    top = json.loads(kennel_image(kennel, isrv.store, "inspect", "round:1").stdout)["layers"][-1]
    fs = pathlib.Path(isrv.store, "layers", top.replace(":", "/"), "fs")
    gone = os.lstat(fs / "etc" / "gone")
    assert st_.S_ISCHR(gone.st_mode) and gone.st_rdev == 0  # a whiteout
    assert os.getxattr(fs / "opq", "user.overlay.opaque") == b"y"
    assert sorted(os.listdir(fs / "opq")) == ["c"]
    assert os.readlink(fs / "srv" / "evil") == "/etc/shadow"  # a link, never followed
    assert os.readlink(fs / "srv" / "up") == "/etc/hello"  # made absolute: it climbed above /
    assert os.lstat(fs / "srv" / "suid").st_mode & 0o7777 == 0o755  # setuid cleared
    assert os.lstat(fs / "srv" / "new.txt").st_uid == 1000000  # root inside, as imported
    assert not (fs / "srv" / ".wh.trick").exists() and not (fs / ".kennel").exists()
    r = isrv.request("POST", "/v1/sandboxes", {"snapshotId": snap["id"], "resourceLimits": LIMITS})
    assert r.status == 202, r
    dst = r.json()["id"]
    assert r.json()["entrypoint"] == ["tail", "-f", "/dev/null"]  # the spec's default
    try:
        got = isrv.request("GET", f"/v1/sandboxes/{dst}").json()
        assert got["snapshotId"] == snap["id"] and "image" not in got
        check = one(isrv, dst, """
cat /srv/new.txt /srv/dir/deep/f /tmp/kept /work/kept /srv/data
test -e /etc/gone && echo gone-is-back || echo gone-is-gone
ls /opq | tr '\\n' ' '; echo
[ "$(stat -c %i /srv/h1)" = "$(stat -c %i /srv/h2)" ] && echo hardlink-kept
readlink /srv/up; cat /srv/up /srv/abs
stat -c %a /srv/suid
test -p /srv/fifo && echo fifo-kept
test -e /srv/.wh.trick && echo trick-kept || echo trick-left-out
test -e /srv/after && echo after-leaked || echo no-after
ps -o args | grep -c '^sleep 300' || true
echo $FROM_IMAGE; cat /etc/hello
""")
        assert check.split("\n") == [
            "new", "deep", "tmp", "work", "changed", "gone-is-gone", "c ", "hardlink-kept",
            "/etc/hello", "from the image", "from the image", "755", "fifo-kept",
            "trick-left-out", "no-after", "0", "yes", "from the image"], check
        # The same image runs from the CLI, by its name and by the snapshot's ref.
        env = {"PATH": "/usr/bin:/bin", "KENNEL_STORE": isrv.store}
        for ref in ("round:1", f"kennel-snapshot:{snap['id']}"):
            p = subprocess.run([kennel, "run", "-q", "--image", ref, "--", "sh", "-c",
                                "cat /srv/new.txt; test -e /etc/gone || echo deleted"],
                               capture_output=True, text=True, timeout=60, env=env)
            assert p.returncode == 0 and p.stdout == "new\ndeleted\n", (ref, p.stdout, p.stderr)
        # A snapshot of the restored sandbox stacks one more layer.
        one(isrv, dst, "echo second > /srv/second")
        snap2 = snapshot(isrv, dst)
        assert "name" not in snap2
    finally:
        delete(isrv, dst)
    third = isrv.create(snapshotId=snap2["id"], image=None)
    try:
        assert one(isrv, third, "cat /srv/new.txt /srv/second; test -e /etc/gone || echo d") == \
            "new\nsecond\nd"
    finally:
        delete(isrv, third)
    inspected = json.loads(kennel_image(kennel, isrv.store, "inspect",
                                        f"kennel-snapshot:{snap2['id']}").stdout)
    assert len(inspected["layers"]) == 3
    assert inspected["configured"]["env"] == ["PATH=/bin", "FROM_IMAGE=yes", "OVERRIDE=image"]
    for s in (snap2, snap):
        assert isrv.request("DELETE", f"/v1/snapshots/{s['id']}").status == 204
    assert kennel_image(kennel, isrv.store, "inspect", "round:1", check=False).returncode != 0


def test_snapshot_of_a_host_sandbox(isrv, kennel):
    src = isrv.create()
    try:
        one(isrv, src, "echo w > /work/w; mkdir -p /tmp/d; echo t > /tmp/d/t; echo v > "
                       "/var/tmp/v; echo gone > /work/gone")
        one(isrv, src, "rm /work/gone")
        snap = snapshot(isrv, src, "hostsnap")
    finally:
        delete(isrv, src)
    dst = isrv.create(snapshotId=snap["id"], image=None)
    try:
        assert one(isrv, dst, "cat /work/w /tmp/d/t /var/tmp/v; ls /work; test -d /usr/bin && "
                              "echo host-root") == "w\nt\nv\nw\nhost-root"
        # The restored places are writable, and deletions there work.
        assert one(isrv, dst, "rm /work/w && echo x > /tmp/x && ls /work | wc -l") == "0"
    finally:
        delete(isrv, dst)
    env = {"PATH": "/usr/bin:/bin", "KENNEL_STORE": isrv.store}
    p = subprocess.run([kennel, "run", "-q", "--image", "hostsnap", "--", "cat", "/work/w"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0 and p.stdout == "w\n", (p.stdout, p.stderr)
    assert isrv.request("DELETE", f"/v1/snapshots/{snap['id']}").status == 204


def test_snapshot_while_files_change(isrv):
    """The capture freezes the sandbox: a writer in a loop is stopped for the
    capture, every file in the snapshot is whole, and the writer goes on."""
    src = isrv.create(image={"uri": "bb:1"}, entrypoint=["tail", "-f", "/dev/null"])
    try:
        isrv.execd(src, "POST", "/command", {
            # The count is renamed into place too: a reader never sees it empty.
            "command": "i=0; while true; do i=$((i+1)); seq 1 2000 > /srv/f.tmp && "
                       "mv /srv/f.tmp /srv/f.$((i % 50)); echo $i > /srv/c.tmp && "
                       "mv /srv/c.tmp /srv/count; done",
            "background": True})
        time.sleep(0.3)
        snap = snapshot(isrv, src)
        frozen = float(snap["status"]["message"].split("frozen for ")[1].split(" ms")[0])
        assert frozen < 5000
        n1 = int(one(isrv, src, "cat /srv/count"))
        time.sleep(0.2)
        assert int(one(isrv, src, "cat /srv/count")) > n1  # it runs again
    finally:
        delete(isrv, src)
    dst = isrv.create(snapshotId=snap["id"], image=None)
    try:
        # Every renamed file is complete: 2000 lines (f.tmp, caught half-written,
        # is the state of that instant).
        out = one(isrv, dst, "for f in /srv/f.[0-9]*; do wc -l < $f; done | sort -u; "
                             "ps -o args | grep -c '^sh -c i=0' || true")
        assert out.split("\n") == ["2000", "0"], out
    finally:
        delete(isrv, dst)
    assert isrv.request("DELETE", f"/v1/snapshots/{snap['id']}").status == 204


def test_snapshot_endpoints_shapes_filters_and_errors(isrv):
    a = isrv.create(metadata={"t": "snapshots"})
    b = isrv.create()
    try:
        sa1 = snapshot(isrv, a, "one")
        sa2 = snapshot(isrv, a, "two")
        sb1 = snapshot(isrv, b, "one")
        for s in (sa1, sa2, sb1):
            assert set(s) <= SNAP_KEYS
            assert set(s["status"]) <= {"state", "reason", "message", "lastTransitionAt"}
            assert s["status"]["reason"] == "snapshot_ready"
            assert s["createdAt"].endswith("Z")
        got = isrv.request("GET", f"/v1/snapshots/{sa1['id']}").json()
        assert got["id"] == sa1["id"] and got["sandboxId"] == a and got["name"] == "one"

        def ids(query):
            r = isrv.request("GET", "/v1/snapshots" + query)
            assert r.status == 200, r
            return [x["id"] for x in r.json()["items"]], r.json()["pagination"]

        mine, _ = ids(f"?sandboxId={a}")
        assert mine == [sa2["id"], sa1["id"]]  # newest first
        named, _ = ids("?name=one")
        assert set(named) >= {sa1["id"], sb1["id"]} and sa2["id"] not in named
        both, _ = ids(f"?sandboxId={a}&state=Ready&state=Failed")
        assert both == mine
        assert ids(f"?sandboxId={a}&state=ready")[0] == mine  # states match case-insensitively
        assert ids(f"?sandboxId={a}&state=Failed")[0] == []
        page1, p = ids(f"?sandboxId={a}&pageSize=1")
        assert page1 == [sa2["id"]] and p == {"page": 1, "pageSize": 1, "totalItems": 2,
                                             "totalPages": 2, "hasNextPage": True}
        page2, p = ids(f"?sandboxId={a}&pageSize=1&page=2")
        assert page2 == [sa1["id"]] and not p["hasNextPage"]
        for q in ("?page=0", "?pageSize=0", "?pageSize=x", "?page=-1"):
            assert isrv.request("GET", "/v1/snapshots" + q).status == 400, q

        nosuch = "00000000-0000-4000-8000-000000000000"
        for method, path, body in (
                ("POST", f"/v1/sandboxes/{nosuch}/snapshots", {}),
                ("GET", f"/v1/snapshots/{nosuch}", None),
                ("DELETE", f"/v1/snapshots/{nosuch}", None),
                ("GET", "/v1/snapshots/..%2f..%2fetc", None)):
            r = isrv.request(method, path, body)
            assert r.status == 404 and r.json()["code"], (method, path, r)
        for body in ({"x": 1}, {"name": ""}, {"name": 3}, {"name": "a\nb"}, [1]):
            r = isrv.request("POST", f"/v1/sandboxes/{a}/snapshots", body)
            assert r.status == 400, (body, r)
        r = isrv.request("POST", f"/v1/sandboxes/{a}/snapshots", raw=b"{not json",
                         headers={"Content-Type": "application/json"})
        assert r.status == 400
        assert isrv.request("GET", f"/v1/sandboxes/{a}/snapshots").status == 405
        # Paused: 409, the source must be Running.
        assert isrv.request("POST", f"/v1/sandboxes/{a}/pause").status == 202
        r = isrv.request("POST", f"/v1/sandboxes/{a}/snapshots", {})
        assert r.status == 409, r
        assert isrv.request("POST", f"/v1/sandboxes/{a}/resume").status == 202
        # Creates from snapshots: unknown 404, with an image too 400.
        r = isrv.request("POST", "/v1/sandboxes", {"snapshotId": nosuch, "resourceLimits": LIMITS})
        assert r.status == 404 and r.json()["code"] == "SNAPSHOT::NOT_FOUND", r
        r = isrv.request("POST", "/v1/sandboxes", {"snapshotId": sa1["id"], "image": {
            "uri": "host"}, "entrypoint": ["true"], "resourceLimits": LIMITS})
        assert r.status == 400, r
        r = isrv.request("POST", "/v1/sandboxes", {"snapshotId": 5, "resourceLimits": LIMITS})
        assert r.status == 400, r
        # Snapshots outlive their sandbox; delete is 204, then 404.
        delete(isrv, b)
        assert isrv.request("GET", f"/v1/snapshots/{sb1['id']}").status == 200
        for s in (sa1, sa2, sb1):
            r = isrv.request("DELETE", f"/v1/snapshots/{s['id']}")
            assert r.status == 204 and r.body == b"", r
            assert isrv.request("GET", f"/v1/snapshots/{s['id']}").status == 404
            assert isrv.request("DELETE", f"/v1/snapshots/{s['id']}").status == 404
    finally:
        delete(isrv, a)
        if isrv.request("GET", f"/v1/sandboxes/{b}").status == 200:
            delete(isrv, b)


def test_snapshots_survive_a_server_restart(isrv):
    src = isrv.create()
    try:
        one(isrv, src, "echo r > /work/restart")
        snap = snapshot(isrv, src)
    finally:
        delete(isrv, src)
    isrv.kill9()
    isrv.start()
    assert isrv.request("GET", f"/v1/snapshots/{snap['id']}").json()["status"]["state"] == "Ready"
    dst = isrv.create(snapshotId=snap["id"], image=None)
    try:
        assert one(isrv, dst, "cat /work/restart") == "r"
    finally:
        delete(isrv, dst)
    assert isrv.request("DELETE", f"/v1/snapshots/{snap['id']}").status == 204


def test_a_full_disk_mid_capture_leaves_no_snapshot(kennel, fresh_server):
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 (e2fsprogs) is needed to make a small file system for the store")
    work = tempfile.mkdtemp(prefix="kn-full-", dir="/var/tmp")
    os.chmod(work, 0o755)
    img, mnt = os.path.join(work, "store.img"), os.path.join(work, "mnt")
    os.mkdir(mnt)
    mounted = False
    try:
        subprocess.run(["truncate", "-s", "24M", img], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True)
        subprocess.run(["mount", "-o", "loop", img, mnt], check=True)
        mounted = True
        os.chmod(mnt, 0o755)
        store = os.path.join(mnt, "images")
        s = fresh_server(extra_args=["--image-store", store])
        s.start()
        sid = s.create(resourceLimits={"cpu": "1", "memory": "512Mi",
                                       "ephemeral-storage": "128Mi"})
        one(s, sid, "dd if=/dev/urandom of=/work/big bs=1M count=40 2>/dev/null; echo small "
                    "> /work/small")
        r = s.request("POST", f"/v1/sandboxes/{sid}/snapshots", {"name": "full"})
        assert r.status == 202, r
        done = wait_ready(s, r.json()["id"])
        assert done["status"]["state"] == "Failed", done
        assert done["status"]["reason"] == "snapshot_capture_failed"
        assert "No space left on device" in done["status"]["message"], done
        # Nothing half-made: no layer, image, ref or staging left.
        for d in ("layers/sha256", "images", "refs", "tmp"):
            p = os.path.join(store, d)
            assert not os.path.isdir(p) or os.listdir(p) == [], (d, os.listdir(p))
        # The sandbox runs on, unfrozen; the Failed snapshot can be deleted.
        assert one(s, sid, "cat /work/small") == "small"
        assert s.request("DELETE", f"/v1/snapshots/{done['id']}").status == 204
        ready = s.request("GET", "/v1/snapshots?state=Ready").json()["items"]
        assert ready == []
        one(s, sid, "rm /work/big")
        assert snapshot(s, sid)["status"]["state"] == "Ready"  # it fits now
        problems = s.cleanup()
        assert not problems, problems
    finally:
        if mounted:
            subprocess.run(["umount", mnt], check=False)
        shutil.rmtree(work, ignore_errors=True)


# --- the disk-backed writable layer ----------------------------------------------


def loop_devices_of(path):
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if path in line]


def test_disk_backed_layer_is_bounded_and_leaves_nothing(kennel, fresh_server):
    if shutil.which("mkfs.ext4") is None or not os.path.exists("/dev/loop-control"):
        pytest.skip("the disk-backed layer needs mkfs.ext4 and loop devices")
    s = fresh_server(extra_args=["--writable-layer", "disk"])
    layers = os.path.join(s.dir, "layers")
    s.start()
    free0 = shutil.disk_usage(s.dir).free
    sid = s.create(image={"uri": "host"}, resourceLimits={"cpu": "1", "memory": "512Mi",
                                                        "ephemeral-storage": "64Mi"})
    try:
        # A loop device on an unnamed file in the layer directory, reserved.
        assert len(loop_devices_of(layers)) == 1, subprocess.run(
            ["losetup", "-a"], capture_output=True, text=True).stdout
        assert os.listdir(layers) == []  # the file has no name
        out = one(s, sid, "df -k /work | tail -1; dd if=/dev/zero of=/work/fill bs=1M "
                          "count=200 2>&1 | grep -o 'No space left on device'; "
                          "dd if=/dev/zero of=/tmp/more bs=1M count=2 2>/dev/null || echo full; "
                          "stat -c %s /work/fill")
        lines = out.split("\n")
        size_k = int(lines[0].split()[1])
        assert 50 * 1024 < size_k <= 64 * 1024, out
        assert lines[1:3] == ["No space left on device", "full"], out  # /tmp is the same layer
        assert int(lines[-1]) <= 64 << 20
        # The host's disk paid at most the reservation.
        assert free0 - shutil.disk_usage(s.dir).free < 80 << 20
        one(s, sid, "rm /work/fill; echo keep > /work/k")
        snap = snapshot(s, sid)  # a snapshot reads an ext4 upper as well
    finally:
        delete(s, sid)
    deadline = time.monotonic() + 5
    while loop_devices_of(layers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loop_devices_of(layers) == []
    assert os.listdir(layers) == []
    dst = s.create(snapshotId=snap["id"], image=None,
                   resourceLimits={"cpu": "1", "memory": "512Mi", "ephemeral-storage": "32Mi"})
    try:
        assert one(s, dst, "cat /work/k; df -k /work | tail -1 | tr -s ' ' | cut -d' ' -f2") \
            .split("\n")[0] == "keep"
    finally:
        delete(s, dst)
    # A layer smaller than ext4 can be is a clear 400 before anything starts.
    r = s.request("POST", "/v1/sandboxes", {"image": {"uri": "host"}, "entrypoint": ["true"],
                                           "resourceLimits": {"cpu": "1", "memory": "512Mi",
                                                              "ephemeral-storage": "2Mi"}})
    assert r.status == 400, r
    assert "at least 16 MiB" in r.json()["message"], r


def test_cli_snapshot_commands(isrv, kennel):
    env = {"PATH": "/usr/bin:/bin", "KENNEL_SERVER": f"http://127.0.0.1:{isrv.port}",
           "OPEN_SANDBOX_API_KEY": isrv.key, "KENNEL_STORE": isrv.store}

    def cli(*args, check=True):
        r = subprocess.run([kennel, *args], capture_output=True, text=True, timeout=60, env=env)
        if check:
            assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
        return r

    # No entrypoint: the image's own runs (kennel create sends none for a named image).
    sid = cli("create", "--image", "bb:1").stdout.strip()
    assert json.loads(cli("inspect", sid).stdout)["entrypoint"] == ["sleep", "1000"]
    cli("exec", sid, "--", "echo cli > /srv/cli")
    snap = cli("snapshot", sid, "clisnap:v1").stdout.strip()
    listed = cli("snapshot", "ls", "--sandbox", sid).stdout
    assert snap in listed and "Ready" in listed and "clisnap:v1" in listed
    assert json.loads(cli("snapshot", "ls", "--json", "--state", "Ready").stdout)
    r = cli("run", "-q", "--image", "clisnap:v1", "--", "cat", "/srv/cli")
    assert r.stdout == "cli\n"
    dst = cli("create", "--snapshot", snap).stdout.strip()
    assert cli("exec", dst, "--", "cat /srv/cli").stdout == "cli\n"
    r = cli("snapshot", "rm", snap, check=False)
    assert r.returncode == 125 and "in use" in r.stderr, r.stderr
    cli("rm", dst, sid)
    r = cli("snapshot", sid, check=False)  # the sandbox is gone
    assert r.returncode == 125 and "not found" in r.stderr, r.stderr
    assert cli("snapshot", "rm", "../x", check=False).returncode == 125
    cli("snapshot", "rm", snap)
    assert snap not in cli("snapshot", "ls").stdout
