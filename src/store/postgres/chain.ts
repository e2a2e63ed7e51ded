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
  storedRecordColumns,
  subjectsOf,
  timestampIndex,
  userHmac,
  wellFormed,
  type ChainEvent,
  type ChainTail,
} from "../../trail/chain.ts";
import { redactionEvent, type RedactionSigner } from "../../trail/redaction.ts";
import { fullRow, type SQLValue } from "../../trail/row.ts";
import { lockKeys } from "./connection.ts";
import { copyCells, copyStream } from "./writer.ts";

/**
 * PostgreSQL text cannot hold U+0000 (SQLSTATE 22021) and turns lone surrogates into U+FFFD: both
 * become U+FFFD before hashing, so the hash covers exactly what is stored and a call whose body
 * carries a NUL is still recorded rather than refused.
 */
export const storable = (value: SQLValue): SQLValue => {
  const v = wellFormed(value);
  return typeof v === "string" && v.includes("\u0000") ? v.replaceAll("\u0000", "\uFFFD") : v;
};

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
 * Rows made ready for the chain before its lock is taken: everything but their place and links
 * (seq, prev_hash, hash) — their text made storable, salts, commitments, the payload each hash
 * covers after the previous hash, and their COPY cells. Under the lock only a SHA-256 per row
 * and the line's links are left, so writers of other replicas wait for less.
 */
export interface PreparedRows {
  rows: SQLValue[][];
  salts: string[];
  commitments: string[];
  payloads: string[];
  cells: string[];
}

export function prepareRows(rows: readonly SQLValue[][], hasher = new ChainHasher()): PreparedRows {
  const clean = rows.map((row) => fullRow(row).map(storable));
  const random = randomBytes(16 * clean.length).toString("hex");
  const prepared: PreparedRows = { rows: clean, salts: [], commitments: [], payloads: [], cells: [] };
  const personal: SQLValue[] = [];
  const clear: SQLValue[] = [];
  for (let r = 0; r < clean.length; r++) {
    const row = clean[r]!;
    const salt = random.slice(32 * r, 32 * r + 32);
    for (let i = 0; i < personalIndexes.length; i++) personal[i] = row[personalIndexes[i]!]!;
    for (let i = 0; i < clearIndexes.length; i++) clear[i] = row[clearIndexes[i]!]!;
    const commitment = hasher.commitment(salt, personal);
    prepared.salts.push(salt);
    prepared.commitments.push(commitment);
    prepared.payloads.push(hasher.recordPayload(clear, commitment));
    prepared.cells.push(copyCells(row));
  }
  return prepared;
}

/** The prepared rows whose index passes `keep`. */
export function keepRows(prepared: PreparedRows, keep: (index: number) => boolean): PreparedRows {
  const picked: PreparedRows = { rows: [], salts: [], commitments: [], payloads: [], cells: [] };
  for (let i = 0; i < prepared.rows.length; i++) {
    if (!keep(i)) continue;
    picked.rows.push(prepared.rows[i]!);
    picked.salts.push(prepared.salts[i]!);
    picked.commitments.push(prepared.commitments[i]!);
    picked.payloads.push(prepared.payloads[i]!);
    picked.cells.push(prepared.cells[i]!);
  }
  return picked;
}

/** Rows per piece of the COPY: the server inserts one piece while the next is hashed. */
const copyPiece = 256;

/**
 * Appends records (rows in `columns` order, or prepared by `prepareRows` before the caller took
 * the lock) and events inside the caller's transaction, taking the chain lock. `hashKey` lets the
 * append redact records of users erased while their calls were in flight (named by an erasure
 * event in the same transaction, as SQLite does, signed by `signer`: verify accepts no redaction
 * an unsigned event names).
 */
export async function append(
  tx: Tx,
  hashKey: Uint8Array | null,
  input: readonly SQLValue[][] | PreparedRows,
  events: readonly ChainEvent[] = [],
  signer: RedactionSigner | null = null,
): Promise<Appended> {
  const hasher = new ChainHasher();
  const prepared = Array.isArray(input) ? prepareRows(input, hasher) : (input as PreparedRows);
  const clean = prepared.rows;
  await lockChain(tx);
  let { seq, hash } = await tail(tx);
  const erasedAt = hashKey && clean.length ? await erasuresFor(tx, hashKey, clean) : new Map<string, string>();
  const redacted: number[] = [];
  const stored: Appended["stored"] = [];
  const copy = clean.length ? copyStream(tx, `audit_records (${storedRecordColumns.join(", ")})`) : null;
  let piece = "";
  for (let r = 0; r < clean.length; r++) {
    const row = clean[r]!;
    seq++;
    const commitment = prepared.commitments[r]!;
    const prevHash = hash;
    hash = hasher.recordFrom(prevHash, prepared.payloads[r]!);
    let cells = prepared.cells[r]!;
    let salt: string | null = prepared.salts[r]!;
    if (erasedAt.size > 0) {
      const started = String(row[timestampIndex]);
      const erased = subjectsOf(row).some((id) => {
        const at = erasedAt.get(id);
        return at !== undefined && started <= at;
      });
      if (erased) {
        for (const i of personalIndexes) row[i] = null;
        cells = copyCells(row);
        salt = null;
        redacted.push(seq);
      }
    }
    // seq, salt, commitment and the hashes need no COPY escaping (digits and hex).
    piece += `${seq}\t${cells}\t${salt ?? "\\N"}\t${commitment}\t${prevHash}\t${hash}\t${currentRecordVersion}\n`;
    stored.push({ seq, hash, row });
    if ((r + 1) % copyPiece === 0) {
      await copy!.write(piece);
      piece = "";
    }
  }
  if (copy) {
    if (piece) await copy.write(piece);
    await copy.end();
  }
  const landed: ChainEvent[] = redacted.length
    ? [redactionEvent(signer, "erasure", "erasure", { records: redacted.length, on_landing: true }, redacted)]
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
