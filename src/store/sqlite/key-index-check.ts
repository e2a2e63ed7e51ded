/**
 * The checks of the key tables (./key-index.ts) against the records, which the chain covers: the
 * key tables are not hashed, so anyone who can write to the database could remove an entry (the
 * record disappears from lookups, filtered summaries and filtered exports by that key) or add one
 * (lookups test each record's own column, so an added entry brings in nothing, but the next fold
 * of its seq would fail on it). `audit verify` checks every key table (`keyIndexMismatch`); a
 * filtered export checks the values it filters by before it signs (`hiddenFromLookup`).
 *
 * Both are set differences in SQL (EXCEPT: each side sorted once and merged), with no row in JS.
 */
import type { Database } from "bun:sqlite";
import type { VerifyFailure } from "../../trail/verify.ts";
import { keyTables, type KeyColumn } from "./key-index.ts";

const columns = Object.keys(keyTables) as KeyColumn[];
const filterName = { agent_id: "agent", user_id: "user", task_context: "task" } as const;

/** A record's entry as its key table holds it: (value, seq), a task's as (day, value, seq). */
const entryOf = (column: KeyColumn) => (column === "task_context" ? "substr(timestamp, 1, 10), task_context, seq" : `${column}, seq`);
const storedEntry = (column: KeyColumn) => (column === "task_context" ? "day, task_context, seq" : `${column}, seq`);

const fail = (seq: number, message: string): VerifyFailure => ({ seq, reason: "index_mismatch", message });

/**
 * For `audit verify`: the key index's cursor is there and no further than the last record
 * (`lastRecordSeq`), and each key table holds exactly the entries of the records up to it — none
 * missing (records EXCEPT the table), none more (the table's count, then, on the failure path
 * only, the table EXCEPT the records to name one). The first difference by seq, or null.
 */
export function keyIndexMismatch(db: Database, lastRecordSeq: number): VerifyFailure | null {
  const state = db.query<{ seq: number }, []>("SELECT seq FROM audit_key_index_state WHERE id = 1").get();
  if (!state) return fail(1, "the key index's cursor (audit_key_index_state) is gone: lookups by agent, user and task would miss records");
  const cursor = state.seq;
  if (cursor > lastRecordSeq) {
    return fail(
      lastRecordSeq + 1,
      `the key index claims records up to seq ${cursor}, but the last record is seq ${lastRecordSeq}: the next records would be missed by lookups by agent, user and task`,
    );
  }
  const failures: VerifyFailure[] = [];
  const counts = db
    .query<Record<KeyColumn, number>, [number]>(
      `SELECT ${columns.map((c) => `count(${c}) AS ${c}`).join(", ")} FROM audit_records WHERE seq <= ?`,
    )
    .get(cursor)!;
  for (const column of columns) {
    const table = keyTables[column];
    const missing = db
      .query<{ seq: number }, [number]>(
        `SELECT seq FROM (SELECT ${entryOf(column)} FROM audit_records WHERE seq <= ?1 AND ${column} IS NOT NULL
           EXCEPT SELECT ${storedEntry(column)} FROM ${table}) ORDER BY seq LIMIT 1`,
      )
      .get(cursor);
    if (missing) {
      failures.push(
        fail(missing.seq, `seq ${missing.seq}: ${table} has no entry for the record, so lookups by ${filterName[column]} miss it`),
      );
      continue;
    }
    const entries = db.query<{ n: number }, []>(`SELECT count(*) AS n FROM ${table}`).get()!.n;
    if (entries === counts[column]) continue;
    const extra = db
      .query<{ seq: number }, [number]>(
        `SELECT seq FROM (SELECT ${storedEntry(column)} FROM ${table}
           EXCEPT SELECT ${entryOf(column)} FROM audit_records WHERE seq <= ?1 AND ${column} IS NOT NULL) ORDER BY seq LIMIT 1`,
      )
      .get(cursor);
    failures.push(
      extra
        ? fail(extra.seq, `seq ${extra.seq}: ${table} has an entry the record (up to the cursor, seq ${cursor}) does not have`)
        : fail(cursor, `${table} holds ${entries} entries, the records up to seq ${cursor} ${counts[column]}`),
    );
  }
  return failures.sort((a, b) => a.seq - b.seq)[0] ?? null;
}

/**
 * For a filtered export: the first record with `column = value` (within `range`, the export's
 * timestamp conditions) that a lookup would miss because its key table lost the entry, or null.
 * A lookup reads the key table up to the cursor and the records past it; with no cursor, the key
 * table alone.
 */
export function hiddenFromLookup(
  db: Database,
  column: KeyColumn,
  value: string,
  range: { conditions: string[]; params: string[] },
): VerifyFailure | null {
  const within = range.conditions.map((condition) => ` AND ${condition}`).join("");
  const row = db
    .query<{ seq: number }, string[]>(
      `SELECT seq FROM (SELECT ${entryOf(column)} FROM audit_records
         WHERE (seq > (SELECT seq FROM audit_key_index_state WHERE id = 1)) IS NOT TRUE AND +${column} = ?${within}
         EXCEPT SELECT ${storedEntry(column)} FROM ${keyTables[column]} WHERE ${column} = ?) ORDER BY seq LIMIT 1`,
    )
    .get(value, ...range.params, value);
  if (!row) return null;
  return fail(
    row.seq,
    `seq ${row.seq} matches the export's ${filterName[column]} but ${keyTables[column]} has no entry for it: the export would omit it`,
  );
}
