/**
 * The embedded audit store: SQLite through bun:sqlite (WAL, synchronous=NORMAL: a committed
 * transaction survives a crash of the process). Writes go to a writer thread
 * (./writer-worker.ts) one batch at a time; whatever queues up meanwhile forms the next batch
 * (group commit), so the proxy's event loop never waits on the disk:
 *  - `begin` resolves only after the in-flight record is committed, so no call reaches an upstream
 *    without a durable record;
 *  - `write` (the final record) is queued for the next batch; a failed commit keeps final records
 *    queued and retries, so nothing is silently dropped.
 * Reads (the audit API) use their own connection on the main thread. On start, records left in
 * flight by a killed process become `interrupted` (`recoverInterrupted`).
 */
import type { Database } from "bun:sqlite";
import { openAuditLog, toRow } from "./database.ts";
import type { SqliteAuditReader } from "./query.ts";
import type { AuditRecord } from "./record.ts";
import type { WriterReply, WriterRequest } from "./writer-protocol.ts";

/**
 * Where the writer thread's code is. In the compiled binary (`bun run build` lists the worker as a
 * second entrypoint) it lives in Bun's embedded filesystem, at its path relative to the
 * entrypoints' common folder (src/), as .js; in a checkout it is the file beside this one.
 */
function writerWorkerURL(): string {
  if (import.meta.url.startsWith("file:///$bunfs/")) return "/$bunfs/root/audit/writer-worker.js";
  return new URL("./writer-worker.ts", import.meta.url).href;
}

interface QueuedBegin {
  record: AuditRecord;
  resolve: () => void;
  reject: (error: Error) => void;
}

export interface AuditStoreOptions {
  /** Called when a commit fails; queued final records are retried every `retryMs`. */
  onError?: (message: string) => void;
  retryMs?: number;
  /** How long a write waits for a lock held by another process before it fails. */
  busyTimeoutMs?: number;
}

export class SqliteAuditStore {
  /** The main-thread connection: migrations, recovery and reads. */
  readonly db: Database;
  readonly reader: SqliteAuditReader;
  private readonly closeReader: () => void;
  private readonly worker: Worker;
  private begins: QueuedBegin[] = [];
  private finals: AuditRecord[] = [];
  /** The batch the writer is committing, if any. */
  private sent: { begins: QueuedBegin[]; finals: AuditRecord[] } | null = null;
  private pumpScheduled = false;
  private retryTimer: Timer | undefined;
  private idleWaiters: (() => void)[] = [];
  private onReply: ((reply: WriterReply) => void) | null = null;
  private closed = false;

  constructor(
    readonly path: string,
    private readonly options: AuditStoreOptions = {},
  ) {
    const log = openAuditLog(path);
    this.db = log.db;
    this.reader = log.reader;
    this.closeReader = log.close;
    this.worker = new Worker(writerWorkerURL());
    // The thread alone must not keep a process alive (a server or pending work does).
    this.worker.unref();
    this.worker.onmessage = (event: MessageEvent<string>) => this.received(JSON.parse(event.data) as WriterReply);
    this.worker.onerror = (event) => this.writerFailed(`the audit writer thread crashed: ${event.message}`);
    this.send({ kind: "open", path, busyTimeoutMs: options.busyTimeoutMs ?? 5000 });
    // The writer opens its connection before any batch arrives; only a failure needs reporting.
    this.onReply = (reply) => {
      this.onReply = null;
      if (reply.kind === "failed") options.onError?.(`cannot open ${path} for writing: ${reply.message}`);
    };
  }

  /** Queue the in-flight record; resolves once it is committed to disk. */
  begin(record: AuditRecord): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the audit store is closed"));
    return new Promise((resolve, reject) => {
      this.begins.push({ record, resolve, reject });
      this.schedulePump();
    });
  }

  /** Queue a final record: it completes its in-flight row, or is a new row for a call never forwarded. */
  write(record: AuditRecord): void {
    this.finals.push(record);
    this.schedulePump();
  }

  /** Resolves once everything queued so far is committed (or a commit failed). */
  flush(): Promise<void> {
    this.pump();
    if (!this.sent) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Mark records left in flight by a previous process as interrupted; returns how many. */
  recoverInterrupted(): number {
    return this.db.run(
      "UPDATE audit_records SET outcome = 'interrupted', error_type = COALESCE(error_type, 'interrupted') WHERE outcome IS NULL",
    ).changes;
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
    await new Promise<void>((resolve) => {
      this.onReply = () => resolve();
      this.send({ kind: "close" });
    });
    this.worker.terminate();
    this.closeReader();
    if (this.finals.length > 0) {
      this.options.onError?.(`${this.finals.length} final audit record(s) could not be written before shutdown`);
    }
  }

  private send(request: WriterRequest): void {
    this.worker.postMessage(JSON.stringify(request));
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.sent) return;
    this.pumpScheduled = true;
    // One event-loop turn lets the calls of the same turn share a commit.
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Sends everything queued as one batch, unless a batch is already being committed. */
  private pump(): void {
    if (this.sent || this.closed) return;
    if (this.begins.length === 0 && this.finals.length === 0) return this.wakeIdle();
    const batch = { begins: this.begins, finals: this.finals };
    this.begins = [];
    this.finals = [];
    this.sent = batch;
    this.send({
      kind: "batch",
      begins: batch.begins.map((item) => toRow(item.record)),
      finals: batch.finals.map(toRow),
    });
  }

  private received(reply: WriterReply): void {
    if (this.onReply) return this.onReply(reply);
    const batch = this.sent;
    this.sent = null;
    if (!batch) return;
    if (reply.kind === "committed") {
      for (const item of batch.begins) item.resolve();
    } else {
      this.batchFailed(batch, reply.kind === "failed" ? reply.message : `unexpected writer reply ${reply.kind}`);
    }
    if (this.begins.length > 0 || (this.finals.length > 0 && !this.retryTimer)) this.pump();
    else this.wakeIdle();
  }

  private batchFailed(batch: { begins: QueuedBegin[]; finals: AuditRecord[] }, message: string): void {
    const error = new Error(message);
    for (const item of batch.begins) item.reject(error);
    // Final records must not be lost: keep them, first in line, and try again a little later.
    this.finals = batch.finals.concat(this.finals);
    this.options.onError?.(`audit write failed, will retry: ${message}`);
    if (this.finals.length > 0 && !this.retryTimer && !this.closed) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.pump();
      }, this.options.retryMs ?? 1000);
    }
    this.wakeIdle();
  }

  private writerFailed(message: string): void {
    const batch = this.sent;
    this.sent = null;
    if (batch) this.batchFailed(batch, message);
    for (const item of this.begins.splice(0)) item.reject(new Error(message));
  }

  private wakeIdle(): void {
    for (const wake of this.idleWaiters.splice(0)) wake();
  }
}
