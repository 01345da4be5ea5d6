// conformance.mjs - drives a live `kennel serve` with the official OpenSandbox
// JavaScript SDK, one family of calls at a time.
//
// Environment: KENNEL_DOMAIN (host:port of the server), KENNEL_CLIENT_KEY
// (the API key to send; empty for none).
//
// Each family prints PASS, FAIL (unexpected; the script exits 1) or GAP (a
// known gap: the SDK call is expected to fail and does, loudly, with the
// reason). A gap that starts passing prints XPASS and fails the run so that
// the list of gaps stays true. The last line is `SUMMARY {json}`.
import {
  ConnectionConfig,
  Sandbox,
  SandboxManager,
} from "@alibaba-group/opensandbox";

const domain = process.env.KENNEL_DOMAIN;
const apiKey = process.env.KENNEL_CLIENT_KEY || undefined;
if (!domain) {
  console.error("KENNEL_DOMAIN is not set");
  process.exit(2);
}
const config = new ConnectionConfig({
  domain,
  protocol: "http",
  apiKey,
  requestTimeoutSeconds: 60,
});
const manager = SandboxManager.create({ connectionConfig: config });
const results = [];

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function family(name, fn, gap) {
  const t0 = Date.now();
  try {
    await fn();
    if (gap) {
      results.push({ name, status: "XPASS", gap });
      console.log(`XPASS ${name}: passed but is listed as a gap (${gap})`);
    } else {
      results.push({ name, status: "PASS", ms: Date.now() - t0 });
      console.log(`PASS  ${name} (${Date.now() - t0} ms)`);
    }
  } catch (e) {
    const detail = e?.statusCode
      ? `HTTP ${e.statusCode} ${e.error?.code ?? ""}: ${e.error?.message ?? e.message}`
      : e?.message ?? String(e);
    if (gap) {
      results.push({ name, status: "GAP", gap, error: detail });
      console.log(`GAP   ${name}: ${gap} -> ${detail}`);
    } else {
      results.push({ name, status: "FAIL", error: detail });
      console.log(`FAIL  ${name}: ${detail}`);
      if (e?.stack) console.log(e.stack.split("\n").slice(0, 6).join("\n"));
    }
  }
}

const run = Math.random().toString(36).slice(2, 10);
// KENNEL_SDK_NO_ENV=1: create without env, as Sandbox.create does by default,
// so that a server with a matching warm pool serves it from the pool.
const withEnv = !process.env.KENNEL_SDK_NO_ENV;
let sandbox = null;

await family("create and wait until ready", async () => {
  const t0 = Date.now();
  sandbox = await Sandbox.create({
    connectionConfig: config,
    image: "host",
    timeoutSeconds: 600,
    env: withEnv ? { KENNEL_SDK: "yes" } : undefined,
    metadata: { suite: "sdk", run },
    readyTimeoutSeconds: 60,
  });
  check(typeof sandbox.id === "string" && sandbox.id.length > 0, "sandbox id");
  console.log(`      sandbox ${sandbox.id} ready in ${Date.now() - t0} ms (SDK create, endpoints, ping)`);
});
if (!sandbox) {
  console.log(`SUMMARY ${JSON.stringify({ results })}`);
  process.exit(1);
}

await family("command with streamed output", async () => {
  const seen = [];
  const ex = await sandbox.commands.run(
    "echo hello; echo err >&2; echo ${KENNEL_SDK:-unset}; for i in 1 2 3; do echo n$i; sleep 0.1; done",
    undefined,
    {
      onStdout: (m) => seen.push(["out", m.text, Date.now()]),
      onStderr: (m) => seen.push(["err", m.text, Date.now()]),
    },
  );
  const out = ex.logs.stdout.map((m) => m.text);
  const env = withEnv ? "yes" : "unset";
  check(JSON.stringify(out) === JSON.stringify(["hello", env, "n1", "n2", "n3"]),
    `stdout ${JSON.stringify(out)}`);
  check(ex.logs.stderr.map((m) => m.text).join() === "err", "stderr");
  check(ex.exitCode === 0, `exit code ${ex.exitCode}`);
  check(seen.length === 6, `handlers saw ${seen.length} events`);
  // Streamed, not buffered: the lines of the loop arrived apart in time.
  const n1 = seen.find((s) => s[1] === "n1")[2];
  const n3 = seen.find((s) => s[1] === "n3")[2];
  check(n3 - n1 >= 150, `n1..n3 arrived ${n3 - n1} ms apart (buffered?)`);
});

await family("command exit code and error", async () => {
  const ex = await sandbox.commands.run("echo before; exit 7");
  check(ex.exitCode === 7, `exit code ${ex.exitCode}`);
  check(ex.error?.value === "7", `error value ${ex.error?.value}`);
});

await family("background command status and logs", async () => {
  const ex = await sandbox.commands.run("sleep 0.3; echo bg-done", { background: true });
  check(ex.id, "command id");
  let st;
  for (let i = 0; i < 50; i++) {
    st = await sandbox.commands.getCommandStatus(ex.id);
    if (st.running === false) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  check(st.running === false && st.exitCode === 0, `status ${JSON.stringify(st)}`);
  const logs = await sandbox.commands.getBackgroundCommandLogs(ex.id);
  check(logs.content.includes("bg-done"), `logs ${JSON.stringify(logs)}`);
});

await family("interrupt a running command", async () => {
  const ex = await sandbox.commands.run("sleep 30", { background: true });
  await sandbox.commands.interrupt(ex.id);
  let st;
  for (let i = 0; i < 50; i++) {
    st = await sandbox.commands.getCommandStatus(ex.id);
    if (st.running === false) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  check(st.running === false, `status after interrupt ${JSON.stringify(st)}`);
});

await family("bash session keeps cwd and exports", async () => {
  const sid = await sandbox.commands.createSession({ workingDirectory: "/tmp" });
  await sandbox.commands.runInSession(sid, "export KN_SESSION=kept; cd /var");
  const ex = await sandbox.commands.runInSession(sid, "echo $KN_SESSION; pwd");
  const out = ex.logs.stdout.map((m) => m.text);
  check(JSON.stringify(out) === JSON.stringify(["kept", "/var"]), `session ${JSON.stringify(out)}`);
  await sandbox.commands.deleteSession(sid);
});

await family("files write, read, info, search, delete", async () => {
  const text = "hello from the SDK åäö\nline 2\n";
  await sandbox.files.createDirectories([{ path: "/tmp/sdk", mode: 755 }]);
  await sandbox.files.writeFiles([{ path: "/tmp/sdk/a.txt", data: text, mode: 644 }]);
  check((await sandbox.files.readFile("/tmp/sdk/a.txt")) === text, "read back");
  const info = await sandbox.files.getFileInfo(["/tmp/sdk/a.txt"]);
  check(info["/tmp/sdk/a.txt"]?.size === Buffer.byteLength(text), `info ${JSON.stringify(info)}`);
  const listed = await sandbox.files.listDirectory({ path: "/tmp/sdk", depth: 1 });
  check(listed.some((f) => f.path === "/tmp/sdk/a.txt"), `list ${JSON.stringify(listed)}`);
  const part = await sandbox.files.readFile("/tmp/sdk/a.txt", { range: "bytes=0-9" });
  check(part === text.slice(0, 10), `range read ${JSON.stringify(part)}`);
  const found = await sandbox.files.search({ path: "/tmp/sdk", pattern: "*.txt" });
  check(found.length === 1 && found[0].path === "/tmp/sdk/a.txt", `search ${JSON.stringify(found)}`);
  await sandbox.files.deleteFiles(["/tmp/sdk/a.txt"]);
  let gone = false;
  try {
    await sandbox.files.readFile("/tmp/sdk/a.txt");
  } catch {
    gone = true;
  }
  check(gone, "reading a deleted file rejects");
  await sandbox.files.deleteDirectories(["/tmp/sdk"]);
});

await family("metrics", async () => {
  const m = await sandbox.getMetrics();
  check(m.cpuCount > 0 && m.memoryTotalMiB > 0, `metrics ${JSON.stringify(m)}`);
  check(m.memoryUsedMiB >= 0 && m.memoryUsedMiB <= m.memoryTotalMiB, "memory used");
  check(Math.abs(Date.now() - m.timestamp) < 120000, "timestamp");
});

await family("endpoints (execd and the egress port the SDK resolves)", async () => {
  for (const port of [44772, 18080, 8080]) {
    const ep = await sandbox.getEndpoint(port);
    check(!ep.endpoint.includes("://"), "no scheme");
    check(ep.endpoint.endsWith(`/sandboxes/${sandbox.id}/proxy/${port}`), ep.endpoint);
  }
});

await family("info and list with state and metadata filters", async () => {
  const info = await sandbox.getInfo();
  check(info.status.state === "Running", `state ${info.status.state}`);
  check(info.createdAt instanceof Date && !isNaN(info.createdAt), "createdAt");
  check(info.metadata.run === run, "metadata");
  const hit = await manager.listSandboxInfos({ states: ["Running", "Paused"], metadata: { suite: "sdk", run } });
  check(hit.items.length === 1 && hit.items[0].id === sandbox.id,
    `list ${JSON.stringify(hit.pagination)}`);
  const miss = await manager.listSandboxInfos({ metadata: { run: "not-" + run } });
  check(miss.items.length === 0, "metadata filter excludes");
  const none = await manager.listSandboxInfos({ states: ["Paused"], metadata: { run } });
  check(none.items.length === 0, "state filter excludes");
});

await family("metadata patch", async () => {
  const info = await sandbox.patchMetadata({ extra: "1", suite: null });
  check(info.metadata.extra === "1" && !("suite" in info.metadata), JSON.stringify(info.metadata));
});

await family("renew expiration", async () => {
  await sandbox.renew(1800);
  const info = await sandbox.getInfo();
  const left = (info.expiresAt.getTime() - Date.now()) / 1000;
  check(left > 1700 && left <= 1800, `expires in ${left} s`);
});

await family("pause and resume", async () => {
  await sandbox.pause();
  check((await sandbox.getInfo()).status.state === "Paused", "Paused after pause");
  sandbox = await sandbox.resume();
  check((await sandbox.getInfo()).status.state === "Running", "Running after resume");
  const ex = await sandbox.commands.run("echo back");
  check(ex.logs.stdout[0]?.text === "back", "runs after resume");
});

await family("code context over plain HTTP through the proxy (no code-interpreter SDK on npm)", async () => {
  const url = await sandbox.getEndpointUrl(44772);
  const headers = { "content-type": "application/json" };
  if (apiKey) headers["OPEN-SANDBOX-API-KEY"] = apiKey;
  const ctx = await fetch(`${url}/code/context`, {
    method: "POST", headers, body: JSON.stringify({ language: "python" }),
  });
  check(ctx.ok, `context: HTTP ${ctx.status} ${await ctx.clone().text()}`);
  const { id } = await ctx.json();
  const res = await fetch(`${url}/code`, {
    method: "POST", headers, body: JSON.stringify({ code: "x = 20\nx * 2 + 2", context: { id } }),
  });
  const text = await res.text();
  check(res.ok && text.includes("42"), `code: HTTP ${res.status} ${text.slice(0, 300)}`);
});

await family("egress policy (port 18080)", async () => {
  // Created without networkPolicy: only loopback, and the policy says so.
  const none = await sandbox.getEgressPolicy();
  check(none.defaultAction === "deny" && none.egress.length === 0, `no policy ${JSON.stringify(none)}`);
  // With one: read it, patch (merged, incoming first), delete by target.
  const eg = await Sandbox.create({
    connectionConfig: config,
    image: "host",
    timeoutSeconds: 600,
    metadata: { suite: "sdk-egress", run },
    networkPolicy: { egress: [{ action: "allow", target: "pypi.org" }] },
    readyTimeoutSeconds: 60,
  });
  try {
    const p0 = await eg.getEgressPolicy();
    check(JSON.stringify(p0) === JSON.stringify({
      defaultAction: "deny", egress: [{ action: "allow", target: "pypi.org" }],
    }), `created ${JSON.stringify(p0)}`);
    await eg.patchEgressRules([
      { action: "allow", target: "*.github.com" },
      { action: "deny", target: "pypi.org" },
      { action: "allow", target: "*.github.com" },
    ]);
    const p1 = await eg.getEgressPolicy();
    check(JSON.stringify(p1.egress) === JSON.stringify([
      { action: "allow", target: "*.github.com" }, { action: "deny", target: "pypi.org" },
    ]), `patched ${JSON.stringify(p1)}`);
    await eg.deleteEgressRules(["pypi.org", "not-there.example"]);
    const p2 = await eg.getEgressPolicy();
    check(JSON.stringify(p2.egress) === JSON.stringify([{ action: "allow", target: "*.github.com" }]),
      `deleted ${JSON.stringify(p2)}`);
    let bad = null;
    try {
      await eg.patchEgressRules([{ action: "allow", target: "not a name" }]);
    } catch (e) {
      bad = e;
    }
    check(bad && bad.statusCode === 400, `bad rule: ${bad?.statusCode}`);
    let noPolicy = null;
    try {
      await sandbox.patchEgressRules([{ action: "allow", target: "pypi.org" }]);
    } catch (e) {
      noPolicy = e;
    }
    check(noPolicy && noPolicy.statusCode === 409, `patch without networkPolicy: ${noPolicy?.statusCode}`);
  } finally {
    await eg.kill();
    await eg.close().catch(() => undefined);
  }
});

await family("snapshots", async () => {
  // A file the snapshot must keep, and a process it must not.
  await sandbox.files.writeFiles([{ path: "/work/snap.txt", data: `kept ${run}`, mode: 644 }]);
  await sandbox.commands.run("sleep 300", { background: true });
  const name = `sdk-${run}`;
  const created = await manager.createSnapshot(sandbox.id, { name });
  check(created.status.state === "Creating", `created state ${created.status.state}`);
  check(created.sandboxId === sandbox.id && created.name === name, "created fields");
  check(created.createdAt instanceof Date, "createdAt");
  let snap = created;
  for (let i = 0; i < 200 && snap.status.state === "Creating"; i++) {
    await new Promise((r) => setTimeout(r, 50));
    snap = await manager.getSnapshot(created.id);
  }
  check(snap.status.state === "Ready", `state ${snap.status.state}: ${snap.status.message}`);
  check(snap.status.lastTransitionAt instanceof Date, "lastTransitionAt");
  const mine = await manager.listSnapshots({ sandboxId: sandbox.id, states: ["Ready"] });
  check(mine.items.some((x) => x.id === created.id), "listed by sandboxId and state");
  const byName = await manager.listSnapshots({ name, pageSize: 1 });
  check(byName.items.length === 1 && byName.pagination.totalItems === 1, "listed by name");
  const none = await manager.listSnapshots({ sandboxId: sandbox.id, states: ["Failed"] });
  check(none.items.every((x) => x.id !== created.id), "state filter");
  // Restored: the file is there, the process is not, the source runs on.
  const restored = await Sandbox.create({
    connectionConfig: config, snapshotId: created.id, timeoutSeconds: 600, readyTimeoutSeconds: 60,
  });
  try {
    check((await restored.files.readFile("/work/snap.txt")) === `kept ${run}`, "file kept");
    const ps = await restored.commands.run("ps -eo args | grep -c '^sleep 300' || true");
    check(ps.logs.stdout.map((m) => m.text).join() === "0", `processes ${JSON.stringify(ps.logs)}`);
    const info = await restored.getInfo();
    check(info.snapshotId === created.id, `snapshotId ${info.snapshotId}`);
    let busy = 0;
    try {
      await manager.deleteSnapshot(created.id);
    } catch (e) {
      busy = e.statusCode;
    }
    check(busy === 409, `delete while a sandbox runs from it: ${busy}`);
  } finally {
    await restored.kill();
    await restored.close();
  }
  const src = await sandbox.commands.run("cat /work/snap.txt");
  check(src.logs.stdout.map((m) => m.text).join() === `kept ${run}`, "source still runs");
  await manager.deleteSnapshot(created.id);
  let gone = 0;
  try {
    await manager.getSnapshot(created.id);
  } catch (e) {
    gone = e.statusCode;
  }
  check(gone === 404, `get after delete: ${gone}`);
});

await family("error shape and X-Request-ID on a 404", async () => {
  const m = SandboxManager.create({
    connectionConfig: new ConnectionConfig({
      domain, protocol: "http", apiKey, headers: { "X-Request-ID": `kennel-sdk-${run}` },
    }),
  });
  let err = null;
  try {
    await m.getSandboxInfo("00000000-0000-4000-8000-000000000000");
  } catch (e) {
    err = e;
  }
  await m.close();
  check(err && err.statusCode === 404, `status ${err?.statusCode}`);
  check(err.requestId === `kennel-sdk-${run}`, `requestId ${err.requestId}`);
  check(typeof err.error?.code === "string" && err.error.code.length > 0, "error code");
});

await family("kill", async () => {
  await sandbox.kill();
  let status = 0;
  try {
    await sandbox.getInfo();
  } catch (e) {
    status = e.statusCode;
  }
  check(status === 404, `getInfo after kill: ${status}`);
});

await sandbox.close().catch(() => undefined);
await manager.close();
const count = (s) => results.filter((r) => r.status === s).length;
console.log(`SUMMARY ${JSON.stringify({
  passed: count("PASS"), failed: count("FAIL") + count("XPASS"), gaps: count("GAP"), results,
})}`);
process.exit(count("FAIL") + count("XPASS") ? 1 : 0);
