/**
 * How a usage summary is read, for both drivers: which queries answer it (from the usage rollup,
 * ./rollup.ts, where it can, from the records where it must); their rows add up to the answer in
 * ./summary-answer.ts. A driver reads the rollup's cursor and runs the queries in one snapshot, so
 * the cursor cannot move in between; the answer is then always exact. Several summaries can be
 * planned together (`summariesQueries`): records they all read are then read once.
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
import { summedColumns, taskOfTotalKey, taskTotalKey, unpricedSQL, type RollupDimension } from "./rollup.ts";

/** A query with `?` placeholders (a driver numbers them if it must) and what its rows are. */
export interface SummaryQuery {
  sql: string;
  params: (string | number)[];
  /** Rollup rows key missing values by ''; record rows by null. */
  from: "records" | "rollup";
  /**
   * The query returns only the first groups in the summary's order (ties at the limit included),
   * each row also carrying the count of all groups (`group_count`; the total is read by queries of
   * its own): a summary by task over a week of a large trail has as many groups as calls, and only
   * the top few leave the database.
   */
  ranked?: boolean;
  /**
   * A row per call, not per group (several summaries' keys side by side): the driver should read
   * it in batches rather than all at once.
   */
  perCall?: boolean;
}

/** A query of several summaries (`summariesQueries`): who folds its rows, and in which column each finds its key. */
export interface PlannedQuery extends SummaryQuery {
  /** `total`: the rows add to the summary's total only (a top-N's total, read apart from its first groups). */
  for: { summary: number; key: string; total?: true }[];
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
  /**
   * The conditions that together are `column = ?` for a filter, as the driver finds it fastest,
   * each taking the value as its one parameter; default `column = ?` as it is.
   */
  equals?: (column: (typeof filterColumns)[keyof typeof filterColumns]) => string[];
  /**
   * The condition that a record's `key` (a grouping's key expression) is one of the values `set`
   * (a subquery of one column) selects, as the driver finds it fastest; default `key IN (set)`.
   */
  among?: (key: string, set: string) => string;
  /**
   * Where the driver keeps per-task totals over the whole trail (SQLite: `usage_task_totals`, up to
   * the rollup's cursor): true when a top-N by task over nothing but a time range (`filter`) should
   * read them, minus the rolled-up records outside the range — the driver's guess that those are
   * fewer than the records inside. Absent: top tasks group the range.
   */
  taskTotals?: (filter: ParsedSummaryFilter) => boolean;
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

/** Groupings whose groups are listed in key order (time), whatever the sort. */
export const timeOrdered = new Set<SummaryGrouping>(["day", "hour"]);
/** The value each `sort` orders groups by, largest first. */
export const sortValue = { cost: "cost_nano_usd", calls: "calls", input_tokens: "input_tokens", output_tokens: "output_tokens" } as const;

/** A SQL condition on audit_records and its parameter. */
type Condition = [sql: string, value: string | number];

const halfDay = 43_200_000;
const dayStart = (iso: string) => `${iso.slice(0, 10)}T00:00:00.000Z`;
const nextDay = (day: string) => new Date(Date.parse(`${day}T00:00:00.000Z`) + 86_400_000).toISOString().slice(0, 10);

/** True when the summary's groups are read from the rollup. */
function groupsFromRollup(filter: ParsedSummaryFilter, dialect: SummaryDialect): boolean {
  if (fromRecordsOnly.has(filter.by) || (tagOfGrouping(filter.by) !== null && !dialect.tagRollup)) return false;
  return rangeOnly(filter);
}
/** True when the summary filters by nothing but its time range. */
const rangeOnly = (filter: ParsedSummaryFilter) =>
  Object.keys(filter.tag ?? {}).length === 0 &&
  !(Object.keys(filterColumns) as (keyof typeof filterColumns)[]).some((f) => filter[f] !== undefined);
/** True when the summary lists only its first groups (`limit`) in the order of a value. */
const isTopN = (filter: ParsedSummaryFilter) => filter.limit !== undefined && !timeOrdered.has(filter.by) && filter.sort !== "key";

/** True when the summary needs the rollup's cursor (it reads the rollup, for its groups or for a top-N's total). */
export function usesRollup(filter: ParsedSummaryFilter, dialect: SummaryDialect): boolean {
  return groupsFromRollup(filter, dialect) || (isTopN(filter) && rangeOnly(filter));
}

/** True when a top-N by task could read the per-task totals (`SummaryDialect.taskTotals` decides if it does). */
export const mayReadTaskTotals = (filter: ParsedSummaryFilter) => filter.by === "task" && isTopN(filter) && rangeOnly(filter);

/**
 * The queries that answer several summaries over one snapshot (the dashboard's Overview): each as
 * a summary's plan (`summaryParts`) has it, except that records two or more of them read under the same
 * conditions (the partial days at a range's edges, the records past the cursor) are read once, a
 * row per call carrying every such summary's key, and each summary folds them by its own key. One
 * pass over a partial day instead of one GROUP BY per summary (each sorts the day's calls).
 */
export function summariesQueries(filters: readonly ParsedSummaryFilter[], cursor: number, dialect: SummaryDialect): PlannedQuery[] {
  const planned: PlannedQuery[] = [];
  const shared = new Map<string, { conditions: Condition[]; sign: 1 | -1; readers: Reader[] }>();
  filters.forEach((filter, summary) => {
    for (const part of summaryParts(filter, cursor, dialect)) {
      const total = part.total ? ({ total: true } as const) : {};
      if ("query" in part) {
        planned.push({ ...part.query, for: [{ summary, key: "key", ...total }] });
        continue;
      }
      const id = JSON.stringify([part.sign, part.records]);
      const reads = shared.get(id) ?? { conditions: part.records, sign: part.sign, readers: [] };
      // A total needs no key: it reads whatever key the other readers chose, or the day.
      reads.readers.push({ summary, by: part.total ? "day" : filter.by, ...total });
      shared.set(id, reads);
    }
  });
  for (const { conditions, sign, readers } of shared.values()) {
    const [only] = readers;
    if (readers.length > 1) planned.push(callsQuery(readers, conditions, dialect, sign));
    else planned.push({ ...recordsQuery(only!.by, conditions, dialect, sign), for: [readerOf(only!, "key")] });
  }
  return planned;
}

type Reader = { summary: number; by: SummaryGrouping; total?: true };
const readerOf = ({ summary, total }: Reader, key: string): PlannedQuery["for"][number] =>
  total ? { summary, key, total } : { summary, key };

/**
 * A part of a summary's plan: a query, or the records matching some conditions, grouped by the
 * summary's key; `total`: its rows make the summary's total only.
 */
type Part = ({ query: SummaryQuery } | { records: Condition[]; sign: 1 | -1 }) & { total?: true };

function summaryParts(filter: ParsedSummaryFilter, cursor: number, dialect: SummaryDialect): Part[] {
  const since = sinceOf(filter) ?? null;
  const until = filter.until ?? null;
  const range: Condition[] = [];
  if (since) range.push(["timestamp >= ?", since]);
  if (until) range.push(["timestamp <= ?", until]);
  const by = filter.by;
  if (!groupsFromRollup(filter, dialect)) {
    const filtered = (Object.keys(filterColumns) as (keyof typeof filterColumns)[]).filter((f) => filter[f] !== undefined);
    const tagged = Object.entries(filter.tag ?? {}).map(([key, value]): Condition => [`${dialect.tagValue(key)} = ?`, value]);
    // What the rollup cannot answer: read the matching records (their indexes narrow the scan).
    const equals = dialect.equals ?? ((column: string) => [`${column} = ?`]);
    const matching = filtered.flatMap((f) => equals(filterColumns[f]).map((sql): Condition => [sql, filter[f]!]));
    const conditions = [...matching, ...tagged, ...range];
    if (!isTopN(filter)) return [{ records: conditions, sign: 1 }];
    // A top-N's total is that of the calls in its range, read as a summary by day would read it
    // (the rollup where nothing but the range filters, sharing the edges other summaries read).
    // The range's start as the groups have it (`days` read once: the clock may tick in between).
    const totals = summaryParts({ ...filter, by: "day", limit: undefined, since: since ?? undefined, days: undefined }, cursor, dialect);
    const groups =
      mayReadTaskTotals(filter) && dialect.taskTotals?.(filter)
        ? topTasksFromTotals(since, until, cursor, dialect, filter)
        : topGroups(by, conditions, dialect, filter);
    return [{ query: groups }, ...totals.map((part): Part => ({ ...part, total: true }))];
  }
  // Records past the cursor are found by seq (the primary key), the edges by timestamp.
  const rolled: Condition = [dialect.unindexed("seq <= ?"), cursor];
  const parts: Part[] = [
    { records: [["seq > ?", cursor], ...range.map(([sql, value]): Condition => [dialect.unindexed(sql), value])], sign: 1 },
  ];
  const firstDay = since ? (since === dayStart(since) ? since.slice(0, 10) : nextDay(since.slice(0, 10))) : null;
  const endDay = until ? until.slice(0, 10) : null;
  if (firstDay !== null && endDay !== null && firstDay > endDay) {
    return [...parts, { records: [rolled, ...range], sign: 1 }]; // the whole range lies inside one day
  }
  // A partial day at an edge is read from the records in the range, or, when the part of that day
  // outside the range is the shorter, as the whole day from the rollup minus the records outside.
  let [fromDay, toDay] = [firstDay, endDay]; // the rollup's days: fromDay <= day < toDay
  if (since && firstDay && since !== dayStart(since)) {
    if (Date.parse(since) - Date.parse(dayStart(since)) < halfDay) {
      fromDay = since.slice(0, 10);
      parts.push({ records: [rolled, ["timestamp >= ?", dayStart(since)], ["timestamp < ?", since]], sign: -1 });
    } else parts.push({ records: [rolled, ["timestamp >= ?", since], ["timestamp < ?", `${firstDay}T00:00:00.000Z`]], sign: 1 });
  }
  if (until && endDay) {
    const dayEnd = `${nextDay(endDay)}T00:00:00.000Z`;
    if (Date.parse(dayEnd) - Date.parse(until) < halfDay) {
      toDay = nextDay(endDay);
      parts.push({ records: [rolled, ["timestamp > ?", until], ["timestamp < ?", dayEnd]], sign: -1 });
    } else parts.push({ records: [rolled, ["timestamp >= ?", `${endDay}T00:00:00.000Z`], ["timestamp <= ?", until]], sign: 1 });
  }
  parts.push({ query: rollupQuery(by, fromDay, toDay) });
  return parts;
}

const where = (conditions: Condition[]) => (conditions.length ? `WHERE ${conditions.map(([c]) => c).join(" AND ")}` : "");

/**
 * The matching calls one by one, each with its key under every reader's grouping (`key_0`,
 * `key_1`, …), their values negated for sign -1 (calls to take away from the rollup's).
 */
function callsQuery(readers: Reader[], conditions: Condition[], dialect: SummaryDialect, sign: 1 | -1): PlannedQuery {
  const keys = readers.map(({ by }, i) => `${recordKey(by, dialect)} AS key_${i}`).join(", ");
  const minus = sign < 0 ? "-" : "";
  const sql = `SELECT ${keys}, ${sign} AS calls, ${summedColumns.map((c) => `${minus}${c} AS ${c}`).join(", ")},
    ${minus}${unpricedSQL("audit_records")} AS unpriced_calls FROM audit_records ${where(conditions)}`;
  return {
    sql,
    params: conditions.map(([, v]) => v),
    from: "records",
    perCall: true,
    for: readers.map((reader, i) => readerOf(reader, `key_${i}`)),
  };
}

/** The matching records grouped by the summary's key; sign -1 negates the sums (records to take away from the rollup's). */
function recordsQuery(by: SummaryGrouping, conditions: Condition[], dialect: SummaryDialect, sign: 1 | -1 = 1): SummaryQuery {
  const minus = sign < 0 ? "-" : "";
  const sql = `SELECT ${recordKey(by, dialect)} AS key, ${minus}count(*) AS calls,
    ${summedColumns.map((c) => `${minus}sum(${c}) AS ${c}`).join(", ")}, ${minus}sum(${unpricedSQL("audit_records")}) AS unpriced_calls
    FROM audit_records ${where(conditions)} GROUP BY 1`;
  return { sql, params: conditions.map(([, v]) => v), from: "records" };
}

/**
 * Groupings with about as many groups as calls, whose top-N is read in two steps when N is at most
 * `twoStepLimit` (the second step reads the first groups' records one key at a time: for a large N
 * that is most of the range again, and one pass is cheaper).
 */
const twoStep = new Set<SummaryGrouping>(["task"]);
const twoStepLimit = 1000;

/**
 * The first `limit` groups of the records matching `conditions` in the summary's order — by the
 * sorted value, then cost, then calls — with every group tied with the last one (the caller breaks
 * ties by key as it always does), each with all its sums, and the count of all groups
 * (`group_count`). Missing sums count as 0, as they do in JS. By task (`twoStep`), two steps in
 * one statement: the groups with only the values that order them, their limit-th found with
 * ORDER BY … LIMIT (a partial sort); then the full sums of the first groups alone, their records found through the
 * key (`dialect.among`). A summary by task has about as many groups as calls, and sorting the
 * calls with every summed column is what a grouping of a month's million calls spends its time
 * on: the narrow grouping halves it (measured on 1,000,000 records). Other groupings have few
 * groups, and a large N reads most records again: those are grouped once with every sum. When the
 * calls without a key are among the first groups, the second step scans the range again for them
 * (no index holds them). The total is read apart.
 */
function topGroups(by: SummaryGrouping, conditions: Condition[], dialect: SummaryDialect, filter: ParsedSummaryFilter): SummaryQuery {
  const key = recordKey(by, dialect);
  const params = conditions.map(([, v]) => v);
  const ordered = [...new Set([sortValue[filter.sort as keyof typeof sortValue], "cost_nano_usd", "calls"])];
  const values = ordered.map((c) => `coalesce(${c}, 0)`).join(", ");
  // The limit-th group's values, and the condition a group meets when it is among the first (ties included).
  const last = `last AS (SELECT ${values} FROM g ORDER BY ${ordered.map((c) => `coalesce(${c}, 0) DESC`).join(", ")} LIMIT 1 OFFSET ?)`;
  const first = `NOT EXISTS (SELECT 1 FROM last) OR (${values}) >= (SELECT * FROM last)`;
  if (!twoStep.has(by) || filter.limit! > twoStepLimit) {
    const sql = `WITH g AS MATERIALIZED (${recordsQuery(by, conditions, dialect).sql}), ${last}
    SELECT g.*, (SELECT count(*) FROM g) AS group_count FROM g WHERE ${first}`;
    return { sql, params: [...params, filter.limit! - 1], from: "records", ranked: true };
  }
  const narrow = ordered.map((c) => (c === "calls" ? "count(*) AS calls" : `sum(${c}) AS ${c}`)).join(", ");
  const among = dialect.among ?? ((expression: string, set: string) => `${expression} IN (${set})`);
  const sums = (from: string, condition: string) => `SELECT ${key} AS key, count(*) AS calls,
    ${summedColumns.map((c) => `sum(${c}) AS ${c}`).join(", ")}, sum(${unpricedSQL("audit_records")}) AS unpriced_calls,
    (SELECT count(*) FROM g) AS group_count
    FROM ${from} WHERE ${[...conditions.map(([c]) => c), condition].join(" AND ")} GROUP BY 1`;
  // The calls without a key are read only when they are among the first groups (the empty
  // outer row set of the CROSS JOIN skips the scan; an EXISTS term would be tested per record).
  const sql = `WITH g AS MATERIALIZED (SELECT ${key} AS key, ${narrow} FROM audit_records ${where(conditions)} GROUP BY 1), ${last},
    top AS MATERIALIZED (SELECT key FROM g WHERE ${first})
    ${sums("audit_records", among(key, "SELECT key FROM top WHERE key IS NOT NULL"))}
    UNION ALL ${sums("(SELECT 1 FROM top WHERE key IS NULL LIMIT 1) AS wanted CROSS JOIN audit_records", `${key} IS NULL`)}`;
  return { sql, params: [...params, filter.limit! - 1, ...params, ...params], from: "records", ranked: true };
}

/**
 * The first `limit` tasks over a range, ties at the limit included, with all their sums and the
 * count of all tasks in the range (`group_count`), as `topGroups` answers them, from the per-task
 * totals: each task's totals minus its rolled-up calls outside the range (through the time
 * index), plus its calls past the cursor inside it (by seq). Grouping the totals and those calls
 * sorts about one row per task of the trail plus the calls outside, instead of every call inside.
 */
function topTasksFromTotals(
  since: string | null,
  until: string | null,
  cursor: number,
  dialect: SummaryDialect,
  filter: ParsedSummaryFilter,
): SummaryQuery {
  const outside = [since && "timestamp < ?", until && "timestamp > ?"].filter((c) => c) as string[];
  const inside = [since && dialect.unindexed("timestamp >= ?"), until && dialect.unindexed("timestamp <= ?")].filter((c) => c) as string[];
  const range = [since, until].filter((v) => v !== null) as string[];
  const calls = (sign: 1 | -1, conditions: string[]) => {
    const minus = sign < 0 ? "-" : "";
    return `SELECT ${taskTotalKey("audit_records")} AS key, ${sign} AS calls,
      ${summedColumns.map((c) => `${minus}coalesce(${c}, 0) AS ${c}`).join(", ")}, ${minus}${unpricedSQL("audit_records")} AS unpriced_calls
      FROM audit_records WHERE ${conditions.join(" AND ")}`;
  };
  const parts = [`SELECT key, calls, ${summedColumns.join(", ")}, unpriced_calls FROM usage_task_totals`];
  const params: (string | number)[] = [];
  if (outside.length) {
    parts.push(calls(-1, [dialect.unindexed("seq <= ?"), `(${outside.join(" OR ")})`]));
    params.push(cursor, ...range);
  }
  parts.push(calls(1, ["seq > ?", ...inside]));
  params.push(cursor, ...range);
  const ordered = [...new Set([sortValue[filter.sort as keyof typeof sortValue], "cost_nano_usd", "calls"])];
  const values = ordered.join(", ");
  const sql = `WITH g AS MATERIALIZED (SELECT key, sum(calls) AS calls, ${summedColumns.map((c) => `sum(${c}) AS ${c}`).join(", ")},
      sum(unpriced_calls) AS unpriced_calls FROM (${parts.join("\n    UNION ALL ")}) GROUP BY 1 HAVING sum(calls) > 0),
    last AS (SELECT ${values} FROM g ORDER BY ${ordered.map((c) => `${c} DESC`).join(", ")} LIMIT 1 OFFSET ?)
    SELECT ${taskOfTotalKey("key")} AS key, calls, ${summedColumns.join(", ")}, unpriced_calls, (SELECT count(*) FROM g) AS group_count
    FROM g WHERE NOT EXISTS (SELECT 1 FROM last) OR (${values}) >= (SELECT * FROM last)`;
  return { sql, params: [...params, filter.limit! - 1], from: "records", ranked: true };
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
