/**
 * The check an erasure or a retention run makes before it redacts a record. Redacting drops the
 * personal fields and the salt, and verify no longer checks the commitment of a redacted record:
 * a record whose fields were edited in the database (say its `user_id` set to the user being
 * erased) would be laundered by a legitimately signed erasure event. So every record about to be
 * redacted is checked as verify checks a record on its own (`RecordCheck`: its personal fields
 * against its commitment, its hash against its fields); if one fails, nothing is redacted.
 */
import { RecordCheck, type ChainRecordRow } from "./verify.ts";

const refusedPrefix = "refused at seq ";

/**
 * An erasure (or retention run) found a record it was to redact that does not match the chain: the
 * trail was edited behind the store. Nothing was redacted. The message names the seq and what
 * failed, never a personal value (the row's own values are not in it). `audit verify` exits 1.
 */
export class RedactionRefusedError extends Error {
  override name = "RedactionRefusedError";
  constructor(
    readonly kind: "erasure" | "retention",
    readonly seq: number,
    problem: string,
  ) {
    super(
      `the ${kind} was ${refusedPrefix}${seq}: the trail was edited there (${problem}), so nothing was erased. ` +
        "Run 'agent-attr audit verify' to see what changed, and restore the trail from a backup.",
    );
  }
}

/** A redaction's refusal, also when it crossed a thread as a message (SQLite's erasures run in its reader thread). */
export function isRedactionRefusal(error: unknown): error is Error {
  return (
    error instanceof RedactionRefusedError ||
    (error instanceof Error && /^the (erasure|retention) was refused at seq \d+: the trail was edited there/.test(error.message))
  );
}

/** Checks records one by one before they are redacted; throws `RedactionRefusedError` at the first that does not hold. */
export class RedactionGuard {
  private readonly records = new RecordCheck();
  constructor(private readonly kind: "erasure" | "retention") {}

  check(row: ChainRecordRow): void {
    const mismatch = this.records.fieldsMismatch(row);
    if (mismatch !== null) throw new RedactionRefusedError(this.kind, row.seq, mismatch.replace(/^seq \d+: /, ""));
    if (!this.records.hashMatches(row)) throw new RedactionRefusedError(this.kind, row.seq, "a field no longer matches its hash");
  }
}
