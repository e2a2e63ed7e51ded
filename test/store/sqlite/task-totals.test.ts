/**
 * The per-task totals (src/store/sqlite/task-totals.ts): top tasks over a range read from them
 * equal the records' own summary whatever the cursor, after erasures and deletions of rolled-up
 * records, and on a trail that had records before the totals existed (the migration's backfill).
 */
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import type { Database } from "bun:sqlite";
import { summaryFilterSchema } from "../../../src/store/filters.ts";
import { summariesQueries } from "../../../src/store/summary-plan.ts";
import { ChainWriter } from "../../../src/store/sqlite/chain-writer.ts";
import { openAuditLog } from "../../../src/store/sqlite/database.ts";
import { advanceRollup, rollupValueColumns } from "../../../src/store/sqlite/rollup.ts";
import { verifyChain } from "../../../src/store/sqlite/verify.ts";
import { summarize, taskTotalsCheaper } from "../../../src/store/sqlite/summary.ts";
import { toRow } from "../../../src/trail/row.ts";
import type { AuditRecord } from "../../../src/trail/record.ts";
import { tempDir } from "../../helpers/proxy.ts";
import { at, bruteForce, record } from "../../helpers/summary-trail.ts";

const opened: { close(): void }[] = [];
afterEach(() => {
  for (const log of opened.splice(0)) log.close();
});

/** 220 records over 10 days; 40 tasks with costs that tie, and calls without a task. */
const written: AuditRecord[] = Array.from({ length: 220 }, (_, i) => {
  const r = record(i + 1);
  return { ...r, task_context: i % 9 === 4 ? null : `task ${(i * 7) % 40}` };
});

function trail(rolledUp: number): Database {
  const log = openAuditLog(join(tempDir(), "audit.db"));
  opened.push(log);
  new ChainWriter(log.db, new Uint8Array(32).fill(7)).append(written.map((r) => toRow(r)));
  advanceRollup(log.db, rolledUp);
  return log.db;
}

const summary = (filter: object) => summaryFilterSchema.parse(filter);
/** What the records alone answer (a summary of every group reads them), cut to the first `limit`. */
function expectTopTasksExact(db: Database, records: AuditRecord[], range: { since?: string; until?: string }) {
  for (const sort of ["cost", "calls"] as const) {
    const [whole] = summarize(db, [summary({ ...range, by: "task", sort })]);
    const inRange = records.filter((r) => (!range.since || r.timestamp >= range.since) && (!range.until || r.timestamp <= range.until));
    const expected = bruteForce(inRange, "task");
    expect(whole!.groups.map((g) => [g.key, g.calls, g.input_tokens, g.cost_nano_usd, g.unpriced_calls]).sort()).toEqual(
      [...expected].map(([key, g]) => [key, g.calls, g.input_tokens, g.cost_nano_usd, g.unpriced_calls]).sort(),
    );
    for (const limit of [1, 2, 3, 5, 8, 1000]) {
      const [top] = summarize(db, [summary({ ...range, by: "task", sort, limit })]);
      expect(top!.groups).toEqual(whole!.groups.slice(0, limit));
      expect(top!.group_count).toBe(whole!.group_count);
      expect(top!.total).toEqual(whole!.total);
    }
  }
}

const wide = [{}, { since: at(9.6) }, { since: at(9.9), until: at(0.2) }, { until: at(0.1) }];

test("top tasks over most of the trail read the totals, and equal the records' summary whatever the cursor", () => {
  for (const rolledUp of [0, 1, 97, 219, 220]) {
    const db = trail(rolledUp);
    for (const range of wide) {
      const filter = summary({ ...range, by: "task", limit: 3 });
      expect(taskTotalsCheaper(db, filter)).toBe(true);
      expectTopTasksExact(db, written, range);
    }
    // A short range groups its own records instead; the answer is the same either way.
    expect(taskTotalsCheaper(db, summary({ since: at(2), by: "task", limit: 3 }))).toBe(false);
    expectTopTasksExact(db, written, { since: at(2) });
  }
});

test("the plan reads the totals only when the driver says so, and only for a top-N by task over a range", () => {
  const dialect = { unindexed: (c: string) => c, statusText: "status", tagValue: (key: string) => key, tagRollup: true };
  const reads = (filter: object, taskTotals: boolean) =>
    summariesQueries([summary(filter)], 100, { ...dialect, taskTotals: () => taskTotals }).some((q) => q.sql.includes("usage_task_totals"));
  expect(reads({ by: "task", limit: 5, days: 30 }, true)).toBe(true);
  expect(reads({ by: "task", limit: 5, days: 30 }, false)).toBe(false);
  expect(reads({ by: "task", days: 30 }, true)).toBe(false); // every group: not a top-N
  expect(reads({ by: "task", limit: 5, days: 30, agent: "agent-1" }, true)).toBe(false); // filtered beyond the range
  expect(reads({ by: "agent", limit: 5, days: 30 }, true)).toBe(false);
});

test("erasures and deletions of rolled-up records keep the totals exact (triggers)", () => {
  const db = trail(180);
  // An erasure clears the task of some calls (rolled up and not); retention deletes the oldest.
  db.run("UPDATE audit_records SET task_context = NULL, cost_nano_usd = cost_nano_usd WHERE task_context IN ('task 7', 'task 21')");
  db.run("UPDATE audit_records SET input_tokens = 1 WHERE seq % 13 = 0");
  db.run("DELETE FROM audit_records WHERE seq <= 30");
  const stored = db.query<{ seq: number; task_context: string | null; input_tokens: number | null }, []>(
    "SELECT seq, task_context, input_tokens FROM audit_records",
  );
  const after = stored.all().map((row) => ({ ...written[row.seq - 1]!, task_context: row.task_context, input_tokens: row.input_tokens }));
  for (const range of [...wide, { since: at(2) }]) expectTopTasksExact(db, after, range);
  const totals = db.query("SELECT key, calls, input_tokens, cost_nano_usd FROM usage_task_totals ORDER BY key").all();
  const recounted = db
    .query(
      `SELECT coalesce('t' || task_context, '') AS key, count(*) AS calls, coalesce(sum(input_tokens), 0) AS input_tokens,
        coalesce(sum(cost_nano_usd), 0) AS cost_nano_usd FROM audit_records WHERE seq <= 180 GROUP BY 1 ORDER BY 1`,
    )
    .all();
  expect(totals).toEqual(recounted);
  expect(totals.some((row) => (row as { key: string }).key === "ttask 7")).toBe(false);
});

test("a trail from before the totals gets them at its first start: every rolled-up record, folded once", () => {
  const path = join(tempDir(), "audit.db");
  const log = openAuditLog(path);
  new ChainWriter(log.db, new Uint8Array(32).fill(7)).append(written.map((r) => toRow(r)));
  advanceRollup(log.db, 150);
  // As the previous version left it: no totals, no triggers, the migration not applied.
  log.db.run("DROP TRIGGER audit_records_task_totals_update");
  log.db.run("DROP TRIGGER audit_records_task_totals_delete");
  log.db.run("DROP TABLE usage_task_totals");
  log.db.run("DELETE FROM __agent_attr_migrations WHERE tag = 'usage_task_totals'");
  log.close();
  const again = openAuditLog(path);
  opened.push(again);
  expect(again.db.query("SELECT sum(calls) AS calls FROM usage_task_totals").get()).toEqual({ calls: 150 });
  advanceRollup(again.db);
  expect(again.db.query("SELECT sum(calls) AS calls FROM usage_task_totals").get()).toEqual({ calls: 220 });
  for (const range of wide) expectTopTasksExact(again.db, written, range);
});

test("verify holds the per-task totals to the records: an edited, removed or added totals row is a rollup_mismatch", () => {
  const check = (db: Database) => verifyChain(db, null);
  for (const edit of [
    "UPDATE usage_task_totals SET cost_nano_usd = cost_nano_usd + 1 WHERE key = (SELECT min(key) FROM usage_task_totals WHERE key <> '')",
    "DELETE FROM usage_task_totals WHERE key = (SELECT max(key) FROM usage_task_totals)",
    `INSERT INTO usage_task_totals SELECT 'tinvented', ${rollupValueColumns.join(", ")} FROM usage_task_totals LIMIT 1`,
  ]) {
    const db = trail(150);
    expect(check(db).failure).toBeNull();
    db.run(edit);
    expect(check(db).failure).toMatchObject({ reason: "rollup_mismatch", seq: 150 });
  }
});
