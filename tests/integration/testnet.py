"""A small private internet for the network tests (issue 5): the network policy
tests of tests/integration/net and the server's egress tests share it (the
`internet` fixture of tests/integration/conftest.py).

Nothing here ever reaches a real network:

* the "internet" is a network namespace this suite creates, joined to the
  host by a veth pair it creates, and every address a test contacts is
  assigned inside that namespace (documentation ranges 198.51.100.0/24 and
  203.0.113.0/24, plus stand-ins for what must stay unreachable: the cloud
  metadata address 169.254.169.254 and private addresses). 192.0.2.0/24 is
  not used: on some hosts (this one) it is the real uplink's subnet;
* before any probe, `ip route get` must show that every test address is
  routed through the suite's own veth, or the session stops;
* for the whole session a guard nftables table drops, and counts, anything
  the host sends or forwards through an interface it had before the suite
  started (its real uplinks); the session fails if that count is not zero.

A failed set-up step raises before any test runs. Runs of this suite on one
machine (several engineers, CI from a fresh clone) take turns through an
flock, since they would route the same test addresses; every name the suite
creates carries its pid, and teardown removes only what this run created.
"""
import fcntl
import json
import os
import pathlib
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import textwrap
import time

_TAG = f"{os.getpid() & 0xffffff:06x}"
NS = f"kn-tinet-{os.getpid()}"
HOST_IF = f"knt{_TAG}a"   # host end of the suite's veth
NS_IF = f"knt{_TAG}b"     # its end inside the internet namespace
GUARD = f"kn_nettest_guard_{os.getpid()}"
LOCK = "/run/kennel-nettest.lock"
LOCK_WAIT = 300

HOST_ADDR = "198.51.100.1"
NS_ADDR = "198.51.100.2"
DNS_ADDR = "198.51.100.53"

# Names the test DNS serves, and their addresses (all inside the namespace).
NAMES = {
    "allowed.test": "203.0.113.10",
    "other.test": "203.0.113.20",
    "api.wild.test": "203.0.113.30",
    "wild.test": "203.0.113.31",
    "deep.a.wild.test": "203.0.113.32",
    "bad.wild.test": "203.0.113.33",
    "cidr.test": "203.0.113.40",
    "rebind.test": "169.254.169.254",
    "private.test": "10.99.0.1",
    "mixed.test": "203.0.113.50",
}
# mixed.test also answers with a private address (rebinding inside one answer);
# alias.test shares allowed.test's address.
EXTRA_RECORDS = [("mixed.test", "172.20.0.1"), ("alias.test", "203.0.113.10")]
# Addresses that must stay unreachable, assigned inside so that a leak lands
# there and is seen (an HTTP server answers on all of them).
UNREACHABLE = ["169.254.169.254", "10.99.0.1", "172.20.0.1", "192.168.77.1"]
ROUTED = ["203.0.113.0/24", "169.254.169.254/32", "10.99.0.0/24", "172.20.0.0/24",
          "192.168.77.0/24"]
TEST_ADDRS = sorted(set(NAMES.values()) | set(UNREACHABLE) | {DNS_ADDR, NS_ADDR})

HTTP_SERVER = textwrap.dedent("""
    import http.server, socketserver, sys
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = ("served-by " + self.connection.getsockname()[0] + "\\n").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True
    S(("0.0.0.0", 80), H).serve_forever()
""")

# One socket per address, so that each reply leaves from the address that
# was asked (a wildcard socket would answer from the namespace's own address
# and the host's NAT would not recognise the reply).
UDP_ECHO = textwrap.dedent("""
    import select, socket, sys
    socks = []
    for addr in sys.argv[1:]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, 7))
        socks.append(s)
    while True:
        for s in select.select(socks, [], [])[0]:
            d, a = s.recvfrom(2048)
            s.sendto(d, a)
""")


def sh(*argv, check=True, ns=None):
    if ns:
        argv = ("ip", "netns", "exec", ns) + argv
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"set-up step failed: {' '.join(argv)}: {r.stderr.strip()}")
    return r.stdout


def host_links():
    return {l["ifname"] for l in json.loads(sh("ip", "-j", "link", "show"))}


def kennel_pair():
    """kennel0 and kennel1 when they exist and are each other's veth peer."""
    links = {l["ifname"]: l for l in json.loads(sh("ip", "-j", "-d", "link", "show"))}
    pair = set()
    for a, b in (("kennel0", "kennel1"), ("kennel1", "kennel0")):
        l = links.get(a)
        if l and l.get("linkinfo", {}).get("info_kind") == "veth" and l.get("link") == b:
            pair.add(a)
    return pair


def nft_tables():
    out = sh("nft", "list", "tables")
    return {line.strip() for line in out.splitlines() if line.strip()}


def slot_of(nameserver):
    """The pool slot of a sandbox, from the proxy address in its resolv.conf
    (10.231.0.0/16, a /30 per slot, the host end first)."""
    a = [int(x) for x in nameserver.split(".")]
    assert a[:2] == [10, 231] and a[3] % 4 == 1, nameserver
    return (a[2] * 256 + a[3]) // 4


def slot_addrs(s):
    base = (10 << 24) | (231 << 16) | (s * 4)
    ip = lambda a: ".".join(str((a >> k) & 255) for k in (24, 16, 8, 0))
    return ip(base), ip(base + 1), ip(base + 2)  # net, gateway, sandbox


def leftovers(slots):
    """What is left on the host of the sandboxes that had these slots: the
    gateway address on the shared uplink, a neighbour entry or a route for
    the slot, an nft table or exception element naming it, a link of the
    old per-sandbox kind. (Other engineers' kennels may be running: only
    this run's own slots are looked at.) The shared pair kennel0/kennel1
    and its table are Kennel's, not a sandbox's."""
    links = host_links()
    tables = nft_tables()
    routes = sh("ip", "route", "show", "table", "all").splitlines()
    addrs = sh("ip", "-4", "-o", "addr", "show").splitlines()
    neigh = sh("ip", "-4", "neigh", "show").splitlines()
    shared = sh("nft", "list", "table", "inet", "kennel_host", check=False)
    left = []
    for s in slots:
        net, gw, sb = slot_addrs(s)
        left += [l for l in links if l == f"knh{s}"]
        left += [t for t in tables if t == f"table inet kennel_{s}"]
        left += [r for r in routes if f"dev knh{s} " in r + " " or r.startswith(f"{net}/30 ")]
        left += [a for a in addrs if f" {gw}/" in a]
        left += [n for n in neigh if n.startswith(f"{sb} ")]
        left += [f"private_ok: {line.strip()}" for line in shared.splitlines()
                 if f"{sb} . " in line]
    return left


def kennel_helpers(kennel):
    """Processes a sandbox of this suite could leave behind: nft, or a
    launcher of the kennel under test (other kennels may be running)."""
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if exe == os.path.realpath(kennel) or os.path.basename(exe) == "nft":
            found.add(pid)
    return found


def dns_query(server, name, timeout=2.0):
    """A minimal A query from the host; returns the rcode."""
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    q += struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, (server, 53))
        data, _ = s.recvfrom(4096)
        return data[3] & 0x0F
    finally:
        s.close()


def check_routes():
    for addr in TEST_ADDRS:
        r = json.loads(sh("ip", "-j", "route", "get", addr))
        dev = r[0].get("dev")
        if dev != HOST_IF:
            raise RuntimeError(f"route to test address {addr} goes through {dev!r}, not the "
                               f"suite's own {HOST_IF}: refusing to send anything")


class Internet:
    def __init__(self):
        self.procs = []
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="kn-nettest-"))
        self.uplinks = []
        self.old_forward = None
        self.guard_loaded = False
        self.made_ns = False
        self.made_link = False
        self.lock = None

    def take_turn(self):
        """Waits for any other run of this suite to finish."""
        self.lock = open(LOCK, "w")
        deadline = time.time() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.time() > deadline:
                    raise RuntimeError(f"another run of the network tests held {LOCK} for "
                                       f"{LOCK_WAIT} s")
                time.sleep(0.2)

    # -- guard ----------------------------------------------------------
    def load_guard(self):
        # Kennel's shared pair kennel0/kennel1 (a veth pair between the
        # host and the sandboxes' macvlans, src/core/uplink.c) leads nowhere
        # but into sandboxes: not an uplink, even when it outlived a run.
        self.uplinks = sorted(host_links() - {"lo"} - kennel_pair())
        if not self.uplinks:
            return
        names = ", ".join(f'"{u}"' for u in self.uplinks)
        # Last at its hooks (priority 400): it counts, and drops, what every
        # other table let through towards an uplink, i.e. what would really
        # leave; a packet Kennel's own tables drop never left.
        # "create" fails if the table exists: never add to someone else's
        script = textwrap.dedent(f"""
            create table inet {GUARD}
            table inet {GUARD} {{
                chain guard_output {{
                    type filter hook output priority 400; policy accept;
                    oifname {{ {names} }} counter log prefix "{GUARD} out: " drop
                }}
                chain guard_forward {{
                    type filter hook forward priority 400; policy accept;
                    oifname {{ {names} }} counter log prefix "{GUARD} fwd: " drop
                }}
            }}
        """)
        subprocess.run(["nft", "-f", "-"], input=script, text=True, check=True)
        self.guard_loaded = True

    def guard_count(self):
        if not self.guard_loaded:
            return 0
        out = json.loads(sh("nft", "-j", "list", "table", "inet", GUARD))
        total = 0
        for item in out["nftables"]:
            rule = item.get("rule")
            if not rule:
                continue
            for e in rule["expr"]:
                if "counter" in e:
                    total += e["counter"]["packets"]
        return total

    def unload_guard(self):
        if self.guard_loaded:
            sh("nft", "delete", "table", "inet", GUARD, check=False)
            self.guard_loaded = False

    # -- the internet namespace ---------------------------------------------
    def build(self):
        self.take_turn()
        self.load_guard()
        self.old_forward = pathlib.Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
        sh("ip", "netns", "add", NS)
        self.made_ns = True
        sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
        self.made_link = True
        sh("ip", "link", "set", NS_IF, "netns", NS)
        # IPv4 only: no link-local address appearing mid-test in the routes
        pathlib.Path(f"/proc/sys/net/ipv6/conf/{HOST_IF}/disable_ipv6").write_text("1")
        sh("ip", "addr", "add", f"{HOST_ADDR}/24", "dev", HOST_IF)
        sh("ip", "link", "set", HOST_IF, "up")
        sh("ip", "link", "set", "lo", "up", ns=NS)
        sh("ip", "addr", "add", f"{NS_ADDR}/24", "dev", NS_IF, ns=NS)
        sh("ip", "link", "set", NS_IF, "up", ns=NS)
        for addr in sorted(set(NAMES.values()) | set(UNREACHABLE) | {DNS_ADDR}):
            sh("ip", "addr", "add", f"{addr}/32", "dev", "lo", ns=NS)
        for net in ROUTED:
            sh("ip", "route", "add", net, "via", NS_ADDR, "dev", HOST_IF)
        check_routes()

        records = [f"--host-record={n},{a}" for n, a in NAMES.items()]
        records += [f"--host-record={n},{a}" for n, a in EXTRA_RECORDS]
        self.spawn(["dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                    "--bind-interfaces", f"--listen-address={DNS_ADDR}", "--port=53",
                    "--local=/test/", "--local-ttl=60", "--pid-file=", "--user=root",
                    "--log-facility=/dev/null", *records])
        (self.tmp / "kn_http_server.py").write_text(HTTP_SERVER)
        (self.tmp / "kn_udp_echo.py").write_text(UDP_ECHO)
        self.spawn(["/usr/bin/python3", str(self.tmp / "kn_http_server.py")])
        self.spawn(["/usr/bin/python3", str(self.tmp / "kn_udp_echo.py"), *sorted(
            set(NAMES.values()) | set(UNREACHABLE))])
        self.wait_ready()

    def spawn(self, argv):
        p = subprocess.Popen(["ip", "netns", "exec", NS, *argv], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        self.procs.append(p)
        return p

    def wait_ready(self):
        deadline = time.time() + 10
        last = None
        while time.time() < deadline:
            try:
                if dns_query(DNS_ADDR, "allowed.test", 0.5) == 0:
                    with socket.create_connection(("203.0.113.10", 80), timeout=0.5):
                        return
            except OSError as e:
                last = e
            time.sleep(0.1)
        raise RuntimeError(f"the test internet did not come up: {last}")

    def teardown(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.made_ns:
            sh("ip", "netns", "del", NS, check=False)
        if self.made_link:
            sh("ip", "link", "del", HOST_IF, check=False)
        if self.old_forward is not None:
            pathlib.Path("/proc/sys/net/ipv4/ip_forward").write_text(self.old_forward)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def finish(self):
        """Reads the guard's count, then takes everything down whatever
        fails on the way (a missing guard table reads as a failure)."""
        try:
            count = self.guard_count()
        except Exception:
            count = -1
        try:
            self.teardown()
        finally:
            try:
                self.unload_guard()
            finally:
                self.release()
        return count

    def release(self):
        if self.lock:
            self.lock.close()  # unlocks
            self.lock = None


def _skip_reason():
    if os.geteuid() != 0:
        return "network policy tests need root"
    for tool in ("ip", "nft", "dnsmasq"):
        if not shutil.which(tool):
            return f"{tool} is not installed (scripts/setup installs it)"
    return None


_BUILD_FAILED = []


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def internet_session():
    """The body of the session fixture `internet`: builds the internet (or
    skips with the reason), yields it, takes it down and fails the session
    if the guard counted anything."""
    import pytest
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    if _BUILD_FAILED:
        pytest.fail(f"the test internet could not be built: {_BUILD_FAILED[0]}")
    # A run stopped by SIGTERM (a CI timeout) still takes its internet down.
    old_term = signal.signal(signal.SIGTERM, _interrupt)
    net = Internet()
    try:
        net.build()
    except Exception as e:
        _BUILD_FAILED.append(e)
        count = net.finish()
        signal.signal(signal.SIGTERM, old_term)
        assert count == 0, f"the guard dropped {count} packet(s) headed for a real uplink"
        raise
    try:
        yield net
    finally:
        count = net.finish()
        signal.signal(signal.SIGTERM, old_term)
    assert count == 0, f"the guard dropped {count} packet(s) headed for a real uplink"
