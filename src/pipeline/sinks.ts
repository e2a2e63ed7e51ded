/**
 * The secondary sinks' feed (`Plugin.audit`, stage 8 beside the primary store): each sink gets
 * every record the store reports committed, in seq order, one at a time — a write that returns a
 * promise is awaited before that sink's next, so a slow sink never sees records out of order and
 * never holds up a call. What waits for a sink is bounded (`maxQueued` records); past it that
 * sink's records are dropped and the count is logged. A sink that throws or rejects is logged as
 * `[plugin NAME] audit.write: message`. `close` lets every queue drain (bounded), then calls each
 * sink's `flush`.
 */
import type { CommittedRecord } from "../store/contract.ts";
import { errorMessage } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { AuditSink } from "../plugin.ts";

export interface SinkFeedOptions {
  /** Records that may wait for one sink (default 10,000). */
  maxQueued?: number;
  /** How long `close` waits for a sink's queue and its `flush` (ms, default 10 s). */
  closeTimeoutMs?: number;
}

export class SinkFeed {
  private readonly queues: SinkQueue[];
  private readonly closeTimeoutMs: number;

  constructor(sinks: readonly { plugin: string; sink: AuditSink }[], log: Logger, options: SinkFeedOptions = {}) {
    this.queues = sinks.map(({ plugin, sink }) => new SinkQueue(plugin, sink, log, options.maxQueued ?? 10_000));
    this.closeTimeoutMs = options.closeTimeoutMs ?? 10_000;
  }

  /** True when no plugin has a sink (the store then need not report what it commits). */
  get empty(): boolean {
    return this.queues.length === 0;
  }

  deliver(records: readonly CommittedRecord[]): void {
    for (const queue of this.queues) queue.push(records);
  }

  /** Resolves once every sink has written what it was given so far. */
  async drained(): Promise<void> {
    await Promise.all(this.queues.map((queue) => queue.idle()));
  }

  /** Lets each sink write what it was given (up to the timeout), then flushes it. */
  async close(): Promise<void> {
    await Promise.all(this.queues.map((queue) => queue.close(this.closeTimeoutMs)));
  }
}

class SinkQueue {
  private readonly waiting: CommittedRecord[] = [];
  private head = 0;
  /** Writing is under way (set before `run` starts, cleared when it ends: a sync sink ends within `push`). */
  private active = false;
  private running: Promise<void> = Promise.resolve();
  private dropped = 0;
  private closed = false;

  constructor(
    private readonly plugin: string,
    private readonly sink: AuditSink,
    private readonly log: Logger,
    private readonly maxQueued: number,
  ) {}

  push(records: readonly CommittedRecord[]): void {
    if (this.closed) return;
    for (const record of records) {
      if (this.waiting.length - this.head >= this.maxQueued) {
        if (this.dropped++ === 0)
          this.log.error(
            `[plugin ${this.plugin}] audit.write: ${this.maxQueued} records wait for this sink; records are dropped for it until it catches up`,
          );
        continue;
      }
      this.waiting.push(record);
    }
    if (!this.active) {
      this.active = true;
      this.running = this.run();
    }
  }

  idle(): Promise<void> {
    return this.active ? this.running : Promise.resolve();
  }

  async close(timeoutMs: number): Promise<void> {
    this.closed = true;
    const timedOut = Symbol("timeout");
    const within = <T>(work: Promise<T>) => Promise.race([work, Bun.sleep(timeoutMs).then(() => timedOut)]);
    if ((await within(this.idle())) === timedOut) {
      this.log.error(
        `[plugin ${this.plugin}] audit.write: ${this.waiting.length - this.head} record(s) were still waiting for this sink after ${timeoutMs} ms at shutdown`,
      );
    }
    if (!this.sink.flush) return;
    try {
      if ((await within(Promise.resolve(this.sink.flush()))) === timedOut)
        this.log.error(`[plugin ${this.plugin}] audit.flush: no answer within ${timeoutMs} ms`);
    } catch (error) {
      this.log.error(`[plugin ${this.plugin}] audit.flush: ${errorMessage(error)}`);
    }
  }

  /** Writes what waits, in order; a sync sink is written to without leaving the current task. */
  private async run(): Promise<void> {
    while (this.head < this.waiting.length) {
      const record = this.waiting[this.head++]!;
      try {
        const pending = this.sink.write(record);
        if (pending) await pending;
      } catch (error) {
        this.log.error(`[plugin ${this.plugin}] audit.write: ${errorMessage(error)}`);
      }
      if (this.head > 1024 && this.head * 2 > this.waiting.length) {
        this.waiting.splice(0, this.head);
        this.head = 0;
      }
    }
    this.waiting.length = 0;
    this.head = 0;
    this.active = false;
    if (this.dropped > 0) {
      this.log.error(
        `[plugin ${this.plugin}] audit.write: ${this.dropped} committed record(s) were not given to this sink: it fell ${this.maxQueued} records behind`,
      );
      this.dropped = 0;
    }
  }
}
