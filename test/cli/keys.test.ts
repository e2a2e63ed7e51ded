// `agent-attr keys create|list|revoke` on both drivers, against a proxy running on the same trail:
// a key created by the CLI is accepted from the next call, a revoked one refused; each change a
// chain event naming the CLI's actor, never the secret; `keys create` on a new --log-db creates
// the trail where `proxy start` looks.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { apiKeys, headerAttribution, openai } from "../../plugins/index.ts";
import { eventFilterSchema } from "../../src/trail/events.ts";
import { cliOn, postgresDriver, proxyOn, sqliteDriver, type OpenedTrail, type TestDriver } from "../helpers/drivers.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { tempDir, type TestProxy } from "../helpers/proxy.ts";

let pg: PgSchema;
let upstream: FakeUpstream;
beforeAll(async () => {
  pg = await pgSchema("cli_keys");
  upstream = await startFakeUpstream();
  process.env.OPENAI_API_KEY = "sk-real-openai-provider-key";
});
afterAll(async () => {
  delete process.env.OPENAI_API_KEY;
  await upstream.stop();
  await pg.drop();
});

/** A proxy in keys mode on the trail. */
const keysProxy = (trail: OpenedTrail) =>
  proxyOn(trail, upstream.url, { plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), apiKeys()] });

const chat = (proxy: TestProxy, key: string) =>
  fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });

describe.each([sqliteDriver, postgresDriver(() => pg)])("keys through the CLI on $name", (driver: TestDriver) => {
  test("create, use, list, revoke: the running proxy sees each from the next call; both are chain events, never with the secret", async () => {
    const trail = await driver.open("lifecycle");
    const proxy = await keysProxy(trail);
    try {
      const created = await cliOn(trail, "keys", "create", "--agent", "nightly-job", "--tier", "free", "--format", "json");
      expect(created.exitCode).toBe(0); // (stderr warns that the CLI sees no config with apiKeys(): this proxy has one)
      const { id, key, agents, tier } = JSON.parse(created.stdout) as { id: string; key: string; agents: string[]; tier: string };
      expect([agents, tier]).toEqual([["nightly-job"], "free"]);
      const used = await chat(proxy, key);
      expect(used.status).toBe(200);
      await used.arrayBuffer();
      const [record] = await proxy.settled(1);
      expect(record).toMatchObject({ agent_id: "nightly-job", key_id: id, attribution: "verified" });

      const listed = await cliOn(trail, "keys", "list", "--format", "json");
      expect(listed.exitCode).toBe(0);
      expect((JSON.parse(listed.stdout) as { keys: { id: string; revoked_at: string | null }[] }).keys).toEqual([
        expect.objectContaining({ id, revoked_at: null }),
      ]);
      expect(listed.stdout).not.toContain(key);
      expect((await cliOn(trail, "keys", "list")).stdout).toContain(id);

      const revoked = await cliOn(trail, "keys", "revoke", id);
      expect(revoked.exitCode).toBe(0);
      const refused = await chat(proxy, key);
      expect(refused.status).toBe(401);
      expect(await refused.text()).toContain(`Proxy key ${id} was revoked`);

      const events = (await proxy.runtime.trail.events(eventFilterSchema.parse({ limit: 100 }))).events.filter((e) =>
        e.kind.startsWith("key_"),
      );
      expect(events.map((e) => [e.kind, e.actor.split(":")[0], e.details.key_id])).toEqual([
        ["key_revoked", "cli", id],
        ["key_created", "cli", id],
      ]);
      expect(JSON.stringify(events)).not.toContain(key);
      expect((await cliOn(trail, "audit", "verify")).exitCode).toBe(0);
    } finally {
      await proxy.stop();
    }
  });

  test("CLI mistakes are one line with the fix", async () => {
    const trail = await driver.open("mistakes");
    await trail.store.close();
    const badExpiry = await cliOn(trail, "keys", "create", "--agent", "x", "--expires", "soon");
    expect(badExpiry.exitCode).toBe(2);
    expect(badExpiry.stderr).toContain("--expires: 'soon' is neither a duration");
    const unknown = await cliOn(trail, "keys", "revoke", "key_nope");
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toContain("No proxy key has id 'key_nope'");
    expect(unknown.stderr).not.toContain("    at ");
  });

  test("keys create on a --log-db with no trail yet creates it there; keys list and audit verify then read it", async () => {
    // A trail opened and closed at once only to learn where this driver keeps one; its tables are dropped.
    const opened = await driver.open("fresh");
    await opened.store.close();
    if (driver.name === "postgres") await opened.tamper(`DROP SCHEMA "${new URL(opened.logDb).searchParams.get("schema")}" CASCADE`);
    const place = driver.name === "postgres" ? opened : { ...opened, logDb: join(tempDir(), "new.db") };
    expect((await cliOn(place, "keys", "list")).exitCode).toBe(4); // listing never creates a trail
    const created = await cliOn(place, "keys", "create", "--agent", "deploy-bot", "--format", "json");
    expect(created.exitCode).toBe(0);
    const { id } = JSON.parse(created.stdout) as { id: string };
    expect((await cliOn(place, "keys", "list")).stdout).toContain(id);
    const verified = await cliOn(place, "audit", "verify", "--format", "json");
    expect(verified.exitCode).toBe(0);
    expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, records: 0, events: 1 });
  });
});
