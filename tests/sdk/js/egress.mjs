// Egress policy through the official SDK, with traffic: run by
// tests/integration/server/test_egress.py against a `kennel serve` whose
// sandboxes resolve through the private test internet (testnet.py), whose
// names and addresses this script uses. Prints "EGRESS OK" at the end.
//
// Environment: KENNEL_DOMAIN, KENNEL_CLIENT_KEY, KENNEL_HOST_NETNS (the
// host's network namespace, as readlink shows it: every probe first refuses
// to run there).
import { ConnectionConfig, Sandbox } from "@alibaba-group/opensandbox";

const config = new ConnectionConfig({
  domain: process.env.KENNEL_DOMAIN,
  protocol: "http",
  apiKey: process.env.KENNEL_CLIENT_KEY || undefined,
  requestTimeoutSeconds: 60,
});
const hostNet = process.env.KENNEL_HOST_NETNS;
if (!hostNet) {
  console.error("KENNEL_HOST_NETNS is not set");
  process.exit(2);
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

// One python program in the sandbox: resolves each name, then fetches each
// address over HTTP; prints one JSON line.
async function reach(sb, names, addrs) {
  const code = `
import json, os, socket, sys
if os.readlink("/proc/self/ns/net") == ${JSON.stringify(hostNet)}:
    sys.exit("refusing to run in the host network namespace")
out = {}
for n in ${JSON.stringify(names)}:
    try:
        out[n] = socket.gethostbyname(n)
    except OSError:
        out[n] = "refused"
for a in ${JSON.stringify(addrs)}:
    try:
        s = socket.create_connection((a, 80), timeout=3)
        s.settimeout(3)
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        data = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            data += d
        out[a] = data.decode().split("\\r\\n\\r\\n", 1)[-1].strip()
        s.close()
    except OSError as e:
        out[a] = "blocked"
print(json.dumps(out))
`;
  const b64 = Buffer.from(code).toString("base64");
  const ex = await sb.commands.run(`echo ${b64} | base64 -d | python3 -`);
  const lines = ex.logs.stdout.map((m) => m.text);
  check(ex.exitCode === 0 && lines.length, `probe: ${JSON.stringify(ex.logs)}`);
  return JSON.parse(lines[lines.length - 1]);
}

const sb = await Sandbox.create({
  connectionConfig: config,
  image: "host",
  timeoutSeconds: 600,
  networkPolicy: { defaultAction: "deny", egress: [{ action: "allow", target: "allowed.test" }] },
  readyTimeoutSeconds: 60,
});
try {
  let p = await sb.getEgressPolicy();
  check(p.egress.length === 1 && p.egress[0].target === "allowed.test", JSON.stringify(p));
  let r = await reach(sb, ["allowed.test", "other.test"], ["203.0.113.10", "203.0.113.20"]);
  check(r["allowed.test"] === "203.0.113.10" && r["other.test"] === "refused", JSON.stringify(r));
  check(r["203.0.113.10"] === "served-by 203.0.113.10" && r["203.0.113.20"] === "blocked",
    JSON.stringify(r));
  console.log("created: allowed.test reachable, other.test refused");

  await sb.patchEgressRules([{ action: "allow", target: "other.test" }]);
  r = await reach(sb, ["other.test"], ["203.0.113.20"]);
  check(r["other.test"] === "203.0.113.20" && r["203.0.113.20"] === "served-by 203.0.113.20",
    JSON.stringify(r));
  console.log("patched: other.test reachable");

  await sb.deleteEgressRules(["allowed.test"]);
  r = await reach(sb, ["allowed.test"], ["203.0.113.10", "203.0.113.20"]);
  check(r["allowed.test"] === "refused" && r["203.0.113.10"] === "blocked", JSON.stringify(r));
  check(r["203.0.113.20"] === "served-by 203.0.113.20", JSON.stringify(r));
  p = await sb.getEgressPolicy();
  check(JSON.stringify(p) === JSON.stringify({
    defaultAction: "deny", egress: [{ action: "allow", target: "other.test" }],
  }), JSON.stringify(p));
  console.log("deleted: allowed.test blocked at once");
} finally {
  await sb.kill();
  await sb.close().catch(() => undefined);
}
console.log("EGRESS OK");
