/**
 * Usage and cost summaries (`GET /audit/summary`, `agent-attr audit summary`, the dashboard's
 * Overview) on SQLite: the queries ../summary-plan.ts plans (the usage rollup, ./rollup.ts, where it
 * can; the records where it must), run in one read transaction so the rollup's cursor cannot move
 * in between, their rows folded into each summary's answer as they are read.
 */
import type { Database } from "bun:sqlite";
import type { ParsedSummaryFilter } from "../filters.ts";
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

/** Several summaries from one snapshot; the records they share are read once. */
export function summarize(db: Database, filters: readonly ParsedSummaryFilter[]): Summary[] {
  return db.transaction(() => {
    const cursor = filters.some((filter) => usesRollup(filter, sqlite)) ? rollupCursor(db) : 0;
    const folds = filters.map((filter) => new SummaryFold(filter));
    for (const query of summariesQueries(filters, cursor, sqlite)) {
      foldRows(folds, query, db.query<Record<string, unknown>, (string | number)[]>(query.sql).iterate(...query.params));
    }
    return folds.map((fold) => fold.summary());
  })();
}
