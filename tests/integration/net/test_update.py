"""A policy changed at run time (kn_net_update, what PATCH /policy calls):
a removed name stops at once, even for an address already resolved and a
connection already open, while names still allowed keep working without a
new lookup. Driven by kn-net-harness on a bare network namespace."""
import json
import os
import subprocess
import textwrap

import pytest

from .conftest import DNS_ADDR, check_routes, leftovers, slot_of

PROBE = textwrap.dedent(r'''
    import json, socket, struct, sys
    ns, action, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    def ask(name):
        q = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0)
        q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
        q += struct.pack(">HH", 1, 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.sendto(q, (ns, 53))
        d = s.recv(4096)
        if d[3] & 15:
            return "rcode:%d" % (d[3] & 15)
        return "%d.%d.%d.%d" % tuple(d[-4:])
    def get(addr):
        try:
            s = socket.create_connection((addr, 80), timeout=2)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                d = s.recv(4096)
                if not d:
                    break
                data += d
            return data.decode().split("\r\n\r\n", 1)[-1].strip()
        except OSError as e:
            return "error:" + type(e).__name__
    print(json.dumps(ask(arg) if action == "dns" else get(arg)))
''')


class Harness:
    def __init__(self, exe, *rules):
        check_routes()
        self.p = subprocess.Popen([exe, DNS_ADDR, *rules], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline().split()
        if not line or line[0] != "ready":
            self.p.kill()
            raise RuntimeError(f"harness did not start: {self.p.stderr.read()}")
        self.pid, self.ns = line[1], line[2]

    def update(self, *rules):
        self.p.stdin.write("update " + " ".join(rules) + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def probe(self, action, arg):
        check_routes()
        r = subprocess.run(["nsenter", "-t", self.pid, "-n", "/usr/bin/python3", "-c", PROBE,
                            self.ns, action, arg], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def quit(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.flush()
        assert self.p.wait(10) == 0, self.p.stderr.read()  # ASan builds: no leaks


@pytest.fixture
def harness_exe(build_dir):
    exe = build_dir / "kn-net-harness"
    if not exe.exists():
        pytest.skip(f"{exe} is not built (target kn-net-harness)")
    return str(exe)


def test_runtime_update(internet, harness_exe):
    h = Harness(harness_exe, "allow:allowed.test", "allow:*.wild.test")
    slot = slot_of(h.ns)
    assert leftovers([slot]) != []  # the check below can see them
    try:
        assert h.probe("dns", "allowed.test") == "203.0.113.10"
        assert h.probe("dns", "api.wild.test") == "203.0.113.30"
        assert h.probe("get", "203.0.113.30") == "served-by 203.0.113.30"
        assert h.probe("dns", "other.test") == "rcode:5"

        assert h.update("allow:allowed.test") == "ok"
        # the removed wildcard stops at once, for the address already open too
        assert h.probe("get", "203.0.113.30").startswith("error:")
        assert h.probe("dns", "api.wild.test") == "rcode:5"
        # the name still allowed keeps its address without a new lookup
        assert h.probe("get", "203.0.113.10") == "served-by 203.0.113.10"

        assert h.update("allow:other.test", "allow:203.0.113.40/32") == "ok"
        assert h.probe("get", "203.0.113.10").startswith("error:")
        assert h.probe("get", "203.0.113.40") == "served-by 203.0.113.40"
        assert h.probe("dns", "other.test") == "203.0.113.20"
        assert h.probe("get", "203.0.113.20") == "served-by 203.0.113.20"

        assert h.update("default-allow", "deny:other.test") == "ok"
        assert h.probe("dns", "other.test") == "rcode:5"
        assert h.probe("dns", "allowed.test") == "203.0.113.10"
        assert h.probe("get", "203.0.113.31") == "served-by 203.0.113.31"
        assert h.probe("get", "169.254.169.254").startswith("error:")

        # two names, one address: it stays open while either name is allowed
        assert h.update("allow:allowed.test", "allow:alias.test") == "ok"
        assert h.probe("dns", "allowed.test") == "203.0.113.10"
        assert h.probe("dns", "alias.test") == "203.0.113.10"
        assert h.update("allow:alias.test") == "ok"
        assert h.probe("get", "203.0.113.10") == "served-by 203.0.113.10"
        assert h.update("allow:wild.test") == "ok"
        assert h.probe("get", "203.0.113.10").startswith("error:")

        assert h.update("allow:bad..name").startswith("error:")
        assert h.probe("get", "203.0.113.10").startswith("error:")  # the old policy holds
        assert h.probe("dns", "wild.test") == "203.0.113.31"
    finally:
        h.quit()
    assert leftovers([slot]) == []


def test_update_opens_a_sandbox_that_had_no_egress(internet, harness_exe):
    """Attached with nothing allowed, a sandbox has only lo; an update that
    allows something gives it its veth and proxy; one that allows nothing
    again closes it (the plumbing stays)."""
    h = Harness(harness_exe)
    slot = slot_of(h.ns)
    try:
        assert leftovers([slot]) == []
        assert h.probe("get", "203.0.113.40").startswith("error:")
        assert h.update("allow:203.0.113.40/32", "allow:allowed.test") == "ok"
        assert leftovers([slot]) != []
        assert h.probe("get", "203.0.113.40") == "served-by 203.0.113.40"
        assert h.probe("dns", "allowed.test") == "203.0.113.10"
        assert h.update("deny:allowed.test") == "ok"
        assert h.probe("get", "203.0.113.40").startswith("error:")
        assert h.probe("dns", "allowed.test") == "rcode:5"
    finally:
        h.quit()
    assert leftovers([slot]) == []
