"""Network policy (issue 5): no network by default, allowlists by name and
CIDR, deny over allow, rebinding, the host and metadata out of reach,
exposed ports without egress, and a teardown that leaves nothing behind.

Every probe runs inside a sandbox against the suite's private internet
(conftest.py); results come back as one JSON line.
"""
import fcntl
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from .conftest import (DNS_ADDR, HOST_ADDR, HOST_IF, NS, NS_IF, sh, check_routes, host_links, kennel_helpers, leftovers,
                       nft_tables, slot_of)

PRELUDE = r'''
import json, socket
out = {}
def resolve(name):
    try:
        return sorted({a[4][0] for a in socket.getaddrinfo(name, 80, socket.AF_INET,
                                                            socket.SOCK_STREAM)})
    except socket.gaierror as e:
        return "gaierror"
def get(addr, port=80, timeout=3):
    try:
        s = socket.create_connection((addr, port), timeout=timeout)
    except OSError as e:
        return "error:" + (type(e).__name__ if not e.errno else str(e.errno))
    try:
        s.settimeout(timeout)
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            data += d
        return data.decode(errors="replace").split("\r\n\r\n", 1)[-1].strip()
    except OSError as e:
        return "error:" + type(e).__name__
    finally:
        s.close()
def udp(addr, port=7, timeout=2):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(b"ping", (addr, port))
        return s.recvfrom(64)[0].decode()
    except OSError as e:
        return "error:" + type(e).__name__
    finally:
        s.close()
'''
DONE = "\nprint(json.dumps(out))\n"


def probe(net_run, body, *flags, **kw):
    r = net_run(PRELUDE + body + DONE, *flags, **kw)
    assert r.returncode == 0, f"kennel run failed ({r.returncode}): {r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def served(addr):
    return f"served-by {addr}"


def failed(v):
    return isinstance(v, str) and (v.startswith("error:") or v == "gaierror")


def test_no_network_by_default(net_run):
    out = probe(net_run, r'''
out["tcp"] = get("203.0.113.10", timeout=1)
out["udp"] = udp("203.0.113.10", timeout=1)
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.sendto(b"\x08\x00\xf7\xff\x00\x00\x00\x00", ("203.0.113.10", 0))
    out["raw"] = "sent"
except OSError as e:
    out["raw"] = "error:" + str(e.errno)
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    s.sendto(b"\x08\x00\xf7\xff\x00\x00\x00\x00", ("203.0.113.10", 0))
    out["icmp"] = "sent"
except OSError as e:
    out["icmp"] = "error:" + str(e.errno)
out["links"] = sorted(n for _, n in socket.if_nameindex())
out["routes"] = open("/proc/net/route").read().strip().splitlines()[1:]
out["dns"] = resolve("allowed.test")
''', upstream=False)
    assert failed(out["tcp"]) and failed(out["udp"]), out
    assert failed(out["raw"]) and failed(out["icmp"]), out
    # netlink sees a namespace with only lo and no routes: nothing to reach
    assert out["links"] == ["lo"] and out["routes"] == [], out
    assert out["dns"] == "gaierror", out


def test_allowed_name_works_others_fail(net_run):
    out = probe(net_run, r'''
out["direct_before"] = get("203.0.113.10", timeout=1)
out["allowed"] = resolve("allowed.test")
out["get"] = get("allowed.test")
out["other_dns"] = resolve("other.test")
out["other_ip"] = get("203.0.113.20", timeout=1)
out["other_udp"] = udp("203.0.113.20", timeout=1)
out["resolv"] = open("/etc/resolv.conf").read()
''', "--allow-domain", "allowed.test")
    # before the name is resolved its address is closed, even though the
    # name is allowed: only the proxy's answers open addresses
    assert failed(out["direct_before"]), out
    assert out["allowed"] == ["203.0.113.10"], out
    assert out["get"] == served("203.0.113.10"), out
    assert out["other_dns"] == "gaierror", out
    assert failed(out["other_ip"]) and failed(out["other_udp"]), out
    assert out["resolv"].startswith("nameserver 10.231."), out


def test_proxy_refuses_with_refused(net_run):
    out = probe(net_run, r'''
import struct
ns = open("/etc/resolv.conf").read().split()[1]
def ask(name):
    q = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    q += struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(q, (ns, 53))
    d = s.recv(4096)
    return [struct.unpack(">H", d[:2])[0], d[3] & 15, struct.unpack(">H", d[6:8])[0]]
out["allowed"] = ask("allowed.test")
out["other"] = ask("other.test")
out["upper"] = ask("ALLOWED.Test")
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    s.sendto(b"\x00" * 3, (ns, 53))
    s.recv(10)
    out["garbage"] = "answered"
except OSError:
    out["garbage"] = "dropped"
''', "--allow-domain", "allowed.test")
    assert out["allowed"] == [0x4242, 0, 1], out
    assert out["other"] == [0x4242, 5, 0], out      # REFUSED, no answer
    assert out["upper"][1] == 0, out                # names match without case
    assert out["garbage"] == "dropped", out


def test_proxy_over_tcp(net_run):
    out = probe(net_run, r'''
import struct
ns = open("/etc/resolv.conf").read().split()[1]
def q(name, qid):
    m = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    m += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    m += struct.pack(">HH", 1, 1)
    return struct.pack(">H", len(m)) + m
def read_msg(s):
    def exact(n):
        b = b""
        while len(b) < n:
            d = s.recv(n - len(b))
            if not d:
                raise EOFError
            b += d
        return b
    m = exact(struct.unpack(">H", exact(2))[0])
    return [struct.unpack(">H", m[:2])[0], m[3] & 15, ".".join(str(x) for x in m[-4:])]
s = socket.create_connection((ns, 53), timeout=3)
# three queries in one segment: answered in order, one at a time
s.sendall(q("allowed.test", 1) + q("other.test", 2) + q("api.wild.test", 3))
out["answers"] = [read_msg(s) for _ in range(3)]
s.close()
out["get"] = get("203.0.113.30")
''', "--allow-domain", "allowed.test", "--allow-domain", "*.wild.test")
    assert out["answers"][0] == [1, 0, "203.0.113.10"], out
    assert out["answers"][1][:2] == [2, 5], out  # REFUSED
    assert out["answers"][2] == [3, 0, "203.0.113.30"], out
    assert out["get"] == served("203.0.113.30"), out


def test_wildcard_semantics(net_run):
    out = probe(net_run, r'''
for n in ("api.wild.test", "deep.a.wild.test", "wild.test"):
    out[n] = resolve(n)
out["get_api"] = get("api.wild.test")
out["get_apex_ip"] = get("203.0.113.31", timeout=1)
''', "--allow-domain", "*.wild.test")
    assert out["api.wild.test"] == ["203.0.113.30"], out
    assert out["deep.a.wild.test"] == ["203.0.113.32"], out
    # "*.wild.test" is strictly below wild.test: the apex is not included
    assert out["wild.test"] == "gaierror", out
    assert out["get_api"] == served("203.0.113.30"), out
    assert failed(out["get_apex_ip"]), out


def test_deny_beats_allow(net_run):
    out = probe(net_run, r'''
out["api"] = get("api.wild.test")
out["bad"] = resolve("bad.wild.test")
out["bad_ip"] = get("203.0.113.33", timeout=1)
out["cidr_ok"] = get("203.0.113.40")
out["cidr_denied"] = get("203.0.113.20", timeout=1)
out["denied_name"] = resolve("other.test")
''', "--allow-domain", "*.wild.test", "--deny-domain", "bad.wild.test",
        "--allow-cidr", "203.0.113.0/24", "--deny-cidr", "203.0.113.20/32",
        "--allow-domain", "other.test", "--deny-domain", "other.test")
    assert out["api"] == served("203.0.113.30"), out
    assert out["bad"] == "gaierror", out
    assert out["cidr_ok"] == served("203.0.113.40"), out
    assert failed(out["cidr_denied"]), out
    assert out["denied_name"] == "gaierror", out


def test_cidr_rules(net_run):
    out = probe(net_run, r'''
out["in"] = get("203.0.113.40")
out["in_udp"] = udp("203.0.113.40")
out["out"] = get("203.0.113.10", timeout=1)
out["dns"] = resolve("allowed.test")
''', "--allow-cidr", "203.0.113.40/32")
    assert out["in"] == served("203.0.113.40"), out
    assert out["in_udp"] == "ping", out
    assert failed(out["out"]), out
    assert out["dns"] == "gaierror", out  # no name is allowed


def test_dns_rebinding_does_not_open_private_addresses(net_run):
    out = probe(net_run, r'''
out["rebind"] = resolve("rebind.test")
out["rebind_get"] = get("rebind.test", timeout=1)
out["private"] = resolve("private.test")
out["private_get"] = get("10.99.0.1", timeout=1)
out["mixed"] = resolve("mixed.test")
out["mixed_public"] = get("203.0.113.50")
out["mixed_private"] = get("172.20.0.1", timeout=1)
''', "--allow-domain", "rebind.test", "--allow-domain", "private.test",
        "--allow-domain", "mixed.test")
    # The answer is relayed as the upstream gave it, but a private, loopback,
    # link-local or metadata address in it is never opened.
    assert out["rebind"] == ["169.254.169.254"], out
    assert failed(out["rebind_get"]), out
    assert out["private"] == ["10.99.0.1"] and failed(out["private_get"]), out
    assert out["mixed"] == ["172.20.0.1", "203.0.113.50"], out
    assert out["mixed_public"] == served("203.0.113.50"), out
    assert failed(out["mixed_private"]), out


@pytest.fixture
def host_listener():
    """A TCP listener on all of the host's addresses (loopback included)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 0))
    s.listen(8)
    s.setblocking(False)
    yield s.getsockname()[1]
    s.close()


def test_host_and_metadata_unreachable_with_open_egress(net_run, host_listener):
    port = host_listener
    out = probe(net_run, rf'''
gw = open("/etc/resolv.conf").read().split()[1]
out["public"] = get("203.0.113.20")
out["public_dns"] = resolve("other.test")
out["metadata"] = get("169.254.169.254", timeout=1)
out["private10"] = get("10.99.0.1", timeout=1)
out["private172"] = get("172.20.0.1", timeout=1)
out["private192"] = get("192.168.77.1", timeout=1)
out["host_gw"] = get(gw, {port}, timeout=1)
out["host_gw80"] = get(gw, 80, timeout=1)
out["host_addr"] = get("{HOST_ADDR}", {port}, timeout=1)
out["host_lo"] = get("127.0.0.1", {port}, timeout=1)
import struct
q = struct.pack(">HHHHHH", 9, 0x0100, 1, 0, 0, 0) + b"\x05other\x04test\x00" + struct.pack(">HH", 1, 1)
def direct_dns(proto):
    try:
        s = socket.socket(socket.AF_INET, proto)
        s.settimeout(2)
        if proto == socket.SOCK_DGRAM:
            s.sendto(q, ("{DNS_ADDR}", 53))
            return "answered" if s.recv(512) else "empty"
        s.connect(("{DNS_ADDR}", 53))
        s.sendall(struct.pack(">H", len(q)) + q)
        return "answered" if s.recv(512) else "empty"
    except OSError as e:
        return "error:" + type(e).__name__
out["dns_direct"] = direct_dns(socket.SOCK_DGRAM)
out["dns_direct_tcp"] = direct_dns(socket.SOCK_STREAM)
''', "--network")
    assert out["public"] == served("203.0.113.20"), out
    assert out["public_dns"] == ["203.0.113.20"], out
    for k in ("metadata", "private10", "private172", "private192", "host_gw", "host_gw80",
              "host_addr", "host_lo"):
        assert failed(out[k]), (k, out)
    # DNS goes to the proxy only, even when the resolver's address is open
    assert failed(out["dns_direct"]) and failed(out["dns_direct_tcp"]), out


def test_a_rule_can_name_a_blocked_range(net_run):
    out = probe(net_run, r'''
out["metadata"] = get("169.254.169.254")
out["private"] = get("10.99.0.1", timeout=1)
''', "--network", "--allow-cidr", "169.254.169.254/32")
    assert out["metadata"] == served("169.254.169.254"), out
    assert failed(out["private"]), out


def test_mss_fits_a_smaller_uplink(net_run):
    """Sandboxes have a 64 KiB MTU; their SYNs leave with an MSS that fits
    the link they leave through (clamped to the route's MTU on the host), and
    bulk transfers to a host behind it work."""
    server = subprocess.Popen(["ip", "netns", "exec", NS, "/usr/bin/python3", "-c", r'''
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.10", 5050)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); n = 0
mss = c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
while True:
    d = c.recv(1 << 16)
    if not d: break
    n += len(d)
c.sendall(b"%d %d" % (mss, n)); c.close()
'''], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        sh("ip", "link", "set", HOST_IF, "mtu", "1400")
        sh("ip", "link", "set", NS_IF, "mtu", "65520", ns=NS)
        out = probe(net_run, r'''
s = socket.create_connection(("203.0.113.10", 5050), timeout=5)
out["own_mss"] = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
s.sendall(b"x" * (4 << 20)); s.shutdown(socket.SHUT_WR)
s.settimeout(10)
out["server"] = s.recv(64).decode()
out["path_mtu"] = s.getsockopt(socket.IPPROTO_IP, 14)  # IP_MTU
''', "--allow-cidr", "203.0.113.10/32")
    finally:
        sh("ip", "link", "set", HOST_IF, "mtu", "1500")
        sh("ip", "link", "set", NS_IF, "mtu", "1500", ns=NS)
        server.kill()
        server.wait()
    mss, n = (int(x) for x in out["server"].split())
    assert n == 4 << 20, out
    assert mss <= 1360, out  # the server was told what fits 1400
    # The server's SYN-ACK offered its own large MSS: the sandbox's big
    # segments were cut down by path-MTU discovery, from an ICMP the host
    # itself sent (the small link is the host's own), so it cannot be lost.
    assert out["path_mtu"] <= 1400, out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def test_exposed_port_without_egress(internet, kennel):
    port = free_port()
    code = r'''
import http.server, json, socket
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            socket.create_connection(("203.0.113.10", 80), timeout=1)
            egress = "open"
        except OSError:
            egress = "closed"
        links = ",".join(sorted(n for _, n in socket.if_nameindex()))
        body = ("inside egress=" + egress + " links=" + links).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 8080), H)
s.handle_request()
'''
    check_routes()
    p = subprocess.Popen([kennel, "run", "-q", "--expose", f"8080:{port}", "-c", code],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    body = None
    try:
        deadline = time.time() + 15
        while time.time() < deadline and body is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    data = b""
                    while True:
                        d = c.recv(4096)
                        if not d:
                            break
                        data += d
                    if data:
                        body = data.decode().split("\r\n\r\n", 1)[-1]
            except OSError:
                time.sleep(0.1)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # no egress asked for: no veth at all, the namespace keeps only lo
    assert body == "inside egress=closed links=lo", (body, err)
    assert p.returncode == 0, err


# What a sandbox prints so that the test can find its traces on the host:
# the proxy address (its slot) and the host directory of its resolv.conf.
SHOW = (
    'import sys\n'
    'ns = open("/etc/resolv.conf").read().split()[1]\n'
    'src = [l.split()[3] for l in open("/proc/self/mountinfo") if " /etc/resolv.conf " in l]\n'
    'print("traces", ns, src[0].rsplit("/", 1)[0], flush=True)\n')


def traces(stdout):
    lines = [l.split("] ", 1)[-1] for l in stdout.splitlines()]  # "[code2] " with several
    return [tuple(l.split()[1:3]) for l in lines if l.startswith("traces ")]


def test_concurrent_sandboxes_and_teardown(net_run, internet, kennel):
    helpers = kennel_helpers(kennel)
    code = SHOW + PRELUDE + 'out["get"] = get("allowed.test")' + DONE
    r = net_run(code, "--allow-domain", "allowed.test", "-c", code, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(served("203.0.113.10")) == 3, r.stdout
    seen = traces(r.stdout)
    assert len({ns for ns, _ in seen}) == 3, r.stdout  # each sandbox its own /30
    # a failing program and a timed-out one tear down the same way
    r = net_run(SHOW + "sys.exit(3)", "--allow-domain", "allowed.test")
    assert r.returncode == 3, r.stderr
    seen += traces(r.stdout)
    r = net_run(SHOW + "import time; time.sleep(30)", "--network", "--timeout", "1")
    assert r.returncode == 124, r.stderr
    seen += traces(r.stdout)
    assert len(seen) == 5, seen
    assert leftovers({slot_of(ns) for ns, _ in seen}) == []
    assert [d for _, d in seen if os.path.exists(d)] == []
    assert not (kennel_helpers(kennel) - helpers)


def test_bad_rules_are_refused(net_run):
    for bad in ("*", "exa mple.com", "a..b", "10.0.0.0/33", "::1/128", "*.*.x"):
        r = net_run("print(1)", "--allow-domain", bad)
        assert r.returncode == 125, (bad, r.stdout, r.stderr)


def test_failed_attach_leaves_nothing(internet, kennel):
    """An exposed port already taken fails the run after the veth, tables
    and proxy exist: all of it must go."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    before = gateway_slots()
    try:
        r = subprocess.run([kennel, "run", "-q", "--expose", f"8080:{port}", "--network",
                            "--dns-upstream", DNS_ADDR, "--", "/bin/true"],
                           capture_output=True, text=True, timeout=30)
    finally:
        taken.close()
    assert r.returncode == 125 and "Address already in use" in r.stderr, r.stderr
    # Other kennels may be running: a slot whose lock nobody holds any more
    # but that still has its gateway address (or anything else) is a leftover.
    new = gateway_slots() - before
    assert [s for s in new if slot_unheld(s)] == []
    assert leftovers([s for s in new if slot_unheld(s)]) == []


def gateway_slots():
    """Slots whose gateway address is on the shared uplink kennel0 now."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", "kennel0"], capture_output=True,
                         text=True).stdout
    slots = set()
    for line in out.split("\n"):
        parts = line.split()
        if "inet" in parts:
            a = [int(x) for x in parts[parts.index("inet") + 1].split("/")[0].split(".")]
            slots.add((a[2] * 256 + a[3]) // 4)
    return slots


def slot_unheld(slot):
    try:
        with open(f"/run/kennel/net/slots/{slot}") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True  # closing unlocks
    except BlockingIOError:
        return False


def test_exposed_port_carries_bulk_both_ways(internet, kennel):
    """Two connections at once, 4 MiB each way each, half-close passed on."""
    port = free_port()
    code = r'''
import socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 9000))
s.listen(4)
def echo(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.shutdown(socket.SHUT_WR)
    c.close()
print("listening", flush=True)
ts = []
for _ in range(2):
    c, _ = s.accept()
    t = threading.Thread(target=echo, args=(c,))
    t.start()
    ts.append(t)
for t in ts:
    t.join()
print("served 2")
'''
    p = subprocess.Popen([kennel, "run", "-q", "--expose", f"9000:{port}", "-c", code],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = []

    def client(payload):
        c = socket.create_connection(("127.0.0.1", port), timeout=20)

        def send():
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        got = bytearray()
        while True:
            d = c.recv(1 << 16)
            if not d:
                break
            got += d
        sender.join()
        c.close()
        results.append(bytes(got) == payload)

    try:
        # The host end accepts at once whether or not the program listens
        # yet (a connection made too early is closed): wait for its word.
        assert p.stdout.readline().strip() == "listening"
        clients = [threading.Thread(target=client, args=(os.urandom(4 << 20),))
                   for _ in range(2)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(30)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert results == [True, True], err
    assert "served 2" in out, err


def test_exposed_port_picked_by_kennel(internet, kennel):
    """--expose INTERNAL alone: kennel picks the host port and says which."""
    code = r'''
import socket
s = socket.socket()
s.bind(("127.0.0.1", 8081))
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
c.sendall(b"hello from inside")
c.close()
'''
    p = subprocess.Popen([kennel, "run", "-q", "--expose", "8081", "-c", code],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        assert line.startswith("kennel: exposed port 8081 on 127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        assert p.stdout.readline().strip() == "listening"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            assert c.recv(100) == b"hello from inside"
        p.wait(20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0


def test_forwarding_is_on_only_while_needed(internet, kennel):
    """IPv4 forwarding is a host-wide switch: Kennel turns it on while a
    sandbox with egress lives (only if it was off) and off again when the
    last one ends; if it was on, it stays on."""
    path = "/proc/sys/net/ipv4/ip_forward"
    before = open(path).read().strip()
    check_routes()
    p = subprocess.Popen([kennel, "run", "-q", "--allow-cidr", "203.0.113.10/32",
                          "--dns-upstream", DNS_ADDR, "--", "/bin/sh", "-c",
                          "echo up; read line"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "up"
        during = open(path).read().strip()
    finally:
        p.communicate("bye\n", timeout=30)
    assert p.returncode == 0
    assert during == "1"
    # Another kennel's sandbox with egress (other engineers', CI) may hold it.
    with open("/run/kennel/net/uplink.users") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pytest.skip("another sandbox with egress is running: forwarding is rightly on")
        after = open(path).read().strip()
    assert after == before


def test_sandboxes_with_egress_cannot_reach_each_other(net_run, internet):
    """All sandboxes with egress hang off one shared pair (macvlans of
    kennel1): one must not reach another, even with a policy that opens
    every address, the sandboxes' own range included. An address of that
    range that no sandbox holds has no route but the default one: the host
    must drop what is sent to it, never send it out of its uplink."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o777)
        addr_file = os.path.join(d, "addr")
        listener = r'''
import fcntl, socket, struct, time
s = socket.socket(); s.bind(("0.0.0.0", 8080)); s.listen(8); s.settimeout(12)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 8081)); u.settimeout(0.2)
ip = socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", b"eth0"))[20:24])
open("/share/addr.tmp", "w").write(ip)
import os; os.rename("/share/addr.tmp", "/share/addr")
out["ip"] = ip
out["accepted"] = 0
out["udp"] = 0
deadline = time.time() + 12
while time.time() < deadline and not os.path.exists("/share/done"):
    try:
        c, _ = s.accept(); out["accepted"] += 1; c.close()
    except OSError:
        pass
    try:
        u.recvfrom(64); out["udp"] += 1
    except OSError:
        pass
'''
        result = {}

        def run_listener():
            result["a"] = probe(net_run, listener, "--allow-cidr", "0.0.0.0/0",
                                "--bind", f"{d}:/share", "-t", "20", timeout=40)

        t = threading.Thread(target=run_listener)
        t.start()
        try:
            deadline = time.time() + 15
            while not os.path.exists(addr_file) and time.time() < deadline:
                time.sleep(0.05)
            assert os.path.exists(addr_file), "the listening sandbox never reported its address"
            ip = open(addr_file).read().strip()
            guard_before = internet.guard_count()
            out = probe(net_run, f'''
out["tcp"] = get({ip!r}, 8080, timeout=2)
out["udp"] = udp({ip!r}, 8081, timeout=1)
out["unused"] = get("10.231.255.254", 8080, timeout=1)
''', "--allow-cidr", "0.0.0.0/0", "--allow-cidr", "10.231.0.0/16", timeout=40)
            guard_after = internet.guard_count()
        finally:
            open(os.path.join(d, "done"), "w").close()
            t.join(40)
    a = result["a"]
    assert a["ip"].startswith("10.231."), a
    assert failed(out["tcp"]) and failed(out["unused"]), out
    assert a["accepted"] == 0 and a["udp"] == 0, (a, out)
    assert guard_after == guard_before, "a packet for the sandboxes' range left by the uplink"

