"""The CLI client commands (kennel create, ls, inspect, exec, logs, pause,
resume, renew, rm) against a real `kennel serve`."""
import json
import os
import subprocess
from datetime import datetime, timezone

from .conftest import API_KEY


def cli(kennel, server, *args, check=True):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "KENNEL_SERVER": f"http://127.0.0.1:{server.port}", "OPEN_SANDBOX_API_KEY": API_KEY}
    r = subprocess.run([kennel, *args], capture_output=True, text=True, timeout=60, env=env)
    if check:
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r


def test_cli_commands(kennel, server):
    sid = cli(kennel, server, "create", "--meta", "via=cli", "-e", "GREETING=hi",
              "--timeout", "120").stdout.strip()
    server.note_cgroups(sid)
    ls = cli(kennel, server, "ls", "--meta", "via=cli").stdout
    assert sid in ls and "Running" in ls
    assert json.loads(cli(kennel, server, "ls", "--json", "--meta", "via=cli").stdout)[0]["id"] == sid
    info = json.loads(cli(kennel, server, "inspect", sid).stdout)
    assert info["metadata"] == {"via": "cli"}
    # exec streams stdout and stderr apart and exits with the command's status.
    r = cli(kennel, server, "exec", sid, "--", "echo $GREETING; echo oops >&2; exit 3", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (3, "hi\n", "oops\n")
    r = cli(kennel, server, "exec", "-e", "X=1 2", sid, "--", "sh", "-c", "echo \"[$X]\"")
    assert r.stdout == "[1 2]\n"
    assert cli(kennel, server, "pause", sid).stdout.strip() == sid
    r = cli(kennel, server, "exec", sid, "--", "true", check=False)
    assert r.returncode == 125 and "Paused" in r.stderr
    cli(kennel, server, "resume", sid)
    until = cli(kennel, server, "renew", sid, "3600").stdout.strip()
    left = (datetime.fromisoformat(until.replace("Z", "+00:00")) -
            datetime.now(timezone.utc)).total_seconds()
    assert 3500 < left <= 3600
    assert "kennel-shim" in cli(kennel, server, "logs", sid).stdout
    cli(kennel, server, "rm", sid)
    r = cli(kennel, server, "inspect", sid, check=False)
    assert r.returncode != 0 and "not found" in r.stderr
    r = cli(kennel, server, "create", "--image", "nope:1", check=False)
    assert r.returncode == 125 and "nope:1" in r.stderr


def test_cli_cp(kennel, server, tmp_path):
    sid = server.create()
    src = tmp_path / "in.bin"
    data = os.urandom(200000) + "åäö\n".encode()
    src.write_bytes(data)
    os.chmod(src, 0o640)
    cli(kennel, server, "cp", str(src), f"{sid}:/tmp/deep/in.bin")
    assert server.run(sid, "stat -c %s:%a /tmp/deep/in.bin")[0] == [f"{len(data)}:640"]
    out = tmp_path / "out.bin"
    cli(kennel, server, "cp", f"{sid}:/tmp/deep/in.bin", str(out))
    assert out.read_bytes() == data
    r = cli(kennel, server, "cp", f"{sid}:/tmp/missing", str(tmp_path / "x"), check=False)
    assert r.returncode == 1 and not (tmp_path / "x").exists()
    assert not (tmp_path / "x.kennel-cp").exists()
    r = cli(kennel, server, "cp", str(src), str(out), check=False)
    assert r.returncode == 125
    server.request("DELETE", f"/v1/sandboxes/{sid}")


def run_in_terminal(argv, env, keys, until, limit=20, rows=33, cols=111):
    """Runs argv on a new local terminal (a real PTY pair of this test), types
    keys once the output holds `until[0]`, and returns (status, output)."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    import time
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    out, step = b"", 0
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if step < len(keys) and until[step].encode() in out:
            os.write(fd, keys[step].encode())
            step += 1
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out


def test_cli_exec_in_a_terminal(kennel, server):
    """kennel exec -t: the sandbox's shell on this terminal (raw, its size
    passed on), keys typed reach it, the remote status is ours, and the PTY
    is gone afterwards."""
    sid = server.create()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm",
           "KENNEL_SERVER": f"http://127.0.0.1:{server.port}", "OPEN_SANDBOX_API_KEY": API_KEY}
    code, out = run_in_terminal(
        [kennel, "exec", "-t", sid], env,
        keys=["stty size; echo v-$((6*7))\r", "exit 4\r"], until=["@kennel", "v-42"])
    assert code == 4, out
    assert b"33 111" in out and b"v-42" in out, out
    # A command instead of the shell; a bad id is a clear error.
    code, out = run_in_terminal([kennel, "exec", "-t", sid, "--", "tty; exit 6"], env, [], [])
    assert code == 6 and b"/dev/pts/" in out, out
    code, out = run_in_terminal([kennel, "exec", "-t", "nosuchsandbox"], env, [], [])
    assert code == 125 and b"not found" in out, out
    # Each session: its open and one close (the exit frame), paired.
    items = server.request("GET", f"/v1/sandboxes/{sid}/receipts?limit=1000").json()["items"]
    pty = [(i["credentialSubject"]["action"]["type"], i["credentialSubject"]["outcome"]["status"],
            i["credentialSubject"]["correlation_id"]) for i in items
           if i["credentialSubject"]["action"]["type"].startswith("system.pty.")]
    assert [p[:2] for p in pty] == [("system.pty.open", "pending"), ("system.pty.open", "success"),
                                    ("system.pty.close", "success")] * 2, pty
    assert pty[0][2] == pty[2][2] != pty[3][2] == pty[5][2]
