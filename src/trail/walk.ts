/**
 * The chain walk of `audit verify` for drivers that read asynchronously (PostgreSQL): entries in
 * seq order from any source, checked against the hash formulas (./chain.ts) and the signed
 * checkpoints, with the reasons of ./verify.ts. It is the SQLite walk's logic
 * (../store/sqlite/verify.ts) minus the usage rollup, which only SQLite keeps.
 */
import type { KeyObject } from "node:crypto";
import { ChainHasher, clearColumns, genesisHash, personalColumns } from "./chain.ts";
import { checkpointPayload, type Checkpoint } from "./checkpoint.ts";
import type { columns, SQLValue } from "./row.ts";
import { verifyBytes } from "./signing.ts";
import type { VerifyFailure, VerifyReason, VerifyReport } from "./verify.ts";

export type WalkRecord = Record<(typeof columns)[number], SQLValue> & {
  seq: number;
  salt: string | null;
  commitment: string | null;
  prev_hash: string | null;
  hash: string | null;
};
export interface WalkEvent {
  seq: number;
  timestamp: string;
  kind: string;
  actor: string;
  details: string;
  prev_hash: string;
  hash: string;
}
export type WalkEntry = { record: WalkRecord } | { event: WalkEvent };

export interface WalkSource {
  chainId: string | null;
  /** Checkpoints stored with the chain. */
  checkpoints: readonly Checkpoint[];
  /** Every entry, records and events merged, in seq order. */
  entries(): AsyncIterable<WalkEntry>;
  /** Where an entry with this hash sits (failure path only). */
  seqOfHash(hash: string): Promise<number | null>;
  /** The `seqs` of every erasure and retention event's details, raw. */
  redactionDetails(): Promise<string[]>;
}

export async function walkChain(source: WalkSource, publicKey: KeyObject | null, external: readonly Checkpoint[] = []): Promise<VerifyReport> {
  const report: VerifyReport = {
    ok: true, chain_id: source.chainId, records: 0, events: 0, redacted: 0, checkpoints: 0, unverified_checkpoints: 0,
    last_seq: 0, last_hash: genesisHash, failure: null,
  };
  const known = new Set(source.checkpoints.map((c) => c.signature));
  const checkpoints = [...source.checkpoints, ...external.filter((c) => !known.has(c.signature))].sort((a, b) => a.seq - b.seq);
  const valid: Checkpoint[] = [];
  let signatureFailure: VerifyFailure | null = null;
  for (const checkpoint of checkpoints) {
    if (publicKey === null) {
      report.unverified_checkpoints++;
      continue;
    }
    if (verifyBytes(publicKey, checkpointPayload(checkpoint), checkpoint.signature) && checkpoint.chain_id === report.chain_id) valid.push(checkpoint);
    else signatureFailure ??= { seq: checkpoint.seq, reason: "checkpoint_invalid", message: `the checkpoint at seq ${checkpoint.seq} is not signed by this instance's key for this chain` };
  }
  report.checkpoints = valid.length;
  const walkFailure = await walk(source, report, valid);
  const failures = [signatureFailure, walkFailure].filter((f): f is VerifyFailure => f !== null);
  report.failure = failures.sort((a, b) => a.seq - b.seq)[0] ?? null;
  report.ok = report.failure === null;
  return report;
}

async function walk(source: WalkSource, report: VerifyReport, checkpoints: Checkpoint[]): Promise<VerifyFailure | null> {
  const hasher = new ChainHasher();
  const covered = redactionCover(await source.redactionDetails());
  let nextCover = 0;
  let expected = 1;
  let prev = genesisHash;
  let nextCheckpoint = 0;
  const fail = (seq: number, reason: VerifyReason, message: string): VerifyFailure => ({ seq, reason, message });
  for await (const item of source.entries()) {
    const isRecord = "record" in item;
    const entry: WalkRecord | WalkEvent = isRecord ? item.record : item.event;
    const seq = entry.seq;
    if (entry.prev_hash !== prev) {
      if (seq > expected) return fail(expected, "missing", `seq ${expected}${seq - 1 > expected ? `..${seq - 1}` : ""} missing: seq ${seq} follows seq ${expected - 1}`);
      const linked = entry.prev_hash ? await source.seqOfHash(entry.prev_hash) : null;
      if (linked !== null && linked !== seq - 1) return fail(seq, "reordered", `the entry at seq ${seq} belongs after seq ${linked}, not after seq ${seq - 1}`);
      if (linked === null && selfConsistent(hasher, entry, isRecord)) return fail(seq, "missing", `the entry at seq ${seq} follows an entry that no longer exists`);
      return fail(seq, "edited", `seq ${seq}: its link to the previous entry (prev_hash) was changed`);
    }
    if (isRecord) {
      const row = entry as WalkRecord;
      const personal = personalColumns.map((column) => row[column]);
      if (row.salt === null) {
        if (personal.some((value) => value !== null)) return fail(seq, "edited", `seq ${seq}: personal fields were written into an erased record`);
        while (nextCover < covered.length && covered[nextCover]![1] < seq) nextCover++;
        const cover = covered[nextCover];
        if (!cover || cover[0] > seq) return fail(seq, "unauthorised_redaction", `seq ${seq}: its personal fields were erased, but no erasure or retention event names it`);
        report.redacted++;
      } else if (row.commitment !== hasher.commitment(row.salt, personal)) {
        return fail(seq, "edited", `seq ${seq}: a personal field (${personalColumns.join(", ")}) was edited`);
      }
    }
    if (!selfConsistent(hasher, entry, isRecord)) return fail(seq, "edited", `seq ${seq}: a field was edited (its hash no longer matches)`);
    if (seq !== expected) return fail(expected, "missing", `seq ${expected} is missing`);
    while (nextCheckpoint < checkpoints.length && checkpoints[nextCheckpoint]!.seq <= seq) {
      const checkpoint = checkpoints[nextCheckpoint++]!;
      if (checkpoint.seq === seq && checkpoint.hash !== entry.hash) {
        return fail(seq, "checkpoint_mismatch", `seq ${seq}: the chain differs from the signed checkpoint of ${checkpoint.time} (it was rewritten)`);
      }
    }
    if (isRecord) report.records++;
    else report.events++;
    prev = entry.hash!;
    report.last_seq = seq;
    report.last_hash = prev;
    expected = seq + 1;
  }
  const last = checkpoints.at(-1);
  if (last && last.seq > report.last_seq) {
    return fail(report.last_seq + 1, "truncated", `the chain ends at seq ${report.last_seq}, but a signed checkpoint of ${last.time} covers seq ${last.seq}: the tail was removed`);
  }
  return null;
}

/** The seqs erasure and retention events name, as sorted, merged [from, to] ranges. */
export function redactionCover(details: readonly string[]): [number, number][] {
  const ranges: [number, number][] = [];
  for (const text of details) {
    let seqs: unknown;
    try {
      seqs = (JSON.parse(text) as { seqs?: unknown }).seqs;
    } catch {
      continue;
    }
    if (!Array.isArray(seqs)) continue;
    for (const range of seqs) if (Array.isArray(range) && typeof range[0] === "number" && typeof range[1] === "number") ranges.push([range[0], range[1]]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const range of ranges) {
    const last = merged.at(-1);
    if (last && range[0] <= last[1] + 1) last[1] = Math.max(last[1], range[1]);
    else merged.push([range[0], range[1]]);
  }
  return merged;
}

function selfConsistent(hasher: ChainHasher, entry: WalkRecord | WalkEvent, isRecord: boolean): boolean {
  if (entry.prev_hash === null || entry.hash === null) return false;
  if (!isRecord) {
    const e = entry as WalkEvent;
    return hasher.event(e.prev_hash, e.timestamp, e.kind, e.actor, e.details) === e.hash;
  }
  const r = entry as WalkRecord;
  if (r.commitment === null) return false;
  return hasher.record(r.prev_hash!, clearColumns.map((column) => r[column]), r.commitment) === r.hash;
}
