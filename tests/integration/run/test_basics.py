"""What `kennel run` must do for an ordinary user: languages, sources, stdin,
environment, file transfer, binds, exit codes, output caps, --json, several
sources at once, and the timeout."""
import hashlib
import os
import shutil
import socket
import subprocess
import time

import pytest

from .conftest import host_processes_matching, kennel_cgroups, new_leaked_cgroups, run_cmd

MiB = 1024 * 1024


def test_help(kn):
    r = kn.run("--help")
    assert r.rc == 0, r
    for flag in ("--timeout", "--memory", "--pids", "--cpus", "--json", "--profile", "--image"):
        assert flag in r.out, f"--help does not mention {flag}\n{r}"


def test_python_code(kn):
    r = kn.run("-c", "print(42)")
    assert r.rc == 0, r
    assert r.out == "42\n", r


def test_bash_code(kn):
    r = kn.run("-l", "bash", "-c", "echo $((6 * 7)) ${BASH_VERSION:+bash}")
    assert r.rc == 0, r
    assert r.out == "42 bash\n", r


def test_javascript_code(kn):
    if shutil.which("node") is None:
        pytest.skip("node is not installed on the host")
    r = kn.run("-l", "javascript", "-c", "console.log(6 * 7, typeof process)")
    assert r.rc == 0, r
    assert r.out == "42 object\n", r


@pytest.mark.parametrize("name,text,expected", [
    ("prog.py", "import sys\nprint(sys.implementation.name)\n", "cpython\n"),
    ("prog.sh", "echo ${BASH_VERSION:+bash}\n", "bash\n"),
    ("prog.js", "console.log(typeof require)\n", "function\n"),
])
def test_language_from_extension(kn, hostdir, name, text, expected):
    if name.endswith(".js") and shutil.which("node") is None:
        pytest.skip("node is not installed on the host")
    src = hostdir / name
    src.write_text(text)
    src.chmod(0o644)
    r = kn.run(str(src))
    assert r.rc == 0, r
    assert r.out == expected, r


def test_stdin_source_defaults_to_python(kn):
    r = kn.run("-", input=b"print(6 * 7)\n")
    assert r.rc == 0, r
    assert r.out == "42\n", r


def test_stdin_source_with_language(kn):
    r = kn.run("-l", "bash", "-", input=b"echo from-stdin\n")
    assert r.rc == 0, r
    assert r.out == "from-stdin\n", r


def test_working_directory_and_base_environment(kn):
    code = "import os; print(os.getcwd()); print(os.environ['HOME']); print('PATH' in os.environ)"
    r = kn.run("-c", code)
    assert r.rc == 0, r
    assert r.out.splitlines() == ["/work", "/work", "True"], r


def test_env_flag(kn):
    code = "import os; print(os.environ['FOO']); print(os.environ['EQ']); print(repr(os.environ['EMPTY']))"
    r = kn.run("-e", "FOO=bar", "-e", "EQ=a=b", "-e", "EMPTY=", "-c", code)
    assert r.rc == 0, r
    assert r.out.splitlines() == ["bar", "a=b", "''"], r


def test_upload_download_round_trip(kn, hostdir):
    payload = os.urandom(200_000)
    src = hostdir / "in.bin"
    src.write_bytes(payload)
    src.chmod(0o644)
    dst = hostdir / "out.bin"
    code = ("data = open('/work/in.bin', 'rb').read()\n"
            "open('/work/out.bin', 'wb').write(data[::-1])\n"
            "print(len(data))\n")
    r = kn.run("--upload", f"{src}:/work/in.bin", "--download", f"/work/out.bin:{dst}", "-c", code)
    assert r.rc == 0, r
    assert r.out == "200000\n", r
    assert dst.exists(), f"--download did not create {dst}\n{r}"
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(payload[::-1]).digest()


def test_download_without_local_path_goes_to_cwd(kn, hostdir):
    r = kn.run("--download", "/work/result.txt", "-c",
               "open('/work/result.txt', 'w').write('done\\n')", cwd=hostdir)
    assert r.rc == 0, r
    assert (hostdir / "result.txt").read_text() == "done\n", r


def test_ro_bind_is_readable_not_writable(kn, hostdir):
    data = hostdir / "data"
    data.mkdir()
    (data / "hello.txt").write_text("hello from host\n")
    opts = ("--ro-bind", f"{data}:/data")
    r, p = kn.probe("read", "/data/hello.txt", opts=opts)
    assert p["result"] == "ok" and p["data"] == "hello from host\n", r
    r, p = kn.probe("write", "/data/new.txt", opts=opts)
    assert p["result"] in ("EROFS", "EACCES", "EPERM"), r
    assert not (data / "new.txt").exists()


def test_bind_is_writable(kn, hostdir):
    data = hostdir / "data"
    data.mkdir()
    data.chmod(0o777)
    r, p = kn.probe("write", "/data/new.txt", "written inside\n", opts=("--bind", f"{data}:/data"))
    assert p["result"] == "ok", r
    assert (data / "new.txt").read_text() == "written inside\n"


@pytest.mark.parametrize("args,code", [
    (["-c", "import sys; sys.exit(3)"], 3),
    (["-c", "raise SystemExit(0)"], 0),
    (["-c", "raise ValueError('boom')"], 1),
    (["--", "bash", "-c", "exit 3"], 3),
    (["-l", "bash", "-c", "exit 255"], 255),
    (["--", "bash", "-c", "kill -9 $$"], 137),
    (["--", "bash", "-c", "kill -TERM $$"], 143),
    (["--", "bash", "-c", "kill -SEGV $$"], 139),
])
def test_exit_code_propagation(kn, args, code):
    r = kn.run("-t", "10", *args)
    assert r.rc == code, r


def test_signal_in_json(kn):
    r = kn.run("--json", "--", "bash", "-c", "kill -9 $$")
    assert r.rc == 137, r
    j = r.json()
    assert j["exit_code"] == 137 and j["signal"] == 9, r


def test_command_not_found_is_127(kn):
    r = kn.run("--", "kennel-no-such-command-anywhere")
    assert r.rc == 127, r
    r = kn.run("--", "/no/such/dir/prog")
    assert r.rc == 127, r


def test_command_not_executable_is_126(kn, hostdir):
    # The shells' convention: found but not executable is 126, not 127.
    (hostdir / "notexec").write_text("#!/bin/sh\necho ran\n")
    (hostdir / "notexec").chmod(0o644)
    r = kn.run("--ro-bind", f"{hostdir}:/h", "--", "/h/notexec")
    assert r.rc == 126, r
    assert "ran" not in r.out


def test_stdout_cap_and_writer_not_blocked(kn):
    # 3 MB to stdout, then a line on stderr: the writer must not block on a
    # full pipe once the cap is reached, and nothing past 1 MiB arrives.
    r = kn.run("-t", "20", "--", "bash", "-c",
               "head -c 3000000 /dev/zero | tr '\\0' x; echo writer-finished >&2")
    assert r.rc == 0, r
    assert len(r.stdout_bytes) == MiB, f"stdout is {len(r.stdout_bytes)} bytes"
    assert "writer-finished" in r.err, r
    assert f"[kennel: stdout truncated at {MiB} bytes]" in r.err, r


def test_stderr_cap(kn):
    r = kn.run("-t", "20", "--", "bash", "-c",
               "head -c 500000 /dev/zero | tr '\\0' y >&2; echo out-ok")
    assert r.rc == 0, r
    assert r.out == "out-ok\n", r
    assert "[kennel: stderr truncated at 102400 bytes]" in r.err, r
    kept = 100 * 1024
    assert "y" * kept in r.err and "y" * (kept + 1) not in r.err, "stderr is not cut at 100 KiB"


def test_endless_output_ends_at_timeout(kn):
    r = kn.run("-t", "2", "--", "yes", timeout=30)
    assert r.rc == 124, r
    assert len(r.stdout_bytes) == MiB, f"stdout is {len(r.stdout_bytes)} bytes"
    assert r.elapsed < 8, r


def test_truncation_flags_in_json(kn):
    r = kn.run("--json", "-t", "20", "--", "bash", "-c", "head -c 2000000 /dev/zero")
    j = r.json()
    assert j["stdout_truncated"] is True and j["stderr_truncated"] is False, j
    assert len(j["stdout"]) == MiB, len(j["stdout"])


def test_json_fields(kn):
    r = kn.run("--json", "-m", "128", "--pids", "50", "--cpus", "1.5", "-t", "7",
               "-c", "import sys; print('hi'); print('err', file=sys.stderr)")
    assert r.rc == 0, r
    j = r.json()
    assert isinstance(j, dict), j
    assert isinstance(j["source"], str)
    assert j["stdout"] == "hi\n" and j["stderr"] == "err\n", j
    assert j["exit_code"] == 0 and j["signal"] is None, j
    assert j["timed_out"] is False and j["oom_killed"] is False
    assert j["stdout_truncated"] is False and j["stderr_truncated"] is False
    t = j["timing"]
    for k in ("setup_ms", "execute_ms", "total_ms"):
        assert isinstance(t[k], (int, float)) and t[k] >= 0, t
    assert t["total_ms"] + 1 >= t["setup_ms"] + t["execute_ms"], t
    assert t["total_ms"] <= r.elapsed * 1000 + 5, (t, r.elapsed)
    assert set(j["cpu"]) >= {"user_ms", "sys_ms"}
    assert isinstance(j["peak_memory_bytes"], int) and j["peak_memory_bytes"] > 0
    lim = j["limits"]
    assert lim["memory_bytes"] == 128 * MiB, lim
    assert lim["pids"] == 50, lim
    assert lim["cpus"] == 1.5, lim
    assert lim["timeout_ms"] == 7000, lim
    assert lim["stdout_bytes"] == MiB and lim["stderr_bytes"] == 100 * 1024, lim
    assert j["profile"] == "default"
    assert isinstance(j["warnings"], list)
    # As root on this host every layer can be enforced.
    assert j["unenforced"] == [], j["unenforced"]


@pytest.mark.parametrize("arg,expected", [
    ("64", 64 * MiB), ("512m", 512 * MiB), ("1g", 1024 * MiB), ("300M", 300 * MiB),
])
def test_memory_size_syntax(kn, arg, expected):
    r = kn.run("--json", "-m", arg, "-c", "pass")
    assert r.rc == 0, r
    assert r.json()["limits"]["memory_bytes"] == expected


def test_peak_memory_and_cpu_are_plausible(kn):
    r = kn.probe_run("mem", "100", opts=("--json", "-m", "512"))
    j = r.json()
    assert j["exit_code"] == 0, j
    assert 100 * MiB <= j["peak_memory_bytes"] <= 300 * MiB, j["peak_memory_bytes"]

    r = kn.probe_run("spin", "0.6", opts=("--json",))
    j = r.json()
    cpu = j["cpu"]["user_ms"] + j["cpu"]["sys_ms"]
    assert 250 <= cpu <= 1500, j["cpu"]  # a 0.6 s spin, on a host that may be busy
    assert j["timing"]["execute_ms"] >= 550, j["timing"]


def test_timeout(kn):
    r = kn.run("-t", "0.5", "--", "sleep", "30")
    assert r.rc == 124, r
    assert r.elapsed < 4, r
    assert "kennel:" in r.err and "time" in r.err.lower(), r


def test_fractional_timeout_not_early(kn):
    r = kn.run("-t", "2.5", "--", "sleep", "1")
    assert r.rc == 0, r


def test_timed_out_in_json(kn):
    r = kn.run("--json", "-t", "0.5", "--", "bash", "-c", "echo before; sleep 30")
    assert r.rc == 124, r
    j = r.json()
    assert j["timed_out"] is True and j["stdout"] == "before\n", j
    assert j["limits"]["timeout_ms"] == 500


def test_sources_run_concurrently_in_separate_sandboxes(kn):
    # Each source writes its own file in /tmp, waits, then lists /tmp: a
    # shared sandbox would show both files; serial runs would take 3 s.
    code = ("import os, time\n"
            "open('/tmp/mine-%s', 'w').close()\n"
            "time.sleep(1.5)\n"
            "print(sorted(f for f in os.listdir('/tmp') if f.startswith('mine-')))\n")
    start = time.monotonic()
    r = kn.run("--json", "-c", code % "a", "-c", code % "b")
    elapsed = time.monotonic() - start
    assert r.rc == 0, r
    j = r.json()
    assert isinstance(j, list) and len(j) == 2, j
    assert j[0]["stdout"] == "['mine-a']\n", j
    assert j[1]["stdout"] == "['mine-b']\n", j
    assert elapsed < 2.8, f"two 1.5 s sources took {elapsed:.2f}s: not concurrent"


def test_file_and_code_sources_together(kn, hostdir):
    src = hostdir / "one.sh"
    src.write_text("echo from-file\n")
    src.chmod(0o644)
    r = kn.run("--json", str(src), "-c", "print('from-code')")
    assert r.rc == 0, r
    j = r.json()
    assert [x["stdout"] for x in j] == ["from-file\n", "from-code\n"], j
    assert "one.sh" in j[0]["source"], j[0]["source"]


def test_failing_source_makes_run_fail(kn):
    r = kn.run("-c", "print('ok')", "-c", "import sys; sys.exit(3)")
    assert r.rc != 0, r


def test_hostname_is_private(kn):
    before = socket.gethostname()
    r, p = kn.probe("hostname", "kennel-evil-name")
    assert socket.gethostname() == before
    assert r.rc == 0, r


def test_background_children_do_not_hold_the_run(kn, marker):
    # The program exits and leaves a background child holding stdout open:
    # the run ends with the program, and the child goes with the sandbox.
    r = kn.run("-t", "20", "--", "bash", "-c",
               f"bash -c 'exec -a {marker} sleep 300' & echo started")
    assert r.rc == 0, r
    assert r.out == "started\n", r
    assert r.elapsed < 5, f"the run waited for a background child\n{r}"
    assert host_processes_matching(marker) == []


def test_stdin_forwarded_to_command(kn):
    r = kn.run("--", "cat", input=b"through stdin\n")
    assert r.rc == 0 and r.out == "through stdin\n", r


def test_json_with_binary_output(kn):
    r = kn.run("--json", "--", "bash", "-c", "printf 'a\\xff\\xfe\\x00b\\n'; printf '\\x80' >&2")
    j = r.json()  # must still be valid JSON
    assert j["exit_code"] == 0, j
    assert j["stdout"].startswith("a") and j["stdout"].endswith("b\n"), j["stdout"]


def test_output_order_and_binary_passthrough(kn):
    r = kn.run("--", "bash", "-c", "printf 'a\\xff\\x00b'")
    assert r.stdout_bytes == b"a\xff\x00b", r


def test_failed_download_is_an_error(kn, hostdir):
    # A missing result file must not look like success to a script.
    r = kn.run("--download", f"/work/never-written.txt:{hostdir}/out.txt", "-c", "pass")
    assert r.rc == 125, r
    assert "kennel:" in r.err and "never-written" in r.err, r


def test_timeout_of_a_stopped_program(kn):
    r = kn.run("-t", "1", "--", "bash", "-c", "kill -STOP $$")
    assert r.rc == 124, r
    assert r.elapsed < 5, r


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_large_source(kn, hostdir, how):
    # Larger than one argv string may be (128 KiB): a runtime that passes
    # the code as `python3 -c CODE` fails with E2BIG.
    code = "".join(f"# filler line {i:06d} {'x' * 60}\n" for i in range(16000)) + "print('big')\n"
    assert len(code) > 1_000_000
    if how == "file":
        src = hostdir / "big.py"
        src.write_text(code)
        src.chmod(0o644)
        r = kn.run(str(src))
    else:
        r = kn.run("-", input=code.encode())
    assert r.rc == 0 and r.out == "big\n", r


def test_reader_going_away_ends_the_run(kn, marker):
    """`kennel run -- yes | head -1`: when the caller stops reading, the
    program sees a broken pipe as it would without kennel, and the run ends
    long before its timeout, leaving nothing behind."""
    cgroups_before = kennel_cgroups()
    proc = subprocess.Popen([kn.binary, "run", "-t", "8", "--", "bash", "-c", f"exec -a {marker} yes"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout.readline() == b"y\n"
        proc.stdout.close()
        start = time.monotonic()
        proc.wait(timeout=15)
        waited = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert waited < 5, f"kennel ran on for {waited:.1f}s after its reader went away"
    assert host_processes_matching(marker) == []
    assert new_leaked_cgroups(cgroups_before) == []


def test_json_with_awkward_source_name(kn, hostdir):
    src = hostdir / 'we"i\\rd\tnäme.py'
    src.write_text("print('ok')\n")
    src.chmod(0o644)
    r = kn.run("--json", str(src))
    j = r.json()  # the name must be escaped, not pasted
    assert j["stdout"] == "ok\n" and j["source"].endswith(src.name), j


def test_single_file_binds(kn, hostdir):
    f = hostdir / "note.txt"
    f.write_text("hello\n")
    f.chmod(0o666)  # the sandbox's root is not the host's: it needs the mode to write
    r = kn.run("--ro-bind", f"{f}:/work/note.txt", "--", "bash", "-c",
               "cat /work/note.txt; echo x >> /work/note.txt || echo refused")
    assert r.out == "hello\nrefused\n", r
    r = kn.run("--bind", f"{f}:/data/note.txt", "--", "bash", "-c", "echo more >> /data/note.txt")
    assert r.rc == 0, r
    assert f.read_text() == "hello\nmore\n"


def test_custom_output_limits(kn):
    r = kn.run("--stdout-limit", "10", "--stderr-limit", "1k", "--", "bash", "-c",
               "echo 0123456789abcdef; head -c 5000 /dev/zero | tr '\\0' e >&2")
    assert r.rc == 0, r
    assert r.out == "0123456789", r
    assert "[kennel: stdout truncated at 10 bytes]" in r.err, r
    assert "e" * 1024 in r.err and "e" * 1025 not in r.err, r
    assert "[kennel: stderr truncated at 1024 bytes]" in r.err, r


def test_endless_stdin_does_not_hold_the_run(kn):
    # `yes | kennel run -- true`: the program ignores its input and exits.
    r = run_cmd(["bash", "-c", f"yes | {kn.binary} run -- sleep 0.2; echo rc=${{PIPESTATUS[1]}}"],
                timeout=20)
    assert r.out.strip() == "rc=0", r
    assert r.elapsed < 5, r


def test_large_stdin_passes_intact(kn):
    data = os.urandom(20 * MiB)
    r = kn.run("--", "sha256sum", input=data)
    assert r.rc == 0, r
    assert r.out.split()[0] == hashlib.sha256(data).hexdigest(), r
