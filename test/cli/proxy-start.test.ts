// `agent-attr proxy start` as a process: refusing a busy port, refusing an open audit API on the
// network, and a graceful SIGTERM that lets in-flight streams finish and flushes every record.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openAuditLog } from "../../src/store/sqlite/database.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { runCli, spawnProxy } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
let env: Record<string, string>;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  env = { AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1`, AGENT_ATTR_ANTHROPIC_BASE_URL: upstream.url };
});
afterAll(async () => {
  await upstream.stop();
});

test("a second proxy on a busy port fails with a clear message instead of sharing it", async () => {
  const dir = tempDir();
  const first = await spawnProxy(["--log-db", join(dir, "a.db")], { cwd: dir, env });
  try {
    const port = new URL(first.url).port;
    const second = await runCli(["proxy", "start", "--port", port, "--log-db", join(dir, "b.db")], { cwd: dir, env });
    expect(second.exitCode).toBe(3);
    expect(second.stderr).toContain(`Port ${port}`);
    expect(second.stderr).toContain("already in use");
    expect(second.stderr).not.toContain("    at ");
  } finally {
    first.child.kill("SIGTERM");
    await first.child.exited;
  }
});

test("a start that fails after creating a new database (busy port) leaves no database or key file behind", async () => {
  const dir = tempDir();
  const first = await spawnProxy(["--log-db", join(tempDir(), "a.db")], { env });
  try {
    const port = new URL(first.url).port;
    const second = await runCli(["proxy", "start", "--port", port, "--log-db", join(dir, "b.db")], { cwd: dir, env });
    expect(second.exitCode).toBe(3);
    expect(readdirSync(dir)).toEqual([]);
    // A key file that was there before is left as it was.
    writeFileSync(join(dir, "kept.db.key"), "00\n");
    const third = await runCli(["proxy", "start", "--port", port, "--log-db", join(dir, "kept.db")], { cwd: dir, env });
    expect(third.exitCode).toBe(3);
    expect(readdirSync(dir)).toEqual(["kept.db.key"]);
  } finally {
    first.child.kill("SIGTERM");
    await first.child.exited;
  }
}, 20_000);

test("an audit database that cannot be opened is named, with how to fix it", async () => {
  const result = await runCli(["proxy", "start", "--port", "0", "--log-db", "/nonexistent/dir/audit.db"], { env });
  expect(result.exitCode).toBe(3);
  expect(result.stderr).toContain("/nonexistent/dir/audit.db");
  expect(result.stderr).toContain("--log-db");
});

test("listening beyond loopback without an admin token is refused with the fix", async () => {
  const dir = tempDir();
  const result = await runCli(["proxy", "start", "--host", "0.0.0.0", "--port", "0", "--log-db", join(dir, "a.db")], {
    cwd: dir,
    env: { ...env, AGENT_ATTR_ADMIN_TOKEN: "" },
  });
  expect(result.exitCode).toBe(3);
  expect(result.stderr).toContain("AGENT_ATTR_ADMIN_TOKEN");
});

test("SIGTERM lets an in-flight stream finish, records it, and exits 0", async () => {
  const dir = tempDir();
  const logDb = join(dir, "audit.db");
  const proxy = await spawnProxy(["--log-db", logDb], { cwd: dir, env });
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-agent-id": "draining", "x-fake-scenario": "gap:1000" },
    body: JSON.stringify({ model: "gpt-4o", messages: [], stream: true }),
  });
  const reader = response.body!.getReader();
  await reader.read();
  proxy.child.kill("SIGTERM");
  // New connections are refused while the in-flight call finishes.
  await Bun.sleep(200);
  const refused = await fetch(`${proxy.url}/healthz`).then(
    () => "accepted",
    () => "refused",
  );
  expect(refused).toBe("refused");
  let text = "";
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) text += new TextDecoder().decode(chunk.value);
  expect(text).toContain("[DONE]");
  expect(await proxy.child.exited).toBe(0);
  const log = openAuditLog(logDb);
  const { records } = await log.reader.records({ agent: "draining", limit: 10 });
  log.close();
  expect(records).toHaveLength(1);
  expect(records[0]).toMatchObject({ outcome: "completed", output_tokens: 7 });
}, 20_000);
