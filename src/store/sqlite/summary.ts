/**
 * Usage and cost summaries (`GET /audit/summary`, `agent-attr audit summary`) on SQLite: the
 * queries ../summary-plan.ts plans (the usage rollup, ./rollup.ts, where it can; the records where
 * it must), run in one read transaction so the rollup's cursor cannot move in between.
 */
import type { Database } from "bun:sqlite";
import type { ParsedSummaryFilter } from "../filters.ts";
import type { Summary } from "../results.ts";
import { summaryFromRows, summaryQueries, usesRollup, type SummaryDialect } from "../summary-plan.ts";
import { rollupCursor } from "./rollup.ts";
import { isKeyColumn, keyLookupSQL } from "./key-index.ts";

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
  equals: (column) => (isKeyColumn(column) ? keyLookupSQL(column) : `${column} = ?`),
};

export function summarize(db: Database, filter: ParsedSummaryFilter): Summary {
  const results = db.transaction(() => {
    const cursor = usesRollup(filter, sqlite) ? rollupCursor(db) : 0;
    return summaryQueries(filter, cursor, sqlite).map((query) => ({
      query,
      rows: db.query<Record<string, unknown>, (string | number)[]>(query.sql).all(...query.params),
    }));
  })();
  return summaryFromRows(filter, results);
}
