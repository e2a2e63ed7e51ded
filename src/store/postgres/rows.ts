/** Rows as PostgreSQL returns them, back to records: int8 arrives as a string, `stream` as 0/1. */
import { recordFields, type AuditRecord } from "../../trail/record.ts";
import type { ChainRecordRow } from "../../trail/verify.ts";
import { columns, type SQLValue } from "../../trail/row.ts";

export const recordSelect = ["seq", ...columns].join(", ");

export function toRecord(row: Record<string, unknown>): AuditRecord {
  const record: Record<string, unknown> = {};
  for (const field of recordFields) record[field] = row[field] ?? null;
  record.seq = Number(row.seq);
  record.stream = Number(row.stream) === 1;
  record.cost_nano_usd = row.cost_nano_usd === null || row.cost_nano_usd === undefined ? null : Number(row.cost_nano_usd);
  return record as AuditRecord;
}

/** A row in `columns` order (as the chain stores it), back to a record with its place. */
export function rowToRecord(row: readonly SQLValue[], seq: number): AuditRecord {
  const named: Record<string, unknown> = { seq };
  for (const [i, column] of columns.entries()) named[column] = row[i];
  return toRecord(named);
}

/** A record row as PostgreSQL returns it (bigints as strings) in the form the chain hashed it: seq and nano-dollars as numbers. */
export function storedRow(row: Record<string, unknown>): ChainRecordRow {
  row.seq = Number(row.seq);
  if (row.cost_nano_usd !== null) row.cost_nano_usd = Number(row.cost_nano_usd);
  return row as ChainRecordRow;
}
