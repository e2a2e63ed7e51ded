/**
 * Reading the audit trail in SQLite (drizzle): the filters of ../filters.ts, keyset pagination over
 * `seq`, newest first. A cursor is the `seq` to continue below, as a string.
 */
import type { Database } from "bun:sqlite";
import { and, desc, eq, gte, lt, lte, sql, type SQL } from "drizzle-orm";
import type { BunSQLiteDatabase } from "drizzle-orm/bun-sqlite";
import { sinceOf, type ParsedRecordFilter, type ParsedSummaryFilter } from "../filters.ts";
import type { RecordPage, Summary } from "../results.ts";
import { auditRecordSchema, type AuditRecord } from "../../trail/record.ts";
import type { AuditReader } from "../contract.ts";
import * as schema from "./schema.ts";
import { summarize, tagValueSQL } from "./summary.ts";
import { keyLookupParts, type KeyColumn } from "./key-index.ts";

/** `column = value`, found through the key tables (./key-index.ts). */
const keyIs = (column: KeyColumn, value: string): SQL | undefined =>
  and(...keyLookupParts(column).map(([before, after]) => sql`${sql.raw(before)}${value}${sql.raw(after)}`));

export class SqliteAuditReader implements AuditReader {
  constructor(
    private readonly orm: BunSQLiteDatabase<typeof schema>,
    private readonly db: Database,
  ) {}

  async records(filter: ParsedRecordFilter): Promise<RecordPage> {
    const t = schema.auditRecords;
    const since = sinceOf(filter);
    const conditions: (SQL | undefined)[] = [
      filter.agent === undefined ? undefined : keyIs("agent_id", filter.agent),
      filter.user === undefined ? undefined : keyIs("user_id", filter.user),
      filter.task === undefined ? undefined : keyIs("task_context", filter.task),
      filter.model === undefined ? undefined : eq(t.model, filter.model),
      filter.provider === undefined ? undefined : eq(t.provider, filter.provider),
      filter.outcome === undefined ? undefined : eq(t.outcome, filter.outcome),
      filter.consent === undefined ? undefined : eq(t.consent_id, filter.consent),
      filter.purpose === undefined ? undefined : eq(t.purpose, filter.purpose),
      since === undefined ? undefined : gte(t.timestamp, since),
      filter.until === undefined ? undefined : lte(t.timestamp, filter.until),
      filter.cursor === undefined ? undefined : lt(t.seq, Number(filter.cursor)),
      ...Object.entries(filter.tag ?? {}).map(([key, value]) => sql`${sql.raw(tagValueSQL(key))} = ${value}`),
    ];
    const rows = await this.orm
      .select()
      .from(t)
      .where(and(...conditions))
      .orderBy(desc(t.seq))
      .limit(filter.limit + 1);
    const page = rows.slice(0, filter.limit).map((row) => auditRecordSchema.parse(row));
    const last = page.at(-1);
    return { records: page, next_cursor: rows.length > filter.limit && last ? String(last.seq) : null };
  }

  async summary(filter: ParsedSummaryFilter): Promise<Summary> {
    return summarize(this.db, [filter])[0]!;
  }

  async summaries(filters: ParsedSummaryFilter[]): Promise<Summary[]> {
    return summarize(this.db, filters);
  }

  async record(id: string): Promise<AuditRecord | null> {
    const t = schema.auditRecords;
    const [row] = await this.orm.select().from(t).where(eq(t.id, id)).limit(1);
    return row ? auditRecordSchema.parse(row) : null;
  }
}
