// sdk_execd.mjs - drives a live kennel-execd with the official OpenSandbox
// JavaScript SDK's execd adapters (the ones `sandbox.commands`, `sandbox.files`,
// `sandbox.getMetrics()` and `isHealthy()` use), unchanged.
//
// Usage: node sdk_execd.mjs <path to @alibaba-group/opensandbox> <execd base URL>
// Prints one line per check and exits 1 on the first failure.
import { pathToFileURL } from "node:url";

const [sdkDir, baseUrl] = process.argv.slice(2);
const sdk = await import(pathToFileURL(`${sdkDir}/dist/internal.js`).href);
const { createExecdClient, CommandsAdapter, FilesystemAdapter, HealthAdapter, MetricsAdapter } =
  sdk;

const client = createExecdClient({ baseUrl });
const commands = new CommandsAdapter(client, { baseUrl });
const files = new FilesystemAdapter(client, { baseUrl });
const health = new HealthAdapter(client);
const metrics = new MetricsAdapter(client);

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function step(name, fn) {
  try {
    await fn();
    console.log(`PASS ${name}`);
  } catch (e) {
    const detail = e?.statusCode
      ? `HTTP ${e.statusCode} ${e.error?.code ?? ""}: ${e.error?.message ?? e.message}`
      : e?.stack ?? String(e);
    console.log(`FAIL ${name}: ${detail}`);
    process.exit(1);
  }
}

await step("ping", async () => check(await health.ping(), "ping"));

await step("run echo", async () => {
  const ex = await commands.run("echo 'Hello OpenSandbox E2E'");
  check(ex.logs.stdout.length === 1, JSON.stringify(ex.logs));
  check(ex.logs.stdout[0].text === "Hello OpenSandbox E2E", ex.logs.stdout[0].text);
  check(ex.exitCode === 0, `exitCode ${ex.exitCode}`);
  check(typeof ex.id === "string" && ex.id.length > 0, "id");
});

await step("run exit 3 with env, cwd, stderr", async () => {
  const ex = await commands.run("echo $X; pwd; echo err >&2; exit 3", {
    workingDirectory: "/tmp",
    envs: { X: "y" },
    timeoutSeconds: 10,
  });
  check(ex.logs.stdout.map((l) => l.text).join(",") === "y,/tmp", JSON.stringify(ex.logs));
  check(ex.logs.stderr[0].text === "err", "stderr");
  check(ex.exitCode === 3, `exitCode ${ex.exitCode}`);
  check(ex.error && ex.error.value === "3", JSON.stringify(ex.error));
});

await step("background, status, logs, interrupt", async () => {
  const ex = await commands.run("echo bg; sleep 30", { background: true });
  check(ex.id, "id");
  await new Promise((r) => setTimeout(r, 300));
  const st = await commands.getCommandStatus(ex.id);
  check(st.running === true, JSON.stringify(st));
  const logs = await commands.getBackgroundCommandLogs(ex.id);
  check(logs.content.includes("bg"), JSON.stringify(logs));
  await commands.interrupt(ex.id);
  const st2 = await commands.getCommandStatus(ex.id);
  check(st2.running === false, JSON.stringify(st2));
});

await step("session state persists", async () => {
  const sid = await commands.createSession({ workingDirectory: "/tmp" });
  const a = await commands.runInSession(sid, "export FOO=bar; pwd");
  check(a.logs.stdout[0].text === "/tmp", JSON.stringify(a.logs));
  const b = await commands.runInSession(sid, "echo $FOO; sh -c 'exit 7'", {
    workingDirectory: "/var",
  });
  check(b.logs.stdout[0].text === "bar", JSON.stringify(b.logs));
  check(b.exitCode === 7, `exitCode ${b.exitCode}`);
  await commands.deleteSession(sid);
});

await step("files write/read/info/range/search/delete", async () => {
  const root = process.env.SDK_FILES_DIR;
  await files.createDirectories([{ path: `${root}/d`, mode: 755 }]);
  await files.writeFiles([{ path: `${root}/d/a.txt`, data: "hello åäö\nline2\n", mode: 644 }]);
  const text = await files.readFile(`${root}/d/a.txt`);
  check(text === "hello åäö\nline2\n", text);
  const part = await files.readBytes(`${root}/d/a.txt`, { range: "bytes=0-4" });
  check(Buffer.from(part).toString() === "hello", Buffer.from(part).toString());
  const info = await files.getFileInfo([`${root}/d/a.txt`]);
  check(info[`${root}/d/a.txt`].size === 19, JSON.stringify(info));
  const found = await files.search({ path: `${root}`, pattern: "*.txt" });
  check(found.length === 1, JSON.stringify(found));
  await files.replaceContents([{ path: `${root}/d/a.txt`, oldContent: "line2", newContent: "x" }]);
  check((await files.readFile(`${root}/d/a.txt`)).endsWith("x\n"), "replace");
  await files.moveFiles([{ src: `${root}/d/a.txt`, dest: `${root}/e/b.txt` }]);
  await files.setPermissions([{ path: `${root}/e/b.txt`, mode: 600 }]);
  const list = await files.listDirectory({ path: `${root}`, depth: 2 });
  check(list.some((f) => f.path === `${root}/e/b.txt`), JSON.stringify(list));
  await files.deleteFiles([`${root}/e/b.txt`]);
  let threw = false;
  try {
    await files.readFile(`${root}/e/b.txt`);
  } catch {
    threw = true;
  }
  check(threw, "reading a deleted file must reject");
  await files.deleteDirectories([`${root}/d`, `${root}/e`]);
});

await step("metrics", async () => {
  const m = await metrics.getMetrics();
  check(m.cpuCount > 0 && m.memoryTotalMiB > 0, JSON.stringify(m));
  check(m.memoryUsedMiB <= m.memoryTotalMiB, JSON.stringify(m));
});

console.log("ALL PASS");
