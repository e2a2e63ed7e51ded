// Signed proxy keys on both drivers. Someone with write access to the database (not to the
// signing key file) widens a key, clears its revocation, puts back the row from before its
// revocation or inserts a key of their own: the running proxy answers 401 exactly as for an
// unknown key, logs once which key id to look at, and `audit verify` fails with key_tampered.
// Keys made and revoked through the CLI work as before; rows an earlier version wrote are signed
// once, by the start that upgrades the trail, and a row unsigned later stays refused.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { apiKeys, headerAttribution, openai } from "../../plugins/index.ts";
import { hashProxyKey } from "../../src/store/keys.ts";
import { cliOn, postgresDriver, proxyOn, sqliteDriver, type OpenedTrail, type TestDriver } from "../helpers/drivers.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { capturedLog, pgSchema, type CapturedLog, type PgSchema } from "../helpers/postgres.ts";
import { runCli } from "../helpers/process.ts";
import { tempDir, type TestProxy } from "../helpers/proxy.ts";

let pg: PgSchema;
let upstream: FakeUpstream;
beforeAll(async () => {
  pg = await pgSchema("keys_signed");
  upstream = await startFakeUpstream();
  process.env.OPENAI_API_KEY = "sk-real-openai-provider-key";
});
afterAll(async () => {
  delete process.env.OPENAI_API_KEY;
  await upstream.stop();
  await pg.drop();
});

/** A proxy in keys mode on the trail, whose log the test reads. */
async function keysProxy(trail: OpenedTrail, adminToken?: string): Promise<{ proxy: TestProxy; log: CapturedLog }> {
  const log = capturedLog();
  const proxy = await proxyOn(
    trail,
    upstream.url,
    { plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), apiKeys()] },
    { log, adminToken },
  );
  return { proxy, log };
}

async function chat(proxy: TestProxy, key: string, agent = "nightly-job"): Promise<{ status: number; body: string }> {
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}`, "x-agent-id": agent },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });
  return { status: response.status, body: await response.text() };
}

/** What the proxy answers for a key it has never seen (the answer a tampered key must get, byte for byte). */
const unknownKey = (proxy: TestProxy) => chat(proxy, "aa-this-key-was-never-created-by-anyone-at-all-000");

async function createKey(trail: OpenedTrail, ...args: string[]): Promise<{ id: string; key: string }> {
  const created = await cliOn(trail, "keys", "create", "--agent", "nightly-job", "--format", "json", ...args);
  expect(created.exitCode).toBe(0);
  return JSON.parse(created.stdout) as { id: string; key: string };
}

async function verifyFails(trail: OpenedTrail, id: string, key: string): Promise<string> {
  const verified = await cliOn(trail, "audit", "verify", "--format", "json");
  expect(verified.exitCode).toBe(1);
  const report = JSON.parse(verified.stdout) as { ok: boolean; failure: { reason: string; message: string } };
  expect(report.failure.reason).toBe("key_tampered");
  expect(report.failure.message).toContain(id);
  const all = verified.stdout + verified.stderr;
  expect(all).not.toContain(key);
  expect(all).not.toContain(hashProxyKey(key));
  return report.failure.message;
}

/** The proxy's warnings about a key: exactly one, naming it and what to run, never its secret or hash. */
function warnedOnce(log: CapturedLog, id: string, key: string): void {
  const lines = log.lines.filter((line) => line.includes(id));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain("agent-attr audit verify");
  expect(log.lines.join("\n")).not.toContain(key);
  expect(log.lines.join("\n")).not.toContain(hashProxyKey(key));
}

/** The trail as the previous version left it: no signature column, its migration not applied. */
async function downgrade(driver: TestDriver, trail: OpenedTrail): Promise<void> {
  await trail.tamper("ALTER TABLE proxy_keys DROP COLUMN signature");
  await trail.tamper(
    driver.name === "sqlite"
      ? "DELETE FROM __agent_attr_migrations WHERE tag = '0010_overrated_felicia_hardy'"
      : "DELETE FROM agent_attr_migrations WHERE version = (SELECT max(version) FROM agent_attr_migrations)",
  );
}

describe.each([sqliteDriver, postgresDriver(() => pg)])("signed proxy keys on $name", (driver: TestDriver) => {
  test("a key made and revoked through the CLI works as before, and verify passes", async () => {
    const trail = await driver.open("honest");
    const { proxy, log } = await keysProxy(trail);
    try {
      const { id, key } = await createKey(trail, "--tier", "free");
      expect((await chat(proxy, key)).status).toBe(200);
      expect((await cliOn(trail, "audit", "verify")).exitCode).toBe(0);
      expect((await cliOn(trail, "keys", "revoke", id)).exitCode).toBe(0);
      const refused = await chat(proxy, key);
      expect(refused.status).toBe(401);
      expect(refused.body).toContain(`Proxy key ${id} was revoked`);
      expect((await cliOn(trail, "audit", "verify")).exitCode).toBe(0);
      expect(log.lines.filter((line) => line.includes(id))).toEqual([]);
    } finally {
      await proxy.stop();
    }
  });

  test("a key made and revoked through the audit API (the dashboard's path) is signed the same way", async () => {
    const trail = await driver.open("api");
    const admin = { authorization: "Bearer admin-token-for-signed-keys-000000", "content-type": "application/json" };
    const { proxy } = await keysProxy(trail, "admin-token-for-signed-keys-000000");
    try {
      const made = await fetch(`${proxy.url}/audit/keys`, {
        method: "POST",
        headers: admin,
        body: JSON.stringify({ agents: ["nightly-job"] }),
      });
      expect(made.status).toBe(201);
      const { key, record } = (await made.json()) as { key: string; record: { id: string } };
      expect((await chat(proxy, key)).status).toBe(200);
      const [row] = await trail.query<{ signature: string | null }>(`SELECT signature FROM proxy_keys WHERE id = '${record.id}'`);
      expect(row!.signature).toEqual(expect.any(String));
      expect((await fetch(`${proxy.url}/audit/keys/${record.id}`, { method: "DELETE", headers: admin })).status).toBe(200);
      expect((await chat(proxy, key)).body).toContain(`Proxy key ${record.id} was revoked`);
      expect((await cliOn(trail, "audit", "verify")).exitCode).toBe(0);
    } finally {
      await proxy.stop();
    }
  });

  test("a key's agents widened in the database: 401 as for an unknown key, one warning, verify exits 1", async () => {
    const trail = await driver.open("widened");
    const { proxy, log } = await keysProxy(trail);
    try {
      const { id, key } = await createKey(trail);
      expect((await chat(proxy, key)).status).toBe(200);
      await trail.tamper(`UPDATE proxy_keys SET agents = '["*"]' WHERE id = '${id}'`);
      const unknown = await unknownKey(proxy);
      expect(unknown.status).toBe(401);
      expect(await chat(proxy, key, "any-agent-at-all")).toEqual(unknown);
      expect(await chat(proxy, key)).toEqual(unknown);
      warnedOnce(log, id, key);
      await verifyFails(trail, id, key);
    } finally {
      await proxy.stop();
    }
  });

  test("a revocation cleared in the database: 401 as for an unknown key, verify exits 1", async () => {
    const trail = await driver.open("unrevoked");
    const { proxy, log } = await keysProxy(trail);
    try {
      const { id, key } = await createKey(trail);
      expect((await cliOn(trail, "keys", "revoke", id)).exitCode).toBe(0);
      await trail.tamper(`UPDATE proxy_keys SET revoked_at = NULL, expires_at = NULL WHERE id = '${id}'`);
      expect(await chat(proxy, key)).toEqual(await unknownKey(proxy));
      warnedOnce(log, id, key);
      await verifyFails(trail, id, key);
    } finally {
      await proxy.stop();
    }
  });

  test("the signed row from before its revocation put back: still refused, verify names the key_revoked event", async () => {
    const trail = await driver.open("replayed");
    const { proxy, log } = await keysProxy(trail);
    try {
      const { id, key } = await createKey(trail);
      expect((await chat(proxy, key)).status).toBe(200);
      const [before] = await trail.query<Record<string, string | null>>(`SELECT * FROM proxy_keys WHERE id = '${id}'`);
      expect((await cliOn(trail, "keys", "revoke", id)).exitCode).toBe(0);
      // Deleted and re-inserted as it was, signature and all: the signature verifies, the chain says revoked.
      const columns = Object.keys(before!);
      const values = columns.map((c) => (before![c] === null ? "NULL" : `'${String(before![c]).replaceAll("'", "''")}'`));
      await trail.tamper(`DELETE FROM proxy_keys WHERE id = '${id}'`);
      await trail.tamper(`INSERT INTO proxy_keys (${columns.join(", ")}) VALUES (${values.join(", ")})`);
      expect(await chat(proxy, key)).toEqual(await unknownKey(proxy));
      warnedOnce(log, id, key);
      expect(await verifyFails(trail, id, key)).toContain("key_revoked event");
      // A proxy started afterwards reads the revocation from the chain at its first lookup.
      await proxy.stop();
      const again = await keysProxy(trail);
      try {
        expect(await chat(again.proxy, key)).toEqual(await unknownKey(again.proxy));
      } finally {
        await again.proxy.stop();
      }
    } finally {
      await proxy.stop();
    }
  });

  test("a key row inserted in the database, or its signature copied from another key: refused, verify exits 1", async () => {
    const trail = await driver.open("inserted");
    const { proxy, log } = await keysProxy(trail);
    try {
      const { id: honest } = await createKey(trail);
      const key = "aa-minted-by-someone-with-database-access-only-0001";
      await trail.tamper(
        `INSERT INTO proxy_keys (id, hash, agents, users, tier, tags, created_at, expires_at, revoked_at, signature)
         SELECT 'key_forged', '${hashProxyKey(key)}', '["*"]', '["*"]', NULL, NULL, created_at, NULL, NULL, signature FROM proxy_keys WHERE id = '${honest}'`,
      );
      expect(await chat(proxy, key)).toEqual(await unknownKey(proxy));
      warnedOnce(log, "key_forged", key);
      await verifyFails(trail, "key_forged", key);
    } finally {
      await proxy.stop();
    }
  });

  test("keys create and revoke without the signing key refuse, and change nothing", async () => {
    const trail = await driver.open("keyless");
    const { id } = await createKey(trail);
    await trail.store.close();
    // Elsewhere than the repository, whose ./agent-attr.signing-key (PostgreSQL's default) a test may have made.
    const options = () => ({ cwd: tempDir(), timeoutMs: 30_000 });
    const created = await runCli(["keys", "create", "--agent", "other-job", "--log-db", trail.logDb], options());
    expect(created.exitCode).not.toBe(0);
    // (On PostgreSQL `keys create` may create a trail, so it makes a key file here: not the trail's, and refused as such.)
    expect(created.stderr).toMatch(
      /proxy keys are signed, and this trail has no signing key here: pass --signing-key|is not the key this trail is signed with/,
    );
    const revoked = await runCli(["keys", "revoke", id, "--log-db", trail.logDb], options());
    expect(revoked.exitCode).not.toBe(0);
    expect(revoked.stderr).toContain("proxy keys are signed");
    expect(await trail.query("SELECT id, revoked_at FROM proxy_keys")).toEqual([{ id, revoked_at: null }]);
  });

  test("an upgrade the CLI applies (with the key file) signs the old keys the same way", async () => {
    const trail = await driver.open("cli_upgrade");
    const { id, key } = await createKey(trail);
    await trail.store.close();
    await downgrade(driver, trail);
    const listed = await cliOn(trail, "keys", "list", "--format", "json");
    expect(listed.exitCode).toBe(0);
    const [event] = await trail.query<{ details: string }>("SELECT details FROM audit_events WHERE kind = 'keys_signed'");
    expect(JSON.parse(event!.details)).toEqual({ key_ids: [id], keys: 1 });
    expect((await cliOn(trail, "audit", "verify")).exitCode).toBe(0);
    const { proxy } = await keysProxy(trail);
    try {
      expect((await chat(proxy, key)).status).toBe(200);
    } finally {
      await proxy.stop();
    }
  });

  test("an upgraded trail: its unsigned keys are signed at the first start, as they stood; a row unsigned later stays refused", async () => {
    const trail = await driver.open("upgraded");
    const { id, key } = await createKey(trail, "--tier", "free");
    const { id: other, key: otherKey } = await createKey(trail);
    await trail.store.close();
    await downgrade(driver, trail);
    const { proxy, log } = await keysProxy(trail);
    try {
      expect((await chat(proxy, key)).status).toBe(200);
      expect((await chat(proxy, otherKey)).status).toBe(200);
      const [event] = await trail.query<{ details: string }>("SELECT details FROM audit_events WHERE kind = 'keys_signed'");
      expect(JSON.parse(event!.details)).toEqual({ key_ids: [id, other].sort(), keys: 2 });
      expect(log.lines.join("\n")).toContain("2 proxy key(s) written by an earlier version are now signed");
      expect((await cliOn(trail, "audit", "verify")).exitCode).toBe(0);
      // Afterwards nothing in the database can ask for a row to be signed again.
      await trail.tamper(`UPDATE proxy_keys SET signature = NULL, agents = '["*"]' WHERE id = '${other}'`);
      expect(await chat(proxy, otherKey)).toEqual(await unknownKey(proxy));
      await verifyFails(trail, other, otherKey);
    } finally {
      await proxy.stop();
    }
    const again = await keysProxy(trail);
    try {
      expect(await chat(again.proxy, otherKey)).toEqual(await unknownKey(again.proxy));
      expect((await chat(again.proxy, key)).status).toBe(200);
      expect(await trail.query("SELECT kind FROM audit_events WHERE kind = 'keys_signed'")).toHaveLength(1);
    } finally {
      await again.proxy.stop();
    }
  });
});
