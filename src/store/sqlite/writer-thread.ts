/**
 * The store's side of its writer thread (./writer-worker.ts): final records gather for a few
 * milliseconds and go over in batches; every batch is answered, in order, committed or failed.
 * Nothing is dropped: a failed batch waits, first in line and in order, and is tried again after
 * `retryMs` — one small batch at a time while commits fail, each that commits doubling the next,
 * so a backlog drains as fast as a nearly full disk takes it, and everything at once once a
 * full-size batch commits. Scrubs (rewriting the file after an erasure) are asked for here too.
 */
import { auditWorkerURL } from "./_worker-url.ts";
import type { AuditRecord } from "../../trail/record.ts";
import type { Landing, WriterReply, WriterRequest } from "./writer-protocol.ts";

/**
 * A final record on its way to the writer: its call id, its row as JSON (`columns` order), and the
 * record itself while someone listens for committed records (the writer then says where it landed).
 */
export interface Final {
  id: string;
  row: string;
  record?: AuditRecord;
}
type Batch = Final[];

/** Final records per message to the writer (the writer commits a few messages per transaction). */
const batchRows = 256;
/** While commits fail: the first batch tried, doubled with each commit and halved with each failure. */
const probeRows = 32;

export interface WriterThreadOptions {
  /** These final records are committed; `landed` says where, for those sent with their record. */
  onCommitted(finals: readonly Final[], landed: readonly Landing[] | undefined): void;
  onError(message: string): void;
  onWarning(message: string): void;
  retryMs: number;
  /** How long final records gather before they go over together (ms). */
  finalDelayMs: number;
}

export class WriterThread {
  private readonly worker: Worker;
  /** Final records whose commit failed, to be sent again first, in order. */
  private retry: Final[] = [];
  private finals: Final[] = [];
  /** Batches sent and not yet answered, oldest first (answers come in order). */
  private readonly unanswered: Batch[] = [];
  private count = 0;
  /** The last commit failed: one batch of `window` rows at a time, until a full-size one commits. */
  private failing = false;
  private window = probeRows;
  private scheduled = false;
  private retryTimer: Timer | undefined;
  private idleWaiters: (() => void)[] = [];
  /** Scrubs asked for and not yet done: id → resolve. */
  private readonly scrubs = new Map<number, () => void>();
  private scrubCount = 0;
  private onReply: ((reply: WriterReply) => void) | null = null;
  private closed = false;

  constructor(
    open: Extract<WriterRequest, { kind: "open" }>,
    private readonly options: WriterThreadOptions,
  ) {
    this.worker = new Worker(auditWorkerURL("writer-worker"));
    // An idle writer must not keep a process alive; one with unanswered batches or scrubs must
    // (ref() when one is sent, unref() once all are answered), or a shutdown could exit before its last commit.
    this.worker.unref();
    this.worker.onmessage = (event: MessageEvent<string>) => this.received(JSON.parse(event.data) as WriterReply);
    this.worker.onerror = (event) => this.crashed(`the audit writer thread crashed: ${event.message}`);
    // The writer opens its connection before any batch arrives; only a failure needs reporting.
    this.onReply = (reply) => {
      this.onReply = null;
      if (reply.kind === "failed") options.onError(`cannot open ${open.path} for writing: ${reply.message}`);
    };
    this.send(open);
  }

  /** Final records written and not yet committed. */
  get uncommitted(): number {
    return this.count;
  }

  /** Queues a final record; it goes over with the others written within `finalDelayMs`. */
  queue(final: Final): void {
    this.finals.push(final);
    this.count++;
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setTimeout(() => {
      this.scheduled = false;
      if (!this.retryTimer) this.sendFinals();
    }, this.options.finalDelayMs);
  }

  /** Resolves once everything queued so far has been answered (committed or failed). */
  flush(): Promise<void> {
    this.sendFinals();
    if (this.unanswered.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Has the writer rewrite the file (`vacuum`) and truncate the WAL; resolves when done. */
  scrub(vacuum: boolean): Promise<void> {
    if (this.closed) return Promise.resolve();
    const id = ++this.scrubCount;
    this.worker.ref();
    return new Promise((resolve) => {
      this.scrubs.set(id, resolve);
      this.send({ kind: "scrub", id, vacuum });
    });
  }

  /** Commits what is queued (a writer that still fails must not hang shutdown), then stops the thread. */
  async close(): Promise<void> {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await this.flush();
    // One more attempt, with everything, for records a failed commit put back.
    this.failing = false;
    this.window = probeRows;
    if (this.count > 0) await this.flush();
    clearTimeout(this.retryTimer);
    this.closed = true;
    this.worker.ref();
    await new Promise<void>((resolve) => {
      this.onReply = () => resolve();
      this.send({ kind: "close" });
    });
    this.worker.terminate();
    for (const done of this.scrubs.values()) done(); // answered before "closed" unless the writer died
    this.scrubs.clear();
  }

  private send(request: WriterRequest): void {
    this.worker.postMessage(JSON.stringify(request));
  }

  /** Sends what waits, retried records first, in batches; while commits fail, one batch at a time. */
  private sendFinals(): void {
    if (this.closed || (this.failing && this.unanswered.length > 0)) return;
    for (;;) {
      const source = this.retry.length > 0 ? this.retry : this.finals;
      if (source.length === 0) return;
      const batch = source.splice(0, this.failing ? this.window : batchRows);
      if (this.unanswered.length === 0) this.worker.ref();
      this.unanswered.push(batch);
      // The rows are JSON already (written to the intent log as such): no second stringify.
      const report = batch.some((final) => final.record) ? `"report":true,` : "";
      this.worker.postMessage(`{"kind":"batch",${report}"rows":[${batch.map((final) => final.row).join(",")}]}`);
      if (this.failing) return;
    }
  }

  private received(reply: WriterReply): void {
    if (reply.kind === "notice") return this.options.onError(reply.message);
    if (reply.kind === "scrubbed") return this.scrubbed(reply.ids, reply.problem);
    if (this.onReply) return this.onReply(reply);
    if (reply.kind !== "committed" && reply.kind !== "failed") return;
    const batches = this.unanswered.splice(0, reply.batches);
    if (reply.kind === "committed") {
      for (const batch of batches) this.count -= batch.length;
      this.options.onCommitted(batches.flat(), reply.landed);
      if (this.failing) {
        // The database takes records again: larger batches follow at once, then everything.
        this.window *= 2;
        if (this.window > batchRows) {
          this.failing = false;
          this.window = probeRows;
          this.options.onWarning(`audit writes succeed again; ${this.count} final record(s) still to commit`);
        }
        this.sendFinals();
      }
    } else {
      this.failed(batches, reply.message);
    }
    if (this.unanswered.length === 0) {
      if (this.scrubs.size === 0) this.worker.unref();
      this.wakeIdle();
    }
  }

  private scrubbed(ids: number[], problem: string | null): void {
    for (const id of ids) {
      this.scrubs.get(id)?.();
      this.scrubs.delete(id);
    }
    if (problem) this.options.onError(problem);
    if (this.unanswered.length === 0 && this.scrubs.size === 0) this.worker.unref();
  }

  private failed(batches: Batch[], message: string): void {
    for (const batch of batches) this.retry.push(...batch);
    if (!this.failing) this.options.onError(`audit write failed, will retry: ${message}`);
    else this.window = Math.max(probeRows, this.window / 2);
    this.failing = true;
    if (this.retry.length > 0 && !this.retryTimer && !this.closed) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.sendFinals();
      }, this.options.retryMs);
    }
  }

  private crashed(message: string): void {
    this.failed(this.unanswered.splice(0), message);
    this.wakeIdle();
  }

  private wakeIdle(): void {
    for (const wake of this.idleWaiters.splice(0)) wake();
  }
}
