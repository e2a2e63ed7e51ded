/** Messages between the audit store and its writer thread (sent as JSON strings: Bun's fast path). */
import type { SQLValue } from "./database.ts";

export type WriterRequest =
  | { kind: "open"; path: string; busyTimeoutMs: number }
  /** In-flight rows to insert, then final rows: each completes its in-flight row or is inserted. */
  | { kind: "batch"; begins: SQLValue[][]; finals: SQLValue[][] }
  | { kind: "close" };

export type WriterReply = { kind: "opened" } | { kind: "committed" } | { kind: "failed"; message: string } | { kind: "closed" };
