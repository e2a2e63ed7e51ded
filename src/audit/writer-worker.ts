/**
 * The audit store's writer thread: it owns the write connection, so SQLite's inserts, commits and
 * WAL checkpoints never block the proxy's event loop. Batches that arrive while it is busy are
 * committed together in one transaction on its next turn (group commit): a quiet proxy commits
 * each call at once, a busy one shares commits. Every batch is answered, in order. Every few
 * seconds while records arrive it also folds them into the usage rollup (./rollup.ts).
 */
import type { Database, Statement } from "bun:sqlite";
import { columns, openDatabase, type SQLValue } from "./database.ts";
import { advanceRollup } from "./rollup.ts";
import type { WriterReply, WriterRequest } from "./writer-protocol.ts";

declare const self: Worker;

let db: Database | null = null;
let insert: Statement;

const reply = (message: WriterReply) => self.postMessage(JSON.stringify(message));

function open(path: string, busyTimeoutMs: number): void {
  db = openDatabase(path, busyTimeoutMs);
  insert = db.prepare(`INSERT INTO audit_records (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`);
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

let pending: SQLValue[][][] = [];

const rollupEveryMs = 2000;
let lastRollup = Number.NEGATIVE_INFINITY;

/**
 * Summaries add the records past the rollup cursor themselves, so a rollup that fails (e.g. the
 * database is locked by another writer) costs summary speed, never correctness: it is retried.
 */
function maybeAdvanceRollup(database: Database): void {
  const now = performance.now();
  if (now - lastRollup < rollupEveryMs) return;
  lastRollup = now;
  try {
    advanceRollup(database);
  } catch {
    // retried on a later commit
  }
}

function commitPending(): void {
  const batches = pending;
  pending = [];
  try {
    if (!db) throw new Error("the audit database could not be opened for writing");
    const database = db;
    database.transaction(() => {
      for (const rows of batches) for (const row of rows) insert.run(...row);
    })();
    reply({ kind: "committed", batches: batches.length });
    maybeAdvanceRollup(database);
  } catch (error) {
    reply({ kind: "failed", batches: batches.length, message: messageOf(error) });
  }
}

self.onmessage = (event: MessageEvent<string>) => {
  const request = JSON.parse(event.data) as WriterRequest;
  if (request.kind === "batch") {
    if (pending.length === 0) setImmediate(commitPending);
    pending.push(request.rows);
  } else if (request.kind === "open") {
    try {
      open(request.path, request.busyTimeoutMs);
      reply({ kind: "opened" });
    } catch (error) {
      reply({ kind: "failed", batches: 0, message: messageOf(error) });
    }
  } else {
    if (pending.length > 0) commitPending();
    lastRollup = Number.NEGATIVE_INFINITY; // leave the rollup caught up
    if (db) maybeAdvanceRollup(db);
    db?.close();
    db = null;
    reply({ kind: "closed" });
  }
};
