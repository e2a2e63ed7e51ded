/**
 * The usage rollup both drivers keep (SQLite: ./sqlite/rollup.ts, PostgreSQL: ./postgres/rollup.ts):
 * per dimension and UTC day, the calls, token sums, exact cost and unpriced calls of every record
 * up to a cursor. This file is the one list of what is rolled up — the dimensions and the summed
 * columns — in SQL both engines run and in JS over a stored row; adding a dimension is one entry
 * here (plus a migration in each driver that backfills it).
 *
 * Task contexts are not a dimension: they are free text that rarely repeats ("PR review #456"), so
 * a rollup by task would be about as large as the records and cost the writer as much again
 * (measured on SQLite: half the rollup's cost). Summaries by task read the records, or on SQLite
 * per-task totals over the whole trail (./sqlite/task-totals.ts, keyed as `taskTotalKey` says).
 */
import type { SQLValue } from "../trail/row.ts";

/** A stored record's column, for the JS side of a dimension (the writer's sums, verify). */
type Column = (name: string) => SQLValue;
const text = (value: SQLValue): string =>
  value === null ? "" : typeof value === "string" ? (value.isWellFormed() ? value : value.toWellFormed()) : String(value);

/**
 * Rollup dimensions: how each keys a record, in SQL over a row (`NEW`, `OLD`, `audit_records`, a
 * transition table) and in JS over a stored row — the two must agree (the writer's sums and verify
 * use the JS side; a test holds them to the SQL fold). A missing value is keyed ''.
 * - agent, user, model, key: the record's agent_id, user_id, model, key_id;
 * - hour: the hour of the day (`13`), so hourly series over a long range read the rollup;
 * - status: `<outcome>:<HTTP status>` (`rejected:429`, `interrupted:`), for refused and failed calls.
 */
export const rollupDimensions = {
  agent: { sql: (r: string) => `coalesce(${r}.agent_id, '')`, js: (get: Column) => text(get("agent_id")) },
  user: { sql: (r: string) => `coalesce(${r}.user_id, '')`, js: (get: Column) => text(get("user_id")) },
  model: { sql: (r: string) => `coalesce(${r}.model, '')`, js: (get: Column) => text(get("model")) },
  key: { sql: (r: string) => `coalesce(${r}.key_id, '')`, js: (get: Column) => text(get("key_id")) },
  hour: { sql: (r: string) => `substr(${r}.timestamp, 12, 2)`, js: (get: Column) => String(get("timestamp")).slice(11, 13) },
  status: {
    sql: (r: string) => `coalesce(${r}.outcome, '') || ':' || coalesce(CAST(${r}.status AS TEXT), '')`,
    js: (get: Column) => `${text(get("outcome"))}:${text(get("status"))}`,
  },
} as const;
export type RollupDimension = keyof typeof rollupDimensions;
export const rollupDimensionList = Object.entries(rollupDimensions) as [RollupDimension, (typeof rollupDimensions)[RollupDimension]][];

/** Summed columns: record column → rollup column (same names). */
export const summedColumns = [
  "input_tokens",
  "output_tokens",
  "cache_read_tokens",
  "cache_write_tokens",
  "cache_write_1h_tokens",
  "reasoning_tokens",
  "cost_nano_usd",
] as const;

/** A record is unpriced when it has usage but no cost: 1 or 0. */
export const unpricedSQL = (row: string) => `(CASE WHEN ${row}.cost_nano_usd IS NULL AND ${row}.usage_source != 'none' THEN 1 ELSE 0 END)`;

/** The UTC day of a row (`2026-11-20`). */
export const dayOf = (row: string) => `substr(${row}.timestamp, 1, 10)`;
/** The model rows also carry the provider, so summaries by provider and by day read them too. */
export const providerOf = (dim: string, row: string) => (dim === "model" ? `coalesce(${row}.provider, '')` : "''");
/** A rollup row's values: the call count, the summed columns, the unpriced calls. */
export const rollupValueColumns = ["calls", ...summedColumns, "unpriced_calls"] as const;
/** ON CONFLICT … DO UPDATE SET: adds the new values to a rollup row's (`table` qualifies the old ones where the engine needs it). */
export const accumulate = (table = "") => rollupValueColumns.map((c) => `${c} = ${table}${c} + excluded.${c}`).join(", ");

/**
 * One SELECT per dimension over `source` (rows named `r`, restricted by `where`), each row counted
 * `sign` times: the (dim, key, provider, day) groups and their values, in rollup column order.
 */
export function rollupSelect(source: string, where: string, sign: string | number = 1): string {
  return rollupDimensionList
    .map(
      ([dim, { sql }]) => `SELECT '${dim}' AS dim, ${sql("r")} AS key, ${providerOf(dim, "r")} AS provider, ${dayOf("r")} AS day,
    sum(${sign}) AS calls, ${summedColumns.map((c) => `sum(${sign} * coalesce(r.${c}, 0)) AS ${c}`).join(", ")},
    sum(${sign} * ${unpricedSQL("r")}) AS unpriced_calls
  FROM ${source} r WHERE ${where} GROUP BY 1, 2, 3, 4`,
    )
    .join("\n  UNION ALL ");
}

/** A record's key in the per-task totals: `t` + its task context, '' without one (a primary key holds no NULL). */
export const taskTotalKey = (row: string) => `coalesce('t' || ${row}.task_context, '')`;
/** A per-task totals key back as a summary's task key (null for calls without a task). */
export const taskOfTotalKey = (key: string) => `CASE WHEN ${key} = '' THEN NULL ELSE substr(${key}, 2) END`;
