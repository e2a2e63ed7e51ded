/**
 * The spans' way out, off the calls' path: an ended call is pushed onto a bounded queue (nothing
 * else happens while the call ends); a timer, or a full batch, later turns up to `maxExportBatchSize`
 * of them into spans and hands those to the OTLP exporter — one export in flight at a time. A call
 * that finds the queue full is dropped and counted, as are spans whose export failed (the exporter
 * retries what the collector asks it to retry first).
 */
import { ExportResultCode, type ExportResult } from "@opentelemetry/core";
import type { SpanData } from "./encode.ts";
import { spanOf, type EndedCall, type SpanOptions } from "./span.ts";

/** Sends one batch of spans (the OTLP exporter). */
export interface SpanSender {
  export(spans: SpanData[], done: (result: ExportResult) => void): void;
}

export interface BatchOptions {
  maxQueueSize: number;
  maxExportBatchSize: number;
  scheduledDelayMillis: number;
}

export interface BatchCounters {
  exported(n: number): void;
  dropped(n: number): void;
  failed(n: number, error: Error | undefined): void;
}

export class SpanBatcher {
  private queue: EndedCall[] = [];
  private timer: Timer | undefined;
  private exporting: Promise<void> | null = null;
  private closed = false;

  constructor(
    private readonly exporter: SpanSender,
    private readonly options: BatchOptions & SpanOptions,
    private readonly counters: BatchCounters,
  ) {}

  /** Calls waiting for their span to be built and sent. */
  get queued(): number {
    return this.queue.length;
  }

  push(call: EndedCall): void {
    if (this.closed || this.queue.length >= this.options.maxQueueSize) {
      this.counters.dropped(1);
      return;
    }
    this.queue.push(call);
    if (this.exporting) return;
    if (this.queue.length >= this.options.maxExportBatchSize) this.schedule(0);
    else this.schedule(this.options.scheduledDelayMillis);
  }

  /** Sends everything queued (batch after batch), waiting at most `timeoutMs`. */
  async flush(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.queue.length > 0 || this.exporting) && Date.now() < deadline) {
      clearTimeout(this.timer);
      this.timer = undefined;
      await Promise.race([this.exporting ?? this.exportBatch(), Bun.sleep(Math.max(0, deadline - Date.now()))]);
    }
  }

  /** Flushes (bounded), then refuses further calls; what could not be sent is counted as dropped. */
  async close(timeoutMs: number): Promise<void> {
    await this.flush(timeoutMs);
    this.closed = true;
    clearTimeout(this.timer);
    if (this.queue.length > 0) this.counters.dropped(this.queue.length);
    this.queue = [];
  }

  private schedule(ms: number): void {
    if (this.timer !== undefined && ms > 0) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.exportBatch();
    }, ms);
    this.timer.unref();
  }

  private exportBatch(): Promise<void> {
    if (this.exporting) return this.exporting;
    if (this.queue.length === 0) return Promise.resolve();
    const calls = this.queue.splice(0, this.options.maxExportBatchSize);
    const spans: SpanData[] = [];
    for (const call of calls) {
      // A call the sampler leaves out (by default: its parent was not sampled) has no span.
      const span = spanOf(call, this.options);
      if (span) spans.push(span);
    }
    if (spans.length === 0) return this.afterExport();
    this.exporting = new Promise<void>((resolve) => {
      this.exporter.export(spans, (result) => {
        if (result.code === ExportResultCode.SUCCESS) this.counters.exported(spans.length);
        else this.counters.failed(spans.length, result.error);
        resolve();
      });
    }).then(() => {
      this.exporting = null;
      return this.afterExport();
    });
    return this.exporting;
  }

  private afterExport(): Promise<void> {
    if (this.queue.length >= this.options.maxExportBatchSize) this.schedule(0);
    else if (this.queue.length > 0) this.schedule(this.options.scheduledDelayMillis);
    return Promise.resolve();
  }
}
