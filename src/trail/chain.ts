/**
 * The hash chain over the audit trail: one chain per database, covering records and audit events
 * (one seq space). Every writer — the proxy's writer thread, intent recovery, the CLI and the audit
 * API — appends through `ChainWriter`, inside a `BEGIN IMMEDIATE` transaction that reads the tail
 * first, so SQLite serialises the writers and two processes can never fork the chain.
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
import type { Database, Statement } from "bun:sqlite";
import { createHmac, randomBytes } from "node:crypto";
import { columns, type SQLValue } from "../store/sqlite/database.ts";

export const genesisHash = "0".repeat(64);

/**
 * Erasable fields: the user, the credential's key id (with a JWT it is the token's `sub`, i.e. the
 * user; v2 of the record hash moved it behind the commitment), free text that may name people (task context), identifiers that link
 * a person's activity across systems (session, trace), the keyed hashes of prompt and response
 * (with the instance key, a guessed prompt can be confirmed against them), and the delegation
 * chain (the subjects a verified identity acted for).
 */
export const personalColumns = [
  "user_id", "key_id", "task_context", "session_id", "trace_id", "prompt_hash", "response_hash", "delegation",
] as const;
const personalSet = new Set<string>(personalColumns);
export const clearColumns = columns.filter((column) => !personalSet.has(column));
const personalIndexes = personalColumns.map((column) => columns.indexOf(column));
const clearIndexes = clearColumns.map((column) => columns.indexOf(column));
const userIndex = columns.indexOf("user_id");
const keyIndex = columns.indexOf("key_id");
const delegationIndex = columns.indexOf("delegation");
const timestampIndex = columns.indexOf("timestamp");

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
export const chainEventKinds = ["query", "export", "erasure", "verify", "retention", "access_denied", "key_created", "key_revoked"] as const;

export interface ChainEvent {
  kind: (typeof chainEventKinds)[number];
  /** Who: the admin identity (`cli:<os user>`, `api`), never a data subject. */
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

/** Lone surrogates cannot round-trip through SQLite's UTF-8; hash exactly what is stored. */
const wellFormed = (value: SQLValue): SQLValue =>
  typeof value === "string" && !value.isWellFormed() ? value.toWellFormed() : value;

export class ChainWriter {
  private readonly hasher = new ChainHasher();
  private readonly lastRecord: Statement<ChainTail, []>;
  private readonly lastEvent: Statement<ChainTail, []>;
  private readonly insertRecord: Statement;
  private readonly insertEvent: Statement;
  private readonly anyErasure: Statement<{ n: number }, []>;
  private readonly erasedAt: Statement<{ erased_at: string }, [string]>;
  private readonly ensureChain: Statement;
  private chainKnown = false;
  /** Reused per row: the personal and the clear values of the row being appended. */
  private readonly personal: SQLValue[] = [];
  private readonly clear: SQLValue[] = [];

  /** `hashKey` lets appends redact records of users erased while their calls were in flight. */
  constructor(
    readonly db: Database,
    private readonly hashKey: Uint8Array | null = null,
  ) {
    this.lastRecord = db.query("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1");
    this.lastEvent = db.query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1");
    const recordColumns = ["seq", ...columns, "salt", "commitment", "prev_hash", "hash"];
    this.insertRecord = db.prepare(
      `INSERT INTO audit_records (${recordColumns.join(", ")}) VALUES (${recordColumns.map(() => "?").join(", ")})`,
    );
    this.insertEvent = db.prepare(
      "INSERT INTO audit_events (seq, timestamp, kind, actor, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    this.anyErasure = db.query("SELECT count(*) AS n FROM (SELECT 1 FROM audit_erasures LIMIT 1)");
    this.erasedAt = db.query("SELECT erased_at FROM audit_erasures WHERE user_hmac = ?");
    this.ensureChain = db.prepare("INSERT OR IGNORE INTO audit_chain (id, chain_id, created_at) VALUES (1, ?, ?)");
  }

  /** Finalizes the prepared statements, so closing the connection really closes it. */
  finalize(): void {
    for (const statement of [this.lastRecord, this.lastEvent, this.insertRecord, this.insertEvent, this.anyErasure, this.erasedAt, this.ensureChain]) {
      statement.finalize();
    }
  }

  /** The last entry of the chain (records and events); seq 0 and the genesis hash when empty. */
  tail(): ChainTail {
    const record = this.lastRecord.get();
    const event = this.lastEvent.get();
    const last = !record ? event : !event ? record : record.seq > event.seq ? record : event;
    return { seq: last?.seq ?? 0, hash: last?.hash ?? genesisHash };
  }

  /** Runs `fn` in a BEGIN IMMEDIATE transaction (the chain's write lock). */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /** Appends records (rows in `columns` order) and events; returns the new tail. */
  append(rows: readonly SQLValue[][], events: readonly ChainEvent[] = []): ChainTail {
    return this.transaction(() => this.appendInTransaction(rows, events));
  }

  /** The same, for callers already inside `transaction` (e.g. an erasure and its event). */
  appendInTransaction(rows: readonly SQLValue[][], events: readonly ChainEvent[] = []): ChainTail {
    if (!this.chainKnown) {
      this.ensureChain.run(crypto.randomUUID(), new Date().toISOString());
      this.chainKnown = true;
    }
    let { seq, hash } = this.tail();
    const redactErased = this.hashKey !== null && rows.length > 0 && this.anyErasure.get()!.n > 0;
    const salts = randomBytes(16 * rows.length).toString("hex");
    const redactedOnLanding: number[] = [];
    for (let r = 0; r < rows.length; r++) {
      const row = rows[r]!.map(wellFormed);
      seq++;
      const salt = salts.slice(32 * r, 32 * r + 32);
      for (let i = 0; i < personalIndexes.length; i++) this.personal[i] = row[personalIndexes[i]!]!;
      for (let i = 0; i < clearIndexes.length; i++) this.clear[i] = row[clearIndexes[i]!]!;
      const commitment = this.hasher.commitment(salt, this.personal);
      const prevHash = hash;
      hash = this.hasher.record(prevHash, this.clear, commitment);
      const erased = redactErased && this.erasedBeforeCall(row);
      if (erased) {
        for (const i of personalIndexes) row[i] = null;
        redactedOnLanding.push(seq);
      }
      this.insertRecord.run(seq, ...row, erased ? null : salt, commitment, prevHash, hash);
    }
    // Every redaction is accountable (verify checks it): records of an erased user that land now
    // are named by an erasure event in the same transaction.
    const landed: ChainEvent[] = redactedOnLanding.length
      ? [{ kind: "erasure", actor: "erasure", details: { records: redactedOnLanding.length, on_landing: true, seqs: seqRanges(redactedOnLanding) } }]
      : [];
    for (const event of [...landed, ...events]) {
      seq++;
      const timestamp = new Date().toISOString();
      const details = JSON.stringify(event.details);
      const prevHash = hash;
      hash = this.hasher.event(prevHash, timestamp, event.kind, event.actor, details);
      this.insertEvent.run(seq, timestamp, event.kind, event.actor, details, prevHash, hash);
    }
    return { seq, hash };
  }

  /**
   * Chains records written before the chain existed (a database from an older version): in seq
   * order, at the start of the chain. From now on they are protected like any other record.
   * Returns how many were adopted.
   */
  adoptUnchained(): number {
    const db = this.db;
    return this.transaction(() => {
      const unchained = db.query<{ n: number }, []>("SELECT count(*) AS n FROM audit_records WHERE hash IS NULL").get()!.n;
      if (unchained === 0) return 0;
      // Unchained rows in a chained trail were put there by hand: verify reports them, we don't bless them.
      if (db.query("SELECT 1 FROM audit_records WHERE hash IS NOT NULL UNION ALL SELECT 1 FROM audit_events LIMIT 1").get()) return 0;
      const rows = db.query<Record<string, SQLValue>, []>(`SELECT seq, ${columns.join(", ")} FROM audit_records ORDER BY seq`).all();
      const update = db.prepare("UPDATE audit_records SET salt = ?, commitment = ?, prev_hash = ?, hash = ? WHERE seq = ?");
      let hash = genesisHash;
      for (const row of rows) {
        const salt = randomBytes(16).toString("hex");
        const commitment = this.hasher.commitment(salt, personalColumns.map((column) => row[column]!));
        const prevHash = hash;
        hash = this.hasher.record(prevHash, clearColumns.map((column) => row[column]!), commitment);
        update.run(salt, commitment, prevHash, hash, row.seq!);
      }
      update.finalize();
      return rows.length;
    });
  }

  /**
   * A user the record names (as user, key id, or anywhere in its delegation chain) was erased
   * after this call started (it was in flight or in an intent log).
   */
  private erasedBeforeCall(row: SQLValue[]): boolean {
    const started = String(row[timestampIndex]);
    return subjectsOf(row).some((id) => {
      const erased = this.erasedAt.get(userHmac(this.hashKey!, id));
      return erased ? started <= erased.erased_at : false;
    });
  }
}

/** The ids a record names a person by: user, key id, and every string in its delegation JSON. */
function subjectsOf(row: SQLValue[]): string[] {
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

/** The chain id of this database (created with its first append), or null for an empty trail. */
export function chainId(db: Database): string | null {
  return db.query<{ chain_id: string }, []>("SELECT chain_id FROM audit_chain WHERE id = 1").get()?.chain_id ?? null;
}
