/**
 * The rows of an export, read from SQLite for the shared formatter (../../trail/export.ts): the
 * matching records in seq order, `exportChunkRows` per read.
 */
import type { Database } from "bun:sqlite";
import { exportChunkRows, type ExportedRow, type ExportSource, type ParsedExportFilter } from "../../trail/export.ts";
import { recordFields, type AuditRecord } from "../../trail/record.ts";
import { columns, type SQLValue } from "../../trail/row.ts";
import { chainId } from "./chain-writer.ts";
import { tagValueSQL } from "./summary.ts";
import { keyLookupSQL } from "./key-index.ts";

export function sqliteExportSource(db: Database, filter: ParsedExportFilter): ExportSource {
  const conditions: string[] = [];
  const params: string[] = [];
  const add = (sql: string, value: string | undefined) => {
    if (value === undefined) return;
    conditions.push(sql);
    params.push(value);
  };
  add("timestamp >= ?", filter.start_date);
  add("timestamp <= ?", filter.end_date);
  add(keyLookupSQL("agent_id"), filter.agent);
  add(keyLookupSQL("user_id"), filter.user);
  add(keyLookupSQL("task_context"), filter.task);
  for (const [key, value] of Object.entries(filter.tag ?? {})) add(`${tagValueSQL(key)} = ?`, value);
  return {
    chainId: () => chainId(db),
    count() {
      const where = conditions.length ? `WHERE ${conditions.join(" AND ")}` : "";
      return db.query<{ n: number }, string[]>(`SELECT count(*) AS n FROM audit_records ${where}`).get(...params)!.n;
    },
    /**
     * Each chunk is its own short read (keyset on seq, up to the last seq when the export began),
     * so a slow client holds no read snapshot open between chunks: WAL checkpoints go on, and the
     * connection is free for other work meanwhile.
     */
    *rows(): Generator<ExportedRow[]> {
      const end = db.query<{ seq: number | null }, []>("SELECT max(seq) AS seq FROM audit_records").get()?.seq ?? 0;
      const page = db.query<Record<string, SQLValue>, (string | number)[]>(
        `SELECT seq, hash, ${columns.join(", ")} FROM audit_records
         WHERE ${["seq > ?", "seq <= ?", ...conditions].join(" AND ")} ORDER BY seq LIMIT ${exportChunkRows}`,
      );
      try {
        for (let after = 0; ; ) {
          const rows = page.all(after, end, ...params);
          yield rows.map((row) => ({ record: toRecord(row), hash: row.hash as string | null }));
          if (rows.length < exportChunkRows) return;
          after = rows.at(-1)!.seq as number;
        }
      } finally {
        page.finalize();
      }
    },
  };
}

function toRecord(row: Record<string, SQLValue>): AuditRecord {
  const record: Record<string, unknown> = {};
  for (const field of recordFields) record[field] = row[field];
  record.stream = row.stream === 1;
  return record as AuditRecord;
}
