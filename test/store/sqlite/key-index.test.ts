// Lookups by agent, user and task through the key tables the writer folds (src/store/sqlite/key-index.ts):
// the same answers whatever part of the trail is folded, exact after erasure, retention and
// deletion, filled by the migration for an existing trail, folded by the writer thread, and a
// fold killed half-way leaves nothing half-done.
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { join } from "node:path";
import { ChainWriter } from "../../../src/store/sqlite/chain-writer.ts";
import { openAuditLog } from "../../../src/store/sqlite/database.ts";
import { applyRetention, eraseUser } from "../../../src/store/sqlite/erase.ts";
import { sqliteExportSource } from "../../../src/store/sqlite/export-rows.ts";
import { foldKeyIndex, keyIndexCursor, keyTables, type KeyColumn } from "../../../src/store/sqlite/key-index.ts";
import { migrate } from "../../../src/store/sqlite/migrate.ts";
import { SqliteAuditStore } from "../../../src/store/sqlite/store.ts";
import { exportFilterSchema, type ExportedRow } from "../../../src/trail/export.ts";
import { recordFilterSchema, summaryFilterSchema } from "../../../src/store/filters.ts";
import type { AuditRecord } from "../../../src/trail/record.ts";
import { toRow } from "../../../src/trail/row.ts";
import { tempDir } from "../../helpers/proxy.ts";
import { sampleRecord } from "../../helpers/records.ts";

const hashKey = new Uint8Array(32).fill(7);
const day = 86_400_000;
const start = Date.parse("2026-03-01T20:00:00.000Z");

/** Records over three UTC days, keys drawn so every agent, user and task has several, some null. */
function fleetRecord(i: number): AuditRecord {
  const r = (k: number) => (i * 7919 + k * 104_729) % 97;
  return sampleRecord(i, {
    timestamp: new Date(start + Math.floor((i * 2.5 * day) / 300)).toISOString(),
    agent_id: r(1) % 11 === 0 ? null : `agent-${r(1) % 5}`,
    user_id: r(2) % 13 === 0 ? null : `user-${r(2) % 7}`,
    task_context: r(3) % 9 === 0 ? null : `task ${r(3) % 12}`,
    model: i % 2 ? "gpt-4o" : "gpt-4o-mini",
    input_tokens: i,
  });
}

function trail(n: number) {
  const log = openAuditLog(join(tempDir(), "audit.db"));
  const chain = new ChainWriter(log.db, hashKey);
  const records = Array.from({ length: n }, (_, i) => fleetRecord(i + 1));
  for (let i = 0; i < n; i += 50) chain.append(records.slice(i, i + 50).map(toRow));
  return { log, chain, records: records.map((record, i) => ({ ...record, seq: i + 1 })) };
}

const filterKey = { agent_id: "agent", user_id: "user", task_context: "task" } as const;
const values = (column: KeyColumn) => [...new Set(Array.from({ length: 300 }, (_, i) => fleetRecord(i + 1)[column]))];

/** What the lookups of one key gave: record seqs (newest first), calls by model, export count and seqs. */
interface Lookup {
  seqs: number[];
  calls: [string | null, number][];
  count: number;
  exportedSeqs: number[];
}

/** Every lookup by each agent, user and task: records (paged), a filtered summary, an export. */
async function lookups(log: ReturnType<typeof openAuditLog>, pageSize = 7): Promise<Record<string, Lookup>> {
  const out: Record<string, Lookup> = {};
  for (const column of Object.keys(keyTables) as KeyColumn[]) {
    for (const value of values(column)) {
      if (value === null) continue;
      const seqs: number[] = [];
      for (let cursor: string | null | undefined; ; ) {
        const page = await log.reader.records(recordFilterSchema.parse({ [filterKey[column]]: value, limit: pageSize, cursor }));
        seqs.push(...page.records.map((r) => r.seq));
        cursor = page.next_cursor;
        if (cursor === null) break;
      }
      const summary = await log.reader.summary(summaryFilterSchema.parse({ by: "model", [filterKey[column]]: value }));
      const exported = sqliteExportSource(log.db, exportFilterSchema.parse({ format: "json", [filterKey[column]]: value }));
      const chunks = exported.rows() as Iterator<readonly ExportedRow[]>;
      const exportedSeqs: number[] = [];
      for (let chunk = chunks.next(); !chunk.done; chunk = chunks.next()) exportedSeqs.push(...chunk.value.map((row) => row.record.seq));
      const calls = summary.groups.map((g): [string | null, number] => [g.key, g.calls]).sort();
      out[`${column}=${value}`] = { seqs, calls, count: (await exported.count?.()) ?? -1, exportedSeqs };
    }
  }
  return out;
}

/** What the lookups must give: the records themselves, filtered in JS. */
async function expected(records: AuditRecord[]): Promise<Record<string, Lookup>> {
  const out: Record<string, Lookup> = {};
  for (const column of Object.keys(keyTables) as KeyColumn[]) {
    for (const value of values(column)) {
      if (value === null) continue;
      const matching = records.filter((r) => r[column] === value);
      const byModel = new Map<string | null, number>();
      for (const r of matching) byModel.set(r.model!, (byModel.get(r.model!) ?? 0) + 1);
      out[`${column}=${value}`] = {
        seqs: matching.map((r) => r.seq).reverse(),
        calls: [...byModel].sort(),
        count: matching.length,
        exportedSeqs: matching.map((r) => r.seq),
      };
    }
  }
  return out;
}

const entries = (db: Database, table: string) => db.query<{ n: number }, []>(`SELECT count(*) AS n FROM ${table}`).get()!.n;

test("lookups by agent, user and task give the records themselves whether none, some or all of the trail is folded", async () => {
  const { log, records } = trail(300);
  const want = await expected(records);
  expect(keyIndexCursor(log.db)).toBe(0); // nothing folded: every lookup reads the records
  expect(await lookups(log)).toEqual(want);
  expect(foldKeyIndex(log.db, 130)).toBe(130);
  expect(await lookups(log)).toEqual(want);
  expect(foldKeyIndex(log.db)).toBe(170);
  expect(foldKeyIndex(log.db)).toBe(0);
  expect(keyIndexCursor(log.db)).toBe(300);
  // The folded entries are the records' keys, one each, and the task's under its UTC day.
  for (const [column, table] of Object.entries(keyTables)) {
    expect(entries(log.db, table)).toBe(records.filter((r) => r[column as KeyColumn] !== null).length);
  }
  const days = new Set(records.filter((r) => r.task_context !== null).map((r) => r.timestamp.slice(0, 10)));
  expect(days.size).toBe(4);
  expect(log.db.query("SELECT count(DISTINCT day) AS n FROM audit_task_index").get()).toEqual({ n: days.size });
  expect(await lookups(log)).toEqual(want);
  log.close();
});

/** The first `limit` groups by `by` of the records `keep` selects, ranked as the API ranks them, with the count and calls of all. */
function topOf(records: AuditRecord[], by: "task_context" | "agent_id", limit: number, keep: (r: AuditRecord) => boolean) {
  const groups = new Map<string | null, { key: string | null; calls: number; cost_nano_usd: number; input_tokens: number }>();
  for (const r of records.filter(keep)) {
    const g = groups.get(r[by]) ?? { key: r[by], calls: 0, cost_nano_usd: 0, input_tokens: 0 };
    g.calls++;
    g.cost_nano_usd += r.cost_nano_usd ?? 0;
    g.input_tokens += r.input_tokens ?? 0;
    groups.set(r[by], g);
  }
  const ranked = [...groups.values()].sort(
    (a, b) => b.cost_nano_usd - a.cost_nano_usd || b.calls - a.calls || String(a.key).localeCompare(String(b.key)),
  );
  return { groups: ranked.slice(0, limit), group_count: groups.size, calls: records.filter(keep).length };
}

test("top-N summaries find their first groups' records through the key tables: the same answer whether none, some or all of the trail is folded", async () => {
  const { log, records } = trail(300);
  const since = records[40]!.timestamp;
  const asked = async () => {
    const out = [];
    for (const limit of [1, 3, 5]) {
      for (const filter of [
        { by: "task" },
        { by: "task", since },
        { by: "agent", user: "user-2" },
        { by: "task", agent: "agent-1", since },
      ]) {
        const answer = await log.reader.summary(summaryFilterSchema.parse({ ...filter, limit }));
        out.push({
          groups: answer.groups.map(({ key, calls, cost_nano_usd, input_tokens }) => ({ key, calls, cost_nano_usd, input_tokens })),
          group_count: answer.group_count,
          calls: answer.total.calls,
        });
      }
    }
    return out;
  };
  const want = [1, 3, 5].flatMap((limit) => [
    topOf(records, "task_context", limit, () => true),
    topOf(records, "task_context", limit, (r) => r.timestamp >= since),
    topOf(records, "agent_id", limit, (r) => r.user_id === "user-2"),
    topOf(records, "task_context", limit, (r) => r.agent_id === "agent-1" && r.timestamp >= since),
  ]);
  // Calls without a task are a group, and the largest: the first group is found apart from the key table.
  expect(want[0]!.groups[0]!.key).toBeNull();
  expect(await asked()).toEqual(want);
  foldKeyIndex(log.db, 130);
  expect(await asked()).toEqual(want);
  foldKeyIndex(log.db);
  expect(await asked()).toEqual(want);
  log.close();
});

test("folded entries follow erasure, retention and deletion: no erased user or task stays in a key table", async () => {
  const { log, chain, records } = trail(300);
  foldKeyIndex(log.db);
  const erased = records.filter((r) => r.user_id === "user-3");
  expect(eraseUser(chain, hashKey, "user-3", "test")).toBe(erased.length);
  const left = records.map((r) => (r.user_id === "user-3" ? { ...r, user_id: null, task_context: null } : r));
  expect(log.db.query("SELECT count(*) AS n FROM audit_user_index WHERE user_id = 'user-3'").get()).toEqual({ n: 0 });
  const taskEntries = log.db
    .query<{ seq: number }, []>("SELECT seq FROM audit_task_index")
    .all()
    .map((e) => e.seq);
  expect(taskEntries.filter((seq) => erased.some((r) => r.seq === seq))).toEqual([]);
  expect(await lookups(log)).toEqual(await expected(left));

  // A deleted record (tampering, which verify reports) leaves the key tables too.
  log.db.run("DELETE FROM audit_records WHERE seq = 10");
  expect(await lookups(log)).toEqual(await expected(left.filter((r) => r.seq !== 10)));

  // Retention clears every personal field of old records: their users and tasks leave the key tables.
  const now = Date.parse(records.at(-1)!.timestamp);
  applyRetention(chain, 1, now);
  const cutoff = new Date(now - day).toISOString();
  const kept = left.filter((r) => r.seq !== 10).map((r) => (r.timestamp < cutoff ? { ...r, user_id: null, task_context: null } : r));
  expect(kept.filter((r) => r.user_id === null).length).toBeGreaterThan(150);
  expect(entries(log.db, "audit_user_index")).toBe(kept.filter((r) => r.user_id !== null).length);
  expect(entries(log.db, "audit_task_index")).toBe(kept.filter((r) => r.task_context !== null).length);
  expect(entries(log.db, "audit_agent_index")).toBe(kept.filter((r) => r.agent_id !== null).length);
  expect(await lookups(log)).toEqual(await expected(kept));
  log.close();
});

test("the migration fills the key tables from a trail written before them", async () => {
  const { log, records } = trail(120);
  // Back to the layout before migration 0009's second half: records only, nothing folded.
  for (const sql of [
    "DROP TRIGGER audit_records_key_index_update",
    "DROP TRIGGER audit_records_key_index_delete",
    ...Object.values(keyTables).map((table) => `DROP TABLE ${table}`),
    "DROP TABLE audit_key_index_state",
    "DELETE FROM __agent_attr_migrations WHERE tag = '0009_key_index'",
  ]) {
    log.db.run(sql);
  }
  migrate(log.db);
  expect(keyIndexCursor(log.db)).toBe(120);
  for (const [column, table] of Object.entries(keyTables)) {
    expect(entries(log.db, table)).toBe(records.filter((r) => r[column as KeyColumn] !== null).length);
  }
  expect(await lookups(log)).toEqual(await expected(records));
  log.close();
});

test("the writer thread folds once it is idle, and at close", async () => {
  const logDb = join(tempDir(), "audit.db");
  const store = new SqliteAuditStore(logDb);
  for (let i = 1; i <= 40; i++) store.commit(fleetRecord(i));
  await store.flush();
  const reader = new Database(logDb, { readonly: true });
  const cursor = () => keyIndexCursor(reader);
  for (const deadline = Date.now() + 10_000; cursor() < 40 && Date.now() < deadline; ) await Bun.sleep(100);
  expect(cursor()).toBe(40);
  store.commit(fleetRecord(41));
  await store.close();
  expect(cursor()).toBe(41);
  expect(entries(reader, "audit_user_index")).toBe([...Array(41)].filter((_, i) => fleetRecord(i + 1).user_id !== null).length);
  reader.close();
});

test("kill -9 during a fold: the key tables hold whole folds only, and lookups stay exact", async () => {
  const dir = tempDir();
  const logDb = join(dir, "audit.db");
  const n = 30_000;
  const log = openAuditLog(logDb);
  const chain = new ChainWriter(log.db, hashKey);
  const records = Array.from({ length: n }, (_, i) => fleetRecord(i + 1));
  for (let i = 0; i < n; i += 5_000) chain.append(records.slice(i, i + 5_000).map(toRow));
  log.close();
  // A child folds 2,000 records per transaction until it is killed.
  const script = join(dir, "fold.ts");
  await Bun.write(
    script,
    `import { openDatabase } from ${JSON.stringify(join(import.meta.dir, "../../../src/store/sqlite/database.ts"))};
import { foldKeyIndex } from ${JSON.stringify(join(import.meta.dir, "../../../src/store/sqlite/key-index.ts"))};
const db = openDatabase(${JSON.stringify(logDb)});
while (foldKeyIndex(db, 2_000) > 0);
console.log("done");`,
  );
  const child = Bun.spawn(["bun", script], { stdout: "pipe" });
  const watch = new Database(logDb, { readonly: true });
  for (const deadline = Date.now() + 20_000; keyIndexCursor(watch) < 4_000 && Date.now() < deadline; ) await Bun.sleep(5);
  child.kill("SIGKILL");
  await child.exited;
  watch.close();
  const after = openAuditLog(logDb);
  const cursor = keyIndexCursor(after.db);
  expect(cursor).toBeGreaterThan(0);
  expect(cursor).toBeLessThan(n); // killed half-way
  expect(cursor % 2_000).toBe(0);
  // Entries for exactly the folded records, no more.
  for (const [column, table] of Object.entries(keyTables)) {
    const folded = records.slice(0, cursor).filter((r) => r[column as KeyColumn] !== null).length;
    expect(entries(after.db, table)).toBe(folded);
  }
  const seqd = records.map((record, i) => ({ ...record, seq: i + 1 }));
  expect(await lookups(after, 1000)).toEqual(await expected(seqd));
  while (foldKeyIndex(after.db) > 0);
  expect(await lookups(after, 1000)).toEqual(await expected(seqd));
  after.close();
}, 60_000);
