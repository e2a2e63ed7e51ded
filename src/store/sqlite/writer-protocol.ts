/** Messages between the audit store and its writer thread (sent as JSON strings: Bun's fast path). */
import type { CheckpointSettings } from "../../trail/checkpoint.ts";
import type { SQLValue } from "../../trail/row.ts";

/** What the writer thread needs besides the database: chain keys and the maintenance schedule. */
export interface WriterSettings {
  /** Instance hash key (hex): redacts records of users erased while their call was in flight. */
  hashKeyHex: string;
  /** The Ed25519 signing key file (created by the store before the writer opens). */
  signingKeyPath: string;
  checkpoint: CheckpointSettings;
  /** Erase personal fields of records older than this many days (checked on open and hourly). */
  retentionDays?: number;
}

export type WriterRequest =
  | { kind: "open"; path: string; busyTimeoutMs: number; settings: WriterSettings }
  /** Final records to insert, as rows in `columns` order; `report`: answer with each one's `Landing`. */
  | { kind: "batch"; rows: SQLValue[][]; report?: boolean }
  /**
   * After an erasure: rewrite the database file (VACUUM) and truncate the WAL (`vacuum: false`:
   * only the WAL, after an erasure another process made and rewrote the file for).
   */
  | { kind: "scrub"; id: number; vacuum: boolean }
  | { kind: "close" };

/** Where a committed record landed: its call id, seq, chain hash, and 1 if it was redacted as it landed (its user was erased). */
export type Landing = [id: string, seq: number, hash: string, redacted: 0 | 1];

/** Batches are answered in the order they were sent; `batches` says how many one answer covers. */
export type WriterReply =
  | { kind: "opened" }
  | { kind: "committed"; batches: number; landed?: Landing[] }
  | { kind: "failed"; batches: number; message: string }
  | { kind: "closed" }
  /** The scrub requests `ids` are done (one run serves all asked before it); `problem` if it could not finish. */
  | { kind: "scrubbed"; ids: number[]; problem: string | null }
  /** A maintenance problem (checkpoint publication, retention) to log; no batch is concerned. */
  | { kind: "notice"; message: string };
