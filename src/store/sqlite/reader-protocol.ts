/**
 * Requests and replies between the audit store and its reader thread (./reader-worker.ts). Each
 * request carries an id; the thread answers each one, in order, with the same id. Messages are
 * structured-cloned objects (pages of records, export chunks), not JSON strings.
 */
import type { ChainEvent } from "../../trail/chain.ts";
import type { ExportFormat, ExportManifest, ParsedExportFilter } from "../../trail/export.ts";
import type { RecordPage } from "../results.ts";
import type { ParsedRecordFilter } from "../filters.ts";
import type { AuditRecord } from "../../trail/record.ts";
import type { ChainEntry, EventPage, ParsedEventFilter, TrailStatus } from "../../trail/events.ts";
import type { Consent, ConsentFilter, NewConsentRequest } from "../consents.ts";
import type { NewKeyRequest } from "../keys.ts";
import type { ProxyKey } from "../keys.ts";
import type { Summary } from "../results.ts";
import type { ParsedSummaryFilter } from "../filters.ts";

/** What the reader thread needs besides the database: the keys erasures and exports use. */
export interface ReaderSettings {
  path: string;
  /** How long a statement waits for a lock held by another connection before it fails. */
  busyTimeoutMs: number;
  /** Instance hash key (hex): an erasure remembers the user as an HMAC of the id. */
  hashKeyHex: string;
  /** The Ed25519 signing key file (export manifests are signed with it). */
  signingKeyPath: string;
}

/** One chunk of an export's bytes; `chunk` null once the export is complete (manifest recorded). */
export interface ExportChunk {
  chunk: Uint8Array | null;
  /** Records produced so far. */
  exported: number;
}

/** Every operation: its arguments and what it answers. */
export interface ReaderOperations {
  open: { args: ReaderSettings; result: null };
  records: { args: { filter: ParsedRecordFilter }; result: RecordPage };
  record: { args: { recordId: string }; result: AuditRecord | null };
  summary: { args: { filter: ParsedSummaryFilter }; result: Summary };
  summaries: { args: { filters: ParsedSummaryFilter[] }; result: Summary[] };
  event: { args: { event: ChainEvent }; result: null };
  erase: { args: { userId: string; actor: string }; result: null };
  manifest: { args: { exportId: string }; result: ExportManifest | null };
  /** Starts an export named by the caller (the name goes into response headers before any byte). */
  exportStart: { args: { exportId: string; format: ExportFormat; filter: ParsedExportFilter; actor: string }; result: null };
  /** The next chunk of rows: pulled one at a time, as the HTTP stream asks for it. */
  exportNext: { args: { exportId: string }; result: ExportChunk };
  /** The client went away: stop and record the export as cancelled. */
  exportCancel: { args: { exportId: string }; result: null };
  events: { args: { filter: ParsedEventFilter }; result: EventPage };
  status: { args: Record<string, never>; result: TrailStatus };
  entry: { args: { seq: number }; result: ChainEntry | null };
  keysList: { args: Record<string, never>; result: ProxyKey[] };
  keysCreate: { args: { request: NewKeyRequest; actor: string }; result: { key: string; record: ProxyKey } };
  keysRevoke: { args: { keyId: string; actor: string }; result: ProxyKey | null };
  consentsList: { args: { filter: ConsentFilter }; result: Consent[] };
  consentsGrant: { args: { request: NewConsentRequest; actor: string }; result: Consent };
  consentsRevoke: { args: { consentId: string; actor: string }; result: Consent | null };
  consentsExpire: { args: Record<string, never>; result: number };
  /** Records unfinished exports as cancelled and closes the connection. */
  close: { args: Record<string, never>; result: null };
}

export type ReaderOperation = keyof ReaderOperations;

export type ReaderRequest = {
  [Op in ReaderOperation]: { id: number; op: Op; args: ReaderOperations[Op]["args"] };
}[ReaderOperation];

export type ReaderReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; message: string };
