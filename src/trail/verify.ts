/**
 * `audit verify`, as every driver verifies: the chain is recomputed over records and events in seq
 * order and the signed checkpoints are checked. A driver streams its entries into a `ChainWalk`
 * (the SQLite driver: ../store/sqlite/verify.ts) and may add checks of its own (SQLite: its usage
 * rollup). The first bad seq is reported, and why:
 *  - `edited`: a field (or a personal field behind its commitment) differs from what was hashed;
 *  - `missing`: entries are gone (a gap in seq, or a link to an entry that no longer exists);
 *  - `reordered`: an entry links to an entry other than the one before it;
 *  - `truncated`: the chain ends before a signed checkpoint;
 *  - `unauthorised_redaction`: a record's personal fields were erased, but no erasure or retention
 *    event of the chain signed by the instance's key names its seq (`redactionCover`);
 *  - `checkpoint_invalid` / `checkpoint_mismatch`: a checkpoint's signature does not verify, or the
 *    chain's hash at its seq differs (the chain was rewritten);
 *  - `rollup_mismatch`: a driver's derived data (SQLite's usage rollup, which summaries read)
 *    differs from what the records say;
 *  - `index_mismatch`: a driver's lookup tables (SQLite's key tables, which lookups, filtered
 *    summaries and filtered exports by agent, user and task read) lack a record's entry, hold one
 *    no record has, or claim records past the last one.
 * Also here: the report `audit verify` prints and `GET /audit/verify` answers, and the chain event
 * that records a verification.
 */
import type { KeyObject } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { z } from "zod";
import { ChainHasher, genesisHash, personalColumns, recordVersions, type ChainEvent } from "./chain.ts";
import { checkpointPayload, parseCheckpointFile, type Checkpoint } from "./checkpoint.ts";
import type { columns, SQLValue } from "./row.ts";
import { claimedRanges, redactionSigned } from "./redaction.ts";
import { verifyBytes } from "./signing.ts";
import { errorMessage } from "../errors.ts";

export const verifyReasons = [
  "edited",
  "missing",
  "reordered",
  "truncated",
  "checkpoint_invalid",
  "checkpoint_mismatch",
  "unauthorised_redaction",
  "rollup_mismatch",
  "index_mismatch",
  "key_tampered",
] as const;
export type VerifyReason = (typeof verifyReasons)[number];

export const verifyReportSchema = z.object({
  ok: z.boolean(),
  chain_id: z.string().nullable(),
  records: z.number().int(),
  events: z.number().int(),
  /** Records whose personal fields were erased (their commitment still verifies). */
  redacted: z.number().int(),
  checkpoints: z.number().int(),
  /**
   * Checkpoints that could not be checked because no key was available (not a sign of tampering;
   * the chain itself was checked). Pass the public key to check them.
   */
  unverified_checkpoints: z.number().int(),
  /**
   * Of the checkpoints checked, those kept outside the database (the checkpoint file, or the file
   * given to verify). Stored checkpoints alone do not protect against someone who can write to
   * the database: deleting them all and rewriting the chain leaves nothing to compare with.
   */
  external_checkpoints: z.number().int(),
  /**
   * The seq of the newest signed checkpoint the chain matches (0: none). Entries after it are
   * vouched for by the chain alone; `last_seq - signed_through` of them.
   */
  signed_through: z.number().int(),
  last_seq: z.number().int(),
  last_hash: z.string(),
  failure: z.object({ seq: z.number().int(), reason: z.enum(verifyReasons), message: z.string() }).nullable(),
});

export type VerifyReport = z.infer<typeof verifyReportSchema>;
export type VerifyFailure = NonNullable<VerifyReport["failure"]>;

/**
 * A verification's report, with its chain event appended. A read-only copy (or a locked database)
 * can still be verified: `recorded` says whether the event was written, and the caller decides what
 * an unrecorded verification means (the API refuses it, the CLI warns).
 */
export async function recordVerification(
  report: VerifyReport,
  actor: string,
  record: (event: ChainEvent) => Promise<void>,
): Promise<VerifyReport & { recorded: boolean }> {
  const details = {
    ok: report.ok,
    last_seq: report.last_seq,
    bad_seq: report.failure?.seq ?? null,
    reason: report.failure?.reason ?? null,
  };
  try {
    await record({ kind: "verify", actor, details });
    return { ...report, recorded: true };
  } catch {
    return { ...report, recorded: false };
  }
}

/** The checkpoints of a checkpoint file; none if it does not exist (yet). */
export function readCheckpointFile(file: string | undefined): Checkpoint[] {
  if (!file || !existsSync(file)) return [];
  try {
    return parseCheckpointFile(readFileSync(file, "utf8"));
  } catch (error) {
    throw new Error(`the checkpoint file ${file} cannot be read: ${errorMessage(error)}`);
  }
}

/** A record as the chain stores it: its row, its seq, salt, commitment and links. */
export type ChainRecordRow = Record<(typeof columns)[number], SQLValue> & {
  seq: number;
  salt: string | null;
  commitment: string | null;
  prev_hash: string | null;
  hash: string | null;
  /** The record hash version it was written under (./chain.ts `recordVersions`). */
  hash_version: number | string | null;
};

/** An audit-of-the-audit event as the chain stores it. */
export interface ChainEventRow {
  seq: number;
  timestamp: string;
  kind: string;
  actor: string;
  details: string;
  prev_hash: string;
  hash: string;
}

/**
 * The start of a verification: a report with no entry walked yet, and the checkpoints whose
 * signature holds (stored and `external` ones — kept outside the database, so deleting
 * checkpoints from it does not hide a truncated tail). `publicKey` null: checkpoints cannot be
 * checked; they are counted as `unverified_checkpoints` (the chain is still walked), never as
 * tampering.
 */
export function startVerification(
  chainId: string | null,
  stored: readonly Checkpoint[],
  external: readonly Checkpoint[],
  publicKey: KeyObject | null,
): { report: VerifyReport; checkpoints: Checkpoint[]; failure: VerifyFailure | null } {
  const report: VerifyReport = {
    ok: true,
    chain_id: chainId,
    records: 0,
    events: 0,
    redacted: 0,
    checkpoints: 0,
    unverified_checkpoints: 0,
    external_checkpoints: 0,
    signed_through: 0,
    last_seq: 0,
    last_hash: genesisHash,
    failure: null,
  };
  const known = new Set(stored.map((c) => c.signature));
  const outside = new Set(external.map((c) => c.signature));
  const all = [...stored, ...external.filter((c) => !known.has(c.signature))].sort((a, b) => a.seq - b.seq);
  const valid: Checkpoint[] = [];
  let failure: VerifyFailure | null = null;
  for (const checkpoint of all) {
    if (publicKey === null) {
      report.unverified_checkpoints++;
      continue;
    }
    const signed = verifyBytes(publicKey, checkpointPayload(checkpoint), checkpoint.signature);
    if (signed && checkpoint.chain_id === chainId) {
      valid.push(checkpoint);
      // Kept outside as well as stored (a mirrored checkpoint file) counts: deleting it from the database shows.
      if (outside.has(checkpoint.signature)) report.external_checkpoints++;
    } else {
      failure ??= {
        seq: checkpoint.seq,
        reason: "checkpoint_invalid",
        message: `the checkpoint at seq ${checkpoint.seq} is not signed by this instance's key for this chain`,
      };
    }
  }
  report.checkpoints = valid.length;
  return { report, checkpoints: valid, failure };
}

/**
 * The first redaction event that names seqs and was not accepted, as a failure (null: none). It
 * fails the trail even when no redacted record relies on it: checkpointers sign no checkpoint
 * while such an event stands (./redaction.ts `unsignedRedaction`), so one forged event would
 * otherwise stop all signing unseen while verify still said intact.
 */
export function rejectedRedaction(cover: RedactionCover): VerifyFailure | null {
  const first = cover.rejected.reduce<RedactionCover["rejected"][number] | null>((a, b) => (a && a.seq <= b.seq ? a : b), null);
  if (!first) return null;
  return fail(
    first.seq,
    "unauthorised_redaction",
    `the ${first.kind} event at seq ${first.seq} names redacted records but is not signed by this instance's key ` +
      "(a forged redaction event); while it stands no checkpoint is signed",
  );
}

/** The report with its first failure (by seq) among those found. */
export function finishVerification(report: VerifyReport, failures: readonly (VerifyFailure | null)[]): VerifyReport {
  report.failure = failures.filter((f): f is VerifyFailure => f !== null).sort((a, b) => a.seq - b.seq)[0] ?? null;
  report.ok = report.failure === null;
  return report;
}

/** The seqs whose redaction is accounted for, and those only a rejected event names (`redactionCover`). */
export interface RedactionCover {
  /** Sorted, merged [from, to] ranges. */
  ranges: [number, number][];
  /** Ranges named by an event that was not accepted, with that event (for the failure message). */
  rejected: { range: [number, number]; seq: number; kind: string }[];
}

/**
 * The seqs erasure and retention events say they redacted (their `details.seqs`), from the events
 * whose signature (./redaction.ts) verifies with `publicKey`: anyone who can write to the database
 * can append a well-chained event, only the key holder can sign one. Legacy: versions before
 * signed redactions wrote unsigned events; one is accepted when it lies at or before a valid
 * signed checkpoint, because this version's checkpointers sign no checkpoint over an unsigned
 * redaction event (so such a checkpoint was made by an older version). Without a public key every
 * event is accepted (checkpoints are then unverified too, and the report says so). The events
 * themselves are checked by the walk (an edited event breaks the chain).
 */
export function redactionCover(
  events: Iterable<{ seq: number; kind: string; details: string }>,
  trust: { chainId: string | null; publicKey: KeyObject | null; checkpoints: readonly Checkpoint[] },
): RedactionCover {
  const pinnedUpTo = trust.checkpoints.reduce((max, checkpoint) => Math.max(max, checkpoint.seq), 0);
  const ranges: [number, number][] = [];
  const rejected: RedactionCover["rejected"] = [];
  for (const event of events) {
    const claimed = claimedRanges(event.details);
    const accepted =
      trust.publicKey === null || event.seq <= pinnedUpTo || redactionSigned(trust.publicKey, trust.chainId, event.kind, event.details);
    if (accepted) ranges.push(...claimed);
    else for (const range of claimed) rejected.push({ range, seq: event.seq, kind: event.kind });
  }
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const range of ranges) {
    const last = merged.at(-1);
    if (last && range[0] <= last[1] + 1) last[1] = Math.max(last[1], range[1]);
    else merged.push([range[0], range[1]]);
  }
  return { ranges: merged, rejected };
}

/** Why a redacted record at `seq` outside the cover is not accounted for. */
export function unauthorisedRedaction(cover: RedactionCover, seq: number): string {
  const named = cover.rejected.find(({ range }) => range[0] <= seq && seq <= range[1]);
  const erased = `seq ${seq}: its personal fields were erased, but`;
  if (!named) return `${erased} no erasure or retention event names it`;
  return `${erased} the ${named.kind} event at seq ${named.seq} that names it is not signed by this instance's key`;
}

/** What `ChainWalk.next` says about an entry: go on, the walk failed, or its link needs a lookup. */
export type WalkStep = null | VerifyFailure | { brokenLink: true };

/**
 * The chain walked entry by entry, in seq order (records and events merged), with no I/O: a driver
 * pushes entries from wherever it reads them, sync or async. When an entry does not link to the
 * one before, `next` answers `{ brokenLink }`: the driver looks up where an entry with that
 * `prev_hash` sits (`seqOfHash`, a failure path only) and asks `brokenLink` for the failure.
 */
export class ChainWalk {
  private readonly hasher = new ChainHasher();
  private expected: number;
  private prev: string;
  private nextCheckpoint = 0;
  private nextCover = 0;
  private readonly records = new RecordCheck();

  constructor(
    private readonly report: VerifyReport,
    /** The checkpoints whose signature holds, by seq (`startVerification`). */
    private readonly checkpoints: readonly Checkpoint[],
    /** The seqs redactions are accounted for (`redactionCover`). */
    private readonly cover: RedactionCover,
    /** Where the walk starts: seq 1 after genesis, or (an export's check) an entry and the link it holds. */
    start: { seq: number; prev: string } = { seq: 1, prev: genesisHash },
  ) {
    this.expected = start.seq;
    this.prev = start.prev;
  }

  next(entry: ChainRecordRow | ChainEventRow, isRecord: boolean): WalkStep {
    const seq = entry.seq;
    if (entry.prev_hash !== this.prev) {
      const expected = this.expected;
      if (seq > expected)
        return fail(
          expected,
          "missing",
          `seq ${expected}${seq - 1 > expected ? `..${seq - 1}` : ""} missing: seq ${seq} follows seq ${expected - 1}`,
        );
      return { brokenLink: true };
    }
    if (isRecord) {
      const row = entry as ChainRecordRow;
      const problem = this.records.fieldsMismatch(row);
      if (problem) return fail(seq, "edited", problem);
      if (row.salt === null) {
        const covered = this.cover.ranges;
        while (this.nextCover < covered.length && covered[this.nextCover]![1] < seq) this.nextCover++;
        const cover = covered[this.nextCover];
        if (!cover || cover[0] > seq) return fail(seq, "unauthorised_redaction", unauthorisedRedaction(this.cover, seq));
        this.report.redacted++;
      }
    }
    if (!this.selfConsistent(entry, isRecord)) return fail(seq, "edited", `seq ${seq}: a field was edited (its hash no longer matches)`);
    if (seq !== this.expected) return fail(this.expected, "missing", `seq ${this.expected} is missing`);
    const checkpoints = this.checkpoints;
    while (this.nextCheckpoint < checkpoints.length && checkpoints[this.nextCheckpoint]!.seq <= seq) {
      const checkpoint = checkpoints[this.nextCheckpoint++]!;
      if (checkpoint.seq !== seq) continue;
      if (checkpoint.hash !== entry.hash) {
        return fail(
          seq,
          "checkpoint_mismatch",
          `seq ${seq}: the chain differs from the signed checkpoint of ${checkpoint.time} (it was rewritten)`,
        );
      }
      this.report.signed_through = seq;
    }
    if (isRecord) this.report.records++;
    else this.report.events++;
    this.prev = entry.hash!;
    this.report.last_seq = seq;
    this.report.last_hash = this.prev;
    this.expected = seq + 1;
    return null;
  }

  /** The failure of an entry that does not link to the one before; `linked`: the seq of the entry its prev_hash names, if any. */
  brokenLink(entry: ChainRecordRow | ChainEventRow, isRecord: boolean, linked: number | null): VerifyFailure {
    const seq = entry.seq;
    if (linked !== null && linked !== seq - 1)
      return fail(seq, "reordered", `the entry at seq ${seq} belongs after seq ${linked}, not after seq ${seq - 1}`);
    if (linked === null && this.selfConsistent(entry, isRecord))
      return fail(seq, "missing", `the entry at seq ${seq} follows an entry that no longer exists`);
    return fail(seq, "edited", `seq ${seq}: its link to the previous entry (prev_hash) was changed`);
  }

  /** After the last entry: a signed checkpoint past the chain's end means its tail was removed. */
  end(): VerifyFailure | null {
    const last = this.checkpoints.at(-1);
    const { last_seq } = this.report;
    if (last && last.seq > last_seq) {
      return fail(
        last_seq + 1,
        "truncated",
        `the chain ends at seq ${last_seq}, but a signed checkpoint of ${last.time} covers seq ${last.seq}: the tail was removed`,
      );
    }
    return null;
  }

  private selfConsistent(entry: ChainRecordRow | ChainEventRow, isRecord: boolean): boolean {
    if (isRecord) return this.records.hashMatches(entry as ChainRecordRow);
    const e = entry as ChainEventRow;
    if (e.prev_hash === null || e.hash === null) return false;
    return this.hasher.event(e.prev_hash, e.timestamp, e.kind, e.actor, e.details) === e.hash;
  }
}

/**
 * The checks of one stored record on its own, with no chain around it: its hash version is known,
 * an erased record holds no personal field, an unerased one's personal fields match its commitment,
 * fields its version does not cover are empty, and its hash is what its fields and `prev_hash`
 * make. The walk runs them on every record; an export on every record it signs (./export-check.ts).
 */
export class RecordCheck {
  private readonly hasher = new ChainHasher();
  /** Reused per row (verify walks millions of rows; no per-row arrays). */
  private readonly clear: SQLValue[] = [];
  private readonly personal: SQLValue[] = [];

  /** Why the record's version or personal fields do not hold, or null (the hash is `hashMatches`). */
  fieldsMismatch(row: ChainRecordRow): string | null {
    const seq = row.seq;
    const layout = recordVersions[Number(row.hash_version)];
    if (!layout) return `seq ${seq}: its hash version (${String(row.hash_version)}) is not one this version knows`;
    if (row.salt === null) {
      return personalColumns.some((column) => row[column] !== null)
        ? `seq ${seq}: personal fields were written into an erased record`
        : null;
    }
    const personal = this.personal;
    const names = layout.personalColumns;
    for (let i = 0; i < names.length; i++) personal[i] = row[names[i]!];
    personal.length = names.length;
    if (row.commitment !== this.hasher.commitment(row.salt, personal))
      return `seq ${seq}: a personal field (${names.join(", ")}) was edited`;
    return null;
  }

  /** The record's hash is what its clear fields, commitment and `prev_hash` make. */
  hashMatches(r: ChainRecordRow): boolean {
    const layout = recordVersions[Number(r.hash_version)];
    if (r.prev_hash === null || r.hash === null || r.commitment === null || !layout) return false;
    // Fields its version does not cover must be empty: a value there was added after the hash.
    if (layout.uncoveredColumns.some((column) => r[column] !== null)) return false;
    const clear = this.clear;
    const names = layout.clearColumns;
    for (let i = 0; i < names.length; i++) clear[i] = r[names[i]!];
    clear.length = names.length;
    return this.hasher.record(r.prev_hash, clear, r.commitment, layout) === r.hash;
  }
}

const fail = (seq: number, reason: VerifyReason, message: string): VerifyFailure => ({ seq, reason, message });
