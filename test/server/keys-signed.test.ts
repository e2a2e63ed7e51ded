// Signed proxy keys on both drivers. Someone with write access to the database (not to the
// signing key file) widens a key, clears its revocation, puts back the row from before its
// revocation or inserts a key of their own: the running proxy answers 401 exactly as for an
// unknown key, logs once which key id to look at, and `audit verify` fails with key_tampered.
// Keys made and revoked through the CLI work as before; rows an earlier version wrote are adopted
// (signed once, as they stand) by the first open with the signing key, only when the chain has a
// legacy key_created event they agree with and no keys_signed event yet: dropping the column and
// forgetting its migration does not get a forged or widened row signed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { apiKeys, headerAttribution, openai } from "../../plugins/index.ts";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { hashProxyKey, mintProxyKey } from "../../src/store/keys.ts";
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

/**
 * Keys as an earlier version left them, on a trail `driver.open` just made (its store still open):
 * `key_created` events without `signed`, then (after `downgrade`) rows without signatures.
 */
async function legacyKeys(
  driver: TestDriver,
  trail: OpenedTrail,
  keys: { agents: string[]; users?: string[]; tier?: string }[],
): Promise<{ id: string; key: string }[]> {
  const minted = keys.map((options) => ({ ...mintProxyKey(), ...options }));
  for (const k of minted) {
    const details = { key_id: k.id, agents: k.agents, user_globs: k.users?.length ?? 0, tier: k.tier ?? null, tags: [], expires_at: null };
    await trail.store.trail.recordEvent({ kind: "key_created", actor: "cli:old-version", details });
  }
  await trail.store.close();
  await downgrade(driver, trail);
  const text = (value: string | null) => (value === null ? "NULL" : `'${value}'`);
  for (const k of minted) {
    await trail.tamper(
      `INSERT INTO proxy_keys (id, hash, agents, users, tier, tags, created_at, expires_at, revoked_at)
       VALUES ('${k.id}', '${k.hash}', '${JSON.stringify(k.agents)}', ${text(k.users ? JSON.stringify(k.users) : null)}, ${text(k.tier ?? null)}, NULL, '2026-11-01T00:00:00.000Z', NULL, NULL)`,
    );
  }
  return minted.map(({ id, key }) => ({ id, key }));
}

/** The CLI without the trail's signing key (elsewhere than the repository, whose ./agent-attr.signing-key a test may have made). */
const keyless = (trail: OpenedTrail, ...args: string[]) =>
  runCli([...args, "--log-db", trail.logDb], { cwd: tempDir(), timeoutMs: 30_000 });

const keysSignedEvents = (trail: OpenedTrail) =>
  trail.query<{ details: string }>("SELECT details FROM audit_events WHERE kind = 'keys_signed'");

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
    const [{ id, key }] = (await legacyKeys(driver, trail, [{ agents: ["nightly-job"] }])) as [{ id: string; key: string }];
    const listed = await cliOn(trail, "keys", "list", "--format", "json");
    expect(listed.exitCode).toBe(0);
    const [event] = await keysSignedEvents(trail);
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
    const [{ id, key }, { id: other, key: otherKey }] = (await legacyKeys(driver, trail, [
      { agents: ["nightly-job"], tier: "free" },
      { agents: ["nightly-job"] },
    ])) as [{ id: string; key: string }, { id: string; key: string }];
    const { proxy, log } = await keysProxy(trail);
    try {
      expect((await chat(proxy, key)).status).toBe(200);
      expect((await chat(proxy, otherKey)).status).toBe(200);
      const [event] = await keysSignedEvents(trail);
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
      expect(await keysSignedEvents(trail)).toHaveLength(1);
    } finally {
      await again.proxy.stop();
    }
  });

  test("the column dropped and its migration forgotten: an honest open signs neither a forged row nor a widened one", async () => {
    const trail = await driver.open("forced_adoption");
    const [legacy] = (await legacyKeys(driver, trail, [{ agents: ["nightly-job"] }])) as [{ id: string; key: string }];
    expect((await cliOn(trail, "keys", "list")).exitCode).toBe(0); // adopts the legacy key: keys_signed
    const made = await createKey(trail);
    // What someone with write access to the database (not the key file) does to have their rows signed.
    await downgrade(driver, trail);
    await trail.tamper(`UPDATE proxy_keys SET agents = '["*"]', users = '["*"]'`);
    const evil = "aa-chosen-by-someone-with-database-access-only-00001";
    await trail.tamper(
      `INSERT INTO proxy_keys (id, hash, agents, users, created_at) VALUES ('key_evil000000', '${hashProxyKey(evil)}', '["*"]', '["*"]', '2026-12-03T07:00:00.000Z')`,
    );
    expect((await cliOn(trail, "keys", "list")).exitCode).toBe(0); // an honest command re-applies the migration
    expect(await trail.query("SELECT id FROM proxy_keys WHERE signature IS NOT NULL")).toEqual([]);
    expect(await keysSignedEvents(trail)).toHaveLength(1);
    const { proxy } = await keysProxy(trail);
    try {
      const unknown = await unknownKey(proxy);
      expect(unknown.status).toBe(401);
      for (const key of [evil, legacy.key, made.key]) expect(await chat(proxy, key, "any-agent-at-all")).toEqual(unknown);
    } finally {
      await proxy.stop();
    }
    expect(await trail.query("SELECT id FROM proxy_keys WHERE signature IS NOT NULL")).toEqual([]);
    await verifyFails(trail, legacy.id, legacy.key);
    const verified = await cliOn(trail, "audit", "verify", "--format", "json");
    expect(verified.exitCode).toBe(1);
    expect(verified.stdout + verified.stderr).not.toContain(hashProxyKey(evil));
  });

  test("a key created by this version never adopted: its row with the column dropped stays refused", async () => {
    const trail = await driver.open("fresh_forced");
    const made = await createKey(trail);
    await trail.store.close();
    await downgrade(driver, trail);
    expect((await cliOn(trail, "keys", "list")).exitCode).toBe(0);
    expect(await keysSignedEvents(trail)).toEqual([]);
    const { proxy } = await keysProxy(trail);
    try {
      expect(await chat(proxy, made.key)).toEqual(await unknownKey(proxy));
    } finally {
      await proxy.stop();
    }
    expect(await verifyFails(trail, made.id, made.key)).toContain("created signed");
  });

  test("an upgrade applied without the signing key: old keys wait, and the next start with the key adopts them", async () => {
    const trail = await driver.open("keyless_upgrade");
    const pubkey = await cliOn(trail, "audit", "pubkey");
    expect(pubkey.exitCode).toBe(0);
    const pem = join(tempDir(), "trail.pub.pem");
    writeFileSync(pem, pubkey.stdout);
    const [{ id, key }] = (await legacyKeys(driver, trail, [{ agents: ["nightly-job"] }])) as [{ id: string; key: string }];
    const early = await keyless(trail, "audit", "verify", "--public-key", pem, "--format", "json");
    expect(early.exitCode).toBe(1);
    expect((JSON.parse(early.stdout) as { failure: { message: string } }).failure.message).toContain("not signed yet");
    expect(early.stderr).toContain("not signed yet");
    expect(early.stderr).not.toContain("could not be signed on upgrade");
    expect(await keysSignedEvents(trail)).toEqual([]);
    const { proxy, log } = await keysProxy(trail);
    try {
      expect((await chat(proxy, key)).status).toBe(200);
      expect(log.lines.join("\n")).toContain("1 proxy key(s) written by an earlier version are now signed");
    } finally {
      await proxy.stop();
    }
    const [event] = await keysSignedEvents(trail);
    expect(JSON.parse(event!.details)).toEqual({ key_ids: [id], keys: 1 });
    expect((await cliOn(trail, "audit", "verify")).exitCode).toBe(0);
    expect((await keyless(trail, "audit", "verify", "--public-key", pem)).exitCode).toBe(0);
  });

  test("a legacy row widened before adoption is not signed, and is reported; the others are", async () => {
    const trail = await driver.open("widened_legacy");
    const [kept, widened] = (await legacyKeys(driver, trail, [{ agents: ["nightly-job"] }, { agents: ["nightly-job"] }])) as [
      { id: string; key: string },
      { id: string; key: string },
    ];
    await trail.tamper(`UPDATE proxy_keys SET agents = '["*"]' WHERE id = '${widened.id}'`);
    const listed = await cliOn(trail, "keys", "list");
    expect(listed.exitCode).toBe(0);
    expect(listed.stderr).toContain(`proxy key ${widened.id} was not signed`);
    expect(listed.stderr).toContain("disagrees with its key_created event (agents)");
    const [event] = await keysSignedEvents(trail);
    expect(JSON.parse(event!.details)).toEqual({ key_ids: [kept.id], keys: 1, not_signed: [widened.id] });
    const { proxy } = await keysProxy(trail);
    try {
      expect((await chat(proxy, kept.key)).status).toBe(200);
      expect(await chat(proxy, widened.key, "any-agent-at-all")).toEqual(await unknownKey(proxy));
    } finally {
      await proxy.stop();
    }
    expect(await verifyFails(trail, widened.id, widened.key)).toContain("disagrees with its key_created event");
  });

  test("keys revoke refuses a tampered row rather than sign it as it stands", async () => {
    const trail = await driver.open("revoke_tampered");
    const { id, key } = await createKey(trail);
    await trail.store.close();
    await trail.tamper(`UPDATE proxy_keys SET agents = '["*"]' WHERE id = '${id}'`);
    const revoked = await cliOn(trail, "keys", "revoke", id);
    expect(revoked.exitCode).not.toBe(0);
    expect(revoked.stderr).toContain(`proxy key ${id}: its row in proxy_keys is not signed`);
    expect(revoked.stderr).toContain("not signed again as it stands");
    expect(revoked.stdout + revoked.stderr).not.toContain(hashProxyKey(key));
    expect(await trail.query(`SELECT revoked_at FROM proxy_keys WHERE id = '${id}'`)).toEqual([{ revoked_at: null }]);
    await verifyFails(trail, id, key);
  });
});
