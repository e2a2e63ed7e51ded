/**
 * Queries and summaries on PostgreSQL. Summaries are one GROUP BY over the matching records (no
 * rollup table: see the README for what that costs at a million records); money is summed as
 * bigint nano-dollars, exactly. Tag filters use the GIN index on `tags::jsonb` (containment);
 * a personal tag (`personal_tags`) is matched too, without an index.
 */
import type { SQL } from "bun";
import type { AuditReader } from "../contract.ts";
import { sinceOf, tagOfGrouping, type ParsedRecordFilter, type ParsedSummaryFilter, type SummaryGrouping } from "../filters.ts";
import type { RecordPage, Summary, SummaryRow } from "../results.ts";
import type { AuditRecord } from "../../trail/record.ts";
import { recordSelect, toRecord } from "./rows.ts";

const summed = [
  "input_tokens",
  "output_tokens",
  "cache_read_tokens",
  "cache_write_tokens",
  "cache_write_1h_tokens",
  "reasoning_tokens",
  "cost_nano_usd",
] as const;
/** A tag's value in a record: clear, else personal (keys are a-z, 0-9 and '-': safe as a literal). */
const tagValue = (key: string) => `coalesce(tags::jsonb ->> '${key}', personal_tags::jsonb ->> '${key}')`;
const groupKeys: Record<Exclude<SummaryGrouping, `tag:${string}`>, string> = {
  agent: "agent_id",
  user: "user_id",
  task: "task_context",
  model: "model",
  provider: "provider",
  key: "key_id",
  day: "substr(timestamp, 1, 10)",
  hour: "substr(timestamp, 1, 13)",
  status: "coalesce(outcome, '') || ':' || coalesce(status::text, '')",
  purpose: "purpose",
  basis: "lawful_basis",
  error: "error_type",
};
const groupKey = (by: SummaryGrouping): string => {
  const tag = tagOfGrouping(by);
  return tag === null ? groupKeys[by as keyof typeof groupKeys] : tagValue(tag);
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
const sortValue = { cost: "cost_nano_usd", calls: "calls", input_tokens: "input_tokens", output_tokens: "output_tokens" } as const;

/** WHERE conditions and their parameters ($1…) for the filter fields a record filter and a summary share. */
function conditions(filter: ParsedRecordFilter | ParsedSummaryFilter): { where: string[]; params: (string | number)[] } {
  const where: string[] = [];
  const params: (string | number)[] = [];
  const add = (sql: string, value: string | number) => {
    params.push(value);
    where.push(sql.replace("?", `$${params.length}`));
  };
  for (const [field, column] of Object.entries(filterColumns)) {
    const value = filter[field as keyof typeof filterColumns];
    if (value !== undefined) add(`${column} = ?`, value);
  }
  for (const [key, value] of Object.entries(filter.tag ?? {})) {
    const one = JSON.stringify({ [key]: value });
    params.push(one);
    // `::text` first: Bun.sql JSON-encodes a string it binds as jsonb (it would be matched as a JSON string).
    where.push(`((tags::jsonb) @> ($${params.length}::text)::jsonb OR (personal_tags::jsonb) @> ($${params.length}::text)::jsonb)`);
  }
  const since = sinceOf(filter);
  if (since !== undefined) add("timestamp >= ?", since);
  if (filter.until !== undefined) add("timestamp <= ?", filter.until);
  return { where, params };
}

export class PgReader implements AuditReader {
  constructor(private readonly sql: SQL) {}

  async records(filter: ParsedRecordFilter): Promise<RecordPage> {
    const { where, params } = conditions(filter);
    if (filter.cursor !== undefined) {
      params.push(Number(filter.cursor));
      where.push(`seq < $${params.length}`);
    }
    const rows = (await this.sql.unsafe(
      `SELECT ${recordSelect} FROM audit_records ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY seq DESC LIMIT ${filter.limit + 1}`,
      params,
    )) as Record<string, unknown>[];
    const page = rows.slice(0, filter.limit).map(toRecord);
    return { records: page, next_cursor: rows.length > filter.limit ? String(page.at(-1)!.seq) : null };
  }

  async record(id: string): Promise<AuditRecord | null> {
    const [row] = (await this.sql.unsafe(`SELECT ${recordSelect} FROM audit_records WHERE id = $1`, [id])) as Record<string, unknown>[];
    return row ? toRecord(row) : null;
  }

  async summary(filter: ParsedSummaryFilter): Promise<Summary> {
    const { where, params } = conditions(filter);
    const rows = (await this.sql.unsafe(
      `SELECT ${groupKey(filter.by)} AS key, count(*) AS calls, ${summed.map((c) => `coalesce(sum(${c}), 0) AS ${c}`).join(", ")},
        count(*) FILTER (WHERE cost_nano_usd IS NULL AND usage_source <> 'none') AS unpriced_calls
       FROM audit_records ${where.length ? `WHERE ${where.join(" AND ")}` : ""} GROUP BY 1`,
      params,
    )) as Record<string, string | null>[];
    const groups: SummaryRow[] = rows.map((row) => {
      const n = (field: string) => Number(row[field] ?? 0);
      return {
        key: row.key ?? null,
        calls: n("calls"),
        input_tokens: n("input_tokens"),
        output_tokens: n("output_tokens"),
        cache_read_tokens: n("cache_read_tokens"),
        cache_write_tokens: n("cache_write_tokens"),
        cache_write_1h_tokens: n("cache_write_1h_tokens"),
        reasoning_tokens: n("reasoning_tokens"),
        cost_usd: n("cost_nano_usd") / 1e9,
        cost_nano_usd: n("cost_nano_usd"),
        unpriced_calls: n("unpriced_calls"),
      };
    });
    const byKey = (a: SummaryRow, b: SummaryRow) => String(a.key).localeCompare(String(b.key));
    if (filter.by === "day" || filter.by === "hour" || filter.sort === "key") groups.sort(byKey);
    else {
      const field = sortValue[filter.sort];
      groups.sort((a, b) => b[field] - a[field] || b.cost_nano_usd - a.cost_nano_usd || b.calls - a.calls || byKey(a, b));
    }
    const total: SummaryRow = {
      key: null,
      calls: 0,
      input_tokens: 0,
      output_tokens: 0,
      cache_read_tokens: 0,
      cache_write_tokens: 0,
      cache_write_1h_tokens: 0,
      reasoning_tokens: 0,
      cost_usd: 0,
      cost_nano_usd: 0,
      unpriced_calls: 0,
    };
    for (const row of groups) {
      for (const field of ["calls", ...summed, "unpriced_calls"] as const) total[field] += row[field];
    }
    total.cost_usd = total.cost_nano_usd / 1e9;
    return {
      by: filter.by,
      since: sinceOf(filter) ?? null,
      until: filter.until ?? null,
      groups: filter.limit === undefined ? groups : groups.slice(0, filter.limit),
      group_count: groups.length,
      total,
    };
  }
}
