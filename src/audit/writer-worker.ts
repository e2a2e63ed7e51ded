/**
 * The audit store's writer thread: it owns the write connection, so SQLite's inserts, commits and
 * WAL checkpoints never block the proxy's event loop. It commits one batch at a time and answers
 * each with `committed` or `failed`; the store sends the next batch only after an answer, so
 * batches grow with load (group commit) while a quiet proxy still commits each call at once.
 */
import type { Database, Statement } from "bun:sqlite";
import { columns, finalColumns, openDatabase, type SQLValue } from "./database.ts";
import type { WriterReply, WriterRequest } from "./writer-protocol.ts";

declare const self: Worker;

const finalIndexes = finalColumns.map((column) => columns.indexOf(column));
const idIndex = columns.indexOf("id");

let db: Database | null = null;
let insert: Statement;
let update: Statement;
/** seq of each committed in-flight row, so its final update is a rowid lookup. */
const inflightSeq = new Map<SQLValue, number>();

const reply = (message: WriterReply) => self.postMessage(JSON.stringify(message));

function open(path: string, busyTimeoutMs: number): void {
  db = openDatabase(path, busyTimeoutMs);
  insert = db.prepare(`INSERT INTO audit_records (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`);
  update = db.prepare(`UPDATE audit_records SET ${finalColumns.map((c) => `${c} = ?`).join(", ")} WHERE seq = ?`);
}

function commit(database: Database, begins: SQLValue[][], finals: SQLValue[][]): void {
  const started: [SQLValue, number][] = [];
  database.transaction(() => {
    for (const row of begins) started.push([row[idIndex]!, Number(insert.run(...row).lastInsertRowid)]);
    const startedHere = new Map(started);
    for (const row of finals) {
      const seq = inflightSeq.get(row[idIndex]!) ?? startedHere.get(row[idIndex]!);
      if (seq === undefined) insert.run(...row);
      else update.run(...finalIndexes.map((i) => row[i]!), seq);
    }
  })();
  for (const [id, seq] of started) inflightSeq.set(id, seq);
  for (const row of finals) inflightSeq.delete(row[idIndex]!);
}

self.onmessage = (event: MessageEvent<string>) => {
  const request = JSON.parse(event.data) as WriterRequest;
  try {
    if (request.kind === "open") {
      open(request.path, request.busyTimeoutMs);
      reply({ kind: "opened" });
    } else if (request.kind === "batch") {
      if (!db) throw new Error("the audit writer is not open");
      commit(db, request.begins, request.finals);
      reply({ kind: "committed" });
    } else {
      db?.close();
      db = null;
      reply({ kind: "closed" });
    }
  } catch (error) {
    reply({ kind: "failed", message: error instanceof Error ? error.message : String(error) });
  }
};
