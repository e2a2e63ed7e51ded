/** A row the chain took, as the record `onCommitted` reports: seq and hash set, redacted as stored. */
import type { CommittedRecord } from "../contract.ts";
import { personalColumns } from "../../trail/chain.ts";
import { fromRow, type SQLValue } from "../../trail/row.ts";

export function committedRecord(row: readonly SQLValue[], seq: number, hash: string, redacted: boolean): CommittedRecord {
  const record = fromRow(row, seq) as CommittedRecord;
  record.hash = hash;
  if (redacted) for (const column of personalColumns) (record as Record<string, unknown>)[column] = null;
  return record;
}
