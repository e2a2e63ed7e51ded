/**
 * The lookups of records by agent, user and task, kept off the commit path.
 *
 * `audit_records` has no index on those columns: with a fleet's spread of keys every insert would
 * land on an unrelated page of each index, and every commit would rewrite each of those pages
 * into the WAL (measured: 50–110 µs of the writer's CPU per record, growing with the trail).
 * Instead the writer thread appends records with only time-ordered indexes, and every
 * `foldEveryRecords` records (or once it is idle) folds the new ones into three key tables in one
 * sorted batch: an agent's or a user's entries go to the end of their run, a task's to today's part
 * of the task table (it leads with the record's UTC day, so a fold touches only that part), and
 * each page a fold touches is written once for the whole batch.
 *
 * `audit_key_index_state.seq` is the cursor: every record with seq ≤ it has its entries in the key
 * tables, and those entries are exact (triggers follow updates and deletes of folded records in
 * the same transaction, so an erased user or task leaves the key tables with the record's value).
 * A lookup (`keyLookupSQL`) reads the key table for the folded part and the records past the
 * cursor themselves (a range of seq, the primary key), so it is exact whatever the cursor.
 *
 * The key tables are not hashed: anyone who can write to the database can add or remove entries.
 * So a lookup also tests each record it finds on its own column (which the chain covers): an added
 * entry never brings in a record with another key. A removed entry would hide its record from
 * lookups; `audit verify` checks that the key tables hold exactly the folded records' entries
 * (`keyIndexMismatch`, ./key-index-check.ts).
 */
import type { Database } from "bun:sqlite";

/** The looked-up columns and their key tables. */
export const keyTables = {
  agent_id: "audit_agent_index",
  user_id: "audit_user_index",
  task_context: "audit_task_index",
} as const;
export type KeyColumn = keyof typeof keyTables;
export const isKeyColumn = (column: string): column is KeyColumn => Object.hasOwn(keyTables, column);

/** Records past the cursor that make the writer fold (and the most one fold reads). */
export const foldEveryRecords = 50_000;

const folded = "(SELECT seq FROM audit_key_index_state WHERE id = 1)";
const dayOf = (row: string) => `substr(${row}.timestamp, 1, 10)`;

/** The entries of the records `where` selects (alias `r`) into one key table, in key order. */
function foldSQL(column: KeyColumn, where: string): string {
  return column === "task_context"
    ? `INSERT INTO audit_task_index (day, task_context, seq)
  SELECT ${dayOf("r")}, r.task_context, r.seq FROM audit_records AS r WHERE ${where} AND r.task_context IS NOT NULL ORDER BY 1, 2, 3`
    : `INSERT INTO ${keyTables[column]} (${column}, seq)
  SELECT r.${column}, r.seq FROM audit_records AS r WHERE ${where} AND r.${column} IS NOT NULL ORDER BY 1, 2`;
}
const foldStatements = (Object.keys(keyTables) as KeyColumn[]).map((column) => foldSQL(column, "r.seq > ?1 AND r.seq <= ?2"));

/** A folded record's entry leaves (OLD) or joins (NEW) its key table (trigger bodies). */
function entrySQL(column: KeyColumn, row: "OLD" | "NEW"): string {
  if (row === "OLD") {
    return column === "task_context"
      ? `DELETE FROM audit_task_index WHERE day = ${dayOf("OLD")} AND task_context = OLD.task_context AND seq = OLD.seq;`
      : `DELETE FROM ${keyTables[column]} WHERE ${column} = OLD.${column} AND seq = OLD.seq;`;
  }
  return column === "task_context"
    ? `INSERT INTO audit_task_index (day, task_context, seq) SELECT ${dayOf("NEW")}, NEW.task_context, NEW.seq WHERE NEW.task_context IS NOT NULL;`
    : `INSERT INTO ${keyTables[column]} (${column}, seq) SELECT NEW.${column}, NEW.seq WHERE NEW.${column} IS NOT NULL;`;
}
const allColumns = Object.keys(keyTables) as KeyColumn[];

/**
 * Migration 0009's hand-written half (after the generated one drops the old indexes): the key
 * tables, their cursor, the triggers, and the entries of the records already there (one sorted
 * pass each, at the first start of this version).
 */
export const keyIndexMigrationSQL = `
CREATE TABLE audit_agent_index (agent_id TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (agent_id, seq)) WITHOUT ROWID;
--> statement-breakpoint
CREATE TABLE audit_user_index (user_id TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (user_id, seq)) WITHOUT ROWID;
--> statement-breakpoint
CREATE TABLE audit_task_index (day TEXT NOT NULL, task_context TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (day, task_context, seq)) WITHOUT ROWID;
--> statement-breakpoint
CREATE TABLE audit_key_index_state (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
--> statement-breakpoint
INSERT INTO audit_key_index_state (id, seq) SELECT 1, coalesce(max(seq), 0) FROM audit_records;
--> statement-breakpoint
${allColumns.map((column) => foldSQL(column, `r.seq <= ${folded}`)).join(";\n--> statement-breakpoint\n")};
--> statement-breakpoint
CREATE TRIGGER audit_records_key_index_update AFTER UPDATE OF timestamp, ${allColumns.join(", ")} ON audit_records
WHEN OLD.seq <= ${folded} BEGIN
  ${allColumns.map((column) => entrySQL(column, "OLD")).join("\n  ")}
  ${allColumns.map((column) => entrySQL(column, "NEW")).join("\n  ")}
END;
--> statement-breakpoint
CREATE TRIGGER audit_records_key_index_delete AFTER DELETE ON audit_records
WHEN OLD.seq <= ${folded} BEGIN
  ${allColumns.map((column) => entrySQL(column, "OLD")).join("\n  ")}
END;`;

/** The key index's cursor: every record with seq ≤ it is in the key tables. */
export function keyIndexCursor(db: Database): number {
  return db.query<{ seq: number }, []>("SELECT seq FROM audit_key_index_state WHERE id = 1").get()?.seq ?? 0;
}

/**
 * Folds up to `maxRecords` records past the cursor into the key tables, in one write transaction
 * (so a crash leaves either all of a fold or none of it). Returns how many seqs it advanced.
 */
export function foldKeyIndex(db: Database, maxRecords = foldEveryRecords): number {
  return db
    .transaction(() => {
      const from = keyIndexCursor(db);
      const last = db.query<{ seq: number | null }, []>("SELECT max(seq) AS seq FROM audit_records").get()?.seq ?? 0;
      const to = Math.min(last, from + maxRecords);
      if (to <= from) return 0;
      for (const sql of foldStatements) db.query(sql).run(from, to);
      db.query("UPDATE audit_key_index_state SET seq = ? WHERE id = 1").run(to);
      return to - from;
    })
    .immediate();
}

/** Records not yet folded. */
export function unfoldedRecords(db: Database): number {
  const last = db.query<{ seq: number | null }, []>("SELECT max(seq) AS seq FROM audit_records").get()?.seq ?? 0;
  return Math.max(0, last - keyIndexCursor(db));
}

/**
 * Conditions on `audit_records` that together are `column = ?`, each taking the value as its one
 * parameter: the records the key table names for the folded part and the records past the cursor
 * (read themselves), and the record's own column equal to the value (an entry added to the key
 * table by hand finds nothing else). Tasks are found day by day (the task table leads with the
 * day): one seek per day of the trail.
 */
export function keyLookupSQL(column: KeyColumn): string[] {
  return keyLookupParts(column).map((parts) => parts.join("?"));
}

/** The same conditions, each as the SQL before and after its parameter (for a query builder). */
export function keyLookupParts(column: KeyColumn): [before: string, after: string][] {
  const [before, after] = lookupOf(column, "PARAM").split("PARAM") as [string, string];
  // The unary `+`: the records are found by seq above; this only tests each one.
  return [
    [before, after],
    [`+audit_records.${column} = `, ""],
  ];
}

/**
 * A condition on `audit_records` equal to `column IN (set)`, `set` a subquery of one column with
 * no parameter: found as `keyLookupSQL` finds one value, each record tested on its own column (a
 * top-N summary groups by the record's own key and keeps its first groups, so an added entry would
 * not show there; the test keeps every lookup exact on its own).
 */
export function keyAmongSQL(column: KeyColumn, set: string): string {
  return `${lookupOf(column, set, true)} AND +audit_records.${column} IN (${set})`;
}

/** The lookup of the values `p(v)` holds: one (`SELECT value`), or those a subquery selects. */
function lookupOf(column: KeyColumn, values: string, subquery = false): string {
  // A set is read once, then each of its values looked up: CROSS JOIN keeps SQLite from walking
  // the key table and testing each entry against the set instead.
  const p = subquery ? values : `SELECT ${values}`;
  const as = subquery ? "AS MATERIALIZED" : "AS";
  // The unary `+`: the unfolded records are a range of seq; no index (not even an automatic one) on the column.
  const unfolded = `SELECT r.seq FROM audit_records AS r, p WHERE r.seq > ${folded} AND +r.${column} = p.v`;
  if (column !== "task_context") {
    return `audit_records.seq IN (WITH p(v) ${as} (${p}) SELECT i.seq FROM p CROSS JOIN ${keyTables[column]} AS i WHERE i.${column} = p.v UNION ALL ${unfolded})`;
  }
  return `audit_records.seq IN (WITH RECURSIVE p(v) ${as} (${p}), days(d) AS (SELECT min(day) FROM audit_task_index UNION ALL
      SELECT (SELECT min(day) FROM audit_task_index WHERE day > days.d) FROM days WHERE days.d IS NOT NULL)
    SELECT i.seq FROM days CROSS JOIN p CROSS JOIN audit_task_index AS i WHERE i.day = days.d AND i.task_context = p.v UNION ALL ${unfolded})`;
}
