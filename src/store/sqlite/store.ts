/**
 * The embedded audit store: SQLite through bun:sqlite (WAL, synchronous=NORMAL: a committed
 * transaction survives a crash of the process).
 *  - `begin` appends the in-flight record to the intent log (./intent-log.ts) with a synchronous
 *    write before the call is forwarded: no call reaches an upstream without a durable record,
 *    and no database transaction sits on the hot path. If it cannot be written, `begin` rejects.
 *  - `write` (the final record) is first written to the intent log after its intent, so once it
 *    returns a kill -9 no longer loses the call's usage (the pipeline releases a call's last byte
 *    only then). It then goes, with the others of the next few milliseconds, to a writer thread
 *    (./writer-worker.ts), which commits whatever arrived while it was busy in one transaction
 *    (group commit), so the proxy's event loop never waits on SQLite. A committed final record
 *    settles its call in the intent log; a failed commit keeps final records queued and retries,
 *    so nothing is silently dropped.
 *  - The final records waiting for a commit are bounded (`maxBacklog`): beyond it `begin` rejects,
 *    so a database that cannot commit (disk full, locked for long) refuses calls instead of
 *    forwarding them on a growing backlog. A failing database gets one small batch at a time, each
 *    that commits doubling the next, so a backlog drains as fast as a nearly full disk takes it.
 * The audit API (`reader`, `trail`) works on a connection of its own in a reader thread
 * (./reader-thread.ts), so a query or an erasure waiting on a lock never blocks the event loop.
 * The main-thread connection does start-up work only: migrations, adopting records from before the
 * chain and, in `recoverInterrupted`, committing what a killed process left in its intent log.
 */
import type { Database } from "bun:sqlite";
import { auditWorkerURL } from "./_worker-url.ts";
import { defaultCheckpointSettings, type CheckpointSettings } from "../../trail/checkpoint.ts";
import { filesReadableByOthers, openAuditLog } from "./database.ts";
import { toRow } from "../../trail/row.ts";
import { IntentLog } from "./intent-log.ts";
import { recoverIntents } from "./intent-recovery.ts";
import { ReaderThread } from "./reader-thread.ts";
import type { AuditRecord } from "../../trail/record.ts";
import { loadHashKey } from "../../trail/secret.ts";
import { loadSigningKey, signingKeyPath } from "../../trail/signing.ts";
import { SqliteAuditTrail } from "./trail.ts";
import type { Landing, WriterReply, WriterRequest } from "./writer-protocol.ts";
import { errorMessage } from "../../errors.ts";
import type { AuditReader, AuditStore, AuditTrail, CommittedRecord, ProxyKeyStore, Recovery } from "../contract.ts";
import { personalColumns } from "../../trail/chain.ts";
import { SqliteProxyKeys } from "./keys.ts";

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
 * A final record on its way to the writer: its call id, its row as JSON (`columns` order), and the
 * record itself while someone listens for committed records.
 */
interface Final {
  id: string;
  row: string;
  record?: AuditRecord;
}
type Batch = Final[];

/** Final records per message to the writer (the writer commits a few messages per transaction). */
const batchRows = 256;
/**
 * While commits fail, one batch at a time goes to the writer: first this many rows; each that
 * commits doubles the next (the backlog drains as fast as the disk takes it), each failure halves it.
 */
const probeRows = 32;
/**
 * Records of refused calls (never forwarded, no intent) are dropped, and counted, once the backlog
 * is this many times `maxBacklog`: an outage must not grow memory without bound.
 */
const refusedRecordsCap = 2;

export class SqliteAuditStore implements AuditStore {
  /** The main-thread connection: migrations and recovery at start, then proxy-key lookups. */
  readonly db: Database;
  /** Queries and summaries, served by the reader thread. */
  readonly reader: AuditReader;
  /** Verify, erase, export and audit events, served by the reader thread (verify by its own). */
  readonly trail: AuditTrail;
  /** The proxy keys in this database: looked up on this thread (one indexed read), managed on the reader thread. */
  readonly keys: ProxyKeyStore;
  readonly hashKey: Uint8Array;
  private readonly keyTable: SqliteProxyKeys;
  private readonly listeners = new Set<(records: readonly CommittedRecord[]) => void>();
  /** The trail on the main-thread connection, for start-up work (adopting, recovering). */
  private readonly local: SqliteAuditTrail;
  private readonly api: ReaderThread;
  private readonly closeMain: () => void;
  private readonly worker: Worker;
  private readonly intents: IntentLog;
  /** Final records whose commit failed, to be sent again first, in order. */
  private retry: Final[] = [];
  private finals: Final[] = [];
  /** Batches sent to the writer and not yet answered, oldest first (answers come in order). */
  private readonly unanswered: Batch[] = [];
  /** Final records written and not yet committed (retry + finals + unanswered). */
  private uncommitted = 0;
  /** The last commit failed: one batch of `window` rows at a time, until a full-size one commits. */
  private failing = false;
  private window = probeRows;
  private readonly maxBacklog: number;
  /** Records of refused calls dropped while the backlog was over its cap, not yet reported. */
  private droppedRefused = 0;
  private finalsScheduled = false;
  private retryTimer: Timer | undefined;
  private idleWaiters: (() => void)[] = [];
  private onReply: ((reply: WriterReply) => void) | null = null;
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
    this.hashKey = hashKey;
    const keyPath = signingKeyPath(path, options.signingKey);
    const signingKey = loadSigningKey(keyPath, { create: true })!;
    this.intents = new IntentLog(path);
    this.local = new SqliteAuditTrail(this.db, signingKey, hashKey);
    this.api = new ReaderThread({
      settings: { path, busyTimeoutMs: options.busyTimeoutMs ?? 5000, hashKeyHex: Buffer.from(hashKey).toString("hex"), signingKeyPath: keyPath },
      signingKey,
      checkpointFile: options.checkpoint?.file,
      // No settled intent line of an erased user may stay on disk.
      afterErase: () => this.intents.compact(),
      onError: (message) => options.onError?.(message),
    });
    this.reader = this.api;
    this.trail = this.api;
    this.keyTable = new SqliteProxyKeys(this.db);
    const api = this.api;
    const table = this.keyTable;
    this.keys = {
      find: async (secret) => table.find(secret),
      list: () => api.listKeys(),
      create: (request, actor) => api.createKey(request, actor),
      revoke: (id, actor) => api.revokeKey(id, actor),
    };
    const adopted = this.local.chain.adoptUnchained();
    if (adopted > 0) options.onWarning?.(`${adopted} record(s) written before the hash chain existed are now chained (protected from now on)`);
    this.worker = new Worker(auditWorkerURL("writer-worker"));
    // An idle writer must not keep a process alive; one with unanswered batches must (ref() in
    // sendFinals, unref() once all are answered), or a shutdown could exit before its last commit.
    this.worker.unref();
    this.worker.onmessage = (event: MessageEvent<string>) => this.received(JSON.parse(event.data) as WriterReply);
    this.worker.onerror = (event) => this.writerFailed(`the audit writer thread crashed: ${event.message}`);
    // The writer opens its connection before any batch arrives; only a failure needs reporting.
    this.onReply = (reply) => {
      this.onReply = null;
      if (reply.kind === "failed") options.onError?.(`cannot open ${path} for writing: ${reply.message}`);
    };
    this.send({
      kind: "open",
      path,
      busyTimeoutMs: options.busyTimeoutMs ?? 5000,
      settings: {
        hashKeyHex: Buffer.from(hashKey).toString("hex"),
        signingKeyPath: keyPath,
        checkpoint: options.checkpoint ?? defaultCheckpointSettings,
        retentionDays: options.retentionDays,
      },
    });
  }

  /**
   * Makes the in-flight record durable in the intent log; rejects if it cannot be written, or if
   * `maxBacklog` final records already wait for the database.
   */
  begin(record: AuditRecord): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the audit store is closed"));
    if (this.uncommitted >= this.maxBacklog) {
      return Promise.reject(
        new Error(`${this.uncommitted} final audit records wait to be committed (audit.maxBacklog is ${this.maxBacklog}): the database does not take them (disk full? locked by another process?)`),
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
  commit(record: AuditRecord): void {
    const row = JSON.stringify(toRow(record));
    try {
      this.intents.appendFinal(record.id, row);
    } catch (error) {
      this.options.onError?.(`the final record of call ${record.id} could not be written to the intent log (${errorMessage(error)}); it waits in memory for its commit`);
    }
    if (this.uncommitted >= this.maxBacklog * refusedRecordsCap && !this.intents.has(record.id)) {
      this.droppedRefused++;
      return;
    }
    this.finals.push(this.listeners.size > 0 ? { id: record.id, row, record } : { id: record.id, row });
    this.uncommitted++;
    if (this.finalsScheduled || this.closed) return;
    this.finalsScheduled = true;
    setTimeout(() => {
      this.finalsScheduled = false;
      if (!this.retryTimer) this.sendFinals();
    }, this.options.finalDelayMs ?? 5);
  }

  /** Resolves once everything queued so far has been answered by the writer (committed or failed). */
  flush(): Promise<void> {
    this.sendFinals();
    if (this.unanswered.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  onCommitted(listener: (records: readonly CommittedRecord[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Commits what a killed process left in its intent log: final records as they are, calls in
   * flight as interrupted (reported to `onCommitted` like any committed record).
   */
  async recover(): Promise<Recovery> {
    const committed: CommittedRecord[] | undefined = this.listeners.size > 0 ? [] : undefined;
    const recovery = recoverIntents(this.local.chain, this.path, committed);
    this.intents.prepare();
    if (committed && committed.length > 0) this.announce(committed);
    return recovery;
  }

  /** `recover`, synchronously, for tests and tools: how many calls were recorded interrupted. */
  recoverInterrupted(): number {
    const { interrupted } = recoverIntents(this.local.chain, this.path);
    this.intents.prepare();
    return interrupted;
  }

  /** Commits what is queued, stops the writer thread and closes the database. */
  async close(): Promise<void> {
    if (this.closed) return;
    // The reader thread first (it answers what it was asked and records unfinished exports as
    // cancelled), so the writer's last checkpoint covers its events.
    await this.api.close().catch((error: Error) => this.options.onError?.(`closing the audit reader thread: ${error.message}`));
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await this.flush();
    // One more attempt, with everything, for records a failed commit put back; a writer that still
    // fails must not hang shutdown (what is left is reported below; it is in the intent log).
    this.failing = false;
    this.window = probeRows;
    if (this.uncommitted > 0) await this.flush();
    clearTimeout(this.retryTimer);
    this.closed = true;
    this.worker.ref();
    await new Promise<void>((resolve) => {
      this.onReply = () => resolve();
      this.send({ kind: "close" });
    });
    this.worker.terminate();
    this.keyTable.close();
    this.local.close();
    this.closeMain();
    await this.intents.close();
    if (this.uncommitted > 0) {
      this.options.onError?.(`${this.uncommitted} final audit record(s) could not be committed before shutdown; the next start commits them from the intent log`);
    }
    this.reportDropped();
  }

  private send(request: WriterRequest): void {
    this.worker.postMessage(JSON.stringify(request));
  }

  /** Sends what waits, retried records first, in batches; while commits fail, one probe batch. */
  private sendFinals(): void {
    if (this.closed || (this.failing && this.unanswered.length > 0)) return;
    for (;;) {
      const source = this.retry.length > 0 ? this.retry : this.finals;
      if (source.length === 0) return;
      const batch = source.splice(0, this.failing ? this.window : batchRows);
      if (this.unanswered.length === 0) this.worker.ref();
      this.unanswered.push(batch);
      const report = this.listeners.size > 0 ? `"report":true,` : "";
      this.worker.postMessage(`{"kind":"batch",${report}"rows":[${batch.map((final) => final.row).join(",")}]}`);
      if (this.failing) return;
    }
  }

  private received(reply: WriterReply): void {
    if (reply.kind === "notice") return this.options.onError?.(reply.message);
    if (this.onReply) return this.onReply(reply);
    if (reply.kind !== "committed" && reply.kind !== "failed") return;
    const batches = this.unanswered.splice(0, reply.batches);
    if (reply.kind === "committed") {
      for (const batch of batches) {
        this.intents.settle(batch.map((final) => final.id));
        this.uncommitted -= batch.length;
      }
      if (reply.landed) this.announceLanded(batches, reply.landed);
      this.reportDropped();
      if (this.failing) {
        // The database takes records again: larger batches follow at once, then everything.
        this.window *= 2;
        if (this.window > batchRows) {
          this.failing = false;
          this.window = probeRows;
          this.options.onWarning?.(`audit writes succeed again; ${this.uncommitted} final record(s) still to commit`);
        }
        this.sendFinals();
      }
    } else {
      this.batchesFailed(batches, reply.message);
    }
    if (this.unanswered.length === 0) {
      this.worker.unref();
      this.wakeIdle();
    }
  }

  private batchesFailed(batches: Batch[], message: string): void {
    // Final records must not be lost: keep them, first in line and in order, and try again a
    // little later with one small batch.
    for (const batch of batches) this.retry.push(...batch);
    if (!this.failing) this.options.onError?.(`audit write failed, will retry: ${message}`);
    else this.window = Math.max(probeRows, this.window / 2);
    this.failing = true;
    if (this.retry.length > 0 && !this.retryTimer && !this.closed) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.sendFinals();
      }, this.options.retryMs ?? 250);
    }
  }

  /** The committed records of these batches, as stored (seq, hash; redacted if their user was erased in flight). */
  private announceLanded(batches: Batch[], landed: Landing[]): void {
    const byId = new Map<string, AuditRecord>();
    for (const batch of batches) for (const final of batch) if (final.record) byId.set(final.id, final.record);
    const committed: CommittedRecord[] = [];
    for (const [id, seq, hash, redacted] of landed) {
      const record = byId.get(id);
      if (!record) continue; // written before anyone listened
      const stored: CommittedRecord = { ...record, seq, hash };
      if (redacted) for (const column of personalColumns) (stored as Record<string, unknown>)[column] = null;
      committed.push(stored);
    }
    if (committed.length > 0) this.announce(committed);
  }

  private announce(records: readonly CommittedRecord[]): void {
    for (const listener of this.listeners) {
      try {
        listener(records);
      } catch (error) {
        this.options.onError?.(`a listener of committed audit records failed: ${errorMessage(error)}`);
      }
    }
  }

  private reportDropped(): void {
    if (this.droppedRefused === 0) return;
    this.options.onError?.(
      `${this.droppedRefused} record(s) of refused calls (never forwarded) were dropped: the audit backlog was over ${this.maxBacklog * refusedRecordsCap} records`,
    );
    this.droppedRefused = 0;
  }

  private writerFailed(message: string): void {
    this.batchesFailed(this.unanswered.splice(0), message);
    this.wakeIdle();
  }

  private wakeIdle(): void {
    for (const wake of this.idleWaiters.splice(0)) wake();
  }
}
