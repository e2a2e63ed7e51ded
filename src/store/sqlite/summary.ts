/**
 * Usage and cost summaries (`GET /audit/summary`, `agent-attr audit summary`): calls, tokens by
 * kind, exact cost and unpriced calls per agent, user, task, model, provider or day.
 *
 * A summary over a time range reads whole UTC days from the usage rollup (./rollup.ts) and only
 * the partial days at its edges, and the records not yet rolled up, from the records themselves,
 * so it stays fast on millions of records and is always exact. Filters
 * beyond the time range (e.g. one agent's usage by model) read the matching records through their
 * indexes instead. Money is summed as integers (nano-dollars) either way.
 *
 * Tags are rolled up per key and value (dim `tag:KEY`, ./rollup.ts): a summary by `tag:KEY` reads
 * them like the other dimensions, its `null` group (calls without the tag) being the total's usage
 * minus the tagged. A summary filtered by tags reads the matching records, taking a tag from the
 * clear `tags` or, when the key is declared personal, from `personal_tags`.
 */
import type { Database } from "bun:sqlite";
import { sinceOf, tagOfGrouping, type ParsedSummaryFilter, type SummaryGrouping } from "../filters.ts";
import type { Summary, SummaryRow } from "../results.ts";
import { rollupCursor, rollupValueColumns, summedColumns, tagDim, unpricedSQL, type RollupDimension } from "./rollup.ts";

type Sums = Omit<SummaryRow, "key" | "cost_usd">;
const zeroSums = (): Sums => Object.fromEntries(rollupValueColumns.map((field) => [field, 0])) as Sums;

/** The record column (or expression) a grouping keys by, and the rollup rows that serve it. */
type FixedGrouping = Exclude<SummaryGrouping, `tag:${string}`>;
const recordKeys: Record<FixedGrouping, string> = {
  agent: "agent_id",
  user: "user_id",
  task: "task_context",
  model: "model",
  provider: "provider",
  key: "key_id",
  day: "substr(timestamp, 1, 10)",
  hour: "substr(timestamp, 1, 13)",
  status: "coalesce(outcome, '') || ':' || coalesce(status, '')",
  purpose: "purpose",
  basis: "lawful_basis",
  error: "error_type",
};
/** A tag's value in a record: clear, else personal (keys are a-z, 0-9 and '-', safe in a JSON path literal). */
export const tagValueSQL = (key: string, row = "audit_records") =>
  `coalesce(json_extract(${row}.tags, '$."${key}"'), json_extract(${row}.personal_tags, '$."${key}"'))`;
const recordKey = (by: SummaryGrouping): string => {
  const tag = tagOfGrouping(by);
  return tag === null ? recordKeys[by as FixedGrouping] : tagValueSQL(tag);
};
/** Not rolled up (see ./rollup.ts), so summaries by them read the records: task contexts, purposes, lawful bases, error types. */
type FromRecordsOnly = "task" | "purpose" | "basis" | "error";
const fromRecordsOnly = new Set<SummaryGrouping>(["task", "purpose", "basis", "error"]);
type RolledUp = Exclude<SummaryGrouping, FromRecordsOnly>;
const rollupSource: Record<Exclude<FixedGrouping, FromRecordsOnly>, { dim: RollupDimension; key: string }> = {
  agent: { dim: "agent", key: "key" },
  user: { dim: "user", key: "key" },
  model: { dim: "model", key: "key" },
  provider: { dim: "model", key: "provider" },
  key: { dim: "key", key: "key" },
  day: { dim: "model", key: "day" },
  hour: { dim: "hour", key: "day || 'T' || key" },
  status: { dim: "status", key: "key" },
};

const timeOrdered = new Set<SummaryGrouping>(["day", "hour"]);
const sortValue = { cost: "cost_nano_usd", calls: "calls", input_tokens: "input_tokens", output_tokens: "output_tokens" } as const;

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

const dayStart = (iso: string) => `${iso.slice(0, 10)}T00:00:00.000Z`;
const nextDay = (day: string) => new Date(Date.parse(`${day}T00:00:00.000Z`) + 86_400_000).toISOString().slice(0, 10);

export function summarize(db: Database, filter: ParsedSummaryFilter): Summary {
  const since = sinceOf(filter) ?? null;
  const until = filter.until ?? null;
  const groups = new Map<string | null, Sums>();
  const add = (key: string | null, row: Record<string, number | bigint | null>, sign: 1 | -1 = 1) => {
    let sums = groups.get(key);
    if (!sums) groups.set(key, (sums = zeroSums()));
    for (const field of rollupValueColumns) sums[field] += sign * Number(row[field] ?? 0);
  };

  const filtered = (Object.keys(filterColumns) as (keyof typeof filterColumns)[]).filter((f) => filter[f] !== undefined);
  const range: Condition[] = [];
  if (since) range.push(["timestamp >= ?", since]);
  if (until) range.push(["timestamp <= ?", until]);
  const by = filter.by;
  const tagged = Object.entries(filter.tag ?? {}).map(([key, value]): Condition => [`${tagValueSQL(key)} = ?`, value]);
  if (filtered.length > 0 || tagged.length > 0 || fromRecordsOnly.has(by)) {
    // What the rollup cannot answer: read the matching records (their indexes narrow the scan).
    fromRecords(db, by, [...filtered.map((f): Condition => [`${filterColumns[f]} = ?`, filter[f]!]), ...tagged, ...range], add);
  } else {
    const rolled = by as RolledUp;
    db.transaction(() => fromRollupAndTail(db, rolled, since, until, range, add))();
  }

  const rows = [...groups].map(([key, sums]) => ({ key, ...withUSD(sums) })).filter((row) => row.calls > 0);
  const byKey = (a: SummaryRow, b: SummaryRow) => String(a.key).localeCompare(String(b.key));
  if (timeOrdered.has(by) || filter.sort === "key") rows.sort(byKey);
  else {
    const field = sortValue[filter.sort];
    rows.sort((a, b) => b[field] - a[field] || b.cost_nano_usd - a.cost_nano_usd || b.calls - a.calls || byKey(a, b));
  }
  const total = zeroSums();
  for (const row of rows) for (const field of rollupValueColumns) total[field] += row[field];
  const shown = filter.limit === undefined ? rows : rows.slice(0, filter.limit);
  return { by: filter.by, since, until, groups: shown, group_count: rows.length, total: { key: null, ...withUSD(total) } };
}

function withUSD(sums: Sums): Omit<SummaryRow, "key"> {
  const { calls, cost_nano_usd, ...tokens } = sums;
  return { calls, ...tokens, cost_usd: cost_nano_usd / 1e9, cost_nano_usd };
}

type Add = (key: string | null, row: Record<string, number | bigint | null>, sign?: 1 | -1) => void;

/** A SQL condition on audit_records and its parameter. */
type Condition = [sql: string, value: string | number];

/**
 * Records up to the rollup cursor: whole days [firstDay, endDay) from the rollup, the partial days
 * at the range's edges from the records; records past the cursor from the records. All in one read
 * transaction, so the cursor cannot move in between.
 */
function fromRollupAndTail(db: Database, by: RolledUp, since: string | null, until: string | null, range: Condition[], add: Add): void {
  // The unary `+` keeps SQLite from using an index for that term: the tail is found by seq (the
  // primary key), the edges by timestamp.
  const cursor = rollupCursor(db);
  const rolled: Condition = ["+seq <= ?", cursor];
  fromRecords(db, by, [["seq > ?", cursor], ...range.map(([sql, value]): Condition => [`+${sql}`, value])], add);
  const firstDay = since ? (since === dayStart(since) ? since.slice(0, 10) : nextDay(since.slice(0, 10))) : null;
  const endDay = until ? until.slice(0, 10) : null;
  if (firstDay !== null && endDay !== null && firstDay > endDay) {
    fromRecords(db, by, [rolled, ...range], add); // the whole range lies inside one day
    return;
  }
  fromRollup(db, by, firstDay, endDay, add);
  if (since && firstDay && since !== dayStart(since)) {
    fromRecords(db, by, [rolled, ["timestamp >= ?", since], ["timestamp < ?", `${firstDay}T00:00:00.000Z`]], add);
  }
  if (until && endDay) fromRecords(db, by, [rolled, ["timestamp >= ?", `${endDay}T00:00:00.000Z`], ["timestamp <= ?", until]], add);
}

function fromRecords(db: Database, by: SummaryGrouping, conditions: Condition[], add: Add): void {
  const sql = `SELECT ${recordKey(by)} AS key, count(*) AS calls,
    ${summedColumns.map((c) => `sum(${c}) AS ${c}`).join(", ")}, sum(${unpricedSQL("audit_records")}) AS unpriced_calls
    FROM audit_records ${conditions.length ? `WHERE ${conditions.map(([c]) => c).join(" AND ")}` : ""} GROUP BY 1`;
  for (const row of db.query<Record<string, string | number | null>, (string | number)[]>(sql).all(...conditions.map(([, v]) => v))) {
    add(row.key as string | null, row as Record<string, number | null>);
  }
}

function fromRollup(db: Database, by: RolledUp, firstDay: string | null, endDay: string | null, add: Add): void {
  const read = (dim: string, key: string, each: (key: string | null, row: Record<string, number | null>) => void) => {
    const conditions = ["dim = ?"];
    const params: string[] = [dim];
    if (firstDay) conditions.push("day >= ?"), params.push(firstDay);
    if (endDay) conditions.push("day < ?"), params.push(endDay);
    const sql = `SELECT ${key} AS key, sum(calls) AS calls, ${summedColumns.map((c) => `sum(${c}) AS ${c}`).join(", ")},
      sum(unpriced_calls) AS unpriced_calls FROM usage_rollup WHERE ${conditions.join(" AND ")} GROUP BY 1`;
    for (const row of db.query<Record<string, string | number | null>, string[]>(sql).all(...params)) {
      // The rollup keys calls without an agent/user/task/model/provider by ''.
      each(row.key === "" ? null : (row.key as string), row as Record<string, number | null>);
    }
  };
  const tag = tagOfGrouping(by);
  if (tag === null) return read(rollupSource[by as keyof typeof rollupSource].dim, rollupSource[by as keyof typeof rollupSource].key, add);
  // A tag's rows hold only the calls that carry it: the rest is the total (every call has a model row) minus them.
  read(tagDim(tag), "key", (key, row) => {
    add(key, row);
    add(null, row, -1);
  });
  read("model", "''", (_, row) => add(null, row));
}
