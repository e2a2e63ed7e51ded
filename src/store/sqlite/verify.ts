/**
 * `audit verify`: recomputes the hash chain over records and events in seq order, streaming rows,
 * and checks the signed checkpoints. Reports the first bad seq and why:
 *  - `edited`: a field (or a personal field behind its commitment) differs from what was hashed;
 *  - `missing`: entries are gone (a gap in seq, or a link to an entry that no longer exists);
 *  - `reordered`: an entry links to an entry other than the one before it;
 *  - `truncated`: the chain ends before a signed checkpoint;
 *  - `unauthorised_redaction`: a record's personal fields were erased, but no erasure or retention
 *    event of the chain names its seq;
 *  - `checkpoint_invalid` / `checkpoint_mismatch`: a checkpoint's signature does not verify, or the
 *    chain's hash at its seq differs (the chain was rewritten);
 *  - `rollup_mismatch`: the usage rollup (summaries read it) differs from the totals recomputed
 *    from the records up to its cursor, per (dimension, key, day) — the rollup is not hashed, so
 *    it is checked against the records that are.
 */
import type { Database } from "bun:sqlite";
import type { KeyObject } from "node:crypto";
import { ChainHasher, clearColumns, genesisHash, personalColumns } from "../../trail/chain.ts";
import { chainId } from "./chain-writer.ts";
import { checkpointPayload, type Checkpoint } from "../../trail/checkpoint.ts";
import { columns, type SQLValue } from "../../trail/row.ts";
import { rollupCursor, rollupDimensions, rollupValueColumns, summedColumns } from "./rollup.ts";
import { verifyBytes } from "../../trail/signing.ts";

import { type VerifyFailure, type VerifyReason, type VerifyReport } from "../../trail/verify.ts";

type RecordRow = Record<(typeof columns)[number], SQLValue> & {
  seq: number;
  salt: string | null;
  commitment: string | null;
  prev_hash: string | null;
  hash: string | null;
};
interface EventRow {
  seq: number;
  timestamp: string;
  kind: string;
  actor: string;
  details: string;
  prev_hash: string;
  hash: string;
}

/**
 * `publicKey` null: checkpoints cannot be checked; they are counted as `unverified_checkpoints`
 * (the chain is still walked), never as tampering.
 * `external`: checkpoints kept outside the database (the checkpoint file or webhook), checked like
 * the stored ones — so deleting checkpoints from the database does not hide a truncated tail.
 */
export function verifyChain(db: Database, publicKey: KeyObject | null, external: readonly Checkpoint[] = []): VerifyReport {
  // One read snapshot: the chain, its checkpoints and the rollup (with its cursor) agree in time.
  return db.transaction(() => verifySnapshot(db, publicKey, external))();
}

function verifySnapshot(db: Database, publicKey: KeyObject | null, external: readonly Checkpoint[]): VerifyReport {
  const report: VerifyReport = {
    ok: true, chain_id: chainId(db), records: 0, events: 0, redacted: 0, checkpoints: 0, unverified_checkpoints: 0,
    last_seq: 0, last_hash: genesisHash, failure: null,
  };
  const stored = db.query<Checkpoint, []>("SELECT chain_id, seq, hash, time, signature FROM audit_checkpoints ORDER BY seq").all();
  const known = new Set(stored.map((c) => c.signature));
  const checkpoints = [...stored, ...external.filter((c) => !known.has(c.signature))].sort((a, b) => a.seq - b.seq);
  const valid: Checkpoint[] = [];
  let signatureFailure: VerifyFailure | null = null;
  for (const checkpoint of checkpoints) {
    if (publicKey === null) {
      report.unverified_checkpoints++;
      continue;
    }
    const signed = verifyBytes(publicKey, checkpointPayload(checkpoint), checkpoint.signature);
    if (signed && checkpoint.chain_id === report.chain_id) {
      valid.push(checkpoint);
    } else {
      signatureFailure ??= {
        seq: checkpoint.seq,
        reason: "checkpoint_invalid",
        message: `the checkpoint at seq ${checkpoint.seq} is not signed by this instance's key for this chain`,
      };
    }
  }
  report.checkpoints = valid.length;
  const walkFailure = walk(db, report, valid);
  const failures = [signatureFailure, walkFailure].filter((f): f is VerifyFailure => f !== null);
  report.failure = failures.sort((a, b) => a.seq - b.seq)[0] ?? null;
  report.ok = report.failure === null;
  return report;
}

function walk(db: Database, report: VerifyReport, checkpoints: Checkpoint[]): VerifyFailure | null {
  const hasher = new ChainHasher();
  const records = db
    .query<RecordRow, []>(`SELECT seq, salt, commitment, prev_hash, hash, ${columns.join(", ")} FROM audit_records ORDER BY seq`)
    .iterate();
  const events = db.query<EventRow, []>("SELECT * FROM audit_events ORDER BY seq").iterate();
  let record = records.next();
  let event = events.next();
  let expected = 1;
  let prev = genesisHash;
  let nextCheckpoint = 0;
  const covered = redactionCover(db);
  let nextCover = 0;
  const rollup = new RollupTotals(rollupCursor(db));
  const fail = (seq: number, reason: VerifyReason, message: string): VerifyFailure => {
    records.return?.();
    events.return?.();
    return { seq, reason, message };
  };
  while (!record.done || !event.done) {
    const isRecord = event.done || (!record.done && record.value.seq < event.value.seq);
    const entry: RecordRow | EventRow = isRecord ? record.value : event.value;
    const seq = entry.seq;
    if (entry.prev_hash !== prev) {
      if (seq > expected) return fail(expected, "missing", `seq ${expected}${seq - 1 > expected ? `..${seq - 1}` : ""} missing: seq ${seq} follows seq ${expected - 1}`);
      const linked = entry.prev_hash ? seqOfHash(db, entry.prev_hash) : null;
      if (linked !== null && linked !== seq - 1) return fail(seq, "reordered", `the entry at seq ${seq} belongs after seq ${linked}, not after seq ${seq - 1}`);
      if (linked === null && selfConsistent(hasher, entry, isRecord)) {
        return fail(seq, "missing", `the entry at seq ${seq} follows an entry that no longer exists`);
      }
      return fail(seq, "edited", `seq ${seq}: its link to the previous entry (prev_hash) was changed`);
    }
    if (isRecord) {
      const row = entry as RecordRow;
      for (let i = 0; i < personalColumns.length; i++) personalValues[i] = row[personalColumns[i]!];
      const personal = personalValues;
      if (row.salt === null) {
        if (personal.some((value) => value !== null)) return fail(seq, "edited", `seq ${seq}: personal fields were written into an erased record`);
        while (nextCover < covered.length && covered[nextCover]![1] < seq) nextCover++;
        const cover = covered[nextCover];
        if (!cover || cover[0] > seq) {
          return fail(seq, "unauthorised_redaction", `seq ${seq}: its personal fields were erased, but no erasure or retention event names it`);
        }
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
    if (isRecord) {
      report.records++;
      if (seq <= rollup.cursor) rollup.add(entry as RecordRow);
      record = records.next();
    } else {
      report.events++;
      event = events.next();
    }
    prev = entry.hash!;
    report.last_seq = seq;
    report.last_hash = prev;
    expected = seq + 1;
  }
  const last = checkpoints.at(-1);
  if (last && last.seq > report.last_seq) {
    return fail(report.last_seq + 1, "truncated", `the chain ends at seq ${report.last_seq}, but a signed checkpoint of ${last.time} covers seq ${last.seq}: the tail was removed`);
  }
  // The writer only ever moves the cursor to a seq it has folded in: one past the chain's end was
  // set by hand, and would hide the next records from summaries.
  if (rollup.cursor > report.last_seq) {
    return fail(report.last_seq + 1, "rollup_mismatch", `the usage rollup claims records up to seq ${rollup.cursor}, but the chain ends at seq ${report.last_seq}`);
  }
  const difference = rollup.compare(db);
  if (difference) return fail(rollup.cursor, "rollup_mismatch", `the usage rollup (up to seq ${rollup.cursor}) differs from the records: ${difference}`);
  return null;
}


/**
 * The rollup recomputed from the records the walk streams (seq ≤ the rollup cursor), by the same
 * key rules as its fold and triggers: key = the column or '', provider only for the model
 * dimension, day = the timestamp's first 10 characters. Erasure moves usage to the '' key in both.
 */
class RollupTotals {
  private readonly totals = new Map<string, number[]>();

  constructor(readonly cursor: number) {}

  add(row: RecordRow): void {
    const day = String(row.timestamp).slice(0, 10);
    const get = (column: string) => row[column as keyof RecordRow] ?? null;
    for (const [dim, { js }] of Object.entries(rollupDimensions)) {
      const provider = dim === "model" ? (row.provider ?? "") : "";
      const id = `${dim}\u0000${js(get)}\u0000${provider}\u0000${day}`;
      let values = this.totals.get(id);
      if (!values) this.totals.set(id, (values = new Array<number>(rollupValueColumns.length).fill(0)));
      values[0]! += 1;
      for (let i = 0; i < summedColumns.length; i++) values[i + 1]! += Number(row[summedColumns[i]!] ?? 0);
      if (row.cost_nano_usd === null && row.usage_source !== "none") values[rollupValueColumns.length - 1]! += 1;
    }
  }

  /** The first difference, described, or null when the stored rollup matches. */
  compare(db: Database): string | null {
    const seen = new Set<string>();
    const stored = db.query<Record<string, string | number>, []>(`SELECT dim, key, provider, day, ${rollupValueColumns.join(", ")} FROM usage_rollup`);
    for (const row of stored.iterate()) {
      const id = `${row.dim}\u0000${row.key}\u0000${row.provider}\u0000${row.day}`;
      seen.add(id);
      const values = this.totals.get(id);
      const at = `dim ${row.dim}, key '${row.key}', day ${row.day}`;
      if (!values) return `${at}: the rollup has ${row.calls} call(s) no record accounts for`;
      const column = rollupValueColumns.findIndex((c, i) => Number(row[c]) !== values[i]);
      if (column !== -1) return `${at}: ${rollupValueColumns[column]} is ${row[rollupValueColumns[column]!]} in the rollup, ${values[column]} in the records`;
    }
    for (const [id, values] of this.totals) {
      if (seen.has(id) || values[0] === 0) continue;
      const [dim, key, , day] = id.split("\u0000");
      return `dim ${dim}, key '${key}', day ${day}: ${values[0]} call(s) in the records are missing from the rollup`;
    }
    return null;
  }
}

/**
 * The seqs erasure and retention events say they redacted, as sorted, merged [from, to] ranges.
 * The events themselves are checked by the walk (a forged or edited event breaks the chain).
 */
function redactionCover(db: Database): [number, number][] {
  const ranges: [number, number][] = [];
  const events = db.query<{ details: string }, []>("SELECT details FROM audit_events WHERE kind IN ('erasure', 'retention')");
  for (const event of events.iterate()) {
    let seqs: unknown;
    try {
      seqs = (JSON.parse(event.details) as { seqs?: unknown }).seqs;
    } catch {
      continue;
    }
    if (!Array.isArray(seqs)) continue;
    for (const range of seqs) {
      if (Array.isArray(range) && typeof range[0] === "number" && typeof range[1] === "number") ranges.push([range[0], range[1]]);
    }
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

/** Reused per row (verify walks millions of rows; no per-row arrays). */
const clearValues: SQLValue[] = [];
const personalValues: SQLValue[] = [];

function selfConsistent(hasher: ChainHasher, entry: RecordRow | EventRow, isRecord: boolean): boolean {
  if (entry.prev_hash === null || entry.hash === null) return false;
  if (!isRecord) {
    const e = entry as EventRow;
    return hasher.event(e.prev_hash, e.timestamp, e.kind, e.actor, e.details) === e.hash;
  }
  const r = entry as RecordRow;
  if (r.commitment === null) return false;
  for (let i = 0; i < clearColumns.length; i++) clearValues[i] = r[clearColumns[i]!];
  return hasher.record(r.prev_hash!, clearValues, r.commitment) === r.hash;
}

/** Where an entry with this hash sits (only on the failure path: a full scan). */
function seqOfHash(db: Database, hash: string): number | null {
  const row = db
    .query<{ seq: number }, [string, string]>("SELECT seq FROM audit_records WHERE hash = ? UNION ALL SELECT seq FROM audit_events WHERE hash = ? LIMIT 1")
    .get(hash, hash);
  return row?.seq ?? null;
}
