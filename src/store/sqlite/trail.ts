/**
 * The tamper-evident trail's operations, shared by the CLI and the audit API: verify, erase a user,
 * export with a signed manifest, and record audit-of-the-audit events. Every operation that reads
 * or changes the trail on someone's behalf is itself a chain event naming the actor.
 *
 * `AuditTrail` is asynchronous, so a driver may do its work elsewhere: the proxy's SQLite store
 * serves it from a thread of its own (./reader-thread.ts), the CLI in process (`SqliteAuditTrail`).
 */
import type { Database } from "bun:sqlite";
import type { KeyObject } from "node:crypto";
import type { ChainEvent } from "../../trail/chain.ts";
import { ChainWriter } from "./chain-writer.ts";
import { defaultCheckpointSettings, type CheckpointSettings } from "../../trail/checkpoint.ts";
import type { AuditTrail, VerifyOptions } from "../contract.ts";
import { Checkpointer } from "./checkpointer.ts";
import { sqliteExportSource } from "./export-rows.ts";
import { eraseUser } from "./erase.ts";
import { ExportRun, exportEventDetails, type ExportFormat, type ExportManifest, type ParsedExportFilter } from "../../trail/export.ts";
import { erasureNeedsKey } from "../../trail/redaction.ts";
import { publicKeyPem } from "../../trail/signing.ts";
import { chainEntry, listEvents, trailStatus } from "./trail-read.ts";
import type { ChainEntry, EventPage, ParsedEventFilter, TrailStatus } from "../../trail/events.ts";
import { verifyChain } from "./verify.ts";
import { readCheckpointFile, recordVerification, type VerifyReport } from "../../trail/verify.ts";
import { proxyAttached } from "./intent-recovery.ts";
import { scrubDatabase, walInUse } from "./scrub.ts";

export interface TrailOptions {
  /** The configured checkpoint settings: verify reads `file`; sealed checkpoints go there too. */
  checkpoint?: CheckpointSettings;
  /**
   * Sign a checkpoint after every event this trail appends (the CLI: no writer thread signs after
   * it, so otherwise the events it appended last could be deleted unnoticed).
   */
  sealEvents?: boolean;
  /**
   * Called after an erasure committed, instead of rewriting the file here (./scrub.ts): the store
   * compacts its intent log and has its writer thread rewrite the file, off the event loop.
   */
  afterErase?: () => void | Promise<void>;
  /** Where to report problems that do not fail the action (e.g. a checkpoint file not writable). */
  onError?: (message: string) => void;
}

export class SqliteAuditTrail implements AuditTrail {
  /** This connection's writer of the chain (the store also adopts and recovers through it). */
  readonly chain: ChainWriter;
  private readonly checkpointer: Checkpointer | null;

  constructor(
    readonly db: Database,
    /** Null in a CLI without the key file: verify then needs a public key, export cannot sign. */
    private readonly signingKey: KeyObject | null,
    private readonly hashKey: Uint8Array,
    private readonly options: TrailOptions = {},
  ) {
    this.chain = new ChainWriter(db, hashKey, signingKey);
    this.checkpointer =
      options.sealEvents && signingKey
        ? new Checkpointer(this.chain, signingKey, options.checkpoint ?? defaultCheckpointSettings, options.onError ?? (() => {}))
        : null;
  }

  /** Runs on the caller's thread (the CLI); the proxy verifies on a thread of its own. */
  async verify(actor: string, options: VerifyOptions = {}): Promise<VerifyReport & { recorded: boolean }> {
    const key = options.publicKey ?? this.signingKey;
    const external = options.checkpoints ?? readCheckpointFile(this.options.checkpoint?.file);
    const report = verifyChain(this.db, key, external);
    // A failed verification is recorded, but no checkpoint is signed over a chain found tampered.
    return recordVerification(report, actor, async (event) => this.appendEvent(event, report.ok));
  }

  async eraseUser(userId: string, actor: string): Promise<void> {
    if (!this.signingKey) throw new Error(erasureNeedsKey);
    eraseUser(this.chain, this.hashKey, userId, actor);
    this.seal();
    // Erased bytes must not linger in the file: not in unused parts of pages, not in the WAL.
    if (this.options.afterErase) return this.options.afterErase();
    const path = this.db.filename;
    const scrubbed = scrubDatabase(this.db, path);
    // A proxy running on this database notices the erasure and truncates the WAL itself.
    const problem = scrubbed.problem ?? (scrubbed.walInUse && !proxyAttached(path) ? walInUse(path) : null);
    if (problem) this.options.onError?.(problem);
  }

  /** `id`: the export's id when the caller chose it (the proxy names an export before it starts). */
  export(format: ExportFormat, filter: ParsedExportFilter, actor: string, id?: string): ExportRun {
    if (!this.signingKey) throw new Error("exports are signed, and this trail has no signing key");
    const run: ExportRun = new ExportRun(
      format,
      filter,
      this.signingKey,
      sqliteExportSource(this.db, filter, () => readCheckpointFile(this.options.checkpoint?.file)),
      (manifest, refused) => this.appendEvent({ kind: "export", actor, details: exportEventDetails(run, manifest, refused) }),
      id,
    );
    return run;
  }

  async manifest(exportId: string): Promise<ExportManifest | null> {
    const row = this.db
      .query<{ details: string }, [string]>(
        "SELECT details FROM audit_events WHERE kind = 'export' AND json_extract(details, '$.manifest.export_id') = ?",
      )
      .get(exportId);
    return row ? (JSON.parse(row.details) as { manifest: ExportManifest }).manifest : null;
  }

  async recordEvent(event: ChainEvent): Promise<void> {
    this.appendEvent(event);
  }

  async events(filter: ParsedEventFilter): Promise<EventPage> {
    return listEvents(this.db, filter);
  }

  async status(): Promise<TrailStatus> {
    return trailStatus(this.db);
  }

  async entry(seq: number): Promise<ChainEntry | null> {
    return chainEntry(this.db, seq);
  }

  /** Appends an event now, on this connection, sealed unless `seal` is false; throws if it cannot be written. */
  appendEvent(event: ChainEvent, seal = true): void {
    this.chain.append([], [event]);
    if (seal) this.seal();
  }

  /** Signs a checkpoint over the new tail (with `sealEvents` and a signing key). */
  seal(): void {
    this.checkpointer?.checkpoint();
  }

  /** Finalizes the trail's statements (before its connection closes). */
  close(): void {
    this.checkpointer?.finalize();
    this.chain.finalize();
  }

  publicKey(): string {
    if (!this.signingKey) throw new Error("this trail has no signing key");
    return publicKeyPem(this.signingKey);
  }
}
