/**
 * A record as a row of plain values: the order of its fields that the hash chain covers
 * (./chain.ts), that intent-log lines and the writer thread use, and that every driver stores.
 */
import type { AuditRecord } from "./record.ts";

export const columns = [
  "id",
  "timestamp",
  "duration_ms",
  "ttfb_ms",
  "agent_id",
  "user_id",
  "task_context",
  "session_id",
  "parent_agent_id",
  "trace_id",
  "attribution",
  "key_id",
  "provider",
  "endpoint",
  "model",
  "response_model",
  "stream",
  "status",
  "outcome",
  "input_tokens",
  "output_tokens",
  "cache_read_tokens",
  "cache_write_tokens",
  "cache_write_1h_tokens",
  "reasoning_tokens",
  "usage_source",
  "cost_usd",
  "cost_nano_usd",
  "price_source",
  "prompt_hash",
  "response_hash",
  "error_type",
  "delegation",
  "tags",
  "personal_tags",
  "consent_id",
  "purpose",
  "lawful_basis",
  "consent_source",
] as const satisfies readonly (keyof AuditRecord)[];

export type SQLValue = string | number | null;

/** A record as a row in `columns` order (booleans as 0/1). */
export function toRow(record: AuditRecord): SQLValue[] {
  // A plain loop: twice per call (intent and final record), on the proxy's hot path.
  const row = new Array<SQLValue>(columns.length);
  for (let i = 0; i < columns.length; i++) {
    const value = record[columns[i]!];
    row[i] = typeof value === "boolean" ? (value ? 1 : 0) : value;
  }
  return row;
}

/** A row in `columns` order back into a record (`seq` as given; 0/1 back to a boolean). */
export function fromRow(row: readonly SQLValue[], seq: number): AuditRecord {
  const record: Record<string, unknown> = { seq };
  for (let i = 0; i < columns.length; i++) record[columns[i]!] = row[i] ?? null;
  record.stream = row[columns.indexOf("stream")] === 1;
  return record as AuditRecord;
}

/** A row of an older version (an intent log written before fields were added) padded with nulls to `columns`. */
export function fullRow(row: readonly SQLValue[]): SQLValue[] {
  if (row.length >= columns.length) return row as SQLValue[];
  return [...row, ...new Array<SQLValue>(columns.length - row.length).fill(null)];
}
