/**
 * The rows of an export, read from SQLite for the shared formatter (../../trail/export.ts): the
 * matching records in seq order, `exportChunkRows` per read, each as the chain stores it and with
 * the link of the entry after it, for the check before signing (../../trail/export-check.ts).
 */
import type { Database } from "bun:sqlite";
import { exportChunkRows, type ExportedRow, type ExportSource, type ParsedExportFilter } from "../../trail/export.ts";
import { recordFields, type AuditRecord } from "../../trail/record.ts";
import type { SQLValue } from "../../trail/row.ts";
import { storedRecordColumns } from "../../trail/chain.ts";
import type { Checkpoint } from "../../trail/checkpoint.ts";
import type { ChainRecordRow } from "../../trail/verify.ts";
import { chainId } from "./chain-writer.ts";
import { tagValueSQL } from "./summary.ts";
import { keyLookupSQL } from "./key-index.ts";
import { hiddenFromLookup } from "./key-index-check.ts";
import { chainFailureFrom, redactionEvents } from "./verify.ts";

const filterName = { agent_id: "agent", user_id: "user", task_context: "task" } as const;

/** `external`: checkpoints kept outside the database (the checkpoint file), checked like the stored ones. */
export function sqliteExportSource(
  db: Database,
  filter: ParsedExportFilter,
  external: () => readonly Checkpoint[] = () => [],
): ExportSource {
  const conditions: string[] = [];
  const params: string[] = [];
  const add = (sql: string, value: string | undefined) => {
    if (value === undefined) return;
    conditions.push(sql);
    params.push(value);
  };
  add("timestamp >= ?", filter.start_date);
  add("timestamp <= ?", filter.end_date);
  const range = { conditions: [...conditions], params: [...params] };
  const keyed = (["agent_id", "user_id", "task_context"] as const).flatMap((column) => {
    const value = filter[filterName[column]];
    return value === undefined ? [] : [{ column, value }];
  });
  for (const { column, value } of keyed) for (const sql of keyLookupSQL(column)) add(sql, value);
  for (const [key, value] of Object.entries(filter.tag ?? {})) add(`${tagValueSQL(key)} = ?`, value);
  return {
    chainId: () => chainId(db),
    anchor: () => ({
      chainId: chainId(db),
      // The key tables are not hashed: a record they lost would be left out of a signed export.
      hiddenRecord:
        keyed
          .map(({ column, value }) => hiddenFromLookup(db, column, value, range))
          .filter((failure) => failure !== null)
          .sort((a, b) => a.seq - b.seq)[0] ?? null,
      // From the first record it may sign: an entry after it that does not match its hash (its link
      // repointed, say) leaves the chain unable to vouch for the records before it.
      chainFailure: chainFailureFrom(
        db,
        db
          .query<{ seq: number | null }, string[]>(
            `SELECT min(seq) AS seq FROM audit_records ${conditions.length ? `WHERE ${conditions.join(" AND ")}` : ""}`,
          )
          .get(...params)?.seq ?? Number.MAX_SAFE_INTEGER,
      ),
      lastSeq: db
        .query<{ seq: number }, []>(
          "SELECT max(coalesce((SELECT max(seq) FROM audit_records), 0), coalesce((SELECT max(seq) FROM audit_events), 0)) AS seq",
        )
        .get()!.seq,
      redactions: redactionEvents(db),
      checkpoints: [
        ...db.query<Checkpoint, []>("SELECT chain_id, seq, hash, time, signature FROM audit_checkpoints ORDER BY seq").all(),
        ...external(),
      ],
      hashAt: (seq: number) =>
        db
          .query<{ hash: string }, [number, number]>(
            "SELECT hash FROM audit_records WHERE seq = ? UNION ALL SELECT hash FROM audit_events WHERE seq = ? LIMIT 1",
          )
          .get(seq, seq)?.hash ?? null,
    }),
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
        `SELECT ${storedRecordColumns.join(", ")},
           coalesce((SELECT n.prev_hash FROM audit_records AS n WHERE n.seq = audit_records.seq + 1),
                    (SELECT e.prev_hash FROM audit_events AS e WHERE e.seq = audit_records.seq + 1)) AS next_prev_hash
         FROM audit_records
         WHERE ${["seq > ?", "seq <= ?", ...conditions].join(" AND ")} ORDER BY seq LIMIT ${exportChunkRows}`,
      );
      try {
        for (let after = 0; ; ) {
          const rows = page.all(after, end, ...params);
          yield rows.map((row) => ({
            record: toRecord(row),
            stored: row as unknown as ChainRecordRow,
            next: row.next_prev_hash as string | null,
          }));
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
