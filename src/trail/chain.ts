/**
 * The hash chain over the audit trail, as any driver computes it: one chain per trail, covering
 * records and audit events (one seq space). A driver appends under a lock that serialises its
 * writers (SQLite: `BEGIN IMMEDIATE`, ../store/sqlite/chain-writer.ts), reading the tail first,
 * so two writers can never fork the chain.
 *
 *   hash       = SHA-256(prev_hash bytes || UTF-8 of JSON.stringify(["agent-attr/record/v2",
 *                ...clear fields in `clearColumns` order, commitment]))
 *   commitment = SHA-256(salt bytes || UTF-8 of JSON.stringify([...personal fields in
 *                `personalColumns` order]))
 *   event hash = SHA-256(prev_hash bytes || UTF-8 of JSON.stringify(["agent-attr/event/v1",
 *                timestamp, kind, actor, details]))
 *
 * The JSON is an array of strings, numbers (ECMAScript/RFC 8785 number form), booleans-as-0/1 and
 * nulls: unambiguous, and reproducible in any language. The genesis prev_hash is 32 zero bytes.
 * `seq` is not hashed: an entry's place is fixed by its link to the one before (and by signed
 * checkpoints, which name seq and hash), and verify requires seqs 1, 2, 3... without gaps — so a
 * moved entry is told apart from an edited one.
 * Personal and payload-bearing fields sit behind a salted commitment, so erasing them (fields and
 * salt set to NULL) leaves every hash intact.
 */
import { createHmac } from "node:crypto";
import { columns, type SQLValue } from "./row.ts";

export const genesisHash = "0".repeat(64);

/**
 * Erasable fields: the user, the credential's key id (with a JWT it is the token's `sub`, i.e. the
 * user; v2 of the record hash moved it behind the commitment), free text that may name people (task context), identifiers that link
 * a person's activity across systems (session, trace), the keyed hashes of prompt and response
 * (with the instance key, a guessed prompt can be confirmed against them), and the delegation
 * chain (the subjects a verified identity acted for).
 */
export const personalColumns = [
  "user_id",
  "key_id",
  "task_context",
  "session_id",
  "trace_id",
  "prompt_hash",
  "response_hash",
  "delegation",
] as const;
const personalSet = new Set<string>(personalColumns);
export const clearColumns = columns.filter((column) => !personalSet.has(column));
/** Where the personal and the clear fields, and the start time, sit in a row (`columns` order). */
export const personalIndexes = personalColumns.map((column) => columns.indexOf(column));
export const clearIndexes = clearColumns.map((column) => columns.indexOf(column));
export const timestampIndex = columns.indexOf("timestamp");
/** The columns of a chained record as every driver stores it: its place, its row, its salt, commitment and links. */
export const storedRecordColumns = ["seq", ...columns, "salt", "commitment", "prev_hash", "hash"] as const;
const userIndex = columns.indexOf("user_id");
const keyIndex = columns.indexOf("key_id");
const delegationIndex = columns.indexOf("delegation");

/** SHA-256 of chain entries; one instance reuses one hasher (digest resets it). */
export class ChainHasher {
  private readonly sha = new Bun.CryptoHasher("sha256");
  /** Reused for every record: ["agent-attr/record/v2", ...clear, commitment]. */
  private readonly payload: SQLValue[] = ["agent-attr/record/v2"];

  commitment(saltHex: string, personal: readonly SQLValue[]): string {
    this.sha.update(saltHex, "hex");
    this.sha.update(JSON.stringify(personal));
    return this.sha.digest("hex");
  }

  record(prevHash: string, clear: readonly SQLValue[], commitment: string): string {
    const payload = this.payload;
    for (let i = 0; i < clear.length; i++) payload[i + 1] = clear[i]!;
    payload[clear.length + 1] = commitment;
    payload.length = clear.length + 2;
    this.sha.update(prevHash, "hex");
    this.sha.update(JSON.stringify(payload));
    return this.sha.digest("hex");
  }

  event(prevHash: string, timestamp: string, kind: string, actor: string, details: string): string {
    this.sha.update(prevHash, "hex");
    this.sha.update(JSON.stringify(["agent-attr/event/v1", timestamp, kind, actor, details]));
    return this.sha.digest("hex");
  }
}

/** The kinds of audit-of-the-audit events. */
export const chainEventKinds = [
  "query",
  "export",
  "erasure",
  "verify",
  "retention",
  "access_denied",
  "key_created",
  "key_revoked",
  "budget_alert",
] as const;

export interface ChainEvent {
  kind: (typeof chainEventKinds)[number];
  /** Who: the admin identity (`cli:<os user>`, `api`) or the plugin (`plugin:tiers`), never a data subject. */
  actor: string;
  /** What, without personal data. */
  details: Record<string, unknown>;
}

export interface ChainTail {
  seq: number;
  hash: string;
}

/** HMAC of a user id with the instance hash key: how erased users are remembered (audit_erasures). */
export function userHmac(hashKey: Uint8Array, userId: string): string {
  return createHmac("sha256", hashKey).update(userId).digest("hex");
}

/** Lone surrogates cannot round-trip through a database's UTF-8 text; hash exactly what is stored. */
export const wellFormed = (value: SQLValue): SQLValue =>
  typeof value === "string" && !value.isWellFormed() ? value.toWellFormed() : value;

/** The ids a record names a person by: user, key id, and every string in its delegation JSON. */
export function subjectsOf(row: SQLValue[]): string[] {
  const ids = [row[userIndex], row[keyIndex]].filter((v): v is string => typeof v === "string");
  const delegation = row[delegationIndex];
  if (typeof delegation === "string") {
    const visit = (value: unknown): void => {
      if (typeof value === "string") ids.push(value);
      else if (value !== null && typeof value === "object") for (const v of Object.values(value)) visit(v);
    };
    try {
      visit(JSON.parse(delegation) as unknown);
    } catch {
      // not JSON: nothing more to match
    }
  }
  return ids;
}

/** Ascending seqs as compact inclusive ranges, e.g. [1,2,3,7] → [[1,3],[7,7]] (seqs are not personal). */
export function seqRanges(seqs: readonly number[]): [number, number][] {
  const ranges: [number, number][] = [];
  for (const seq of seqs) {
    const last = ranges.at(-1);
    if (last && seq === last[1] + 1) last[1] = seq;
    else ranges.push([seq, seq]);
  }
  return ranges;
}
