/** Messages between the audit store and its writer thread (sent as JSON strings: Bun's fast path). */
import type { SQLValue } from "./database.ts";

export type WriterRequest =
  | { kind: "open"; path: string; busyTimeoutMs: number }
  /** Final records to insert, as rows in `columns` order. */
  | { kind: "batch"; rows: SQLValue[][] }
  | { kind: "close" };

/** Batches are answered in the order they were sent; `batches` says how many one answer covers. */
export type WriterReply =
  | { kind: "opened" }
  | { kind: "committed"; batches: number }
  | { kind: "failed"; batches: number; message: string }
  | { kind: "closed" };
