// `agent-attr keys` writes keys where the proxy looks them up: it reads the same config as
// `proxy start` (--config, AGENT_ATTR_CONFIG, ./agent-attr.config.ts) and the same database
// (audit.logDb, or apiKeys({ path })), so a new key works at once.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { runCli, spawnProxy } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
let env: Record<string, string>;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  env = { AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1`, OPENAI_API_KEY: "sk-proxy-held" };
});
afterAll(async () => {
  await upstream.stop();
});

function keysConfig(apiKeysOptions: string, audit: string): string {
  const dir = tempDir();
  mkdirSync(join(dir, "data"));
  writeFileSync(
    join(dir, "agent-attr.config.ts"),
    `import { defineConfig } from "agent-attr";
import { apiKeys, headerAttribution, openai, sqliteAudit } from "agent-attr/plugins";
export default defineConfig({
  plugins: [openai(), headerAttribution(), apiKeys(${apiKeysOptions}), sqliteAudit()],
  audit: ${audit},
});
`,
  );
  return dir;
}

async function statusWithKey(dir: string, key: string): Promise<number> {
  const proxy = await spawnProxy([], { cwd: dir, env });
  try {
    const response = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: "gpt-4o", messages: [] }),
    });
    await response.text();
    return response.status;
  } finally {
    proxy.child.kill("SIGTERM");
    await proxy.child.exited;
  }
}

test("keys create writes to the config's audit.logDb, where proxy start looks: the new key is accepted, not 401", async () => {
  const dir = keysConfig("", `{ logDb: "./data/trail.db" }`);
  const created = await runCli(["keys", "create", "--agent", "nightly", "--format", "json"], { cwd: dir });
  expect(created.exitCode).toBe(0);
  const { key, id } = JSON.parse(created.stdout) as { key: string; id: string };
  expect(existsSync(join(dir, "data/trail.db"))).toBe(true);
  expect(existsSync(join(dir, "audit.db"))).toBe(false);
  expect(await statusWithKey(dir, key)).toBe(200);
  const listed = await runCli(["keys", "list"], { cwd: dir });
  expect(listed.stdout).toContain(id);
}, 20_000);

test("apiKeys({ path }) keeps keys apart: the CLI writes them there too", async () => {
  const dir = keysConfig(`{ path: "./data/keys.db" }`, "{}");
  const created = await runCli(["keys", "create", "--agent", "bot", "--format", "json"], { cwd: dir });
  expect(created.exitCode).toBe(0);
  expect(existsSync(join(dir, "data/keys.db"))).toBe(true);
  const { key } = JSON.parse(created.stdout) as { key: string };
  expect(await statusWithKey(dir, key)).toBe(200);
}, 20_000);

test("a key created for a config without apiKeys() comes with a warning that the proxy does not ask for keys", async () => {
  const dir = tempDir();
  writeFileSync(join(dir, "agent-attr.config.ts"), "export default {};\n");
  const created = await runCli(["keys", "create", "--agent", "bot"], { cwd: dir });
  expect(created.exitCode).toBe(0);
  expect(created.stderr).toContain("the config has no apiKeys() plugin");
});
