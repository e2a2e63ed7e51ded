/**
 * The embedded audit store: SQLite through bun:sqlite (WAL, synchronous=NORMAL: a committed
 * transaction survives a crash of the process).
 *  - `begin` appends the in-flight record to the intent log (./intent-log.ts) with a synchronous
 *    write before the call is forwarded: no call reaches an upstream without a durable record,
 *    and no database transaction sits on the hot path. If it cannot be written, `begin` rejects.
 *  - `write` (the final record) is first written to the intent log after its intent, so once it
 *    returns a kill -9 no longer loses the call's usage (the pipeline releases a call's last byte
 *    only then). It then goes, with the others of the next few milliseconds, to a writer thread
 *    (./writer-thread.ts, ./writer-worker.ts), which commits whatever arrived while it was busy in
 *    one transaction (group commit), so the proxy's event loop never waits on SQLite. A committed
 *    final record settles its call in the intent log; a failed commit keeps final records queued
 *    and retries, so nothing is silently dropped.
 *  - The final records waiting for a commit are bounded (`maxBacklog`): beyond it `begin` rejects,
 *    so a database that cannot commit (disk full, locked for long) refuses calls instead of
 *    forwarding them on a growing backlog.
 *  - An erasure (API, CLI, retention) is followed by a rewrite of the database file on the writer
 *    thread (./scrub.ts), so no erased value stays in unused parts of its pages or in its WAL, and by
 *    a compaction of the intent log. An erasure by another process (the CLI) is noticed within a
 *    second (./erasure-watch.ts): the intent log is compacted and the WAL truncated then too.
 * The audit API (`reader`, `trail`, `keys`) works on a connection of its own in a reader thread
 * (./reader-thread.ts), so a query or an erasure waiting on a lock never blocks the event loop.
 * The main-thread connection does start-up work only: migrations, adopting records from before the
 * chain and, in `recoverInterrupted`, committing what a killed process left in its intent log.
 */
import type { Database } from "bun:sqlite";
import { defaultCheckpointSettings, type CheckpointSettings } from "./checkpoint.ts";
import { filesReadableByOthers, openAuditLog, toRow } from "./database.ts";
import { IntentLog } from "./intent-log.ts";
import { ErasureWatch } from "./erasure-watch.ts";
import { recoverIntents } from "./intent-recovery.ts";
import type { AuditReader } from "./query.ts";
import { ReaderThread } from "./reader-thread.ts";
import type { AuditRecord } from "./record.ts";
import { loadHashKey } from "./secret.ts";
import { loadSigningKey, signingKeyPath } from "./signing.ts";
import { SqliteAuditTrail, type AuditTrail } from "./trail.ts";
import { WriterThread } from "./writer-thread.ts";
import { errorMessage } from "../errors.ts";
import type { KeyAdmin } from "../keys/admin.ts";

export interface AuditStoreOptions {
  /** Called when a commit fails; queued final records are retried every `retryMs` (default 250). */
  onError?: (message: string) => void;
  /** Called for things an operator should know that are not failures. */
  onWarning?: (message: string) => void;
  retryMs?: number;
  /**
   * Final records that may wait for their commit (default 10,000): beyond it, new calls are refused
   * (`begin` rejects) until the database takes them again.
   */
  maxBacklog?: number;
  /** How long a write waits for a lock held by another process before it fails. */
  busyTimeoutMs?: number;
  /**
   * How long final records gather before they go to the writer thread together (ms, default 5).
   * Nothing waits on them; a crash inside this window leaves those calls `interrupted`.
   */
  finalDelayMs?: number;
  /** When to sign checkpoints (default every 1000 records or 60 s), and where else to send them. */
  checkpoint?: CheckpointSettings;
  /** The Ed25519 key file (default `<path>.signing-key`; generated if missing). */
  signingKey?: string;
  /** Erase personal fields of records older than this many days (on open, then hourly). */
  retentionDays?: number;
}

/**
 * Records of refused calls (never forwarded, no intent) are dropped, and counted, once the backlog
 * is this many times `maxBacklog`: an outage must not grow memory without bound.
 */
const refusedRecordsCap = 2;

export class SqliteAuditStore {
  /** The main-thread connection: migrations and recovery, at start. */
  readonly db: Database;
  /** Queries and summaries, served by the reader thread. */
  readonly reader: AuditReader;
  /** Verify, erase, export and audit events, served by the reader thread (verify by its own). */
  readonly trail: AuditTrail;
  /** The proxy keys in this database (list, create, revoke), served by the reader thread. */
  readonly keys: KeyAdmin;
  /** The trail on the main-thread connection, for start-up work (adopting, recovering). */
  private readonly local: SqliteAuditTrail;
  private readonly api: ReaderThread;
  private readonly closeMain: () => void;
  private readonly writer: WriterThread;
  private readonly intents: IntentLog;
  private readonly maxBacklog: number;
  /** Records of refused calls dropped while the backlog was over its cap, not yet reported. */
  private droppedRefused = 0;
  private readonly watch: ErasureWatch;
  private closed = false;

  constructor(
    readonly path: string,
    private readonly options: AuditStoreOptions = {},
  ) {
    if (path === ":memory:") throw new Error("The SQLite audit store needs a file; ':memory:' would be lost with the process.");
    this.maxBacklog = options.maxBacklog ?? 10_000;
    const log = openAuditLog(path);
    // Files an older version created world-readable: named, not changed (access may be deliberate).
    for (const { file, mode } of filesReadableByOthers(path)) {
      options.onWarning?.(`${file} is readable by other users (mode ${mode.toString(8)}) though it holds user ids and task text; run: chmod 600 ${file}`);
    }
    this.db = log.db;
    this.closeMain = log.close;
    const hashKey = loadHashKey(path);
    const keyPath = signingKeyPath(path, options.signingKey);
    const signingKey = loadSigningKey(keyPath, { create: true })!;
    this.intents = new IntentLog(path, undefined, (message) => options.onError?.(message));
    this.local = new SqliteAuditTrail(this.db, signingKey, hashKey);
    this.api = new ReaderThread({
      settings: { path, busyTimeoutMs: options.busyTimeoutMs ?? 5000, hashKeyHex: Buffer.from(hashKey).toString("hex"), signingKeyPath: keyPath },
      signingKey,
      checkpointFile: options.checkpoint?.file,
      // No settled intent line of an erased user may stay on disk, nor an erased value in the file.
      afterErase: () => {
        this.compactIntents();
        return this.writer.scrub(true);
      },
      onError: (message) => options.onError?.(message),
    });
    this.reader = this.api;
    this.trail = this.api;
    this.keys = this.api;
    const adopted = this.local.chain.adoptUnchained();
    if (adopted > 0) options.onWarning?.(`${adopted} record(s) written before the hash chain existed are now chained (protected from now on)`);
    const report = (message: string) => options.onError?.(message);
    this.writer = new WriterThread(
      {
        kind: "open",
        path,
        busyTimeoutMs: options.busyTimeoutMs ?? 5000,
        settings: {
          hashKeyHex: Buffer.from(hashKey).toString("hex"),
          signingKeyPath: keyPath,
          checkpoint: options.checkpoint ?? defaultCheckpointSettings,
          retentionDays: options.retentionDays,
        },
      },
      {
        onCommitted: (ids) => {
          this.intents.settle(ids);
          this.reportDropped();
        },
        onError: report,
        onWarning: (message) => options.onWarning?.(message),
        retryMs: options.retryMs ?? 250,
        finalDelayMs: options.finalDelayMs ?? 5,
      },
    );
    // The CLI rewrote the file itself; the WAL may still hold old pages if this process was reading.
    this.watch = new ErasureWatch(path, () => {
      this.compactIntents();
      void this.writer.scrub(false);
    });
  }

  /**
   * Makes the in-flight record durable in the intent log; rejects if it cannot be written, or if
   * `maxBacklog` final records already wait for the database.
   */
  begin(record: AuditRecord): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the audit store is closed"));
    const waiting = this.writer.uncommitted;
    if (waiting >= this.maxBacklog) {
      return Promise.reject(
        new Error(`${waiting} final audit records wait to be committed (audit.maxBacklog is ${this.maxBacklog}): the database does not take them (disk full? locked by another process?)`),
      );
    }
    try {
      this.intents.append(record);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /**
   * A final record: written to the intent log after its call's intent (durable when this returns),
   * then committed with the others written within `finalDelayMs`.
   */
  write(record: AuditRecord): void {
    const row = JSON.stringify(toRow(record));
    try {
      this.intents.appendFinal(record.id, row);
    } catch (error) {
      this.options.onError?.(`the final record of call ${record.id} could not be written to the intent log (${errorMessage(error)}); it waits in memory for its commit`);
    }
    if (this.writer.uncommitted >= this.maxBacklog * refusedRecordsCap && !this.intents.has(record.id)) {
      this.droppedRefused++;
      return;
    }
    this.writer.queue({ id: record.id, row });
  }

  /** Resolves once everything queued so far has been answered by the writer (committed or failed). */
  flush(): Promise<void> {
    return this.writer.flush();
  }

  /**
   * Commits what a killed process left in its intent log: final records as they are, calls in
   * flight as interrupted; returns how many were interrupted.
   */
  recoverInterrupted(): number {
    const { interrupted, finished } = recoverIntents(this.local.chain, this.path);
    if (finished > 0) this.options.onWarning?.(`${finished} call(s) had finished but were not committed when the proxy last stopped; committed from the intent log`);
    this.intents.prepare();
    return interrupted;
  }

  /** Commits what is queued, stops the writer thread and closes the database. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watch.close();
    // The reader thread first (it answers what it was asked and records unfinished exports as
    // cancelled), so the writer's last checkpoint covers its events.
    await this.api.close().catch((error: Error) => this.options.onError?.(`closing the audit reader thread: ${error.message}`));
    await this.writer.close();
    this.local.close();
    this.closeMain();
    const left = this.writer.uncommitted;
    const kept = Math.min(left, this.intents.unsettled);
    await this.intents.close();
    if (left > 0) {
      this.options.onError?.(
        `${left} final audit record(s) could not be committed before shutdown: ${kept} of forwarded calls are in the intent log (the next start commits them)${left > kept ? `, ${left - kept} of refused calls are lost` : ""}`,
      );
    }
    this.reportDropped();
  }

  /** After an erasure; a failure (e.g. no room for the rewritten segment) is reported, the erasure stands. */
  private compactIntents(): void {
    try {
      this.intents.compact();
    } catch (error) {
      this.options.onError?.(`after an erasure, the intent log could not be rewritten without its settled lines: ${errorMessage(error)}`);
    }
  }

  private reportDropped(): void {
    if (this.droppedRefused === 0) return;
    this.options.onError?.(
      `${this.droppedRefused} record(s) of refused calls (never forwarded) were dropped: the audit backlog was over ${this.maxBacklog * refusedRecordsCap} records`,
    );
    this.droppedRefused = 0;
  }
}
