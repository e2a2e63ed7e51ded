/**
 * The audit API's side of the reader thread (./reader-worker.ts): an `AuditReader` and an
 * `AuditTrail` whose every SQLite statement runs on that thread, so a query waiting on a lock held
 * by another process, a long summary or an export never blocks the proxy's event loop. Verification
 * runs on a thread of its own per request (./verify-worker.ts). A thread that crashes is started
 * again on the next request; the requests it held fail with its error.
 */
import type { KeyObject } from "node:crypto";
import { auditWorkerURL } from "./_worker-url.ts";
import type { ChainEvent } from "../../trail/chain.ts";
import type { Checkpoint } from "../../trail/checkpoint.ts";
import type { ExportFormat, ExportManifest, ParsedExportFilter } from "../../trail/export.ts";
import type { AuditExport } from "../contract.ts";
import type { AuditReader } from "../contract.ts";
import type { RecordPage } from "../results.ts";
import type { ParsedRecordFilter } from "../filters.ts";
import type { ReaderOperation, ReaderOperations, ReaderReply, ReaderRequest, ReaderSettings } from "./reader-protocol.ts";
import type { AuditRecord } from "../../trail/record.ts";
import { publicKeyPem } from "../../trail/signing.ts";
import type { Summary } from "../results.ts";
import type { ParsedSummaryFilter } from "../filters.ts";
import type { AuditTrail, VerifyOptions } from "../contract.ts";
import { readCheckpointFile, recordVerification } from "../../trail/verify.ts";
import type { VerifyReport } from "../../trail/verify.ts";
import type { ChainEntry, EventPage, ParsedEventFilter, TrailStatus } from "../../trail/events.ts";
import type { Consent, ConsentFilter, NewConsentRequest } from "../consents.ts";
import type { NewKeyRequest } from "../keys.ts";
import type { ProxyKey } from "../keys.ts";

export interface ReaderThreadOptions {
  settings: ReaderSettings;
  signingKey: KeyObject;
  /** The configured checkpoint file: verify checks its checkpoints too. */
  checkpointFile?: string;
  /** Called after an erasure committed (the store compacts its intent log). */
  afterErase?: () => void | Promise<void>;
  /** Problems no caller waits for (a thread that cannot open, an export that could not be cancelled). */
  onError?: (message: string) => void;
}

type Pending = { resolve: (value: unknown) => void; reject: (error: Error) => void };

export class ReaderThread implements AuditReader, AuditTrail {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;

  constructor(private readonly options: ReaderThreadOptions) {}

  records(filter: ParsedRecordFilter): Promise<RecordPage> {
    return this.call("records", { filter });
  }

  summary(filter: ParsedSummaryFilter): Promise<Summary> {
    return this.call("summary", { filter });
  }

  summaries(filters: ParsedSummaryFilter[]): Promise<Summary[]> {
    return this.call("summaries", { filters });
  }

  record(id: string): Promise<AuditRecord | null> {
    return this.call("record", { recordId: id });
  }

  async verify(actor: string, options: VerifyOptions = {}): Promise<VerifyReport & { recorded: boolean }> {
    const key = options.publicKey ?? this.options.signingKey;
    const checkpoints = options.checkpoints ?? readCheckpointFile(this.options.checkpointFile);
    const report = await verifyOnWorker(this.options.settings.path, key, checkpoints);
    return recordVerification(report, actor, (event) => this.recordEvent(event));
  }

  async eraseUser(userId: string, actor: string): Promise<void> {
    await this.call("erase", { userId, actor });
    // The answer waits for the file's rewrite: once it comes, no erased value is left on disk.
    await this.options.afterErase?.();
  }

  export(format: ExportFormat, filter: ParsedExportFilter, actor: string): AuditExport {
    const exportId = crypto.randomUUID();
    const started = this.call("exportStart", { exportId, format, filter, actor });
    started.catch(() => {}); // reported by the first pull
    const onError = this.options.onError ?? (() => {});
    return new ThreadedExport(exportId, started, this, onError);
  }

  manifest(exportId: string): Promise<ExportManifest | null> {
    return this.call("manifest", { exportId });
  }

  async recordEvent(event: ChainEvent): Promise<void> {
    await this.call("event", { event });
  }

  publicKey(): string {
    return publicKeyPem(this.options.signingKey);
  }

  events(filter: ParsedEventFilter): Promise<EventPage> {
    return this.call("events", { filter });
  }

  status(): Promise<TrailStatus> {
    return this.call("status", {});
  }

  entry(seq: number): Promise<ChainEntry | null> {
    return this.call("entry", { seq });
  }

  listKeys(): Promise<ProxyKey[]> {
    return this.call("keysList", {});
  }

  createKey(request: NewKeyRequest, actor: string): Promise<{ key: string; record: ProxyKey }> {
    return this.call("keysCreate", { request, actor });
  }

  revokeKey(id: string, actor: string): Promise<ProxyKey | null> {
    return this.call("keysRevoke", { keyId: id, actor });
  }

  listConsents(filter: ConsentFilter): Promise<Consent[]> {
    return this.call("consentsList", { filter });
  }

  grantConsent(request: NewConsentRequest, actor: string): Promise<Consent> {
    return this.call("consentsGrant", { request, actor });
  }

  revokeConsent(id: string, actor: string): Promise<Consent | null> {
    return this.call("consentsRevoke", { consentId: id, actor });
  }

  recordConsentExpiries(): Promise<number> {
    return this.call("consentsExpire", {});
  }

  /** Answers what was asked before, records unfinished exports as cancelled, stops the thread. */
  async close(): Promise<void> {
    if (this.closed || !this.worker) return void (this.closed = true);
    try {
      await this.call("close", {});
    } finally {
      this.closed = true;
      this.worker?.terminate();
      this.worker = null;
    }
  }

  /** Sends one request; resolves with its answer. */
  call<Op extends ReaderOperation>(op: Op, args: ReaderOperations[Op]["args"]): Promise<ReaderOperations[Op]["result"]> {
    if (this.closed) return Promise.reject(new Error("the audit store is closed"));
    const worker = this.worker ?? this.start();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      // A thread with requests in flight keeps the process alive (a shutdown waits for them); an idle one does not.
      if (this.pending.size === 0) worker.ref();
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      worker.postMessage({ id, op, args } as ReaderRequest);
    });
  }

  private start(): Worker {
    const worker = new Worker(auditWorkerURL("reader-worker"));
    worker.unref();
    worker.onmessage = (event: MessageEvent<ReaderReply>) => this.answered(event.data);
    worker.onerror = (event) => this.crashed(worker, `the audit reader thread crashed: ${event.message}`);
    this.worker = worker;
    const id = this.nextId++;
    // Its own request, first in line: a thread that cannot open fails every request with the reason.
    this.pending.set(id, {
      resolve: () => {},
      reject: (error) => this.options.onError?.(error.message),
    });
    worker.ref();
    worker.postMessage({ id, op: "open", args: this.options.settings } satisfies ReaderRequest);
    return worker;
  }

  private answered(reply: ReaderReply): void {
    const waiting = this.pending.get(reply.id);
    if (!waiting) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) this.worker?.unref();
    if (reply.ok) waiting.resolve(reply.value);
    else waiting.reject(new Error(reply.message));
  }

  private crashed(worker: Worker, message: string): void {
    if (this.worker !== worker) return;
    this.worker = null;
    worker.terminate();
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const { reject } of waiting) reject(new Error(message));
  }
}

/** An export whose rows are produced on the reader thread, one chunk per pull of the HTTP stream. */
class ThreadedExport implements AuditExport {
  exported = 0;

  constructor(
    readonly id: string,
    private readonly started: Promise<null>,
    private readonly thread: ReaderThread,
    private readonly onError: (message: string) => void,
  ) {}

  stream(): ReadableStream<Uint8Array> {
    const { id, thread } = this;
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          await this.started;
          const { chunk, exported } = await thread.call("exportNext", { exportId: id });
          this.exported = exported;
          if (chunk) controller.enqueue(chunk);
          else controller.close();
        },
        cancel: () =>
          thread.call("exportCancel", { exportId: id }).then(
            () => {},
            (error: Error) => this.onError(`cannot record the cancelled export ${id} in the trail: ${error.message}`),
          ),
      },
      // Nothing is read ahead: memory holds one chunk per export, however slow its client.
      { highWaterMark: 0 },
    );
  }
}

function verifyOnWorker(path: string, key: KeyObject, checkpoints: readonly Checkpoint[]): Promise<VerifyReport> {
  const worker = new Worker(auditWorkerURL("verify-worker"));
  return new Promise<VerifyReport>((resolve, reject) => {
    worker.onmessage = (event: MessageEvent<string>) => {
      const answer = JSON.parse(event.data) as { report?: VerifyReport; error?: string };
      if (answer.report) resolve(answer.report);
      else reject(new Error(`verification failed: ${answer.error ?? "no answer"}`));
    };
    worker.onerror = (event) => reject(new Error(`the verify thread crashed: ${event.message}`));
    worker.postMessage(JSON.stringify({ path, publicKey: publicKeyPem(key), checkpoints }));
  }).finally(() => worker.terminate());
}
