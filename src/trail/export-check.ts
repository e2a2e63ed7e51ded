/**
 * What an export checks before it signs: a manifest says "these are the trail's records", so an
 * export must not sign records that are not what the chain says. Every exported record is checked
 * on its own as `audit verify` checks it (its fields against its hash, its personal fields against
 * its commitment, an erasure against the signed events that account for it), and against the chain
 * around it: the entry after it must link to its hash, so a record edited and re-hashed in place
 * is caught; and the newest signed checkpoint must still match the chain, so a chain re-hashed
 * from the edit onwards is caught too. What is left uncaught is what `audit verify` cannot catch
 * either: a rewrite of the tail after the newest checkpoint. An export filtered by agent, user or
 * task is also refused when the driver's lookup tables would leave out a record that matches
 * (`ExportAnchor.hiddenRecord`): signed, such an export would look complete.
 *
 * A failed check stops the export (`ExportRefusedError`): no manifest is signed, and the export's
 * chain event says it was refused and at which seq.
 */
import type { KeyObject } from "node:crypto";
import type { Checkpoint } from "./checkpoint.ts";
import {
  RecordCheck,
  redactionCover,
  startVerification,
  unauthorisedRedaction,
  type ChainRecordRow,
  type RedactionCover,
  type VerifyFailure,
} from "./verify.ts";

/** What a driver reads when an export begins, to check its rows against (`ExportSource.anchor`). */
export interface ExportAnchor {
  chainId: string | null;
  /** The chain's last seq (records and events) when the export began. */
  lastSeq: number;
  /** The chain's erasure and retention events (their `details` name the seqs they redacted). */
  redactions: readonly { seq: number; kind: string; details: string }[];
  /** The signed checkpoints the driver knows (stored, and kept outside the database). */
  checkpoints: readonly Checkpoint[];
  /** The hash of the chain's entry at `seq` (record or event), null if there is none. */
  hashAt(seq: number): string | null | Promise<string | null>;
  /**
   * A driver whose lookups by agent, user or task read tables outside the chain (SQLite's key
   * tables): the first record matching the filter that those tables would hide from the export,
   * or null. An export that would silently omit a record is refused, as one of an edited record is.
   */
  hiddenRecord?: VerifyFailure | null;
  /**
   * The chain walked from the first record the export may sign to the chain's end (each entry's
   * fields against its hash, each link to the entry before): null when intact. Without it a record
   * edited and rehashed, with only the next entry's link repointed, would pass the per-row check.
   */
  chainFailure: VerifyFailure | null;
}

/** An export stopped because a record it was to sign does not match the chain. */
export class ExportRefusedError extends Error {
  constructor(readonly failure: VerifyFailure) {
    super(`the export was refused at seq ${failure.seq}: ${failure.message}. Run 'agent-attr audit verify' to see what changed.`);
  }
}

/** An export's refusal, also when it crossed a thread as a message (SQLite's exports run in its reader thread). */
export function isExportRefusal(error: unknown): error is Error {
  return error instanceof ExportRefusedError || (error instanceof Error && error.message.startsWith("the export was refused at seq "));
}

export class ExportGuard {
  private readonly records = new RecordCheck();
  private cover: RedactionCover = { ranges: [], rejected: [] };
  private nextCover = 0;
  private lastSeq = 0;

  constructor(private readonly publicKey: KeyObject) {}

  /** Checks the chain against its newest signed checkpoint; throws `ExportRefusedError` if it fails. */
  async begin(anchor: ExportAnchor): Promise<void> {
    this.lastSeq = anchor.lastSeq;
    const started = startVerification(anchor.chainId, anchor.checkpoints, [], this.publicKey);
    if (started.failure) throw new ExportRefusedError(started.failure);
    if (anchor.hiddenRecord) throw new ExportRefusedError(anchor.hiddenRecord);
    if (anchor.chainFailure) throw new ExportRefusedError(anchor.chainFailure);
    this.cover = redactionCover(anchor.redactions, {
      chainId: anchor.chainId,
      publicKey: this.publicKey,
      checkpoints: started.checkpoints,
    });
    const newest = started.checkpoints.at(-1);
    if (!newest) return;
    const hash = await anchor.hashAt(newest.seq);
    if (hash === newest.hash) return;
    throw new ExportRefusedError(
      hash === null
        ? { seq: newest.seq, reason: "truncated", message: `a signed checkpoint of ${newest.time} covers seq ${newest.seq}, which is gone` }
        : {
            seq: newest.seq,
            reason: "checkpoint_mismatch",
            message: `the chain differs from the signed checkpoint of ${newest.time} at seq ${newest.seq} (it was rewritten)`,
          },
    );
  }

  /**
   * Checks one record, in seq order; `next` is the `prev_hash` of the chain's entry at its seq + 1
   * (null if there is none). Throws `ExportRefusedError` if the record does not match the chain.
   */
  row(stored: ChainRecordRow, next: string | null): void {
    const seq = stored.seq;
    const refuse = (reason: VerifyFailure["reason"], message: string, at = seq): never => {
      throw new ExportRefusedError({ seq: at, reason, message });
    };
    const problem = this.records.fieldsMismatch(stored);
    if (problem) refuse("edited", problem);
    if (stored.salt === null) {
      const ranges = this.cover.ranges;
      while (this.nextCover < ranges.length && ranges[this.nextCover]![1] < seq) this.nextCover++;
      const range = ranges[this.nextCover];
      if (!range || range[0] > seq) refuse("unauthorised_redaction", unauthorisedRedaction(this.cover, seq));
    }
    if (!this.records.hashMatches(stored)) refuse("edited", `seq ${seq}: a field was edited (its hash no longer matches)`);
    if (next === null) {
      if (seq < this.lastSeq) refuse("missing", `seq ${seq + 1} is missing`, seq + 1);
    } else if (next !== stored.hash) {
      refuse("edited", `seq ${seq}: the entry after it does not link to it (the record was changed and re-hashed)`);
    }
  }
}
