/**
 * How a usage summary is read, for both drivers: which queries answer it (from the usage rollup,
 * ./rollup.ts, where it can, from the records where it must), and how their rows add up to the
 * answer. A driver reads the rollup's cursor and runs the queries in one snapshot, so the cursor
 * cannot move in between; the answer is then always exact.
 *
 * A summary over a time range reads whole UTC days from the rollup and only the partial days at its
 * edges, and the records not yet rolled up, from the records themselves, so it stays fast on
 * millions of records. Filters beyond the time range (e.g. one agent's usage by model) and
 * summaries by task read the matching records through their indexes instead. Money is summed as
 * integers (nano-dollars) either way.
 *
 * Tags: where the driver rolls them up (SQLite: dim `tag:KEY`, one row per value), a summary by
 * `tag:KEY` reads those rows like any dimension, its `null` group (calls without the tag) being the
 * total's usage minus the tagged; elsewhere (PostgreSQL) it reads the records. A summary filtered
 * by tags reads the matching records, a tag's value taken from the clear `tags` or, for a key
 * declared personal, from `personal_tags`.
 */
import { sinceOf, tagOfGrouping, type ParsedSummaryFilter, type SummaryGrouping } from "./filters.ts";
import type { Summary, SummaryRow } from "./results.ts";
import { rollupValueColumns, summedColumns, unpricedSQL, type RollupDimension } from "./rollup.ts";

/** A query with `?` placeholders (a driver numbers them if it must) and what its rows are. */
export interface SummaryQuery {
  sql: string;
  params: (string | number)[];
  /** Rollup rows key missing values by ''; record rows by null. */
  from: "records" | "rollup";
  /**
   * The query returns only the first groups in the summary's order (ties at the limit included),
   * each row also carrying the count and the sums of all groups (`group_count`, `total_<column>`):
   * a summary by task over a week of a large trail has as many groups as calls, and only the top
   * few leave the database.
   */
  ranked?: boolean;
}

export interface SummaryDialect {
  /** A condition the engine should not answer from an index (SQLite: a unary `+`), or as it is. */
  unindexed: (condition: string) => string;
  /** The status column as text in the record key (`status::text`, `status`). */
  statusText: string;
  /** A tag's value in a record (clear, else personal); keys are a-z, 0-9 and '-', safe as literals. */
  tagValue: (key: string) => string;
  /** True when the driver's rollup has the tag dimensions (`tag:KEY`). */
  tagRollup: boolean;
  /** The condition `column = ?` for a filter, as the driver finds it fastest (one parameter); default as it is. */
  equals?: (column: (typeof filterColumns)[keyof typeof filterColumns]) => string;
}

type FixedGrouping = Exclude<SummaryGrouping, `tag:${string}`>;
/** Not rolled up, so summaries by them read the records: task contexts, purposes, lawful bases, error types. */
type FromRecordsOnly = "task" | "purpose" | "basis" | "error";
const fromRecordsOnly = new Set<SummaryGrouping>(["task", "purpose", "basis", "error"]);
type RolledUp = Exclude<FixedGrouping, FromRecordsOnly>;

/** The record column (or expression) a grouping keys by, and the rollup rows that serve it. */
const recordKey = (by: SummaryGrouping, dialect: SummaryDialect): string => {
  const tag = tagOfGrouping(by);
  return tag === null ? fixedRecordKey(by as FixedGrouping, dialect) : dialect.tagValue(tag);
};
const fixedRecordKey = (by: FixedGrouping, dialect: SummaryDialect): string =>
  ({
    agent: "agent_id",
    user: "user_id",
    task: "task_context",
    model: "model",
    provider: "provider",
    key: "key_id",
    day: "substr(timestamp, 1, 10)",
    hour: "substr(timestamp, 1, 13)",
    status: `coalesce(outcome, '') || ':' || coalesce(${dialect.statusText}, '')`,
    purpose: "purpose",
    basis: "lawful_basis",
    error: "error_type",
  })[by];
const rollupSource: Record<RolledUp, { dim: RollupDimension; key: string }> = {
  agent: { dim: "agent", key: "key" },
  user: { dim: "user", key: "key" },
  model: { dim: "model", key: "key" },
  provider: { dim: "model", key: "provider" },
  key: { dim: "key", key: "key" },
  day: { dim: "model", key: "day" },
  hour: { dim: "hour", key: "day || 'T' || key" },
  status: { dim: "status", key: "key" },
};

const filterColumns = {
  agent: "agent_id",
  user: "user_id",
  task: "task_context",
  model: "model",
  provider: "provider",
  outcome: "outcome",
  consent: "consent_id",
  purpose: "purpose",
} as const;

/** A SQL condition on audit_records and its parameter. */
type Condition = [sql: string, value: string | number];

const dayStart = (iso: string) => `${iso.slice(0, 10)}T00:00:00.000Z`;
const nextDay = (day: string) => new Date(Date.parse(`${day}T00:00:00.000Z`) + 86_400_000).toISOString().slice(0, 10);

/** True when the summary needs the rollup's cursor (it reads the rollup). */
export function usesRollup(filter: ParsedSummaryFilter, dialect: SummaryDialect): boolean {
  if (fromRecordsOnly.has(filter.by) || (tagOfGrouping(filter.by) !== null && !dialect.tagRollup)) return false;
  if (Object.keys(filter.tag ?? {}).length > 0) return false;
  return !(Object.keys(filterColumns) as (keyof typeof filterColumns)[]).some((f) => filter[f] !== undefined);
}

/** The queries that answer `filter` when every record with seq ≤ `cursor` is rolled up. */
export function summaryQueries(filter: ParsedSummaryFilter, cursor: number, dialect: SummaryDialect): SummaryQuery[] {
  const since = sinceOf(filter) ?? null;
  const until = filter.until ?? null;
  const range: Condition[] = [];
  if (since) range.push(["timestamp >= ?", since]);
  if (until) range.push(["timestamp <= ?", until]);
  const by = filter.by;
  const records = (conditions: Condition[]) => recordsQuery(by, conditions, dialect);
  if (!usesRollup(filter, dialect)) {
    const filtered = (Object.keys(filterColumns) as (keyof typeof filterColumns)[]).filter((f) => filter[f] !== undefined);
    const tagged = Object.entries(filter.tag ?? {}).map(([key, value]): Condition => [`${dialect.tagValue(key)} = ?`, value]);
    // What the rollup cannot answer: read the matching records (their indexes narrow the scan).
    const equals = dialect.equals ?? ((column: string) => `${column} = ?`);
    const query = records([...filtered.map((f): Condition => [equals(filterColumns[f]), filter[f]!]), ...tagged, ...range]);
    return [filter.limit !== undefined && !timeOrdered.has(by) && filter.sort !== "key" ? ranked(query, filter) : query];
  }
  // Records past the cursor are found by seq (the primary key), the edges by timestamp.
  const rolled: Condition = [dialect.unindexed("seq <= ?"), cursor];
  const queries = [records([["seq > ?", cursor], ...range.map(([sql, value]): Condition => [dialect.unindexed(sql), value])])];
  const firstDay = since ? (since === dayStart(since) ? since.slice(0, 10) : nextDay(since.slice(0, 10))) : null;
  const endDay = until ? until.slice(0, 10) : null;
  if (firstDay !== null && endDay !== null && firstDay > endDay) {
    return [...queries, records([rolled, ...range])]; // the whole range lies inside one day
  }
  queries.push(rollupQuery(by, firstDay, endDay));
  if (since && firstDay && since !== dayStart(since)) {
    queries.push(records([rolled, ["timestamp >= ?", since], ["timestamp < ?", `${firstDay}T00:00:00.000Z`]]));
  }
  if (until && endDay) queries.push(records([rolled, ["timestamp >= ?", `${endDay}T00:00:00.000Z`], ["timestamp <= ?", until]]));
  return queries;
}

function recordsQuery(by: SummaryGrouping, conditions: Condition[], dialect: SummaryDialect): SummaryQuery {
  const sql = `SELECT ${recordKey(by, dialect)} AS key, count(*) AS calls,
    ${summedColumns.map((c) => `sum(${c}) AS ${c}`).join(", ")}, sum(${unpricedSQL("audit_records")}) AS unpriced_calls
    FROM audit_records ${conditions.length ? `WHERE ${conditions.map(([c]) => c).join(" AND ")}` : ""} GROUP BY 1`;
  return { sql, params: conditions.map(([, v]) => v), from: "records" };
}

/**
 * The first `limit` groups of `query` in the summary's order: by the sorted value, then cost, then
 * calls (RANK, so groups tied with the last one come too; the caller breaks ties by key as it
 * always does), plus the count and sums of every group. Missing sums count as 0, as they do in JS.
 */
function ranked(query: SummaryQuery, filter: ParsedSummaryFilter): SummaryQuery {
  const order = [sortValue[filter.sort as keyof typeof sortValue], "cost_nano_usd", "calls"]
    .map((c) => `coalesce(g.${c}, 0) DESC`)
    .join(", ");
  const totals = rollupValueColumns.map((c) => `sum(g.${c}) OVER () AS total_${c}`).join(", ");
  const sql = `SELECT * FROM (SELECT g.*, RANK() OVER (ORDER BY ${order}) AS place, count(*) OVER () AS group_count, ${totals}
    FROM (${query.sql}) g) ranked WHERE place <= ?`;
  return { ...query, sql, params: [...query.params, filter.limit!], ranked: true };
}

function rollupQuery(by: SummaryGrouping, firstDay: string | null, endDay: string | null): SummaryQuery {
  const days: string[] = [];
  const params: string[] = [];
  if (firstDay) days.push("day >= ?"), params.push(firstDay);
  if (endDay) days.push("day < ?"), params.push(endDay);
  const tag = tagOfGrouping(by);
  if (tag !== null) {
    // The tag's rows hold only the calls that carry it; the '' (null) group is every call (the model
    // rows) minus those.
    const dim = `tag:${tag}`;
    const within = days.map((d) => ` AND ${d}`).join("");
    const signed = (c: string) => `sum(CASE WHEN dim = 'model' THEN ${c} ELSE -${c} END) AS ${c}`;
    const sql = `SELECT key, sum(calls) AS calls, ${summedColumns.map((c) => `sum(${c}) AS ${c}`).join(", ")},
      sum(unpriced_calls) AS unpriced_calls FROM usage_rollup WHERE dim = ?${within} GROUP BY 1
    UNION ALL
    SELECT '' AS key, ${signed("calls")}, ${summedColumns.map(signed).join(", ")}, ${signed("unpriced_calls")}
      FROM usage_rollup WHERE dim IN ('model', ?)${within}`;
    return { sql, params: [dim, ...params, dim, ...params], from: "rollup" };
  }
  const { dim, key } = rollupSource[by as RolledUp];
  const sql = `SELECT ${key} AS key, sum(calls) AS calls, ${summedColumns.map((c) => `sum(${c}) AS ${c}`).join(", ")},
    sum(unpriced_calls) AS unpriced_calls FROM usage_rollup WHERE ${["dim = ?", ...days].join(" AND ")} GROUP BY 1`;
  return { sql, params: [dim, ...params], from: "rollup" };
}

type Sums = Omit<SummaryRow, "key" | "cost_usd">;
const zeroSums = (): Sums => Object.fromEntries(rollupValueColumns.map((field) => [field, 0])) as Sums;
const timeOrdered = new Set<SummaryGrouping>(["day", "hour"]);
const sortValue = { cost: "cost_nano_usd", calls: "calls", input_tokens: "input_tokens", output_tokens: "output_tokens" } as const;
type QueryRow = Record<string, unknown>;

/** The answer from the queries' rows (numbers may arrive as strings or bigints: PostgreSQL's sums). */
export function summaryFromRows(filter: ParsedSummaryFilter, results: { query: SummaryQuery; rows: readonly QueryRow[] }[]): Summary {
  const [only] = results;
  if (results.length === 1 && only!.query.ranked) return rankedSummary(filter, only!.rows);
  const groups = new Map<string | null, Sums>();
  for (const { query, rows } of results) {
    for (const row of rows) {
      const raw = row.key as string | null;
      const key = query.from === "rollup" && raw === "" ? null : raw;
      let sums = groups.get(key);
      if (!sums) groups.set(key, (sums = zeroSums()));
      for (const field of rollupValueColumns) sums[field] += Number(row[field] ?? 0);
    }
  }
  const rows = [...groups].map(([key, sums]) => ({ key, ...withUSD(sums) })).filter((row) => row.calls > 0);
  sortGroups(filter, rows);
  const total = zeroSums();
  for (const row of rows) for (const field of rollupValueColumns) total[field] += row[field];
  return answer(filter, rows, rows.length, total);
}

/** The summary from a ranked query's rows: its first groups, and every group's count and sums. */
function rankedSummary(filter: ParsedSummaryFilter, ranked: readonly QueryRow[]): Summary {
  const rows = ranked.map((row) => {
    const sums = zeroSums();
    for (const field of rollupValueColumns) sums[field] = Number(row[field] ?? 0);
    return { key: row.key as string | null, ...withUSD(sums) };
  });
  sortGroups(filter, rows);
  const total = zeroSums();
  for (const field of rollupValueColumns) total[field] = Number(ranked[0]?.[`total_${field}`] ?? 0);
  return answer(filter, rows, Number(ranked[0]?.group_count ?? 0), total);
}

function sortGroups(filter: ParsedSummaryFilter, rows: SummaryRow[]): void {
  const byKey = (a: SummaryRow, b: SummaryRow) => String(a.key).localeCompare(String(b.key));
  if (timeOrdered.has(filter.by) || filter.sort === "key") rows.sort(byKey);
  else {
    const field = sortValue[filter.sort];
    rows.sort((a, b) => b[field] - a[field] || b.cost_nano_usd - a.cost_nano_usd || b.calls - a.calls || byKey(a, b));
  }
}

function answer(filter: ParsedSummaryFilter, rows: SummaryRow[], groupCount: number, total: Sums): Summary {
  return {
    by: filter.by,
    since: sinceOf(filter) ?? null,
    until: filter.until ?? null,
    groups: filter.limit === undefined ? rows : rows.slice(0, filter.limit),
    group_count: groupCount,
    total: { key: null, ...withUSD(total) },
  };
}

function withUSD(sums: Sums): Omit<SummaryRow, "key"> {
  const { calls, cost_nano_usd, ...tokens } = sums;
  return { calls, ...tokens, cost_usd: cost_nano_usd / 1e9, cost_nano_usd };
}
