// Erasure (GDPR Art. 17) and retention on both drivers: personal fields go, the chain still
// verifies and counts the redacted records, the erasure is a chain event, and calls in flight at the
// time — also ones a crashed process left behind — land redacted.
import { SQL } from "bun";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { recordFilterSchema, summaryFilterSchema } from "../../src/store/filters.ts";
import { append, lockChain } from "../../src/store/postgres/chain.ts";
import type { PgAuditStore } from "../../src/store/postgres/store.ts";
import { toRow } from "../../src/trail/row.ts";
import { eventFilterSchema } from "../../src/trail/events.ts";
import { postgresDriver, sqliteDriver, trailOn, type TestDriver, type TestStore } from "../helpers/drivers.ts";
import { pgSchema, pgServer, type PgSchema } from "../helpers/postgres.ts";
import { sampleRecord } from "../helpers/records.ts";

let pg: PgSchema;
beforeAll(async () => {
  pg = await pgSchema("erase");
});
afterAll(async () => {
  await pg.drop();
});

const all = recordFilterSchema.parse({ limit: 100 });
/** The trail's events, oldest first. */
const eventsOf = async (store: TestStore) => (await store.trail.events(eventFilterSchema.parse({ limit: 100 }))).events.reverse();

describe.each([sqliteDriver, postgresDriver(() => pg)])("erasure on $name", (driver: TestDriver) => {
  test("erasing a user: no record returns them, the chain verifies, redactions are counted, the event has the count", async () => {
    const trail = await trailOn(driver, "user", 9); // users user-0, user-1, user-2, three records each
    const store = await trail.reopen();
    try {
      await store.trail.eraseUser("user-1", "cli:test");
      expect((await store.reader.records(recordFilterSchema.parse({ user: "user-1", limit: 100 }))).records).toEqual([]);
      const records = (await store.reader.records(all)).records;
      const erased = records.filter((r) => ["rec-1", "rec-4", "rec-7"].includes(r.id));
      expect(erased.map((r) => [r.user_id, r.task_context, r.session_id, r.prompt_hash, r.response_hash])).toEqual(
        Array.from({ length: 3 }, () => [null, null, null, null, null]),
      );
      // What is not personal stays: the agent, the model, the tokens.
      expect(erased.every((r) => r.agent_id === "reviewer" && r.model === "gpt-4o" && r.output_tokens === 5)).toBe(true);
      expect(records.filter((r) => r.user_id === "user-2")).toHaveLength(3);
      // Summaries (the usage rollup) no longer know the user either.
      await trail.rollUp();
      const byUser = await store.reader.summary(summaryFilterSchema.parse({ by: "user" }));
      expect(byUser.groups.map((g) => g.key).sort()).toEqual([null, "user-0", "user-2"]);
      expect(await store.trail.verify("cli:test")).toMatchObject({ ok: true, records: 9, redacted: 3, events: 1 });
      const events = await eventsOf(store);
      expect(events.slice(0, 1).map((e) => [e.kind, e.actor, e.details])).toEqual([
        [
          "erasure",
          "cli:test",
          {
            records: 3,
            seqs: [
              [1, 1],
              [4, 4],
              [7, 7],
            ],
            // Signed with the trail's key: verify accepts no redaction an unsigned event names.
            signature: expect.any(String),
          },
        ],
      ]);
      expect(JSON.stringify(events)).not.toContain("user-1");
    } finally {
      await store.close();
    }
  });

  test("erasing twice, or a user who never called, is harmless: the chain verifies, nothing else changes", async () => {
    const trail = await trailOn(driver, "twice", 3);
    const store = await trail.reopen();
    try {
      await store.trail.eraseUser("user-1", "api");
      await store.trail.eraseUser("user-1", "api");
      await store.trail.eraseUser("nobody-ever", "api");
      expect(await store.trail.verify("api")).toMatchObject({ ok: true, records: 3, redacted: 1 });
      expect((await eventsOf(store)).map((e) => e.details.records)).toEqual([1, 0, 0, undefined]);
    } finally {
      await store.close();
    }
  });

  test("a call in flight while its user is erased is redacted when its final record lands", async () => {
    const { store } = await driver.open("in_flight");
    try {
      const started = sampleRecord(1, { user_id: "alice", outcome: null });
      await store.begin(started);
      await store.trail.eraseUser("alice", "api");
      await store.commit({ ...started, outcome: "completed" });
      // A call that starts after the erasure is a new call, recorded in full.
      await Bun.sleep(2);
      await store.commit(sampleRecord(2, { user_id: "alice", timestamp: new Date().toISOString() }));
      await store.flush();
      const byId = new Map((await store.reader.records(all)).records.map((r) => [r.id, r]));
      expect(byId.get("rec-1")).toMatchObject({ user_id: null, task_context: null, outcome: "completed" });
      expect(byId.get("rec-2")).toMatchObject({ user_id: "alice" });
      expect(await store.trail.verify("api")).toMatchObject({ ok: true, redacted: 1 });
    } finally {
      await store.close();
    }
  });

  test("an intent recovered after a crash, whose user was erased meanwhile, is recorded redacted", async () => {
    // PostgreSQL: the survivor recovers the crashed replica's calls once its lease (300 ms) ran out.
    const trail = await driver.open("crashed", { replica: { leaseMs: 300, heartbeatMs: 3_600_000 } });
    await trail.store.begin(sampleRecord(1, { user_id: "bob", outcome: null }));
    await trail.store.trail.eraseUser("bob", "cli:test");
    await trail.crash(trail.store); // no close(): the process "died"
    await Bun.sleep(400);
    const restarted = await trail.reopen();
    try {
      expect(await restarted.recover()).toMatchObject({ interrupted: 1 });
      const [record] = (await restarted.reader.records(all)).records;
      expect(record).toMatchObject({ id: "rec-1", outcome: "interrupted", user_id: null, task_context: null });
      expect(await restarted.trail.verify("api")).toMatchObject({ ok: true, redacted: 1 });
    } finally {
      await restarted.close();
    }
  });

  test("retention erases personal fields of records older than audit.retentionDays, as a chain event", async () => {
    const day = 86_400_000;
    const trail = await trailOn(driver, "retention", 6, {
      record: (i) => sampleRecord(i, { timestamp: new Date(Date.now() - (i <= 2 ? 40 : 1) * day).toISOString() }),
    });
    const store = await trail.reopen({ retentionDays: 30 });
    const retention = eventFilterSchema.parse({ kind: "retention" });
    for (let waited = 0; (await store.trail.events(retention)).events.length === 0 && waited < 3000; waited += 20) await Bun.sleep(20);
    await store.close();
    const rows = await trail.query<{ user_id: string | null; agent_id: string }>(
      "SELECT user_id, agent_id FROM audit_records ORDER BY seq",
    );
    expect(rows.map((r) => r.user_id === null)).toEqual([true, true, false, false, false, false]);
    expect(rows.every((r) => r.agent_id === "reviewer")).toBe(true);
    const again = await trail.reopen();
    try {
      expect((await again.trail.events(retention)).events.map((e) => e.details)).toEqual([
        expect.objectContaining({ records: 2, days: 30 }),
      ]);
      expect(await again.trail.verify("cli:test")).toMatchObject({ ok: true, redacted: 2 });
    } finally {
      await again.close();
    }
  });

  test("erasure finds the user as key id (a JWT's sub) and inside other records' delegation chains", async () => {
    const delegation = JSON.stringify({ act: { sub: "carol", act: { sub: "planner-agent" } } });
    const trail = await trailOn(driver, "jwt", 4, {
      record: (i) =>
        [
          sampleRecord(1, { user_id: "carol", key_id: "carol", attribution: "verified" }),
          sampleRecord(2, { user_id: null, key_id: "carol" }),
          sampleRecord(3, { user_id: "dave", delegation }),
          sampleRecord(4, { user_id: "erin", key_id: "key-9", delegation: JSON.stringify({ act: { sub: "someone-else" } }) }),
        ][i - 1]!,
    });
    const store = await trail.reopen();
    try {
      await store.trail.eraseUser("carol", "api");
      const rows = (await store.reader.records(all)).records;
      expect(JSON.stringify(rows)).not.toContain("carol");
      expect(rows.find((r) => r.id === "rec-4")).toMatchObject({ user_id: "erin", key_id: "key-9" });
      expect((await eventsOf(store))[0]!.details).toEqual({ records: 3, seqs: [[1, 3]], signature: expect.any(String) });
      expect(await store.trail.verify("api")).toMatchObject({ ok: true, redacted: 3 });
    } finally {
      await store.close();
    }
  });

  test("a call in flight whose key id names an erased user is redacted when it lands, and an event names it", async () => {
    const { store } = await driver.open("key_in_flight");
    try {
      const started = sampleRecord(1, { user_id: null, key_id: "frank", outcome: null });
      await store.begin(started);
      await store.trail.eraseUser("frank", "api");
      await store.commit({ ...started, outcome: "completed" });
      await store.flush();
      const [record] = (await store.reader.records(all)).records;
      expect(record).toMatchObject({ key_id: null, outcome: "completed" });
      expect((await eventsOf(store)).map((e) => e.details)).toContainEqual({
        records: 1,
        on_landing: true,
        seqs: [[2, 2]],
        signature: expect.any(String),
      });
      expect(await store.trail.verify("api")).toMatchObject({ ok: true, redacted: 1 });
    } finally {
      await store.close();
    }
  });
});

test("PostgreSQL: a running replica applies retention again as records age past audit.retentionDays (hourly; here every 200 ms)", async () => {
  const trail = await postgresDriver(() => pg).open("retention_timer", {
    retentionDays: 30,
    replica: { retentionEveryMs: 200 },
  });
  try {
    const ageing = Date.now() - 30 * 86_400_000 + 1500;
    await Promise.all([1, 2].map((i) => trail.store.commit(sampleRecord(i, { timestamp: new Date(ageing).toISOString() }))));
    await trail.store.commit(sampleRecord(3));
    await trail.store.flush();
    const personal = async () =>
      (await trail.query<{ user_id: string | null }>("SELECT user_id FROM audit_records ORDER BY seq")).map((r) => r.user_id !== null);
    expect(await personal()).toEqual([true, true, true]);
    for (let waited = 0; (await personal())[0] && waited < 5000; waited += 100) await Bun.sleep(100);
    expect(await personal()).toEqual([false, false, true]);
    expect(await trail.store.trail.verify("cli:test")).toMatchObject({ ok: true, redacted: 2 });
  } finally {
    await trail.store.close();
  }
});

test("PostgreSQL: a record appended while an erasure waits for the chain lock is erased too (no record slips between the erasure's read and its commit)", async () => {
  const trail = await postgresDriver(() => pg).open("erase_race");
  const store = trail.store as PgAuditStore;
  const schema = new URL(trail.logDb).searchParams.get("schema")!;
  const appender = new SQL(pgServer, { max: 1, connection: { search_path: schema } });
  try {
    let erasing: Promise<void> | undefined;
    // Another replica's append holds the chain lock while the erasure starts; its record (the
    // user's call, begun before the erasure) commits while the erasure waits.
    await appender.begin(async (tx) => {
      await lockChain(tx);
      erasing = store.trail.eraseUser("bob", "cli:test");
      await Bun.sleep(300);
      await append(tx, store.hashKey, [toRow(sampleRecord(1, { user_id: "bob" }))]);
    });
    await erasing;
    const [record] = await trail.query<{ user_id: string | null; salt: string | null }>("SELECT user_id, salt FROM audit_records");
    expect(record).toEqual({ user_id: null, salt: null });
    expect(await store.trail.verify("cli:test")).toMatchObject({ ok: true, redacted: 1 });
  } finally {
    await appender.close();
    await store.close();
  }
});
