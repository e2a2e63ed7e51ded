/**
 * The storage contract on both drivers (erasure, verify and tampering, exports), then the
 * PostgreSQL driver's own guarantees, against the real local PostgreSQL: one
 * chain written by several replicas, durable intents, lease recovery, erasure (with on-landing
 * redaction), verify and tampering, exports, keys shared by every replica.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { recordFilterSchema, summaryFilterSchema } from "../../../src/store/filters.ts";
import { exportFilterSchema } from "../../../src/trail/export.ts";
import { eventFilterSchema } from "../../../src/trail/events.ts";
import { openPgAdmin, PgAuditStore } from "../../../src/store/postgres/index.ts";
import { runCli } from "../../helpers/process.ts";
import { tempDir } from "../../helpers/proxy.ts";
import { sampleRecord } from "../../helpers/records.ts";
import { pgContext, pgSchema, type PgSchema } from "../../helpers/postgres.ts";
import { postgresDriver, sqliteDriver, type TestDriver, type TestStore } from "../../helpers/drivers.ts";

let pg: PgSchema;
const keyDir = tempDir();
beforeAll(async () => {
  pg = await pgSchema("store");
});
afterAll(async () => {
  await pg.drop();
});

/** Each test gets a trail of its own: a schema suffix on the one test schema's name. */
async function fresh(label: string): Promise<{ logDb: string; drop: () => Promise<void> }> {
  const schema = `${pg.schema}_${label}`;
  return {
    logDb: pg.logDb.replace(/schema=.*$/, `schema=${schema}`),
    drop: async () => void (await pg.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)),
  };
}

const records = recordFilterSchema.parse({ limit: 1000 });

/** What kill -9 leaves: no more heartbeats, no more appends, connections gone. */
async function crash(store: PgAuditStore): Promise<void> {
  const internals = store as unknown as { closed: boolean; heartbeatTimer: Timer; checkpointTimer: Timer };
  internals.closed = true;
  clearInterval(internals.heartbeatTimer);
  clearInterval(internals.checkpointTimer);
  await store.sql.close({ timeout: 0 });
}

async function call(store: TestStore, i: number, overrides = {}) {
  const record = sampleRecord(i, overrides);
  await store.begin({ ...record, outcome: null, status: null });
  await store.commit(record);
}

describe.each([sqliteDriver, postgresDriver(() => pg, keyDir)])("the storage contract on $name", (driver: TestDriver) => {
  test("erasure: the user is gone from queries and summaries, a call in flight lands redacted, and verify passes", async () => {
    const { store } = await driver.open("erase");
    try {
      for (let i = 0; i < 6; i++) await call(store, i, { user_id: i % 2 ? "alice" : "bob" });
      const inFlight = sampleRecord(9, { user_id: "alice" });
      await store.begin({ ...inFlight, outcome: null });
      await store.flush();
      await store.trail.eraseUser("alice", "cli:test");
      await store.commit(inFlight);
      await store.flush();
      const alice = await store.reader.records(recordFilterSchema.parse({ user: "alice" }));
      expect(alice.records).toEqual([]);
      const byUser = await store.reader.summary(summaryFilterSchema.parse({ by: "user" }));
      expect(byUser.groups.map((g) => [g.key, g.calls])).toEqual([
        [null, 4],
        ["bob", 3],
      ]);
      const landed = await store.reader.record("rec-9");
      expect(landed?.user_id).toBeNull();
      const report = await store.trail.verify("cli:test");
      expect(report).toMatchObject({ ok: true, redacted: 4 });
    } finally {
      await store.close();
    }
  });

  test("verify names the first edited record, and a removed tail behind a checkpoint", async () => {
    const { store, tamper } = await driver.open("tamper");
    try {
      for (let i = 0; i < 25; i++) await call(store, i);
      await store.flush();
      await tamper(`UPDATE audit_records SET model = 'gpt-3.5' WHERE seq = 7`);
      expect((await store.trail.verify("cli:test")).failure).toMatchObject({ seq: 7, reason: "edited" });
      await tamper(`UPDATE audit_records SET model = 'gpt-4o' WHERE seq = 7`);
      await tamper("DELETE FROM audit_events");
      await tamper(`DELETE FROM audit_records WHERE seq > 15`);
      expect((await store.trail.verify("cli:test")).failure).toMatchObject({ seq: 16, reason: "truncated" });
    } finally {
      await store.close();
    }
  });

  test("an export streams the records and records its signed manifest as a chain event", async () => {
    const { store } = await driver.open("export");
    try {
      await Promise.all(Array.from({ length: 700 }, (_, i) => call(store, i)));
      await store.flush();
      const run = store.trail.export("ndjson", exportFilterSchema.parse({}), "cli:test");
      const text = await new Response(run.stream()).text();
      expect(text.trim().split("\n")).toHaveLength(700);
      const manifest = await store.trail.manifest(run.id);
      expect(manifest).toMatchObject({ export_id: run.id, record_count: 700 });
      const events = await store.trail.events(eventFilterSchema.parse({ kind: "export" }));
      expect(events.events).toHaveLength(1);
    } finally {
      await store.close();
    }
  });

  test("keys: create and revoke are chain events naming the actor and the key, never its secret; a second revoke records nothing", async () => {
    const { store } = await driver.open("contract_keys");
    try {
      const { key, record } = await store.keys.create(
        { agents: ["deploy-bot"], users: ["ops-*", "sre-*"], tier: "pro" },
        "api:admin:alice",
      );
      expect((await store.keys.revoke(record.id, "cli:bob"))?.revoked_at).toEqual(expect.any(String));
      expect((await store.keys.revoke(record.id, "cli:bob"))?.revoked_at).toEqual(expect.any(String));
      expect(await store.keys.revoke("key_nothere", "cli:bob")).toBeNull();
      const page = await store.trail.events(eventFilterSchema.parse({}));
      const events = page.events.filter((e) => e.kind.startsWith("key_")).reverse();
      expect(events.map((e) => [e.kind, e.actor, e.details.key_id])).toEqual([
        ["key_created", "api:admin:alice", record.id],
        ["key_revoked", "cli:bob", record.id],
      ]);
      expect(events[0]!.details).toEqual({
        key_id: record.id,
        agents: ["deploy-bot"],
        user_globs: 2,
        tier: "pro",
        tags: [],
        expires_at: null,
        signed: true,
      });
      const text = JSON.stringify(page);
      for (const secret of [key, key.slice(3), "ops-*"]) expect(text).not.toContain(secret);
      expect(await store.trail.verify("cli:test")).toMatchObject({ ok: true });
    } finally {
      await store.close();
    }
  });

  test("a plugin's event (a budget alert) is appended to the chain, listed by its kind, and verified", async () => {
    const { store } = await driver.open("contract_event");
    try {
      await call(store, 1);
      await store.flush();
      const details = { alert_id: "a-1", tier: "team", budget: "cost_per_day", threshold: 0.5, scope: "user", used: 5, limit: 10 };
      await store.trail.recordEvent({ kind: "budget_alert", actor: "plugin:tiers", details });
      await call(store, 2);
      await store.flush();
      const page = await store.trail.events(eventFilterSchema.parse({ kind: "budget_alert" }));
      expect(page.events.map((e) => [e.kind, e.actor, e.details])).toEqual([["budget_alert", "plugin:tiers", details]]);
      expect(await store.trail.verify("cli:test")).toMatchObject({ ok: true, records: 2 });
    } finally {
      await store.close();
    }
  });
});

describe.each([sqliteDriver, postgresDriver(() => pg, keyDir)])("the trail on $name", (driver: TestDriver) => {
  test("erasing twice, or a user who never called, changes no record and the chain still verifies", async () => {
    const { store } = await driver.open("erase_twice");
    try {
      for (let i = 0; i < 4; i++) await call(store, i, { user_id: i % 2 ? "carol" : "dave" });
      await store.flush();
      await store.trail.eraseUser("carol", "cli:test");
      await store.trail.eraseUser("carol", "cli:test");
      await store.trail.eraseUser("nobody-at-all", "cli:test");
      const users = (await store.reader.records(records)).records.map((r) => r.user_id).sort();
      expect(users).toEqual(["dave", "dave", null, null]);
      expect(await store.trail.verify("cli:test")).toMatchObject({ ok: true, records: 4, redacted: 2 });
      const erasures = await store.trail.events(eventFilterSchema.parse({ kind: "erasure" }));
      expect(erasures.events).toHaveLength(3);
      expect(JSON.stringify(erasures.events)).not.toContain("carol");
    } finally {
      await store.close();
    }
  });

  test("a deleted record is reported missing at its seq; the status names the tail and the last checkpoint", async () => {
    const { store, tamper } = await driver.open("missing");
    try {
      for (let i = 0; i < 12; i++) await call(store, i);
      await store.flush();
      const status = await store.trail.status();
      expect(status.last_seq).toBeGreaterThanOrEqual(12);
      expect(status.last_checkpoint?.seq).toBeGreaterThanOrEqual(10);
      await tamper("DELETE FROM audit_records WHERE seq = 5");
      expect((await store.trail.verify("cli:test")).failure).toMatchObject({ seq: 5, reason: "missing" });
    } finally {
      await store.close();
    }
  });
});

describe("PostgreSQL store", () => {
  test("a call's intent is durable in PostgreSQL when begin resolves, and its record joins the chain after commit", async () => {
    const trail = await fresh("basic");
    const store = await PgAuditStore.open(pgContext(trail.logDb, keyDir));
    try {
      await store.begin(sampleRecord(1, { outcome: null }));
      const groups = await pg.sql.unsafe(`SELECT intents FROM "${pg.schema}_basic".audit_intent_groups`);
      expect(groups.map((g: { intents: string }) => (JSON.parse(g.intents) as string[][]).map((row) => row[0]))).toEqual([["rec-1"]]);
      await store.commit(sampleRecord(1));
      await store.flush();
      const page = await store.reader.records(records);
      expect(page.records.map((r) => [r.id, r.seq, r.outcome, r.stream, r.cost_nano_usd])).toEqual([
        ["rec-1", 1, "completed", false, 250_000_000],
      ]);
      expect(await pg.sql.unsafe(`SELECT n FROM "${pg.schema}_basic".audit_intent_groups`)).toEqual([]);
      const report = await store.trail.verify("cli:test");
      expect(report).toMatchObject({ ok: true, records: 1, recorded: true });
    } finally {
      await store.close();
    }
    // Closing signed a checkpoint of the tail, as SQLite does on shutdown.
    const admin = await openPgAdmin({ ...pgContext(trail.logDb, keyDir), create: false });
    try {
      const status = await admin.trail.status();
      expect(status.last_checkpoint?.seq).toBe(status.last_seq);
    } finally {
      await admin.close();
      await trail.drop();
    }
  });

  test("three replicas writing at once append to one chain that verifies, with every record exactly once", async () => {
    const trail = await fresh("replicas");
    const stores = await Promise.all([0, 1, 2].map(() => PgAuditStore.open(pgContext(trail.logDb, keyDir))));
    try {
      const calls: Promise<void>[] = [];
      for (let i = 0; i < 300; i++) calls.push(call(stores[i % 3]!, i));
      await Promise.all(calls);
      await Promise.all(stores.map((s) => s.flush()));
      const page = await stores[1]!.reader.records(records);
      expect(page.records).toHaveLength(300);
      expect(new Set(page.records.map((r) => r.id)).size).toBe(300);
      const report = await stores[2]!.trail.verify("cli:test");
      expect(report.ok).toBe(true);
      expect(report.records).toBe(300);
      expect(report.checkpoints).toBeGreaterThan(0);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
      await trail.drop();
    }
  });

  test("a replica that stops heartbeating has its calls committed by a survivor after the lease: in flight as interrupted, committed ones once", async () => {
    const trail = await fresh("lease");
    const dying = await PgAuditStore.open(pgContext(trail.logDb, keyDir), { heartbeatMs: 100_000 });
    const survivor = await PgAuditStore.open(pgContext(trail.logDb, keyDir), { leaseMs: 300, heartbeatMs: 100 });
    try {
      for (let i = 0; i < 5; i++) await dying.begin(sampleRecord(i, { outcome: null }));
      // rec-0's commit resolved: it is in the chain (the client saw the call end). rec-1's final
      // record was handed over but the process dies before its append: the client never got the
      // call's last byte, and the survivor finds only its intent.
      await dying.commit(sampleRecord(0));
      expect((await pg.sql.unsafe(`SELECT id FROM "${pg.schema}_lease".audit_records`)).map((r: { id: string }) => r.id)).toEqual([
        "rec-0",
      ]);
      (dying as unknown as { scheduleAppend: () => void }).scheduleAppend = () => undefined;
      void dying.commit(sampleRecord(1));
      await crash(dying);
      await Bun.sleep(1000);
      const page = await survivor.reader.records(records);
      const outcomes = Object.fromEntries(page.records.map((r) => [r.id, r.outcome]));
      expect(outcomes).toEqual({
        "rec-0": "completed",
        "rec-1": "interrupted",
        "rec-2": "interrupted",
        "rec-3": "interrupted",
        "rec-4": "interrupted",
      });
      expect((await survivor.trail.verify("cli:test")).ok).toBe(true);
    } finally {
      await survivor.close();
      await crash(dying);
      await trail.drop();
    }
  });

  test("a replica that closes with calls still in flight keeps its lease row, so a survivor records those calls as interrupted", async () => {
    const trail = await fresh("closing");
    const survivor = await PgAuditStore.open(pgContext(trail.logDb, keyDir), { leaseMs: 300, heartbeatMs: 100 });
    const closing = await PgAuditStore.open(pgContext(trail.logDb, keyDir), { leaseMs: 300 });
    try {
      await call(closing, 0);
      await closing.begin(sampleRecord(1, { outcome: null }));
      await closing.close();
      for (let tries = 0; tries < 100 && (await survivor.reader.records(records)).records.length < 2; tries++) await Bun.sleep(50);
      const page = await survivor.reader.records(records);
      expect(page.records.map((r) => [r.id, r.outcome])).toEqual([
        ["rec-1", "interrupted"],
        ["rec-0", "completed"],
      ]);
    } finally {
      await survivor.close();
      await trail.drop();
    }
  });

  test("a key revoked through one replica is refused by the others on the next lookup, and the CLI handle sees the same trail", async () => {
    const trail = await fresh("keys");
    const a = await PgAuditStore.open(pgContext(trail.logDb, keyDir));
    const b = await PgAuditStore.open(pgContext(trail.logDb, keyDir));
    try {
      const { key, record } = await a.keys.create({ agents: ["bot"], users: null, tier: null }, "cli:test");
      expect((await b.keys.find(key))?.revoked_at).toBeNull();
      await a.keys.revoke(record.id, "cli:test");
      expect((await b.keys.find(key))?.revoked_at).toEqual(expect.any(String));
      const admin = await openPgAdmin({ ...pgContext(trail.logDb, keyDir), create: false });
      try {
        expect((await admin.keys.list()).map((k) => k.id)).toEqual([record.id]);
        expect(await admin.trail.verify("cli:test")).toMatchObject({ ok: true, events: 2 });
        // The CLI's events are sealed at once (no appender signs after the CLI).
        const status = await admin.trail.status();
        expect(status.last_checkpoint?.seq).toBe(status.last_seq);
      } finally {
        await admin.close();
      }
    } finally {
      await a.close();
      await b.close();
      await trail.drop();
    }
  });

  test("a PostgreSQL that cannot be reached stops the proxy's start as an I/O error (exit 4), the password not shown", async () => {
    const started = await runCli(["proxy", "start", "--port", "0", "--log-db", "postgres://auditor:s3cret-pw@127.0.0.1:1/trail"], {
      timeoutMs: 20_000,
      cwd: tempDir(),
    });
    expect(started.exitCode).toBe(4);
    expect(started.stderr).toContain("I/O error: cannot open the audit trail at postgres://auditor:***@127.0.0.1:1/trail");
    expect(started.stderr).not.toContain("s3cret-pw");
  });

  test("the CLI refuses a database with no trail instead of creating one", async () => {
    const trail = await fresh("none");
    await expect(openPgAdmin({ ...pgContext(trail.logDb, keyDir), create: false })).rejects.toThrow(/No audit trail at/);
    await trail.drop();
  });

  test("text PostgreSQL cannot hold (NUL, lone surrogates) is stored as U+FFFD and the chain still verifies", async () => {
    const trail = await fresh("nul");
    const store = await PgAuditStore.open(pgContext(trail.logDb, keyDir));
    try {
      await call(store, 1, { task_context: "a\u0000b\uD800c\t\\N\n" });
      await store.flush();
      expect((await store.reader.record("rec-1"))?.task_context).toBe("a\uFFFDb\uFFFDc\t\\N\n");
      expect((await store.trail.verify("cli:test")).ok).toBe(true);
    } finally {
      await store.close();
      await trail.drop();
    }
  });
});
