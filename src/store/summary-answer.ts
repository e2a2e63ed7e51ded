/**
 * A summary's answer from the rows of the queries ./summary-plan.ts planned for it, folded one row
 * at a time (a driver may stream them): rollup days, record edges and records past the cursor add
 * up per key; a ranked query's rows are its first groups with the count of all, and its total
 * comes from rows read for the total alone. Numbers may arrive as strings or bigints (PostgreSQL's sums).
 */
import { sinceOf, type ParsedSummaryFilter } from "./filters.ts";
import type { Summary, SummaryRow } from "./results.ts";
import { rollupValueColumns } from "./rollup.ts";
import { sortValue, timeOrdered, type PlannedQuery, type SummaryQuery } from "./summary-plan.ts";

type Sums = Omit<SummaryRow, "key" | "cost_usd">;
type QueryRow = Record<string, unknown>;
const zeroSums = (): Sums => Object.fromEntries(rollupValueColumns.map((field) => [field, 0])) as Sums;

/** Folds one summary's rows as they come; `summary()` is the answer. */
export class SummaryFold {
  /** Per key, the sums in `rollupValueColumns` order. */
  private readonly groups = new Map<string | null, number[]>();
  private ranked: QueryRow[] | null = null;
  /** The sums of the rows read for the total alone (a top-N's), in `rollupValueColumns` order. */
  private total: number[] | null = null;

  constructor(private readonly filter: ParsedSummaryFilter) {}

  /** Adds the values (`rowValues`) of a row of `query` whose key for this summary is `raw` (`total`: to the total only). */
  add(query: SummaryQuery, row: QueryRow, raw: unknown, values: readonly number[], total = false): void {
    if (total) {
      const sums = (this.total ??= rollupValueColumns.map(() => 0));
      for (let i = 0; i < sums.length; i++) sums[i]! += values[i]!;
      return;
    }
    if (query.ranked) {
      (this.ranked ??= []).push(row);
      return;
    }
    const key = query.from === "rollup" && raw === "" ? null : (raw as string | null);
    const sums = this.groups.get(key);
    if (!sums) this.groups.set(key, [...values]);
    else for (let i = 0; i < sums.length; i++) sums[i]! += values[i]!;
  }

  summary(): Summary {
    if (this.ranked || this.total) return rankedSummary(this.filter, this.ranked ?? [], this.total);
    const rows = [...this.groups]
      .map(([key, sums]) => ({ key, ...withUSD(Object.fromEntries(rollupValueColumns.map((c, i) => [c, sums[i]!])) as Sums) }))
      .filter((row) => row.calls > 0);
    sortGroups(this.filter, rows);
    const total = zeroSums();
    for (const row of rows) for (const field of rollupValueColumns) total[field] += row[field];
    return answer(this.filter, rows, rows.length, total);
  }
}

/** A row's values in `rollupValueColumns` order. */
const rowValues = (row: QueryRow): number[] => rollupValueColumns.map((c) => Number(row[c] ?? 0));

/** Folds `rows` of `query` into the summaries (`folds`, by index) it answers, each by its own key column. */
export function foldRows(folds: readonly SummaryFold[], query: PlannedQuery, rows: Iterable<QueryRow>): void {
  for (const row of rows) {
    const values = rowValues(row);
    for (const { summary, key, total } of query.for) folds[summary]!.add(query, row, row[key], values, total);
  }
}

/** The summary from a ranked query's rows (its first groups, and the count of all groups) and the total's sums. */
function rankedSummary(filter: ParsedSummaryFilter, ranked: readonly QueryRow[], sums: readonly number[] | null): Summary {
  const rows = ranked.map((row) => {
    const sums = zeroSums();
    for (const field of rollupValueColumns) sums[field] = Number(row[field] ?? 0);
    return { key: row.key as string | null, ...withUSD(sums) };
  });
  sortGroups(filter, rows);
  const total = zeroSums();
  for (const [i, field] of rollupValueColumns.entries()) total[field] = sums?.[i] ?? 0;
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
