// `agent-attr keys` writes keys where the proxy looks them up: it reads the same config as
// `proxy start` (--config, AGENT_ATTR_CONFIG, ./agent-attr.config.ts) and the same database
// (audit.logDb, or apiKeys({ path })), so a new key works at once.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
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

test("apiKeys({ path }): creating and revoking are chain events in the primary trail, never with the secret; verify passes", async () => {
  const dir = keysConfig(`{ path: "./data/keys.db" }`, `{ logDb: "./data/trail.db" }`);
  const created = await runCli(["keys", "create", "--agent", "bot", "--users", "ops-*", "--tier", "pro", "--format", "json"], { cwd: dir });
  expect(created.exitCode).toBe(0);
  const { key, id } = JSON.parse(created.stdout) as { key: string; id: string };
  expect((await runCli(["keys", "revoke", id], { cwd: dir })).exitCode).toBe(0);
  expect((await runCli(["keys", "revoke", id], { cwd: dir })).exitCode).toBe(0); // already revoked: nothing more recorded
  const db = new Database(join(dir, "data/trail.db"), { readonly: true });
  const events = db
    .query<{ kind: string; actor: string; details: string }, []>("SELECT kind, actor, details FROM audit_events ORDER BY seq")
    .all();
  db.close();
  expect(events.map((e) => e.kind)).toEqual(["key_created", "key_revoked"]);
  expect(events.every((e) => e.actor.startsWith("cli:"))).toBe(true);
  expect(JSON.parse(events[0]!.details)).toEqual({
    key_id: id,
    agents: ["bot"],
    user_globs: 1,
    tier: "pro",
    tags: [],
    expires_at: null,
    key_store: "apiKeys({ path })",
  });
  expect(JSON.parse(events[1]!.details)).toEqual({ key_id: id, key_store: "apiKeys({ path })" });
  for (const secret of [key, "ops-*"]) expect(JSON.stringify(events)).not.toContain(secret);
  expect((await runCli(["audit", "verify"], { cwd: dir })).exitCode).toBe(0);
}, 30_000);

test("apiKeys({ path }) with a trail that cannot record: no key is issued; a revocation happens and says it was not recorded", async () => {
  const dir = keysConfig(`{ path: "./data/keys.db" }`, `{ logDb: "./data/trail.db" }`);
  const created = await runCli(["keys", "create", "--agent", "bot", "--format", "json"], { cwd: dir });
  const { id } = JSON.parse(created.stdout) as { id: string };
  // The trail's path becomes a directory: it cannot be opened.
  const broken = keysConfig(`{ path: "../${dir.split("/").pop()}/data/keys.db" }`, `{ logDb: "./data" }`);
  const refused = await runCli(["keys", "create", "--agent", "bot2", "--format", "json"], { cwd: broken });
  expect(refused.exitCode).toBe(4);
  expect(refused.stderr).toContain("no key was created");
  expect(refused.stdout).not.toContain("aa-");
  const revoked = await runCli(["keys", "revoke", id], { cwd: broken });
  expect(revoked.exitCode).toBe(4);
  expect(revoked.stderr).toContain(`key ${id} is revoked all the same`);
  const listed = await runCli(["keys", "list", "--format", "json"], { cwd: dir });
  const keys = (JSON.parse(listed.stdout) as { keys: { id: string; agents: string[]; revoked_at: string | null }[] }).keys;
  expect(keys.map((k) => [k.agents[0], k.revoked_at !== null])).toEqual([["bot", true]]);
}, 30_000);
