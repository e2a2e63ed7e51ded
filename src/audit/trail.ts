/**
 * The tamper-evident trail's operations, shared by the CLI and the audit API: verify, erase a user,
 * export with a signed manifest, and record audit-of-the-audit events. Every operation that reads
 * or changes the trail on someone's behalf is itself a chain event naming the actor.
 */
import type { Database } from "bun:sqlite";
import type { KeyObject } from "node:crypto";
import { ChainWriter, type ChainEvent } from "./chain.ts";
import type { Checkpoint } from "./checkpoint.ts";
import { eraseUser } from "./erase.ts";
import { ExportRun, type ExportFormat, type ExportManifest, type ParsedExportFilter } from "./export.ts";
import { auditWorkerURL } from "./_worker-url.ts";
import { publicKeyPem } from "./signing.ts";
import { verifyChain, type VerifyReport } from "./verify.ts";

export interface AuditTrail {
  /**
   * Recomputes the chain. `publicKey` pins the key checkpoints must be signed with; `checkpoints`
   * adds checkpoints kept outside the database (e.g. the checkpoint file).
   */
  verify(actor: string, options?: VerifyOptions): Promise<VerifyReport & { recorded: boolean }>;
  /** Erases a user's personal data; reveals nothing about whether the user had records. */
  eraseUser(userId: string, actor: string): void;
  /** A streamed export; its manifest is signed and recorded once the last byte is produced. */
  export(format: ExportFormat, filter: ParsedExportFilter, actor: string): ExportRun;
  /** The manifest of an export this trail produced (from its chain event), or null. */
  manifest(exportId: string): ExportManifest | null;
  recordEvent(event: ChainEvent): void;
  /** The checkpoint key's public half, SPKI PEM. */
  publicKey(): string;
}

export interface VerifyOptions {
  publicKey?: KeyObject;
  checkpoints?: readonly Checkpoint[];
}

export class SqliteAuditTrail implements AuditTrail {
  private readonly chain: ChainWriter;

  constructor(
    readonly db: Database,
    /** Null in a CLI without the key file: verify then needs a public key, export cannot sign. */
    private readonly signingKey: KeyObject | null,
    private readonly hashKey: Uint8Array,
    /** The database file: when given, verify runs on a worker thread (the caller's loop stays free). */
    private readonly verifyOffThread?: string,
  ) {
    this.chain = new ChainWriter(db, hashKey);
  }

  async verify(actor: string, options: VerifyOptions = {}): Promise<VerifyReport & { recorded: boolean }> {
    const key = options.publicKey ?? this.signingKey;
    const external = options.checkpoints ?? [];
    const report =
      this.verifyOffThread && key ? await verifyOnWorker(this.verifyOffThread, key, external) : verifyChain(this.db, key, external);
    const details = { ok: report.ok, last_seq: report.last_seq, bad_seq: report.failure?.seq ?? null, reason: report.failure?.reason ?? null };
    try {
      this.recordEvent({ kind: "verify", actor, details });
      return { ...report, recorded: true };
    } catch {
      // A read-only copy (or a locked database) can still be verified; the caller decides what
      // an unrecorded verification means (the API refuses it, the CLI warns).
      return { ...report, recorded: false };
    }
  }

  eraseUser(userId: string, actor: string): void {
    eraseUser(this.chain, this.hashKey, userId, actor);
  }

  export(format: ExportFormat, filter: ParsedExportFilter, actor: string): ExportRun {
    if (!this.signingKey) throw new Error("exports are signed, and this trail has no signing key");
    const run: ExportRun = new ExportRun(this.db, format, filter, this.signingKey, (manifest) =>
      this.recordEvent({
        kind: "export",
        actor,
        details: manifest ? { manifest } : { export_id: run.id, format, cancelled: true, records_sent_at_most: run.exported },
      }),
    );
    return run;
  }

  manifest(exportId: string): ExportManifest | null {
    const row = this.db
      .query<{ details: string }, [string]>("SELECT details FROM audit_events WHERE kind = 'export' AND json_extract(details, '$.manifest.export_id') = ?")
      .get(exportId);
    return row ? (JSON.parse(row.details) as { manifest: ExportManifest }).manifest : null;
  }

  recordEvent(event: ChainEvent): void {
    this.chain.append([], [event]);
  }

  /** Finalizes the trail's statements (before its connection closes). */
  close(): void {
    this.chain.finalize();
  }

  publicKey(): string {
    if (!this.signingKey) throw new Error("this trail has no signing key");
    return publicKeyPem(this.signingKey);
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
