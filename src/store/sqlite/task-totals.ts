/**
 * Per-task totals over the whole trail, so a top-N by task over a range that holds most of the
 * trail (the dashboard's 30-day Overview on a month of records) reads about one row per task
 * instead of grouping every call of the range.
 *
 * `usage_task_totals` holds, per task context, the calls, token sums, exact cost and unpriced
 * calls of every record up to the usage rollup's cursor (`usage_rollup_state.seq`): it is folded
 * in the same transaction as the rollup (`advanceRollup`), and SQLite triggers follow changes to
 * rolled-up records (an erasure clearing a task, retention, a deletion) in the same transaction,
 * so it is exact whatever the cursor. Keys: `t` + the task context, '' for calls without one
 * (`taskTotalKey`: a primary key holds no NULL).
 *
 * A summary then reads a range's sums per task as the totals minus the rolled-up records outside
 * the range, plus the records past the cursor inside it (../summary-plan.ts): cheaper than
 * grouping the range when the records outside it are fewer than those inside (the SQLite driver
 * estimates both by seq, ./summary.ts). Not a daily rollup: tasks rarely repeat within a day, so
 * one by day would be as large as the records (see ../rollup.ts).
 */
import type { Database } from "bun:sqlite";
import { accumulate, rollupValueColumns, summedColumns, taskTotalKey, unpricedSQL } from "../rollup.ts";

const rolledUp = "(SELECT seq FROM usage_rollup_state WHERE id = 1)";
const columns = rollupValueColumns.join(", ");

/** Adds the records `where` selects (no alias) to the totals, grouped by task. */
export const taskTotalsFoldSQL = (where: string) => `INSERT INTO usage_task_totals (key, ${columns})
  SELECT ${taskTotalKey("audit_records")}, count(*), ${summedColumns.map((c) => `coalesce(sum(${c}), 0)`).join(", ")},
    sum(${unpricedSQL("audit_records")})
  FROM audit_records WHERE ${where} GROUP BY 1
  ON CONFLICT (key) DO UPDATE SET ${accumulate()}`;

/** Adds (sign 1) or removes (sign -1) one record's contribution (trigger bodies). */
const applySQL = (row: "NEW" | "OLD", sign: 1 | -1) => `INSERT INTO usage_task_totals (key, ${columns})
    VALUES (${taskTotalKey(row)}, ${sign}, ${summedColumns.map((c) => `${sign} * coalesce(${row}.${c}, 0)`).join(", ")}, ${sign} * ${unpricedSQL(row)})
    ON CONFLICT (key) DO UPDATE SET ${accumulate()};`;

/** The migration: the table, the records already rolled up folded in once, and the triggers. */
export const taskTotalsMigrationSQL = `
CREATE TABLE usage_task_totals (
  key TEXT NOT NULL PRIMARY KEY,
  ${rollupValueColumns.map((c) => `${c} INTEGER NOT NULL`).join(",\n  ")}
) WITHOUT ROWID;
--> statement-breakpoint
${taskTotalsFoldSQL(`seq <= ${rolledUp}`)};
--> statement-breakpoint
CREATE TRIGGER audit_records_task_totals_update AFTER UPDATE OF task_context, usage_source, ${summedColumns.join(", ")} ON audit_records
WHEN OLD.seq <= ${rolledUp} BEGIN
  ${applySQL("OLD", -1)}
  ${applySQL("NEW", 1)}
  DELETE FROM usage_task_totals WHERE key = ${taskTotalKey("OLD")} AND calls = 0;
END;
--> statement-breakpoint
CREATE TRIGGER audit_records_task_totals_delete AFTER DELETE ON audit_records
WHEN OLD.seq <= ${rolledUp} BEGIN
  ${applySQL("OLD", -1)}
  DELETE FROM usage_task_totals WHERE key = ${taskTotalKey("OLD")} AND calls = 0;
END;`;

/**
 * The first difference between the stored totals and `recomputed` (per totals key, the values of
 * `rollupValueColumns`, from the records up to the rollup's cursor), or null: verify's check, as a
 * summary reads the table and it is not hashed. The message never names the task (it may be personal).
 */
export function taskTotalsMismatch(db: Database, cursor: number, recomputed: ReadonlyMap<string, number[]>): string | null {
  const seen = new Set<string>();
  const stored = db.query<Record<string, string | number>, []>(`SELECT key, ${columns} FROM usage_task_totals`);
  const at = `the per-task totals (up to seq ${cursor})`;
  for (const row of stored.iterate()) {
    const key = String(row.key);
    seen.add(key);
    const values = recomputed.get(key);
    if (!values) return `${at} hold ${row.calls} call(s) of a task no record up to that seq has`;
    const column = rollupValueColumns.findIndex((c, i) => Number(row[c]) !== values[i]);
    if (column !== -1)
      return `${at}: a task's ${rollupValueColumns[column]} is ${row[rollupValueColumns[column]!]} there, ${values[column]} in the records`;
  }
  for (const [key, values] of recomputed) {
    if (!seen.has(key) && values[0] !== 0) return `${at} lack a task's ${values[0]} call(s) in the records`;
  }
  return null;
}
