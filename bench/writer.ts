/**
 * The SQLite audit writer's CPU per record (DESIGN §8: ≤ 15 µs at a fleet's key spread on a
 * 10,000,000-record trail): `bun bench/writer.ts [trail records, default 1,000,000] [measured, default 200,000] [one-key|fleet]`.
 *
 * For each key spread — one agent/user/task, and a fleet (200 agents, 5,000 users, 100,000 tasks,
 * as the proxy bench's "5k users" scenario) — it fills a trail of the given size through the real
 * schema and indexes (the chain columns are filler: nothing here verifies), opens the store as the
 * proxy does, writes a warm-up, then measures `measured` calls through the store's own API
 * (begin: the intent; commit: the final record) and reads the CPU time of each thread from
 * /proc/self/task: the writer (and the store's other) worker threads apart from the main thread,
 * which in the proxy is the request thread, and the runtime's own threads (JIT, garbage collection).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openAuditLog } from "../src/store/sqlite/database.ts";
import { SqliteAuditStore } from "../src/store/sqlite/store.ts";
import { advanceRollup } from "../src/store/sqlite/rollup.ts";
import { currentRecordVersion, storedRecordColumns } from "../src/trail/chain.ts";
import type { AuditRecord } from "../src/trail/record.ts";
import { toRow } from "../src/trail/row.ts";
import { threadCpuMs, type ThreadKind } from "./procs.ts";
import { record } from "./summary.ts";

type Spread = "one key" | "fleet";

function spreadRecord(i: number, n: number, now: number, spread: Spread): AuditRecord {
  const base = record(i, n, now);
  if (spread === "fleet") {
    // Random, not cyclic, keys: each insert lands at an unrelated page of each index.
    const pick = (k: number) => Math.floor(Math.random() * k);
    return { ...base, agent_id: `agent-${pick(200)}`, user_id: `user-${pick(5000)}`, task_context: `PR review #${pick(100_000)}` };
  }
  return { ...base, agent_id: "agent-1", user_id: "user-1", task_context: "PR review #1" };
}

/**
 * Fills the trail as fast as SQLite can: the rows first, with the table's secondary indexes
 * dropped, then each index built in one sorted pass (a trail grown call by call has fuller index
 * pages at first and the same ones later). Key tables that the store folds (a version that has
 * them) are filled by the store itself, in the warm-up, before anything is measured.
 */
function seed(logDb: string, n: number, now: number, spread: Spread): number {
  const log = openAuditLog(logDb);
  const db = log.db;
  const indexes = db
    .query<{ name: string; sql: string }, []>(
      "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_records' AND sql IS NOT NULL",
    )
    .all();
  for (const { name } of indexes) db.run(`DROP INDEX ${name}`);
  db.run("PRAGMA cache_size = -262144");
  const insert = db.prepare(
    `INSERT INTO audit_records (${storedRecordColumns.join(", ")}) VALUES (${storedRecordColumns.map(() => "?").join(", ")})`,
  );
  const started = performance.now();
  const filler = "ab".repeat(32);
  for (let from = 0; from < n; from += 100_000) {
    db.transaction(() => {
      for (let i = from; i < Math.min(n, from + 100_000); i++) {
        insert.run(i + 1, ...toRow(spreadRecord(i, n, now, spread)), filler, filler, filler, filler, currentRecordVersion);
      }
    })();
  }
  insert.finalize();
  for (const { sql } of indexes) db.run(sql);
  // The seeded trail is rolled up, as a running proxy's is: otherwise the writer's catch-up folds
  // (200,000 records each, one every few seconds) would land in the measurement.
  while (advanceRollup(db, 1_000_000) > 0);
  db.run("PRAGMA wal_checkpoint(TRUNCATE)");
  log.close();
  return (performance.now() - started) / 1000;
}

async function writeCalls(store: SqliteAuditStore, from: number, count: number, now: number, spread: Spread): Promise<void> {
  const inFlight = 256;
  for (let i = from; i < from + count; i += inFlight) {
    const batch = Array.from({ length: Math.min(inFlight, from + count - i) }, (_, k) => ({
      ...spreadRecord(i + k, 1, now, spread),
      id: Bun.randomUUIDv7(),
      // 5,000 calls a second, after the seeded trail (time-ordered indexes see what a proxy gives them).
      timestamp: new Date(now + (i + k) / 5).toISOString(),
    }));
    await Promise.all(batch.map((r) => store.begin({ ...r, outcome: null })));
    for (const r of batch) store.commit(r);
    // Keeps the backlog under audit.maxBacklog (begin refuses past it), as a proxy's steady load would.
    if (((i - from) / inFlight) % 8 === 7) await store.flush();
  }
  await store.flush();
}

/** Calls written before the measurement (the store's start-up work, a first fold of the seeded trail). */
const warmUp = 10_000;

export async function benchWriter(
  trail: number,
  measured: number,
  log: (line: string) => void = console.error,
  spreads: readonly Spread[] = ["one key", "fleet"],
): Promise<string> {
  const rows = [
    "| key spread | trail records | writer threads µs/record | main thread µs/record | runtime threads (JIT, GC) µs/record | records/s |",
    "|---|---|---|---|---|---|",
  ];
  for (const spread of spreads) {
    const dir = mkdtempSync(join(tmpdir(), "agent-attr-writer-"));
    try {
      const logDb = join(dir, "audit.db");
      const now = Date.now();
      log(`writer bench (${spread}): seeding ${trail.toLocaleString("en-US")} records`);
      const seeded = seed(logDb, trail, now, spread);
      log(`writer bench (${spread}): seeded in ${seeded.toFixed(1)} s; warming up`);
      const store = new SqliteAuditStore(logDb, { signingKey: join(dir, "signing-key"), onError: (m) => log(`error: ${m}`) });
      await writeCalls(store, 0, warmUp, now, spread);
      const before = threadCpuMs(process.pid)!;
      const t0 = performance.now();
      await writeCalls(store, warmUp, measured, now, spread);
      const seconds = (performance.now() - t0) / 1000;
      const after = threadCpuMs(process.pid)!;
      const perRecord = (kind: ThreadKind) => (((after[kind] - before[kind]) * 1000) / measured).toFixed(1);
      await store.close();
      rows.push(
        `| ${spread} | ${trail.toLocaleString("en-US")} | ${perRecord("workers")} | ${perRecord("main")} | ${perRecord("runtime")} | ${Math.round(measured / seconds).toLocaleString("en-US")} |`,
      );
      log(`writer bench (${spread}): ${rows.at(-1)}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return rows.join("\n");
}

if (import.meta.main) {
  const only = process.argv[4]; // "one-key" or "fleet": that spread alone
  const spreads: Spread[] = only === "fleet" ? ["fleet"] : only === "one-key" ? ["one key"] : ["one key", "fleet"];
  console.log(await benchWriter(Number(process.argv[2] ?? 1_000_000), Number(process.argv[3] ?? 200_000), console.error, spreads));
}
