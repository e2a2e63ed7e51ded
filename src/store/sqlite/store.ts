/**
 * The embedded audit store: SQLite through bun:sqlite (WAL, synchronous=NORMAL: a committed
 * transaction survives a crash of the process).
 *  - `begin` appends the in-flight record to the intent log (./intent-log.ts) with a synchronous
 *    write before the call is forwarded: no call reaches an upstream without a durable record,
 *    and no database transaction sits on the hot path. If it cannot be written, `begin` rejects.
 *  - `commit` (the final record) is first written to the intent log after its intent, so once it
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
 *  - While someone listens (`onCommitted`: the runtime, for secondary sinks), the writer says
 *    where each committed record landed (seq, hash, redacted on landing), and they are reported.
 * The audit API (`reader`, `trail`, `keys`) works on a connection of its own in a reader thread
 * (./reader-thread.ts), so a query or an erasure waiting on a lock never blocks the event loop.
 * The main-thread connection does start-up work — migrations, adopting records from before the
 * chain and, in `recover`, committing what a killed process left in its intent log — and then
 * looks proxy keys up (one indexed read per call in keys mode).
 */
import type { Database } from "bun:sqlite";
import type { AuditReader, AuditStore, AuditTrail, CommittedRecord, ConsentStore, ProxyKeyStore, Recovery } from "../contract.ts";
import { SqliteConsents } from "./consents.ts";
import { personalColumns } from "../../trail/chain.ts";
import { defaultCheckpointSettings, type CheckpointSettings } from "../../trail/checkpoint.ts";
import type { AuditRecord } from "../../trail/record.ts";
import { toRow } from "../../trail/row.ts";
import { loadHashKey } from "../../trail/secret.ts";
import { loadSigningKey, signingKeyPath } from "../../trail/signing.ts";
import { errorMessage } from "../../errors.ts";
import { filesReadableByOthers, openAuditLog } from "./database.ts";
import { ErasureWatch } from "./erasure-watch.ts";
import { IntentLog } from "./intent-log.ts";
import { recoverIntents } from "./intent-recovery.ts";
import { SqliteProxyKeys } from "./keys.ts";
import { adoptLegacyKeys } from "./key-admin.ts";
import { ReaderThread } from "./reader-thread.ts";
import { SqliteAuditTrail } from "./trail.ts";
import { WriterThread, type Final } from "./writer-thread.ts";
import type { Landing } from "./writer-protocol.ts";

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

export class SqliteAuditStore implements AuditStore {
  /** The main-thread connection: migrations and recovery at start, then proxy-key lookups. */
  readonly db: Database;
  /** Queries and summaries, served by the reader thread. */
  readonly reader: AuditReader;
  /** Verify, erase, export and audit events, served by the reader thread (verify by its own). */
  readonly trail: AuditTrail;
  /** The proxy keys in this database: looked up on this thread (one indexed read), managed on the reader thread. */
  readonly keys: ProxyKeyStore;
  /** Consents: looked up on this thread (one indexed read per call, uncached), managed on the reader thread. */
  readonly consents: ConsentStore;
  readonly hashKey: Uint8Array;
  private readonly keyTable: SqliteProxyKeys;
  private readonly consentTable: SqliteConsents;
  private readonly listeners = new Set<(records: readonly CommittedRecord[]) => void>();
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
      options.onWarning?.(
        `${file} is readable by other users (mode ${mode.toString(8)}) though it holds user ids and task text; run: chmod 600 ${file}`,
      );
    }
    this.db = log.db;
    this.closeMain = log.close;
    const hashKey = loadHashKey(path);
    this.hashKey = hashKey;
    const keyPath = signingKeyPath(path, options.signingKey);
    const signingKey = loadSigningKey(keyPath, { create: true })!;
    this.intents = new IntentLog(path, undefined, (message) => options.onError?.(message));
    this.local = new SqliteAuditTrail(this.db, signingKey, hashKey);
    this.api = new ReaderThread({
      settings: {
        path,
        busyTimeoutMs: options.busyTimeoutMs ?? 5000,
        hashKeyHex: Buffer.from(hashKey).toString("hex"),
        signingKeyPath: keyPath,
      },
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
    this.keyTable = new SqliteProxyKeys(this.db, { key: signingKey, warn: (message) => options.onWarning?.(message) });
    const api = this.api;
    const table = this.keyTable;
    this.keys = {
      find: async (secret) => table.find(secret),
      list: () => api.listKeys(),
      create: (request, actor) => api.createKey(request, actor),
      revoke: (id, actor) => api.revokeKey(id, actor),
    };
    this.consentTable = new SqliteConsents(this.db, null);
    const consents = this.consentTable;
    this.consents = {
      forUser: async (userId) => consents.forUserSync(userId),
      find: async (id) => consents.findSync(id),
      list: (filter) => api.listConsents(filter),
      grant: (request, actor) => api.grantConsent(request, actor),
      revoke: (id, actor) => api.revokeConsent(id, actor),
      recordExpiries: () => api.recordConsentExpiries(),
    };
    const adopted = this.local.chain.adoptUnchained();
    if (adopted > 0)
      options.onWarning?.(`${adopted} record(s) written before the hash chain existed are now chained (protected from now on)`);
    // Rows an earlier version wrote are adopted by any open with the key, under ../key-signature.ts's rules.
    adoptLegacyKeys(this.db, this.local.chain, signingKey, (message) => options.onWarning?.(message));
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
        onCommitted: (finals, landed) => {
          this.intents.settle(finals.map((final) => final.id));
          this.reportDropped();
          if (landed) this.announceLanded(finals, landed);
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
        new Error(
          `${waiting} final audit records wait to be committed (audit.maxBacklog is ${this.maxBacklog}): the database does not take them (disk full? locked by another process?)`,
        ),
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
      this.options.onError?.(
        `the final record of call ${record.id} could not be written to the intent log (${errorMessage(error)}); it waits in memory for its commit`,
      );
    }
    if (this.writer.uncommitted >= this.maxBacklog * refusedRecordsCap && !this.intents.has(record.id)) {
      this.droppedRefused++;
      return;
    }
    this.writer.queue(this.listeners.size > 0 ? { id: record.id, row, record } : { id: record.id, row });
  }

  /** Final records not yet committed to the chain (queued for the writer thread, or being written). */
  get backlog(): number {
    return this.writer.uncommitted;
  }

  /** Resolves once everything queued so far has been answered by the writer (committed or failed). */
  flush(): Promise<void> {
    return this.writer.flush();
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
    this.closed = true;
    this.watch.close();
    // The reader thread first (it answers what it was asked and records unfinished exports as
    // cancelled), so the writer's last checkpoint covers its events.
    await this.api.close().catch((error: Error) => this.options.onError?.(`closing the audit reader thread: ${error.message}`));
    await this.writer.close();
    this.keyTable.close();
    this.consentTable.close();
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

  /** The committed records of these finals, as stored (seq, hash; redacted if their user was erased in flight). */
  private announceLanded(finals: readonly Final[], landed: readonly Landing[]): void {
    const byId = new Map<string, AuditRecord>();
    for (const final of finals) if (final.record) byId.set(final.id, final.record);
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
}
