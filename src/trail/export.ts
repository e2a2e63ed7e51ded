/**
 * Exports: CSV (RFC 4180, formula-safe, via ./format.ts), JSON (one array) or NDJSON, formatted
 * here from the rows a driver reads chunk by chunk in seq order (`ExportSource`), in bounded memory. Each export gets a manifest — record count,
 * seq range, first/last chain hash, size and SHA-256 of the bytes, signed with the checkpoint key —
 * that `verifyExport` checks offline.
 */
import { tagFilter } from "../store/filters.ts";
import { createPublicKey, type KeyObject } from "node:crypto";
import { z } from "zod";
import { csvHeader, csvRow } from "./format.ts";
import { identityFilter } from "../store/filters.ts";
import type { AuditRecord } from "./record.ts";
import { parsePublicKey, publicKeyPem, signBytes, verifyBytes } from "./signing.ts";
import { errorMessage } from "../errors.ts";
import { ExportGuard, ExportRefusedError, type ExportAnchor } from "./export-check.ts";
import type { ChainRecordRow, VerifyFailure } from "./verify.ts";

export const exportFormats = ["csv", "json", "ndjson"] as const;
export type ExportFormat = (typeof exportFormats)[number];

const dateOnly = /^\d{4}-\d{2}-\d{2}$/;
/** A day (YYYY-MM-DD, UTC, inclusive) or an ISO 8601 date-time. */
const dateBound = (endOfDay: boolean) =>
  z
    .string()
    .refine((value) => !Number.isNaN(Date.parse(value)), { message: "expected YYYY-MM-DD or an ISO 8601 date-time" })
    .transform((value) =>
      dateOnly.test(value) ? `${value}T${endOfDay ? "23:59:59.999" : "00:00:00.000"}Z` : new Date(value).toISOString(),
    );

export const exportFilterSchema = z.object({
  start_date: dateBound(false).optional(),
  end_date: dateBound(true).optional(),
  agent: identityFilter.optional(),
  user: identityFilter.optional(),
  task: identityFilter.optional(),
  /** KEY=VALUE tags an exported record must carry (all of them), as the record filters take them. */
  tag: tagFilter.optional(),
});
export type ParsedExportFilter = z.output<typeof exportFilterSchema>;

export const exportManifestSchema = z.object({
  manifest_version: z.literal(1),
  export_id: z.string(),
  chain_id: z.string().nullable(),
  format: z.enum(exportFormats),
  created_at: z.string(),
  /** Personal filter values (user, task) are not repeated here, only whether they were used. */
  filters: z.object({
    start_date: z.string().nullable(),
    end_date: z.string().nullable(),
    agent: z.string().nullable(),
    user: z.boolean(),
    task: z.boolean(),
    /** The tag keys filtered on (their values may be personal, so they are not repeated here). */
    tags: z.array(z.string()).optional(),
  }),
  record_count: z.number().int(),
  first_seq: z.number().int().nullable(),
  last_seq: z.number().int().nullable(),
  first_hash: z.string().nullable(),
  last_hash: z.string().nullable(),
  bytes: z.number().int(),
  sha256: z.string(),
  /** SPKI PEM of the signing key; compare it with `agent-attr audit pubkey` of the instance. */
  public_key: z.string(),
  /** Ed25519 over the manifest's JSON without this field, base64. */
  signature: z.string(),
});

export type ExportManifest = z.infer<typeof exportManifestSchema>;

/** The bytes a manifest's signature covers: its JSON, in its own key order, minus the signature. */
export function manifestPayload(manifest: Omit<ExportManifest, "signature"> & { signature?: string }): string {
  const { signature: _, ...unsigned } = manifest;
  return JSON.stringify(unsigned);
}

/** Records per chunk of an export's bytes (and per read a driver should make). */
export const exportChunkRows = 512;

/** One exported record: as exported, as the chain stores it (checked before it is signed), and its successor's link. */
export interface ExportedRow {
  record: AuditRecord;
  stored: ChainRecordRow;
  /** The `prev_hash` of the chain's entry at the record's seq + 1 (record or event); null if there is none. */
  next: string | null;
}

/** What a driver gives an export: its chain's id and the matching records, read as they are pulled. */
export interface ExportSource {
  /**
   * The records that match the filter, in seq order, up to the chain's tail when the export began,
   * in chunks of about `exportChunkRows`. A driver reads each chunk when it is pulled (holding no
   * read open in between), so a slow consumer holds no snapshot; an erasure committed meanwhile
   * applies to the rows not yet read.
   */
  rows(): AsyncIterator<readonly ExportedRow[]> | Iterator<readonly ExportedRow[]>;
  /** The chain's id, for the manifest (read when the export completes). */
  chainId(): string | null | Promise<string | null>;
  /** What the rows are checked against, read when the export begins (./export-check.ts). */
  anchor(): ExportAnchor | Promise<ExportAnchor>;
  /** How many records the export will hold (for progress). */
  count?(): number | Promise<number>;
}

/**
 * One export, formatted and signed above the driver: iterate `chunks()` (or `stream()`) once; the
 * manifest is made and handed to `onEnd` after the last chunk, and kept in `manifest`.
 */
export class ExportRun {
  manifest: ExportManifest | null = null;
  /** Records produced so far. */
  exported = 0;
  private readonly sha = new Bun.CryptoHasher("sha256");
  private readonly encoder = new TextEncoder();
  private cancelled = false;

  constructor(
    readonly format: ExportFormat,
    private readonly filter: ParsedExportFilter,
    private readonly key: KeyObject,
    private readonly source: ExportSource,
    /**
     * Called once: with the manifest when the export is complete, with null if it was cancelled or
     * refused (`refused`: the first record that did not match the chain).
     */
    private readonly onEnd: (manifest: ExportManifest | null, refused?: VerifyFailure) => void | Promise<void>,
    readonly id: string = crypto.randomUUID(),
  ) {}

  /** How many records the export will hold (for progress). */
  async total(): Promise<number> {
    return this.source.count ? await this.source.count() : Number.NaN;
  }

  /** The export's bytes; throws `ExportRefusedError` (recorded, no manifest) at a record that does not match the chain. */
  async *chunks(): AsyncGenerator<Uint8Array> {
    try {
      yield* this.checkedChunks();
    } catch (error) {
      if (error instanceof ExportRefusedError && !this.cancelled) {
        this.cancelled = true;
        await this.onEnd(null, error.failure);
      }
      throw error;
    }
  }

  private async *checkedChunks(): AsyncGenerator<Uint8Array> {
    const check = new ExportGuard(createPublicKey(this.key));
    await check.begin(await this.source.anchor());
    const rows = this.source.rows();
    let count = 0;
    let bytes = 0;
    let first: { seq: number; hash: string | null } | null = null;
    let last: { seq: number; hash: string | null } | null = null;
    let text = this.format === "csv" ? csvHeader() : this.format === "json" ? "[" : "";
    const emit = (): Uint8Array => {
      const chunk = this.encoder.encode(text);
      this.sha.update(chunk);
      bytes += chunk.byteLength;
      text = "";
      return chunk;
    };
    try {
      for (let next = await rows.next(); !next.done; next = await rows.next()) {
        for (const { record, stored, next: successor } of next.value) {
          check.row(stored, successor);
          const hash = stored.hash;
          if (this.format === "csv") text += csvRow(record);
          else if (this.format === "ndjson") text += `${JSON.stringify(record)}\n`;
          else text += `${count === 0 ? "\n" : ",\n"}${JSON.stringify(record)}`;
          last = { seq: record.seq, hash };
          first ??= last;
          this.exported = ++count;
          if (count % exportChunkRows === 0) yield emit();
        }
      }
    } finally {
      await rows.return?.();
    }
    if (this.format === "json") text += count === 0 ? "]\n" : "\n]\n";
    if (text) yield emit();
    const unsigned: Omit<ExportManifest, "signature"> = {
      manifest_version: 1,
      export_id: this.id,
      chain_id: await this.source.chainId(),
      format: this.format,
      created_at: new Date().toISOString(),
      filters: {
        start_date: this.filter.start_date ?? null,
        end_date: this.filter.end_date ?? null,
        agent: this.filter.agent ?? null,
        user: this.filter.user !== undefined,
        task: this.filter.task !== undefined,
        ...(this.filter.tag ? { tags: Object.keys(this.filter.tag).sort() } : {}),
      },
      record_count: count,
      first_seq: first?.seq ?? null,
      last_seq: last?.seq ?? null,
      first_hash: first?.hash ?? null,
      last_hash: last?.hash ?? null,
      bytes,
      sha256: this.sha.digest("hex"),
      public_key: publicKeyPem(this.key),
    };
    this.manifest = { ...unsigned, signature: signBytes(this.key, manifestPayload(unsigned)) };
    await this.onEnd(this.manifest);
  }

  /**
   * Ends an export that stopped before its last byte (client gone, broken pipe, disk full,
   * interrupt): recorded as cancelled, with how many records were produced, and no manifest.
   */
  async cancel(): Promise<void> {
    if (this.manifest || this.cancelled) return;
    this.cancelled = true;
    await this.onEnd(null);
  }

  /** The export as a pull-based byte stream (one chunk per pull); a cancel records it as cancelled. */
  stream(): ReadableStream<Uint8Array> {
    const chunks = this.chunks();
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          const next = await chunks.next();
          if (next.done) controller.close();
          else controller.enqueue(next.value);
        },
        cancel: async () => {
          await chunks.return(undefined);
          await this.cancel();
        },
      },
      { highWaterMark: 0 },
    );
  }
}

/** The details of an export's chain event: its manifest, or how far it got and why it stopped. */
export function exportEventDetails(run: ExportRun, manifest: ExportManifest | null, refused?: VerifyFailure): Record<string, unknown> {
  if (manifest) return { manifest };
  const stopped = { export_id: run.id, format: run.format, cancelled: true, records_sent_at_most: run.exported };
  return refused ? { ...stopped, refused: { seq: refused.seq, reason: refused.reason } } : stopped;
}

export interface ExportCheck {
  /** The file matches the manifest (size, SHA-256) and the manifest matches its signature. */
  ok: boolean;
  /**
   * The signature was checked against a key the caller trusts (`pinnedKeyPem`). Without one, only
   * the manifest's own key vouches for it — and whoever changed the file can re-sign with theirs.
   */
  signerPinned: boolean;
  message: string;
  manifest: ExportManifest | null;
}

/**
 * Checks an export against its manifest: size, SHA-256, and the signature — against `pinnedKeyPem`
 * if given; otherwise against the key inside the manifest, which proves integrity but not origin.
 */
export async function verifyExport(file: string, manifestFile: string, pinnedKeyPem?: string): Promise<ExportCheck> {
  let manifest: ExportManifest;
  try {
    manifest = JSON.parse(await Bun.file(manifestFile).text()) as ExportManifest;
  } catch (error) {
    return { ok: false, signerPinned: false, message: `cannot read the manifest ${manifestFile}: ${errorMessage(error)}`, manifest: null };
  }
  const fail = (message: string): ExportCheck => ({ ok: false, signerPinned: false, message, manifest });
  if (typeof manifest.signature !== "string" || typeof manifest.public_key !== "string") return fail("the manifest has no signature");
  const key = parsePublicKey(pinnedKeyPem ?? manifest.public_key);
  if (pinnedKeyPem && publicKeyPem(key).trim() !== manifest.public_key.trim())
    return fail("the manifest is signed by another key than the one given");
  if (!verifyBytes(key, manifestPayload(manifest), manifest.signature))
    return fail("the manifest's signature is invalid (the manifest was changed)");
  const sha = new Bun.CryptoHasher("sha256");
  let bytes = 0;
  try {
    for await (const chunk of Bun.file(file).stream()) {
      sha.update(chunk);
      bytes += chunk.byteLength;
    }
  } catch (error) {
    return fail(`cannot read ${file}: ${errorMessage(error)}`);
  }
  if (bytes !== manifest.bytes) return fail(`${file} has ${bytes} bytes; the manifest says ${manifest.bytes} (the file was changed)`);
  if (sha.digest("hex") !== manifest.sha256) return fail(`${file} does not match the manifest's SHA-256 (the file was changed)`);
  const summary = `${manifest.record_count} records, seq ${manifest.first_seq ?? "-"}..${manifest.last_seq ?? "-"}, sha256 ${manifest.sha256}`;
  return pinnedKeyPem
    ? { ok: true, signerPinned: true, message: `${file}: intact — ${summary}, signed by the key given`, manifest }
    : {
        ok: true,
        signerPinned: false,
        message:
          `${file}: integrity ok — ${summary} — but the signer is NOT verified: the manifest is signed by the key it carries, ` +
          "which anyone who changed the file could replace. Pass --public-key FILE (the instance's 'agent-attr audit pubkey') to check who signed it.",
        manifest,
      };
}
