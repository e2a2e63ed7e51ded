/**
 * The audit store's writer thread: it owns the write connection, so SQLite's inserts, commits and
 * WAL checkpoints never block the proxy's event loop. Batches that arrive while it is busy are
 * committed together in one transaction on its next turn (group commit): a quiet proxy commits
 * each call at once, a busy one shares commits. Every batch is answered, in order. Records are
 * appended to the hash chain (./chain.ts); the thread also writes the signed checkpoints (every N
 * records, every T seconds when anything is new, and on close), runs retention, every
 * 10 s while records arrive (and once idle) folds them into the usage rollup (./rollup.ts), every 50,000
 * records (and once idle) folds them into the key tables that lookups by agent, user and task read
 * (./key-index.ts), and after an erasure rewrites the database file so no erased value stays in it
 * (./scrub.ts).
 */
import type { Database } from "bun:sqlite";
import { statSync, statfsSync } from "node:fs";
import { dirname } from "node:path";
import { ChainWriter } from "./chain-writer.ts";
import { Checkpointer } from "./checkpointer.ts";
import { openDatabase } from "./database.ts";
import type { SQLValue } from "../../trail/row.ts";
import { applyRetention } from "./erase.ts";
import { scrubDatabase, truncateWal } from "./scrub.ts";
import { advanceRollup } from "./rollup.ts";
import { foldEveryRecords, foldKeyIndex, unfoldedRecords } from "./key-index.ts";
import { RollupSums } from "./rollup-memory.ts";
import { loadSigningKey } from "../../trail/signing.ts";
import type { Landing, WriterReply, WriterRequest, WriterSettings } from "./writer-protocol.ts";
import { errorMessage } from "../../errors.ts";

declare const self: Worker;

let db: Database | null = null;
let chain: ChainWriter | undefined;
let checkpointer: Checkpointer | null = null;
let settings: WriterSettings;
let logDbPath = "";
let sinceCheckpoint = 0;
const timers: Timer[] = [];

const reply = (message: WriterReply) => self.postMessage(JSON.stringify(message));
const notice = (message: string) => reply({ kind: "notice", message });

function open(path: string, busyTimeoutMs: number, given: WriterSettings): void {
  settings = given;
  logDbPath = path;
  db = openDatabase(path, busyTimeoutMs);
  // A trail with many users and tasks inserts into its indexes at random pages, and every commit
  // writes each page it touched to the WAL. Checkpointing every 10,000 pages (~40 MB of WAL)
  // instead of SQLite's 1,000 copies a hot page back once instead of many times: measured on a
  // 200,000-record trail (5,000 users, 100,000 tasks), 76 → 56 µs of CPU per record. After a
  // checkpoint the WAL file is cut back to 64 MiB.
  db.run("PRAGMA wal_autocheckpoint = 10000");
  db.run("PRAGMA journal_size_limit = 67108864");
  const key = loadSigningKey(settings.signingKeyPath, { create: false });
  if (!key) throw new Error(`the signing key ${settings.signingKeyPath} is missing`);
  // The key also signs the erasure and retention events this thread appends (verify needs them signed).
  chain = new ChainWriter(db, Buffer.from(settings.hashKeyHex, "hex"), key);
  checkpointer = new Checkpointer(chain, key, settings.checkpoint, notice);
  // Records a previous run (or another writer) left unfolded are folded on the next commit.
  unfolded = unfoldedRecords(db);
  if (unfolded > 0) checkpointWalWhenIdle();
  timers.push(setInterval(() => maintain(checkpoint), settings.checkpoint.everySeconds * 1000));
  if (settings.retentionDays !== undefined) {
    maintain(retain);
    timers.push(setInterval(() => maintain(retain), 3_600_000));
  }
}

function checkpoint(): void {
  sinceCheckpoint = 0;
  checkpointer?.checkpoint();
}

function retain(): void {
  if (chain && settings.retentionDays !== undefined && applyRetention(chain, settings.retentionDays) > 0) scrubSoon(true);
}

/** Scrub requests not yet served, and whether any of them needs the file rewritten. */
let scrubIds: number[] = [];
let scrubVacuum = false;
let scrubScheduled = false;
/** A WAL truncation that readers kept from finishing is retried this often. */
const walRetryMs = 2000;
let walRetry: Timer | null = null;

/** Runs a scrub on the next turn, after the batches already here; requests meanwhile share it. */
function scrubSoon(vacuum: boolean, id?: number): void {
  if (id !== undefined) scrubIds.push(id);
  scrubVacuum ||= vacuum;
  if (scrubScheduled) return;
  scrubScheduled = true;
  setImmediate(runScrub);
}

function runScrub(): void {
  if (!scrubScheduled) return;
  scrubScheduled = false;
  while (pending.length > 0) commitPending();
  const ids = scrubIds;
  const vacuum = scrubVacuum;
  [scrubIds, scrubVacuum] = [[], false];
  let problem: string | null = "the audit database could not be opened for writing";
  if (db) {
    const scrubbed = vacuum ? scrubDatabase(db, logDbPath) : { problem: null, walInUse: !truncateWal(db) };
    problem = scrubbed.problem;
    // Readers held the WAL: old page images stay in it until it is truncated, tried until it is.
    if (scrubbed.walInUse) walRetry ??= setInterval(retryWalTruncation, walRetryMs);
  }
  if (ids.length > 0) reply({ kind: "scrubbed", ids, problem });
  else if (problem) notice(`after retention: ${problem}`);
}

function retryWalTruncation(): void {
  if (db && !truncateWal(db)) return;
  clearInterval(walRetry!);
  walRetry = null;
}

/** Maintenance never fails a batch; a locked database just waits for the next turn. */
function maintain(task: () => void): void {
  if (!db) return;
  try {
    task();
  } catch (error) {
    notice(`audit maintenance failed: ${errorMessage(error)}`);
  }
}

/** Records appended (by this thread or found at open) since the last fold into the key tables. */
let unfolded = 0;

/**
 * Folds every record past the key index's cursor, `foldEveryRecords` per transaction. Lookups
 * read unfolded records themselves, so a fold that fails (a locked database) costs lookup speed,
 * never correctness: it is retried after the next commits.
 */
function foldKeys(): void {
  if (!db) return;
  while (foldKeyIndex(db) === foldEveryRecords);
  unfolded = 0;
}

/** Batches waiting for the next commit; `report`: the store wants each record's seq and hash back. */
const pending: { rows: SQLValue[][]; report: boolean }[] = [];

/**
 * A fold writes one row per group (agent, user, model, key, hour, status, tag) of the records since
 * the last: with a fleet's thousands of users nearly one row per record when folds are 2 s apart
 * (measured: 14 µs of CPU per record at 3,000 records/s), a tenth of that 10 s apart. An idle writer
 * folds at once (see `checkpointWalWhenIdle`).
 */
const rollupEveryMs = 10_000;
let lastRollup = Number.NEGATIVE_INFINITY;
/** What this thread appended since the last fold, added up (used when it is exactly that range). */
const rollupSums = new RollupSums();

/**
 * Summaries add the records past the rollup cursor themselves, so a rollup that fails (e.g. the
 * database is locked by another writer) costs summary speed, never correctness: it is retried.
 */
function maybeAdvanceRollup(database: Database): void {
  const now = performance.now();
  if (now - lastRollup < rollupEveryMs) return;
  lastRollup = now;
  try {
    advanceRollup(database, undefined, rollupSums);
  } catch {
    // retried on a later commit
  }
}

/**
 * Appends final records to the chain. A call whose id already has a record (a second final record
 * for one call would be a bug) is dropped and reported, so it cannot fail the whole batch, and every
 * batch after it, for ever. Returns the rows appended; `landed` gets each one's seq and hash.
 */
function appendRows(database: Database, writer: ChainWriter, rows: SQLValue[][], landed?: Landing[]): SQLValue[][] {
  const note = (appended: SQLValue[][]) =>
    landed &&
    ((index: number, seq: number, hash: string, redacted: boolean) =>
      void landed.push([String(appended[index]![0]), seq, hash, redacted ? 1 : 0]));
  try {
    writer.append(rows, [], note(rows));
    return rows;
  } catch (error) {
    if (!/UNIQUE constraint failed: audit_records\.id/.test(errorMessage(error))) throw error;
  }
  const exists = database.query<{ one: number }, [string]>("SELECT 1 AS one FROM audit_records WHERE id = ?");
  const seen = new Set<string>();
  const fresh: SQLValue[][] = [];
  const dropped: string[] = [];
  for (const row of rows) {
    const id = String(row[0]);
    if (seen.has(id) || exists.get(id)) dropped.push(id);
    else fresh.push(row);
    seen.add(id);
  }
  landed?.splice(0);
  writer.append(fresh, [], note(fresh));
  notice(`dropped ${dropped.length} final audit record(s) for calls that already have one: ${dropped.slice(0, 5).join(", ")}`);
  return fresh;
}

/**
 * Rows per transaction at most (whole batches; one larger batch goes alone): a backlog drains in
 * transactions that each need little WAL space, so a nearly full disk still takes them.
 */
const maxCommitRows = 1024;

function commitPending(): void {
  if (pending.length === 0) return;
  let count = 0;
  for (let rows = 0; count < pending.length && (count === 0 || rows + pending[count]!.rows.length <= maxCommitRows); count++) {
    rows += pending[count]!.rows.length;
  }
  const batches = pending.splice(0, count);
  const pressed = diskFullAt !== null;
  // The WAL into the database first, if that can finish: this commit then reuses the WAL's space.
  if (pressed && roomToCheckpoint()) checkpointWal();
  try {
    if (!db || !chain) throw new Error("the audit database could not be opened for writing");
    const landed: Landing[] | undefined = batches.some((batch) => batch.report) ? [] : undefined;
    const rows = appendRows(
      db,
      chain,
      batches.flatMap((batch) => batch.rows),
      landed,
    );
    rollupSums.add(rows);
    sinceCheckpoint += rows.length;
    unfolded += rows.length;
    reply({ kind: "committed", batches: batches.length, landed });
    maybeAdvanceRollup(db);
    if (unfolded >= foldEveryRecords) maintain(foldKeys);
    if (pressed) {
      if (roomToCheckpoint()) checkpointWal();
      if (performance.now() - diskFullAt! > diskFullMs) diskFullAt = null;
    } else {
      checkpointWalWhenIdle();
    }
  } catch (error) {
    // The batches queued behind fail with it (the store sends them again, in order, once a probe
    // commits), rather than each waiting for its own failure.
    const failed = batches.length + pending.splice(0).length;
    const message = errorMessage(error);
    reply({ kind: "failed", batches: failed, message });
    if (/full/i.test(message)) {
      diskFullAt = performance.now();
      if (roomToCheckpoint()) checkpointWal();
    }
    return;
  }
  if (sinceCheckpoint >= settings.checkpoint.everyRecords) maintain(checkpoint);
  if (pending.length > 0) setImmediate(commitPending);
}

/**
 * Once the writer has been idle for a second, the WAL is copied into the database: little of it is
 * left uncopied when a disk fills up (copying that needs free space for its new pages, and until
 * then a WAL at the end of its space cannot take a commit), and the next commits rewrite the WAL
 * from its start, in space it already has. Under steady load SQLite's own checkpoint (every 10,000
 * pages) does this and the timer never fires. An idle writer also folds what is left into the key
 * tables, so lookups on a quiet trail read few unfolded records.
 */
const walIdleMs = 1000;
let walIdleTimer: Timer | null = null;

function checkpointWalWhenIdle(): void {
  if (walIdleTimer) {
    walIdleTimer.refresh();
    return;
  }
  walIdleTimer = setTimeout(() => {
    walIdleTimer = null;
    if (unfolded > 0) maintain(foldKeys);
    lastRollup = Number.NEGATIVE_INFINITY;
    if (db) maybeAdvanceRollup(db);
    checkpointWal();
  }, walIdleMs);
}

/**
 * After a commit failed for want of disk space (and until none has for `diskFullMs`), the WAL is
 * copied into the database after each commit, when the disk has room for all of it: the WAL then
 * restarts from its start and the next commits reuse its space. A copy that could not finish
 * would take the free space the commits need (the database grows page by page) and still leave
 * the WAL where it was, so without that room the commits go on into the WAL: a backlog drains as
 * far as the free space allows, at once, and the rest as soon as more is free.
 */
const diskFullMs = 10_000;
let diskFullAt: number | null = null;

/**
 * The disk has room for what a checkpoint adds to the database file: the pages the database has
 * (its WAL included) beyond the file's end.
 */
function roomToCheckpoint(): boolean {
  if (!db) return false;
  try {
    const pages = db.query<{ page_count: number }, []>("PRAGMA page_count").get()!.page_count;
    const pageSize = db.query<{ page_size: number }, []>("PRAGMA page_size").get()!.page_size;
    const growth = pages * pageSize - statSync(logDbPath).size;
    const disk = statfsSync(dirname(logDbPath));
    return disk.bavail * disk.bsize > growth + 16 * pageSize;
  } catch {
    return false;
  }
}

/** Copies the WAL into the database, without waiting for readers (PASSIVE). */
function checkpointWal(): void {
  try {
    db?.run("PRAGMA wal_checkpoint(PASSIVE)");
  } catch {
    // the disk is still full, or busy: tried again later
  }
}

self.onmessage = (event: MessageEvent<string>) => {
  const request = JSON.parse(event.data) as WriterRequest;
  if (request.kind === "batch") {
    if (pending.length === 0) setImmediate(commitPending);
    pending.push({ rows: request.rows, report: request.report === true });
  } else if (request.kind === "scrub") {
    scrubSoon(request.vacuum, request.id);
  } else if (request.kind === "open") {
    try {
      open(request.path, request.busyTimeoutMs, request.settings);
      reply({ kind: "opened" });
    } catch (error) {
      reply({ kind: "failed", batches: 0, message: errorMessage(error) });
    }
  } else {
    while (pending.length > 0) commitPending();
    runScrub(); // one asked for before the close
    for (const timer of timers.splice(0)) clearInterval(timer);
    if (walIdleTimer) clearTimeout(walIdleTimer);
    if (walRetry) clearInterval(walRetry);
    maintain(checkpoint);
    lastRollup = Number.NEGATIVE_INFINITY; // leave the rollup caught up
    if (db) maybeAdvanceRollup(db);
    maintain(foldKeys); // and the key tables
    checkpointer?.finalize();
    chain?.finalize();
    db?.close();
    db = null;
    reply({ kind: "closed" });
  }
};
