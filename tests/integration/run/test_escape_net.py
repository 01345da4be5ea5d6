"""Trying to reach the network and the host's sockets from inside.

Every listener is the test's own, on the host's 127.0.0.1 or on a unix
socket: if a packet escaped the sandbox it would still stay on this machine.
"""
import os
import socket

import pytest


@pytest.fixture
def tcp_listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.settimeout(0.3)
    yield s
    s.close()


def accepted(listener):
    try:
        conn, _ = listener.accept()
    except (socket.timeout, BlockingIOError):
        return False
    conn.close()
    return True


def test_tcp_to_host_loopback_fails(kn, tcp_listener):
    port = tcp_listener.getsockname()[1]
    r, p = kn.probe("net-tcp", "127.0.0.1", str(port))
    assert p["result"] != "ok", p
    assert not accepted(tcp_listener), "the host listener got a connection from inside"


def test_tcp6_to_host_loopback_fails(kn):
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
    except OSError:
        pytest.skip("the host has no IPv6 loopback")
    s.listen(8)
    s.settimeout(0.3)
    try:
        r, p = kn.probe("net-tcp", "::1", str(s.getsockname()[1]))
        assert p["result"] != "ok", p
        assert not accepted(s)
    finally:
        s.close()


def test_udp_to_host_loopback_never_arrives(kn):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.5)
    try:
        r, p = kn.probe("net-udp", "127.0.0.1", str(s.getsockname()[1]))
        assert r.rc == 0, r
        with pytest.raises(socket.timeout):
            data = s.recv(100)
            pytest.fail(f"datagram from inside reached the host: {data!r}")
    finally:
        s.close()


def test_only_loopback_interface(kn):
    r, p = kn.probe("ifaces")
    assert set(p["ifaces"]) <= {"lo"}, p


def test_loopback_inside_is_private_and_usable(kn):
    # lo inside works for the program's own use, and is not the host's.
    code = ("import socket\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\n"
            "c = socket.create_connection(s.getsockname(), timeout=2)\n"
            "a, _ = s.accept(); c.sendall(b'ping'); print(a.recv(4).decode())\n")
    r = kn.run("-c", code)
    assert r.rc == 0 and r.out == "ping\n", r


@pytest.fixture
def unix_listeners(marker):
    made = []
    paths = [f"/tmp/{marker}.sock", f"/run/{marker}.sock", f"@{marker}"]
    for p in paths:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind("\0" + p[1:] if p.startswith("@") else p)
        s.listen(8)
        s.settimeout(0.2)
        made.append((p, s))
    yield made
    for p, s in made:
        s.close()
        if not p.startswith("@"):
            os.unlink(p)


def test_host_unix_sockets_unreachable(kn, unix_listeners):
    for path, listener in unix_listeners:
        r, p = kn.probe("unix", path)
        assert p["result"] != "ok", (path, p)
        assert not accepted(listener), f"{path}: a connection from inside reached the host"


def test_no_host_sockets_visible(kn):
    code = ("import os, stat\n"
            "found = []\n"
            "for top in ('/run', '/var/run', '/tmp', '/var/tmp', '/dev/shm'):\n"
            "    for d, dirs, files in os.walk(top):\n"
            "        for f in files:\n"
            "            try:\n"
            "                if stat.S_ISSOCK(os.lstat(os.path.join(d, f)).st_mode): found.append(os.path.join(d, f))\n"
            "            except OSError: pass\n"
            "print(found)\n")
    r = kn.run("-c", code)
    assert r.rc == 0 and r.out == "[]\n", r
    r, p = kn.probe("read", "/var/run/docker.sock")
    assert p["result"] in ("ENOENT", "ENXIO"), p


def test_network_egress_does_not_open_host_loopback(kn, tcp_listener):
    """With --network the sandbox gets a veth to the host. The host's own
    addresses, the gateway's included, must still not lead to services the
    host keeps on 127.0.0.1 (no route_localnet/DNAT shortcut). Only
    addresses of this machine are tried."""
    port = tcp_listener.getsockname()[1]
    code = ("import socket, struct\n"
            "gw = None\n"
            "for line in open('/proc/net/route').read().splitlines()[1:]:\n"
            "    f = line.split()\n"
            "    if f[1] == '00000000':\n"
            "        gw = socket.inet_ntoa(struct.pack('<I', int(f[2], 16)))\n"
            "print('gateway', gw)\n"
            f"for addr in [a for a in (gw, '127.0.0.1') if a]:\n"
            "    try:\n"
            f"        socket.create_connection((addr, {port}), timeout=2).close(); print(addr, 'connected')\n"
            "    except OSError as e:\n"
            "        print(addr, 'refused', e.errno)\n")
    r = kn.run("--network", "-t", "15", "-c", code)
    if r.rc == 125:
        pytest.skip(f"--network is not available here: {r.err.strip()}")
    assert "gateway" in r.out and "connected" not in r.out, r
    assert not accepted(tcp_listener), "a connection from inside reached the host's 127.0.0.1"
