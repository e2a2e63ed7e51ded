/**
 * Appending to the one hash chain (../../trail/chain.ts) in PostgreSQL. Every writer — each
 * replica's appender, lease recovery, erasure, the CLI's events — appends inside a READ COMMITTED
 * transaction that first takes the transaction-scoped advisory lock `lockKeys.chain` and then reads
 * the tail: writers on any number of machines are serialised and can never fork the chain (under
 * REPEATABLE READ the snapshot would predate the lock wait and read a stale tail; `seq` is the
 * primary key as a last line of defence). Records go in with COPY FROM STDIN (text format).
 */
import type { SQL } from "bun";
import { randomBytes } from "node:crypto";
import {
  ChainHasher,
  clearIndexes,
  currentRecordVersion,
  genesisHash,
  personalIndexes,
  seqRanges,
  storedRecordColumns,
  subjectsOf,
  timestampIndex,
  userHmac,
  wellFormed,
  type ChainEvent,
  type ChainTail,
} from "../../trail/chain.ts";
import { fullRow, type SQLValue } from "../../trail/row.ts";
import { lockKeys } from "./connection.ts";

/**
 * PostgreSQL text cannot hold U+0000 (SQLSTATE 22021) and turns lone surrogates into U+FFFD: both
 * become U+FFFD before hashing, so the hash covers exactly what is stored and a call whose body
 * carries a NUL is still recorded rather than refused.
 */
export const storable = (value: SQLValue): SQLValue => {
  const v = wellFormed(value);
  return typeof v === "string" && v.includes("\u0000") ? v.replaceAll("\u0000", "\uFFFD") : v;
};

const copyEscapes: Record<string, string> = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" };
const copyCell = (value: SQLValue): string =>
  value === null ? "\\N" : typeof value === "string" ? value.replace(/[\\\t\n\r]/g, (c) => copyEscapes[c]!) : String(value);

/** A transaction or reserved connection: what the append runs on. */
export type Tx = SQL;

export async function lockChain(tx: Tx): Promise<void> {
  await tx`SELECT pg_advisory_xact_lock(${lockKeys.chain})`;
}

export async function tail(tx: Tx): Promise<ChainTail> {
  const [row] = (await tx`
    SELECT seq, hash FROM (
      (SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1)
      UNION ALL (SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1)
    ) t ORDER BY seq DESC LIMIT 1`) as { seq: string; hash: string }[];
  return row ? { seq: Number(row.seq), hash: row.hash } : { seq: 0, hash: genesisHash };
}

export interface Appended {
  tail: ChainTail;
  /** The rows as stored (redacted ones without their personal fields), with seq and hash. */
  stored: { seq: number; hash: string; row: SQLValue[] }[];
}

/**
 * Appends records (rows in `columns` order) and events inside the caller's transaction, taking the
 * chain lock. `hashKey` lets the append redact records of users erased while their calls were in
 * flight (named by an erasure event in the same transaction, as SQLite does).
 */
export async function append(
  tx: Tx,
  hashKey: Uint8Array | null,
  rows: readonly SQLValue[][],
  events: readonly ChainEvent[] = [],
): Promise<Appended> {
  const hasher = new ChainHasher();
  const clean = rows.map((row) => fullRow(row).map(storable));
  const salts = randomBytes(16 * clean.length).toString("hex");
  await lockChain(tx);
  let { seq, hash } = await tail(tx);
  const erasedAt = hashKey && clean.length ? await erasuresFor(tx, hashKey, clean) : new Map<string, string>();
  const personal: SQLValue[] = [];
  const clear: SQLValue[] = [];
  const redacted: number[] = [];
  const stored: Appended["stored"] = [];
  let copy = "";
  for (let r = 0; r < clean.length; r++) {
    const row = clean[r]!;
    seq++;
    const salt = salts.slice(32 * r, 32 * r + 32);
    for (let i = 0; i < personalIndexes.length; i++) personal[i] = row[personalIndexes[i]!]!;
    for (let i = 0; i < clearIndexes.length; i++) clear[i] = row[clearIndexes[i]!]!;
    const commitment = hasher.commitment(salt, personal);
    const prevHash = hash;
    hash = hasher.record(prevHash, clear, commitment);
    const started = String(row[timestampIndex]);
    const erased = subjectsOf(row).some((id) => {
      const at = erasedAt.get(id);
      return at !== undefined && started <= at;
    });
    if (erased) {
      for (const i of personalIndexes) row[i] = null;
      redacted.push(seq);
    }
    copy += `${[seq, ...row, erased ? null : salt, commitment, prevHash, hash, currentRecordVersion].map(copyCell).join("\t")}\n`;
    stored.push({ seq, hash, row });
  }
  if (copy) {
    const query = tx.unsafe(`COPY audit_records (${storedRecordColumns.join(", ")}) FROM STDIN`);
    const writer = query.writable().getWriter();
    await writer.write(copy);
    await writer.close();
    await query;
  }
  const landed: ChainEvent[] = redacted.length
    ? [{ kind: "erasure", actor: "erasure", details: { records: redacted.length, on_landing: true, seqs: seqRanges(redacted) } }]
    : [];
  for (const event of [...landed, ...events]) {
    seq++;
    const timestamp = new Date().toISOString();
    const details = JSON.stringify(event.details);
    const prevHash = hash;
    hash = hasher.event(prevHash, timestamp, event.kind, event.actor, details);
    await tx`INSERT INTO audit_events (seq, timestamp, kind, actor, details, prev_hash, hash)
      VALUES (${seq}, ${timestamp}, ${event.kind}, ${event.actor}, ${details}, ${prevHash}, ${hash})`;
  }
  return { tail: { seq, hash }, stored };
}

/** Erasure times of the subjects these rows name, by subject id (one query per batch). */
async function erasuresFor(tx: Tx, hashKey: Uint8Array, rows: readonly SQLValue[][]): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  // Most trails have no erasure yet: one indexed probe spares an HMAC per subject per record.
  const [any] = (await tx`SELECT EXISTS (SELECT 1 FROM audit_erasures) AS any`) as { any: boolean }[];
  if (!any!.any) return found;
  const byHmac = new Map<string, string>();
  for (const row of rows) for (const id of subjectsOf(row)) byHmac.set(userHmac(hashKey, id), id);
  if (byHmac.size === 0) return found;
  const hits = (await tx`SELECT user_hmac, erased_at FROM audit_erasures WHERE user_hmac = ANY(${[...byHmac.keys()]}::text[])`) as {
    user_hmac: string;
    erased_at: string;
  }[];
  for (const hit of hits) found.set(byHmac.get(hit.user_hmac)!, hit.erased_at);
  return found;
}
