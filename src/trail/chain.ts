/**
 * The hash chain over the audit trail, as any driver computes it: one chain per trail, covering
 * records and audit events (one seq space). A driver appends under a lock that serialises its
 * writers (SQLite: `BEGIN IMMEDIATE`, ../store/sqlite/chain-writer.ts), reading the tail first,
 * so two writers can never fork the chain.
 *
 *   hash       = SHA-256(prev_hash bytes || UTF-8 of JSON.stringify([label, ...clear fields of
 *                the record's version, in order, commitment]))
 *   commitment = SHA-256(salt bytes || UTF-8 of JSON.stringify([...personal fields of the
 *                record's version, in order]))
 *   event hash = SHA-256(prev_hash bytes || UTF-8 of JSON.stringify(["agent-attr/event/v1",
 *                timestamp, kind, actor, details]))
 *
 * **Record hash versions.** Which fields a record's hash covers is versioned (`recordVersions`):
 * each version has a label (`agent-attr/record/v2`, `…/v3`) and its own clear and personal column
 * lists. Every stored record keeps the version it was hashed under (`hash_version`; rows written
 * before the column existed are v2), and verify hashes each row under its own version, so trails
 * written by 0.1 (v2) still verify beside new rows. A changed `hash_version` changes the label and
 * the columns hashed, so it shows as an edit like any other field. Writers always use
 * `currentRecordVersion`.
 *  - v2 (0.1): the fields up to `delegation`.
 *  - v3: v2 plus `tags` (clear) and `personal_tags` (behind the commitment), and the consent that
 *    covered the call: `consent_id`, `purpose`, `lawful_basis`, `consent_source` (clear: they say
 *    what the processing was for and on which basis, which must outlive an erasure of the user).
 * To add record fields: append them to `columns` (./row.ts), then to the *unreleased* version's
 * `clear` or `personal` list (v3 until a release ships it; fields added in parallel all join v3),
 * or, once v3 is released, add a v4 entry and make it current. Never change a released version's
 * lists or label: rows hashed under it would stop verifying.
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
 * Erasable fields (v2): the user, the credential's key id (with a JWT it is the token's `sub`, i.e.
 * the user; v2 moved it behind the commitment), free text that may name people (task context),
 * identifiers that link a person's activity across systems (session, trace), the keyed hashes of
 * prompt and response (with the instance key, a guessed prompt can be confirmed against them), and
 * the delegation chain (the subjects a verified identity acted for).
 */
const v2Personal = ["user_id", "key_id", "task_context", "session_id", "trace_id", "prompt_hash", "response_hash", "delegation"] as const;
/** The record fields of v2 (agent-attr 0.1), in `columns` order: frozen, whatever is added to `columns` later. */
const v2Columns = [
  "id",
  "timestamp",
  "duration_ms",
  "ttfb_ms",
  "agent_id",
  "user_id",
  "task_context",
  "session_id",
  "parent_agent_id",
  "trace_id",
  "attribution",
  "key_id",
  "provider",
  "endpoint",
  "model",
  "response_model",
  "stream",
  "status",
  "outcome",
  "input_tokens",
  "output_tokens",
  "cache_read_tokens",
  "cache_write_tokens",
  "cache_write_1h_tokens",
  "reasoning_tokens",
  "usage_source",
  "cost_usd",
  "cost_nano_usd",
  "price_source",
  "prompt_hash",
  "response_hash",
  "error_type",
  "delegation",
] as const;
const v2Clear = v2Columns.filter((column) => !(v2Personal as readonly string[]).includes(column));

type Column = (typeof columns)[number];
export interface RecordLayout {
  version: number;
  label: string;
  clearColumns: readonly Column[];
  personalColumns: readonly Column[];
  /** Where those columns sit in a row (`columns` order). */
  clearIndexes: readonly number[];
  personalIndexes: readonly number[];
  /** Fields the version does not cover (added later): they must be null in a row of this version. */
  uncoveredColumns: readonly Column[];
}

const layout = (version: number, clear: readonly Column[], personal: readonly Column[]): RecordLayout => ({
  version,
  label: `agent-attr/record/v${version}`,
  clearColumns: clear,
  personalColumns: personal,
  clearIndexes: clear.map((column) => columns.indexOf(column)),
  personalIndexes: personal.map((column) => columns.indexOf(column)),
  uncoveredColumns: columns.filter((column) => !clear.includes(column) && !personal.includes(column)),
});

/** Every record hash version verify knows, by number (see the header). */
export const recordVersions: Readonly<Record<number, RecordLayout>> = {
  2: layout(2, v2Clear, v2Personal),
  3: layout(3, [...v2Clear, "tags", "consent_id", "purpose", "lawful_basis", "consent_source"], [...v2Personal, "personal_tags"]),
};
/** The version writers hash new records under. Every field of `columns` must be in its clear or personal list (a test holds it). */
export const currentRecordVersion = 3;
const current = recordVersions[currentRecordVersion]!;

/** The personal fields of the current version: a superset of every older version's (erasure clears these). */
export const personalColumns = current.personalColumns;
export const clearColumns = current.clearColumns;
export const personalIndexes = current.personalIndexes;
export const clearIndexes = current.clearIndexes;
export const timestampIndex = columns.indexOf("timestamp");
/** The columns of a chained record as every driver stores it: its place, its row, its salt, commitment, links and hash version. */
export const storedRecordColumns = ["seq", ...columns, "salt", "commitment", "prev_hash", "hash", "hash_version"] as const;
const userIndex = columns.indexOf("user_id");
const keyIndex = columns.indexOf("key_id");
const delegationIndex = columns.indexOf("delegation");

/** SHA-256 of chain entries; one instance reuses one hasher (digest resets it). */
export class ChainHasher {
  private readonly sha = new Bun.CryptoHasher("sha256");
  /** Reused for every record: [label, ...clear, commitment]. */
  private readonly payload: SQLValue[] = [];

  commitment(saltHex: string, personal: readonly SQLValue[]): string {
    this.sha.update(saltHex, "hex");
    this.sha.update(JSON.stringify(personal));
    return this.sha.digest("hex");
  }

  /** `clear` in the version's `clearColumns` order; `version` defaults to the current one. */
  record(prevHash: string, clear: readonly SQLValue[], commitment: string, version: RecordLayout = current): string {
    return this.recordFrom(prevHash, this.recordPayload(clear, commitment, version));
  }

  /**
   * What `record` hashes after the previous hash: it does not depend on the chain, so a writer can
   * make it before it takes the chain's lock (../store/postgres/chain.ts).
   */
  recordPayload(clear: readonly SQLValue[], commitment: string, version: RecordLayout = current): string {
    const payload = this.payload;
    payload[0] = version.label;
    for (let i = 0; i < clear.length; i++) payload[i + 1] = clear[i]!;
    payload[clear.length + 1] = commitment;
    payload.length = clear.length + 2;
    return JSON.stringify(payload);
  }

  /** `record`'s hash from a payload made by `recordPayload`. */
  recordFrom(prevHash: string, payload: string): string {
    this.sha.update(prevHash, "hex");
    this.sha.update(payload);
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
  /** Proxy keys an earlier version wrote, signed as they stood when the upgrade added key signatures. */
  "keys_signed",
  "consent_granted",
  "consent_withdrawn",
  "consent_expired",
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
