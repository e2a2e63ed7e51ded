/**
 * Usage and cost summaries (`GET /audit/summary`, `agent-attr audit summary`, the dashboard's
 * Overview) on SQLite: the queries ../summary-plan.ts plans (the usage rollup, ./rollup.ts, where it
 * can; the records where it must), run in one read transaction so the rollup's cursor cannot move
 * in between, their rows folded into each summary's answer as they are read.
 */
import type { Database } from "bun:sqlite";
import { sinceOf, type ParsedSummaryFilter } from "../filters.ts";
import type { Summary } from "../results.ts";
import { foldRows, SummaryFold } from "../summary-answer.ts";
import { summariesQueries, usesRollup, type SummaryDialect } from "../summary-plan.ts";
import { rollupCursor } from "./rollup.ts";
import { isKeyColumn, keyAmongSQL, keyLookupSQL } from "./key-index.ts";

/** A tag's value in a record: clear, else personal (keys are a-z, 0-9 and '-', safe in a JSON path literal). */
export const tagValueSQL = (key: string, row = "audit_records") =>
  `coalesce(json_extract(${row}.tags, '$."${key}"'), json_extract(${row}.personal_tags, '$."${key}"'))`;

// The unary `+` keeps SQLite from using an index for that term.
const sqlite: SummaryDialect = {
  unindexed: (condition) => `+${condition}`,
  statusText: "status",
  tagValue: (key) => tagValueSQL(key),
  tagRollup: true,
  // Agents, users and tasks are found through the key tables (./key-index.ts).
  equals: (column) => (isKeyColumn(column) ? keyLookupSQL(column) : [`${column} = ?`]),
  among: (key, set) => (isKeyColumn(key) ? keyAmongSQL(key, set) : `${key} IN (${set})`),
};

/**
 * True when a top-N by task over `filter`'s range reads fewer rows from the per-task totals
 * (./task-totals.ts: a row per task of the trail, minus the records outside the range) than by
 * grouping the range's records. Both counts are guessed from seq, in one seek of the time index per
 * end of the range: records are appended about in time order. A wrong guess costs time, never exactness.
 */
export function taskTotalsCheaper(db: Database, filter: ParsedSummaryFilter): boolean {
  const since = sinceOf(filter);
  const until = filter.until;
  if (!since && !until) return true;
  const seqs = db
    .query<{ first: number | null; last: number | null }, []>(
      // Apart: SQLite answers a lone min() or max() from the key, the two in one SELECT by a full scan.
      "SELECT (SELECT min(seq) FROM audit_records) AS first, (SELECT max(seq) FROM audit_records) AS last",
    )
    .get();
  if (seqs?.first == null || seqs.last == null) return false;
  const seqAt = (sql: string, value: string | undefined, otherwise: number) =>
    value === undefined ? otherwise : (db.query<{ seq: number }, [string]>(sql).get(value)?.seq ?? null);
  // The ORDER BY makes SQLite walk the time index from the range's end.
  const from = seqAt("SELECT seq FROM audit_records WHERE timestamp >= ? ORDER BY timestamp LIMIT 1", since, seqs.first);
  const to = seqAt("SELECT seq FROM audit_records WHERE timestamp <= ? ORDER BY timestamp DESC LIMIT 1", until, seqs.last);
  if (from === null || to === null || to < from) return false; // nothing inside: grouping it is free
  const outside = from - seqs.first + (seqs.last - to);
  if (outside >= to - from) return false;
  // Counted last: a scan of the totals (a few ms per 100,000 tasks).
  const tasks = db.query<{ n: number }, []>("SELECT count(*) AS n FROM usage_task_totals").get()?.n ?? 0;
  return tasks + outside < to - from;
}

/** Several summaries from one snapshot; the records they share are read once. */
export function summarize(db: Database, filters: readonly ParsedSummaryFilter[]): Summary[] {
  return db.transaction(() => {
    const cursor = filters.some((filter) => usesRollup(filter, sqlite)) ? rollupCursor(db) : 0;
    const folds = filters.map((filter) => new SummaryFold(filter));
    const dialect: SummaryDialect = { ...sqlite, taskTotals: (filter) => taskTotalsCheaper(db, filter) };
    for (const query of summariesQueries(filters, cursor, dialect)) {
      foldRows(folds, query, db.query<Record<string, unknown>, (string | number)[]>(query.sql).iterate(...query.params));
    }
    return folds.map((fold) => fold.summary());
  })();
}
