/**
 * Queries and summaries on PostgreSQL. Summaries read the usage rollup (./rollup.ts) where they
 * can and the records where they must (../summary-plan.ts); money is summed as bigint
 * nano-dollars, exactly. Tag filters use the GIN index on `tags::jsonb` (containment); a personal
 * tag (`personal_tags`) is matched too, without an index. There is no tag rollup here: summaries
 * by `tag:KEY` read the records of their range.
 */
import type { SQL } from "bun";
import type { AuditReader } from "../contract.ts";
import { sinceOf, type ParsedRecordFilter, type ParsedSummaryFilter } from "../filters.ts";
import type { RecordPage, Summary } from "../results.ts";
import { foldRows, SummaryFold } from "../summary-answer.ts";
import { summariesQueries, usesRollup, type SummaryDialect, type SummaryQuery } from "../summary-plan.ts";
import { rollupCursor } from "./rollup.ts";
import { transaction } from "./writer.ts";
import type { AuditRecord } from "../../trail/record.ts";
import { recordSelect, toRecord } from "./rows.ts";

/** A tag's value in a record: clear, else personal (keys are a-z, 0-9 and '-': safe as a literal). */
const tagValue = (key: string) => `coalesce(tags::jsonb ->> '${key}', personal_tags::jsonb ->> '${key}')`;
const postgres: SummaryDialect = { unindexed: (condition) => condition, statusText: "status::text", tagValue, tagRollup: false };
/** Summaries wait for no lock; the pool's statement_timeout (30 s) bounds each query too. */
const summaryDeadlineMs = 60_000;
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
    return (await this.summaries([filter]))[0]!;
  }

  /** The queries ../summary-plan.ts plans, in one REPEATABLE READ snapshot (the cursor cannot move in between). */
  async summaries(filters: ParsedSummaryFilter[]): Promise<Summary[]> {
    return transaction(
      this.sql,
      summaryDeadlineMs,
      async (tx) => {
        const cursor = filters.some((filter) => usesRollup(filter, postgres)) ? await rollupCursor(tx) : 0;
        const folds = filters.map((filter) => new SummaryFold(filter));
        for (const query of summariesQueries(filters, cursor, postgres)) {
          for await (const rows of queryRows(tx, query)) foldRows(folds, query, rows);
        }
        return folds.map((fold) => fold.summary());
      },
      "ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    );
  }
}

type Row = Record<string, unknown>;

/** A query's rows, in one go, or for a query with a row per call, in batches through a cursor (a day's calls can be millions). */
async function* queryRows(tx: SQL, query: SummaryQuery): AsyncGenerator<Row[]> {
  let n = 0;
  const text = query.sql.replace(/\?/g, () => `$${++n}`);
  if (!query.perCall) {
    yield (await tx.unsafe(text, query.params)) as Row[];
    return;
  }
  await tx.unsafe(`DECLARE summary_calls NO SCROLL CURSOR FOR ${text}`, query.params);
  try {
    for (let rows = (await tx.unsafe("FETCH 10000 FROM summary_calls")) as Row[]; rows.length > 0; ) {
      yield rows;
      rows = (await tx.unsafe("FETCH 10000 FROM summary_calls")) as Row[];
    }
  } finally {
    await tx.unsafe("CLOSE summary_calls");
  }
}
