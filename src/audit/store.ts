/**
 * The embedded audit store: SQLite through bun:sqlite (WAL, synchronous=NORMAL: a committed
 * transaction survives a crash of the process).
 *  - `begin` appends the in-flight record to the intent log (./intent-log.ts) with a synchronous
 *    write before the call is forwarded: no call reaches an upstream without a durable record,
 *    and no database transaction sits on the hot path. If it cannot be written, `begin` rejects.
 *  - `write` (the final record) goes, with the others of the next few milliseconds, to a writer
 *    thread (./writer-worker.ts), which commits whatever arrived while it was busy in one
 *    transaction (group commit), so the proxy's event loop never waits on SQLite. A committed
 *    final record settles its intent; a failed commit keeps final records queued and retries, so
 *    nothing is silently dropped.
 * Reads (the audit API) use their own connection on the main thread. On start,
 * `recoverInterrupted` records the intents a killed process left behind as `interrupted`.
 */
import type { Database } from "bun:sqlite";
import { auditWorkerURL } from "./_worker-url.ts";
import { defaultCheckpointSettings, type CheckpointSettings } from "./checkpoint.ts";
import { filesReadableByOthers, openAuditLog, toRow } from "./database.ts";
import { IntentLog } from "./intent-log.ts";
import { recoverIntents } from "./intent-recovery.ts";
import type { SqliteAuditReader } from "./query.ts";
import type { AuditRecord } from "./record.ts";
import { loadHashKey } from "./secret.ts";
import { loadSigningKey, signingKeyPath } from "./signing.ts";
import { SqliteAuditTrail } from "./trail.ts";
import type { WriterReply, WriterRequest } from "./writer-protocol.ts";

export interface AuditStoreOptions {
  /** Called when a commit fails; queued final records are retried every `retryMs`. */
  onError?: (message: string) => void;
  /** Called for things an operator should know that are not failures. */
  onWarning?: (message: string) => void;
  retryMs?: number;
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

type Batch = AuditRecord[];

export class SqliteAuditStore {
  /** The main-thread connection: migrations, recovery and reads. */
  readonly db: Database;
  readonly reader: SqliteAuditReader;
  /** Verify, erase, export and audit events, on the main-thread connection. */
  readonly trail: SqliteAuditTrail;
  private readonly closeReader: () => void;
  private readonly worker: Worker;
  private readonly intents: IntentLog;
  private finals: AuditRecord[] = [];
  /** Batches sent to the writer and not yet answered, oldest first (answers come in order). */
  private readonly unanswered: Batch[] = [];
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
    const log = openAuditLog(path);
    // Files an older version created world-readable: named, not changed (access may be deliberate).
    for (const { file, mode } of filesReadableByOthers(path)) {
      options.onWarning?.(`${file} is readable by other users (mode ${mode.toString(8)}) though it holds user ids and task text; run: chmod 600 ${file}`);
    }
    this.db = log.db;
    this.reader = log.reader;
    this.closeReader = log.close;
    const hashKey = loadHashKey(path);
    const keyPath = signingKeyPath(path, options.signingKey);
    const signingKey = loadSigningKey(keyPath, { create: true })!;
    this.intents = new IntentLog(path);
    this.trail = new SqliteAuditTrail(this.db, signingKey, hashKey, {
      verifyOffThread: path,
      checkpoint: options.checkpoint,
      // No settled intent line of an erased user may stay on disk.
      afterErase: () => this.intents.compact(),
    });
    const adopted = this.trail.chain.adoptUnchained();
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

  /** Makes the in-flight record durable in the intent log; rejects if it cannot be written. */
  begin(record: AuditRecord): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the audit store is closed"));
    try {
      this.intents.append(record);
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** Queue a final record; it is committed with the others written within `finalDelayMs`. */
  write(record: AuditRecord): void {
    this.finals.push(record);
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

  /** Records the calls a killed process left in flight as interrupted; returns how many. */
  recoverInterrupted(): number {
    const recovered = recoverIntents(this.trail.chain, this.path);
    this.intents.prepare();
    return recovered;
  }

  /** Commits what is queued, stops the writer thread and closes the database. */
  async close(): Promise<void> {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await this.flush();
    // One more attempt for records a failed commit put back; a writer that still fails must not
    // hang shutdown (what is left is reported below).
    if (this.finals.length > 0) await this.flush();
    this.closed = true;
    this.worker.ref();
    await new Promise<void>((resolve) => {
      this.onReply = () => resolve();
      this.send({ kind: "close" });
    });
    this.worker.terminate();
    this.trail.close();
    this.closeReader();
    await this.intents.close();
    if (this.finals.length > 0) {
      this.options.onError?.(`${this.finals.length} final audit record(s) could not be written before shutdown`);
    }
  }

  private send(request: WriterRequest): void {
    this.worker.postMessage(JSON.stringify(request));
  }

  private sendFinals(): void {
    if (this.finals.length === 0 || this.closed) return;
    const batch = this.finals;
    this.finals = [];
    if (this.unanswered.length === 0) this.worker.ref();
    this.unanswered.push(batch);
    this.send({ kind: "batch", rows: batch.map(toRow) });
  }

  private received(reply: WriterReply): void {
    if (reply.kind === "notice") return this.options.onError?.(reply.message);
    if (this.onReply) return this.onReply(reply);
    if (reply.kind !== "committed" && reply.kind !== "failed") return;
    const batches = this.unanswered.splice(0, reply.batches);
    if (reply.kind === "committed") {
      for (const batch of batches) this.intents.settle(batch.map((record) => record.id));
    } else {
      this.batchesFailed(batches, reply.message);
    }
    if (this.unanswered.length === 0) {
      this.worker.unref();
      this.wakeIdle();
    }
  }

  private batchesFailed(batches: Batch[], message: string): void {
    // Final records must not be lost: keep them, first in line, and try again a little later.
    this.finals = batches.flat().concat(this.finals);
    this.options.onError?.(`audit write failed, will retry: ${message}`);
    if (this.finals.length > 0 && !this.retryTimer && !this.closed) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.sendFinals();
      }, this.options.retryMs ?? 1000);
    }
  }

  private writerFailed(message: string): void {
    this.batchesFailed(this.unanswered.splice(0), message);
    this.wakeIdle();
  }

  private wakeIdle(): void {
    for (const wake of this.idleWaiters.splice(0)) wake();
  }
}
