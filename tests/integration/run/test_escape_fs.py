"""Trying to break out through the filesystem: writes outside the writable
layer, host secrets, kernel tunables, device nodes, the runtime's binary,
and files handed back by --download."""
import hashlib
import json
import os
import shutil

import pytest

from .conftest import make_world_dir, remove_tree, run_cmd

# Python run inside: tries each operation and prints {path: "ok"|errno name}.
TRY_WRITES = r"""
import errno, json, os, sys
res = {}
for p in sys.argv[1:]:
    try:
        with open(p, "w") as f:
            f.write("kennel escape test\n")
        res[p] = "ok"
    except OSError as e:
        res[p] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(res))
"""


def run_python(kn, code, *args, opts=()):
    """Runs code with python3 inside, argv[1:] = args; returns parsed stdout."""
    r = kn.run(*opts, "--", "python3", "-c", code, *args)
    assert r.rc == 0, r
    return r, json.loads(r.out.strip().splitlines()[-1])


def host_top_dirs():
    skip = {"proc", "sys", "dev"}
    return sorted(f"/{e}" for e in os.listdir("/")
                  if e not in skip and os.path.isdir(f"/{e}") and not os.path.islink(f"/{e}"))


# Writable inside by contract (a private tmpfs or the writable layer), or
# hidden host directories that may be replaced by an empty one.
PRIVATE_DIRS = {"/", "/tmp", "/work", "/run", "/var/tmp", "/dev/shm", "/root", "/home"}


def test_writes_never_reach_the_host(kn, marker, probe_dir):
    name = f"kennel-escape-{marker}"
    dirs = sorted(set(host_top_dirs()) | PRIVATE_DIRS |
                  {"/usr/local", "/var/lib", "/etc/ssl", str(probe_dir), "/probe"})
    inside = [os.path.join(d, name) for d in dirs]
    via_proc = [f"/proc/1/root/etc/{name}", f"/proc/self/root/usr/{name}",
                f"/proc/self/cwd/../etc/{name}"]
    assert not [d for d in dirs if os.path.lexists(os.path.join(d, name))]
    r, res = run_python(kn, TRY_WRITES, *inside, *via_proc,
                        opts=("--ro-bind", f"{probe_dir}:/probe"))
    leaked = [os.path.join(d, name) for d in dirs if os.path.lexists(os.path.join(d, name))]
    for p in leaked:
        os.unlink(p)
    assert not leaked, f"files written inside appeared on the host: {leaked}\n{res}"
    # The host's own directories must be read-only inside, not merely private.
    writable = [d for d in dirs if d not in PRIVATE_DIRS and d != str(probe_dir)
                and res[os.path.join(d, name)] not in ("EROFS", "EACCES", "EPERM", "ENOENT")]
    assert not writable, f"host directories writable inside: {writable}"
    assert all(res[p] != "ok" for p in via_proc), res


def test_host_home_directories_hidden(kn):
    if not os.listdir("/root"):
        pytest.skip("host /root is empty: nothing to hide")
    code = ("import json, os\n"
            "out = {}\n"
            "for d in ('/root', '/home'):\n"
            "    try: out[d] = os.listdir(d)\n"
            "    except OSError as e: out[d] = e.strerror\n"
            "print(json.dumps(out))\n")
    r, res = run_python(kn, code)
    assert res["/root"] in ([], "No such file or directory"), res
    assert res["/home"] in ([], "No such file or directory"), res


def test_etc_shadow_unreadable(kn):
    if not os.path.exists("/etc/shadow"):
        pytest.skip("host has no /etc/shadow")
    r, p = kn.probe("read", "/etc/shadow")
    assert p["result"] in ("EACCES", "EPERM", "ENOENT"), p


def test_kernel_tunables_not_writable(kn):
    targets = ["/proc/sys/kernel/core_pattern", "/proc/sysrq-trigger", "/proc/sys/vm/drop_caches",
               "/proc/sys/kernel/modprobe", "/sys/kernel/uevent_helper", "/proc/kcore",
               "/sys/fs/cgroup/memory/release_agent", "/sys/fs/cgroup/memory/memory.limit_in_bytes",
               "/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/unified/cgroup.subtree_control",
               "/proc/1/attr/current", "/sys/power/state"]
    # Opened for writing only, never written: a broken sandbox must not be
    # able to hurt the host through this test.
    code = ("import errno, json, os, sys\n"
            "res = {}\n"
            "for p in sys.argv[1:]:\n"
            "    try:\n"
            "        os.close(os.open(p, os.O_WRONLY)); res[p] = 'ok'\n"
            "    except OSError as e:\n"
            "        res[p] = errno.errorcode.get(e.errno, str(e.errno))\n"
            "print(json.dumps(res))\n")
    r, res = run_python(kn, code, *targets)
    opened = {p: v for p, v in res.items() if v == "ok"}
    assert not opened, f"opened for writing inside the sandbox: {opened}"


def test_cannot_create_host_cgroups(kn, marker):
    paths = [f"/sys/fs/cgroup/{c}/{marker}" for c in ("memory", "pids", "cpu", "unified")]
    code = ("import errno, json, os, sys\n"
            "res = {}\n"
            "for p in sys.argv[1:]:\n"
            "    try: os.mkdir(p); res[p] = 'ok'\n"
            "    except OSError as e: res[p] = errno.errorcode.get(e.errno, str(e.errno))\n"
            "print(json.dumps(res))\n")
    r, res = run_python(kn, code, *paths)
    made = [p for p in paths if os.path.isdir(p)]
    for p in made:
        os.rmdir(p)
    assert not made, f"cgroups created on the host: {made}"
    assert all(v != "ok" for v in res.values()), res


def test_no_device_nodes(kn):
    r, p = kn.probe("mknod", "/tmp")
    assert p["result"] in ("EPERM", "EACCES"), p
    assert p["chr_mem"] in ("EPERM", "EACCES"), p


def test_dev_is_minimal(kn):
    r, p = kn.probe("ls", "/dev")
    entries = p["entries"]
    allowed = {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx",
               "fd", "stdin", "stdout", "stderr", "core", "console", "mqueue"}
    extra = sorted(set(entries) - allowed)
    assert not extra, f"/dev inside has more than the minimal set: {extra}"
    for dev in ("null", "zero", "full", "random", "urandom", "tty"):
        assert entries.get(dev) == "chr", (dev, entries)
    assert not [k for k, v in entries.items() if v == "blk"], entries


def test_dev_null_and_zero_work(kn):
    r = kn.run("--", "bash", "-c",
               "head -c 4 /dev/zero | od -An -tx1 | tr -d ' \\n'; echo hidden >/dev/null;"
               " head -c 8 /dev/urandom | wc -c")
    assert r.rc == 0, r
    assert r.out == "00000000" + "8\n", r


def test_download_does_not_follow_symlinks_to_the_host(kn, hostdir):
    # The symlink's target exists only on the host (the sandbox has its own
    # /tmp), so a runtime that copies out through the host's view of the path
    # would hand the secret to the caller.
    secret_dir = make_world_dir("kennel-run-secret-")
    try:
        secret = secret_dir / "secret.txt"
        token = "KENNEL-SECRET-" + os.urandom(8).hex()
        secret.write_text(token + "\n")
        secret.chmod(0o600)
        out = hostdir / "leak.txt"
        code = f"import os; os.symlink({str(secret)!r}, '/work/leak.txt'); print('linked')"
        r = kn.run("--download", f"/work/leak.txt:{out}", "-c", code)
        assert "linked" in r.out, r
        if out.is_symlink():
            return  # copied as a link: nothing leaked
        if out.exists():
            assert token not in out.read_text(errors="replace"), "download followed a symlink to a host file"
    finally:
        remove_tree(secret_dir)


def test_download_of_proc_link_does_not_leak(kn, hostdir):
    # /proc/self/root inside points at the sandbox root; a runtime that
    # resolves it on the host side would read the host's /etc/shadow.
    out = hostdir / "shadow.txt"
    kn.run("--download", f"/proc/1/root/etc/shadow:{out}", "-c", "pass")
    if out.exists() and os.path.exists("/etc/shadow"):
        with open("/etc/shadow") as f:
            assert out.read_text(errors="replace") != f.read(), "host /etc/shadow was downloaded"


def test_runtime_binary_cannot_be_overwritten(kennel, probe_dir, hostdir):
    # The runtime runs from a private copy, so a successful attack damages
    # only the copy; the probe writes a marker through any /proc/PID/exe it
    # can open for writing, but only into files under the copy's directory.
    d = make_world_dir("kennel-run-exe-")
    try:
        copy = d / "kennel"
        shutil.copy2(kennel, copy)
        copy.chmod(0o755)
        before = hashlib.sha256(copy.read_bytes()).hexdigest()
        r = run_cmd([str(copy), "run", "--ro-bind", f"{probe_dir}:/probe", "--", "bash", "-c",
                     f"/probe/kennel-probe exe-write --write-under {d}/; "
                     f"/probe/kennel-probe exe-write --write-under {d}/"])
        after = hashlib.sha256(copy.read_bytes()).hexdigest()
        assert before == after, f"the runtime binary was modified from inside\n{r}"
        for line in r.out.splitlines():
            p = json.loads(line)
            opened = {k: v for k, v in p["targets"].items() if v == "ok"}
            assert not opened, f"opened for writing: {opened}"
    finally:
        remove_tree(d)


def test_writable_layer_does_not_persist(kn, marker):
    r = kn.run("-c", f"open('/work/{marker}', 'w').write('x'); open('/tmp/{marker}', 'w').write('x')")
    assert r.rc == 0, r
    r = kn.run("-c", f"import os; print(os.path.exists('/work/{marker}'), os.path.exists('/tmp/{marker}'))")
    assert r.out == "False False\n", r


def test_cannot_raise_own_cgroup_limits(kn):
    # If the cgroup tree is visible at all, the sandbox's own cgroup (found
    # by its pid in cgroup.procs) must not be writable from inside.
    code = r"""
import json, os
me = str(os.getpid())
found, opened = [], []
for d, dirs, files in os.walk("/sys/fs/cgroup"):
    if "cgroup.procs" not in files:
        continue
    try:
        with open(os.path.join(d, "cgroup.procs")) as f:
            if me not in f.read().split():
                continue
    except OSError:
        continue
    found.append(d)
    for name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.max",
                 "pids.max", "cpu.cfs_quota_us", "cpu.max", "cgroup.procs", "notify_on_release",
                 "release_agent", "cgroup.subtree_control"):
        p = os.path.join(d, name)
        try:
            os.close(os.open(p, os.O_WRONLY))
            opened.append(p)
        except OSError:
            pass
print(json.dumps({"found": found, "opened": opened}))
"""
    r, res = run_python(kn, code)
    assert not res["opened"], f"own cgroup files writable inside: {res['opened']}"


def test_upload_cannot_write_into_read_only_host_paths(kn, hostdir, marker):
    src = hostdir / "payload.txt"
    src.write_text("uploaded\n")
    src.chmod(0o644)
    data = hostdir / "data"
    data.mkdir()
    targets = {f"/etc/{marker}": f"/etc/{marker}", f"/usr/bin/{marker}": f"/usr/bin/{marker}",
               f"/data/{marker}": str(data / marker)}
    try:
        for guest, host in targets.items():
            r = kn.run("--ro-bind", f"{data}:/data", "--upload", f"{src}:{guest}", "-c", "pass")
            assert not os.path.exists(host), f"--upload to {guest} wrote {host} on the host\n{r}"
            assert r.rc == 125, f"an upload that cannot be done should be kennel's error\n{r}"
    finally:
        for host in targets.values():
            if os.path.exists(host):
                os.unlink(host)


def test_root_inside_cannot_read_host_root_files(kn, hostdir):
    secret = hostdir / "root-only.txt"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    r, p = kn.probe("read", "/h/root-only.txt", opts=("--ro-bind", f"{hostdir}:/h"))
    assert p["result"] == "EACCES", p


def test_files_written_through_bind_are_not_host_root(kn, hostdir):
    data = hostdir / "data"
    data.mkdir()
    data.chmod(0o777)
    code = ("import os, shutil\n"
            "shutil.copy('/bin/true', '/data/suid')\n"
            "try: os.chmod('/data/suid', 0o4755)\n"
            "except OSError: pass\n"
            "print('done')\n")
    r = kn.run("--bind", f"{data}:/data", "-c", code)
    assert r.out == "done\n", r
    st = os.stat(data / "suid")
    assert st.st_uid != 0 and st.st_gid != 0, "a file created inside is owned by host root"


@pytest.mark.parametrize("setup,guest", [
    ("os.mkfifo('/work/fifo')", "/work/fifo"),
    ("os.symlink('/dev/zero', '/work/zero')", "/work/zero"),
    ("pass", "/dev/zero"),
    ("pass", "/proc/self/mem"),
])
def test_download_of_special_files_does_not_hang(kn, hostdir, setup, guest):
    out = hostdir / "out.bin"
    r = kn.run("--download", f"{guest}:{out}", "-c", f"import os; {setup}", timeout=15)
    size = out.stat().st_size if out.exists() and not out.is_symlink() else 0
    assert r.elapsed < 15, f"download of {guest} took {r.elapsed:.1f}s\n{r}"
    assert size < 256 * 1024 * 1024, f"download of {guest} wrote {size} bytes"


def test_download_of_sparse_file_is_bounded(kn, hostdir):
    # A sparse file larger than the sandbox could ever store: copying it out
    # must not turn it into gigabytes of zeros on the host's disk.
    out = hostdir / "sparse.bin"
    code = ("try:\n"
            "    with open('/work/sparse', 'wb') as f: f.truncate(4 << 30)\n"
            "    print('made')\n"
            "except OSError as e:\n"
            "    print('refused', e)\n")
    r = kn.run("--download", f"/work/sparse:{out}", "-c", code, timeout=60)
    if "refused" in r.out:
        return  # the sandbox cannot even make such a file (RLIMIT_FSIZE)
    assert "made" in r.out, r
    if out.exists():
        used = out.stat().st_blocks * 512
        out.unlink()
        assert used <= 256 * 1024 * 1024, f"a 4 GiB sparse file took {used >> 20} MiB on the host disk"


def test_download_race_with_swapping_symlink(kn, hostdir):
    """A background process keeps swapping the file to download between a
    regular file and a symlink to a host-only secret, while the program
    exits. Whatever the runtime copies must never be the secret."""
    secret_dir = make_world_dir("kennel-run-secret-")
    try:
        secret = secret_dir / "secret.txt"
        token = "KENNEL-RACE-SECRET-" + os.urandom(8).hex()
        secret.write_text(token + "\n")
        secret.chmod(0o644)  # readable by anyone on the host: only the path protects it
        code = ("import os, subprocess\n"
                "swap = ('while true; do echo plain > /work/f.tmp; mv -f /work/f.tmp /work/out;'\n"
                f"        ' ln -sf {secret} /work/l.tmp; mv -f -T /work/l.tmp /work/out; done')\n"
                "subprocess.Popen(['bash', '-c', swap])\n"
                "import time; time.sleep(0.05)\n")
        for i in range(10):
            out = hostdir / f"out{i}"
            kn.run("--download", f"/work/out:{out}", "-c", code, timeout=20)
            if out.exists() and not out.is_symlink():
                assert token not in out.read_text(errors="replace"), f"run {i}: the secret was downloaded"
    finally:
        remove_tree(secret_dir)


def test_upload_into_kernel_tunables_refused(kn, hostdir):
    # Uploads are written with the sandbox's rights, never the caller's:
    # /proc/sys inside is the host kernel's. The payload is the current
    # value, so even a broken runtime changes nothing.
    with open("/proc/sys/kernel/core_pattern") as f:
        current = f.read()
    src = hostdir / "core_pattern"
    src.write_text(current)
    src.chmod(0o644)
    r = kn.run("--upload", f"{src}:/proc/sys/kernel/core_pattern", "-c", "print('RAN')")
    assert r.rc == 125, r
    with open("/proc/sys/kernel/core_pattern") as f:
        assert f.read() == current
