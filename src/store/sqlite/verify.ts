/**
 * `audit verify` in SQLite: the chain's entries streamed into the shared walk
 * (../../trail/verify.ts) from one read snapshot, records and events merged by seq, then the check
 * of the usage rollup: `rollup_mismatch` when it (summaries read it) differs from the totals
 * recomputed from the records up to its cursor, per (dimension, key, day); and `index_mismatch`
 * when the key tables (lookups by agent, user and task read them) do not hold exactly the entries
 * of the records up to their cursor (./key-index-check.ts). Neither is hashed, so both are checked
 * against the records that are. Last, the proxy keys: each row signed, none that a `key_revoked`
 * event revokes left unrevoked (`key_tampered`, ../key-signature.ts).
 */
import type { Database } from "bun:sqlite";
import type { KeyObject } from "node:crypto";
import type { Checkpoint } from "../../trail/checkpoint.ts";
import { columns } from "../../trail/row.ts";
import {
  ChainWalk,
  finishVerification,
  redactionCover,
  rejectedRedaction,
  startVerification,
  type ChainEventRow,
  type ChainRecordRow,
  type RedactionCover,
  type VerifyFailure,
  type VerifyReport,
} from "../../trail/verify.ts";
import { chainId } from "./chain-writer.ts";
import { keyIndexMismatch } from "./key-index-check.ts";
import { adoptionEventKinds, keyRowsMismatch } from "../key-signature.ts";
import { SqliteProxyKeys } from "./keys.ts";
import { taskTotalsMismatch } from "./task-totals.ts";
import { rollupCursor, rollupDimensions, rollupValueColumns, summedColumns, tagPairs } from "./rollup.ts";

/**
 * `publicKey` null: checkpoints are counted as unverified, not checked. `external`: checkpoints
 * kept outside the database (the checkpoint file or webhook), checked like the stored ones.
 */
export function verifyChain(db: Database, publicKey: KeyObject | null, external: readonly Checkpoint[] = []): VerifyReport {
  // One read snapshot: the chain, its checkpoints and the rollup (with its cursor) agree in time.
  return db.transaction(() => verifySnapshot(db, publicKey, external))();
}

function verifySnapshot(db: Database, publicKey: KeyObject | null, external: readonly Checkpoint[]): VerifyReport {
  const stored = db.query<Checkpoint, []>("SELECT chain_id, seq, hash, time, signature FROM audit_checkpoints ORDER BY seq").all();
  const start = startVerification(chainId(db), stored, external, publicKey);
  const cover = redactionCover(redactionEvents(db), { chainId: start.report.chain_id, publicKey, checkpoints: start.checkpoints });
  const walked = walk(db, start.report, start.checkpoints, cover);
  const lastRecord = db.query<{ seq: number | null }, []>("SELECT max(seq) AS seq FROM audit_records").get()?.seq ?? 0;
  const keys = keyMismatch(db, { chainId: start.report.chain_id, publicKey }, start.report.last_seq);
  return finishVerification(start.report, [start.failure, walked, rejectedRedaction(cover), keyIndexMismatch(db, lastRecord), keys]);
}

/** The key table against its signatures and the chain's key events (../key-signature.ts). */
function keyMismatch(db: Database, trust: Parameters<typeof keyRowsMismatch>[2], lastSeq: number): VerifyFailure | null {
  const table = new SqliteProxyKeys(db);
  try {
    const events = db
      .query<{ seq: number; kind: string; details: string }, []>(
        `SELECT seq, kind, details FROM audit_events WHERE kind IN (${adoptionEventKinds}) ORDER BY seq`,
      )
      .all();
    return keyRowsMismatch(table.rows(), events, trust, lastSeq);
  } finally {
    table.close();
  }
}

/** The chain's erasure and retention events (their `details.seqs` name the records they redacted). */
export function redactionEvents(db: Database): { seq: number; kind: string; details: string }[] {
  return db
    .query<{ seq: number; kind: string; details: string }, []>(
      "SELECT seq, kind, details FROM audit_events WHERE kind IN ('erasure', 'retention')",
    )
    .all();
}

/**
 * The chain walked from the entry at `from` to its end, that entry's own link taken as given (null:
 * intact, or no such entry). An export's check (./export-rows.ts): a record it signs must lead, link
 * by self-consistent link, to the chain's end, where the newest signed checkpoint is checked; a
 * record edited and rehashed with only its successor's link repointed would otherwise pass.
 * Redactions are taken as accounted for here: the export checks those of the records it signs.
 */
export function chainFailureFrom(db: Database, from: number): VerifyFailure | null {
  const first = db
    .query<{ prev_hash: string | null }, [number, number]>(
      "SELECT prev_hash FROM audit_records WHERE seq = ? UNION ALL SELECT prev_hash FROM audit_events WHERE seq = ? LIMIT 1",
    )
    .get(from, from);
  if (!first?.prev_hash) return null;
  const { report } = startVerification(chainId(db), [], [], null);
  const cover = redactionCover(redactionEvents(db), { chainId: report.chain_id, publicKey: null, checkpoints: [] });
  return walk(db, report, [], cover, { seq: from, prev: first.prev_hash });
}

function walk(
  db: Database,
  report: VerifyReport,
  checkpoints: Checkpoint[],
  cover: RedactionCover,
  start?: { seq: number; prev: string },
): VerifyFailure | null {
  const chain = new ChainWalk(report, checkpoints, cover, start);
  const from = start?.seq ?? 1;
  const records = db
    .query<ChainRecordRow, [number]>(
      `SELECT seq, salt, commitment, prev_hash, hash, hash_version, ${columns.join(", ")} FROM audit_records WHERE seq >= ? ORDER BY seq`,
    )
    .iterate(from);
  const events = db.query<ChainEventRow, [number]>("SELECT * FROM audit_events WHERE seq >= ? ORDER BY seq").iterate(from);
  let record = records.next();
  let event = events.next();
  // The rollup's check needs every record: only a whole walk makes it.
  const rollup = new RollupTotals(start ? 0 : rollupCursor(db));
  const stop = (failure: VerifyFailure): VerifyFailure => {
    records.return?.();
    events.return?.();
    return failure;
  };
  while (!record.done || !event.done) {
    const isRecord = event.done || (!record.done && record.value.seq < event.value.seq);
    const entry: ChainRecordRow | ChainEventRow = isRecord ? record.value : event.value;
    const step = chain.next(entry, isRecord);
    if (step !== null) {
      if ("brokenLink" in step) return stop(chain.brokenLink(entry, isRecord, entry.prev_hash ? seqOfHash(db, entry.prev_hash) : null));
      return stop(step);
    }
    if (isRecord) {
      if (entry.seq <= rollup.cursor) rollup.add(entry as ChainRecordRow);
      record = records.next();
    } else {
      event = events.next();
    }
  }
  const truncated = chain.end();
  if (truncated || start) return truncated;
  // The writer only ever moves the cursor to a seq it has folded in: one past the chain's end was
  // set by hand, and would hide the next records from summaries.
  const fail = (seq: number, message: string): VerifyFailure => ({ seq, reason: "rollup_mismatch", message });
  if (rollup.cursor > report.last_seq) {
    return fail(
      report.last_seq + 1,
      `the usage rollup claims records up to seq ${rollup.cursor}, but the chain ends at seq ${report.last_seq}`,
    );
  }
  const difference = rollup.compare(db);
  if (difference) return fail(rollup.cursor, `the usage rollup (up to seq ${rollup.cursor}) differs from the records: ${difference}`);
  const tasks = taskTotalsMismatch(db, rollup.cursor, rollup.tasks);
  if (tasks) return fail(rollup.cursor, tasks);
  return null;
}

/**
 * The rollup recomputed from the records the walk streams (seq ≤ the rollup cursor), by the same
 * key rules as its fold and triggers: key = the column or '', provider only for the model
 * dimension, day = the timestamp's first 10 characters. Erasure moves usage to the '' key in both.
 */
class RollupTotals {
  private readonly totals = new Map<string, number[]>();
  /** The per-task totals (./task-totals.ts), keyed as the table is: `t` + the task, '' for none. */
  readonly tasks = new Map<string, number[]>();

  constructor(readonly cursor: number) {}

  add(row: ChainRecordRow): void {
    const task = row.task_context === null ? "" : `t${String(row.task_context)}`;
    let values = this.tasks.get(task);
    if (!values) this.tasks.set(task, (values = new Array<number>(rollupValueColumns.length).fill(0)));
    this.sum(values, row);
    const day = String(row.timestamp).slice(0, 10);
    const get = (column: string) => row[column as keyof ChainRecordRow] ?? null;
    const keyed = Object.entries(rollupDimensions).map(([dim, { js }]): [string, string] => [dim, js(get)]);
    for (const pair of tagPairs(row.tags, row.personal_tags)) keyed.push(pair);
    for (const [dim, key] of keyed) {
      const provider = dim === "model" ? (row.provider ?? "") : "";
      const id = `${dim}\u0000${key}\u0000${provider}\u0000${day}`;
      let values = this.totals.get(id);
      if (!values) this.totals.set(id, (values = new Array<number>(rollupValueColumns.length).fill(0)));
      this.sum(values, row);
    }
  }

  private sum(values: number[], row: ChainRecordRow): void {
    values[0]! += 1;
    for (let i = 0; i < summedColumns.length; i++) values[i + 1]! += Number(row[summedColumns[i]!] ?? 0);
    if (row.cost_nano_usd === null && row.usage_source !== "none") values[rollupValueColumns.length - 1]! += 1;
  }

  /** The first difference, described, or null when the stored rollup matches. */
  compare(db: Database): string | null {
    const seen = new Set<string>();
    const stored = db.query<Record<string, string | number>, []>(
      `SELECT dim, key, provider, day, ${rollupValueColumns.join(", ")} FROM usage_rollup`,
    );
    for (const row of stored.iterate()) {
      const id = `${row.dim}\u0000${row.key}\u0000${row.provider}\u0000${row.day}`;
      seen.add(id);
      const values = this.totals.get(id);
      const at = `dim ${row.dim}, key '${row.key}', day ${row.day}`;
      if (!values) return `${at}: the rollup has ${row.calls} call(s) no record accounts for`;
      const column = rollupValueColumns.findIndex((c, i) => Number(row[c]) !== values[i]);
      if (column !== -1)
        return `${at}: ${rollupValueColumns[column]} is ${row[rollupValueColumns[column]!]} in the rollup, ${values[column]} in the records`;
    }
    for (const [id, values] of this.totals) {
      if (seen.has(id) || values[0] === 0) continue;
      const [dim, key, , day] = id.split("\u0000");
      return `dim ${dim}, key '${key}', day ${day}: ${values[0]} call(s) in the records are missing from the rollup`;
    }
    return null;
  }
}

/** Where an entry with this hash sits (only on the failure path: a full scan). */
function seqOfHash(db: Database, hash: string): number | null {
  const row = db
    .query<{ seq: number }, [string, string]>(
      "SELECT seq FROM audit_records WHERE hash = ? UNION ALL SELECT seq FROM audit_events WHERE hash = ? LIMIT 1",
    )
    .get(hash, hash);
  return row?.seq ?? null;
}
