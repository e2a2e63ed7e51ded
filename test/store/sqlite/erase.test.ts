// Erasure (GDPR Art. 17) and retention: personal fields go, the chain still verifies and counts
// the redacted records, the erasure is a chain event, and calls in flight at the time are covered.
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { join } from "node:path";
import { openAuditLog } from "../../../src/store/sqlite/database.ts";
import { SqliteAuditStore } from "../../../src/store/sqlite/store.ts";
import { summaryFilterSchema } from "../../../src/store/filters.ts";
import { tempDir } from "../../helpers/proxy.ts";
import { sampleRecord, trailWith } from "../../helpers/records.ts";

const events = (logDb: string) => {
  const db = new Database(logDb, { readonly: true });
  try {
    return db
      .query<{ kind: string; actor: string; details: string }, []>("SELECT kind, actor, details FROM audit_events ORDER BY seq")
      .all()
      .map((e) => ({ kind: e.kind, actor: e.actor, details: JSON.parse(e.details) as Record<string, unknown> }));
  } finally {
    db.close();
  }
};

test("erasing a user: no record returns them, the chain verifies, redactions are counted, the event has the count", async () => {
  const logDb = await trailWith(9); // users user-0, user-1, user-2, three records each
  const store = new SqliteAuditStore(logDb);
  await store.trail.eraseUser("user-1", "cli:test");
  expect((await store.reader.records({ user: "user-1", limit: 100 })).records).toEqual([]);
  const all = (await store.reader.records({ limit: 100 })).records;
  const erased = all.filter((r) => ["rec-1", "rec-4", "rec-7"].includes(r.id));
  expect(erased.map((r) => [r.user_id, r.task_context, r.session_id, r.prompt_hash, r.response_hash])).toEqual(
    Array.from({ length: 3 }, () => [null, null, null, null, null]),
  );
  // What is not personal stays: the agent, the model, the tokens.
  expect(erased.every((r) => r.agent_id === "reviewer" && r.model === "gpt-4o" && r.output_tokens === 5)).toBe(true);
  expect(all.filter((r) => r.user_id === "user-2")).toHaveLength(3);
  // Summaries (the usage rollup) no longer know the user either.
  const byUser = await store.reader.summary(summaryFilterSchema.parse({ by: "user" }));
  expect(byUser.groups.map((g) => g.key).sort()).toEqual([null, "user-0", "user-2"]);
  const report = await store.trail.verify("cli:test");
  expect(report).toMatchObject({ ok: true, records: 9, redacted: 3, events: 1 });
  expect(events(logDb).slice(0, 1)).toEqual([
    {
      kind: "erasure",
      actor: "cli:test",
      details: {
        records: 3,
        seqs: [
          [1, 1],
          [4, 4],
          [7, 7],
        ],
      },
    },
  ]);
  expect(JSON.stringify(events(logDb))).not.toContain("user-1");
  await store.close();
});

test("erasing twice, or a user who never called, is harmless: the chain verifies, nothing else changes", async () => {
  const logDb = await trailWith(3);
  const store = new SqliteAuditStore(logDb);
  await store.trail.eraseUser("user-1", "api");
  await store.trail.eraseUser("user-1", "api");
  await store.trail.eraseUser("nobody-ever", "api");
  expect(await store.trail.verify("api")).toMatchObject({ ok: true, records: 3, redacted: 1 });
  expect(events(logDb).map((e) => e.details.records)).toEqual([1, 0, 0, undefined]);
  await store.close();
});

test("a call in flight while its user is erased is redacted when its final record lands", async () => {
  const logDb = join(tempDir(), "audit.db");
  const store = new SqliteAuditStore(logDb);
  const started = sampleRecord(1, { user_id: "alice", outcome: null });
  await store.begin(started);
  await store.trail.eraseUser("alice", "api");
  store.commit({ ...started, outcome: "completed" });
  // A call that starts after the erasure is a new call, recorded in full.
  await Bun.sleep(2);
  store.commit(sampleRecord(2, { user_id: "alice", timestamp: new Date().toISOString() }));
  await store.flush();
  const byId = new Map((await store.reader.records({ limit: 10 })).records.map((r) => [r.id, r]));
  expect(byId.get("rec-1")).toMatchObject({ user_id: null, task_context: null, outcome: "completed" });
  expect(byId.get("rec-2")).toMatchObject({ user_id: "alice" });
  expect(await store.trail.verify("api")).toMatchObject({ ok: true, redacted: 1 });
  await store.close();
});

test("an intent recovered after a crash, whose user was erased meanwhile, is recorded redacted", async () => {
  const logDb = join(tempDir(), "audit.db");
  const crashed = new SqliteAuditStore(logDb);
  await crashed.begin(sampleRecord(1, { user_id: "bob", outcome: null }));
  await crashed.trail.eraseUser("bob", "cli:test"); // no close(): the process "died"
  const restarted = new SqliteAuditStore(logDb);
  expect(restarted.recoverInterrupted()).toBe(1);
  const [record] = (await restarted.reader.records({ limit: 10 })).records;
  expect(record).toMatchObject({ id: "rec-1", outcome: "interrupted", user_id: null, task_context: null });
  expect(await restarted.trail.verify("api")).toMatchObject({ ok: true, redacted: 1 });
  await restarted.close();
});

test("retention erases personal fields of records older than audit.retentionDays, as a chain event", async () => {
  const day = 86_400_000;
  const logDb = await trailWith(6, {
    record: (i) => sampleRecord(i, { timestamp: new Date(Date.now() - (i <= 2 ? 40 : 1) * day).toISOString() }),
  });
  const store = new SqliteAuditStore(logDb, { retentionDays: 30 });
  await store.flush();
  for (let waited = 0; events(logDb).length === 0 && waited < 3000; waited += 20) await Bun.sleep(20);
  await store.close();
  const log = openAuditLog(logDb);
  const rows = log.db
    .query<{ id: string; user_id: string | null; agent_id: string }, []>("SELECT id, user_id, agent_id FROM audit_records ORDER BY seq")
    .all();
  log.close();
  expect(rows.map((r) => r.user_id === null)).toEqual([true, true, false, false, false, false]);
  expect(rows.every((r) => r.agent_id === "reviewer")).toBe(true);
  const retention = events(logDb).find((e) => e.kind === "retention");
  expect(retention?.details).toMatchObject({ records: 2, days: 30 });
  const again = new SqliteAuditStore(logDb);
  expect(await again.trail.verify("cli:test")).toMatchObject({ ok: true, redacted: 2 });
  await again.close();
});

test("erasure finds the user as key id (a JWT's sub) and inside other records' delegation chains", async () => {
  const delegation = JSON.stringify({ act: { sub: "carol", act: { sub: "planner-agent" } } });
  const logDb = await trailWith(4, {
    record: (i) =>
      [
        sampleRecord(1, { user_id: "carol", key_id: "carol", attribution: "verified" }),
        sampleRecord(2, { user_id: null, key_id: "carol" }),
        sampleRecord(3, { user_id: "dave", delegation }),
        sampleRecord(4, { user_id: "erin", key_id: "key-9", delegation: JSON.stringify({ act: { sub: "someone-else" } }) }),
      ][i - 1]!,
  });
  const store = new SqliteAuditStore(logDb);
  await store.trail.eraseUser("carol", "api");
  const rows = (await store.reader.records({ limit: 10 })).records;
  expect(JSON.stringify(rows)).not.toContain("carol");
  expect(rows.find((r) => r.id === "rec-4")).toMatchObject({ user_id: "erin", key_id: "key-9" });
  expect(events(logDb)[0]!.details).toEqual({ records: 3, seqs: [[1, 3]] });
  expect(await store.trail.verify("api")).toMatchObject({ ok: true, redacted: 3 });
  await store.close();
});

test("a call in flight whose key id names an erased user is redacted when it lands, and an event names it", async () => {
  const logDb = join(tempDir(), "audit.db");
  const store = new SqliteAuditStore(logDb);
  const started = sampleRecord(1, { user_id: null, key_id: "frank", outcome: null });
  await store.begin(started);
  await store.trail.eraseUser("frank", "api");
  store.commit({ ...started, outcome: "completed" });
  await store.flush();
  const [record] = (await store.reader.records({ limit: 10 })).records;
  expect(record).toMatchObject({ key_id: null, outcome: "completed" });
  expect(events(logDb).map((e) => e.details)).toContainEqual({ records: 1, on_landing: true, seqs: [[2, 2]] });
  expect(await store.trail.verify("api")).toMatchObject({ ok: true, redacted: 1 });
  await store.close();
});
