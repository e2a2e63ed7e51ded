/**
 * The SQLite driver's writer of the hash chain (../../trail/chain.ts). Every writer — the proxy's
 * writer thread, intent recovery, the CLI and the audit API — appends through `ChainWriter`, inside
 * a `BEGIN IMMEDIATE` transaction that reads the tail first, so SQLite serialises the writers and
 * two processes can never fork the chain.
 */
import type { Database, Statement } from "bun:sqlite";
import { randomBytes, type KeyObject } from "node:crypto";
import {
  ChainHasher,
  clearColumns,
  clearIndexes,
  currentRecordVersion,
  genesisHash,
  personalColumns,
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
import { columns, fullRow, type SQLValue } from "../../trail/row.ts";

/** Told of each record an append wrote: its index among the rows given, its seq and hash, and whether it was redacted. */
export type Landed = (index: number, seq: number, hash: string, redacted: boolean) => void;

export class ChainWriter {
  private readonly hasher = new ChainHasher();
  private readonly lastRecord: Statement<ChainTail, []>;
  private readonly lastEvent: Statement<ChainTail, []>;
  private readonly insertRecord: Statement;
  private readonly insertEvent: Statement;
  private readonly anyErasure: Statement<{ n: number }, []>;
  private readonly erasedAt: Statement<{ erased_at: string }, [string]>;
  private chainKnown = false;
  /** Reused per row: the personal and the clear values of the row being appended. */
  private readonly personal: SQLValue[] = [];
  private readonly clear: SQLValue[] = [];

  /**
   * `hashKey` lets appends redact records of users erased while their calls were in flight;
   * `signingKey` signs the erasure events that name them (and those of ./erase.ts).
   */
  constructor(
    readonly db: Database,
    private readonly hashKey: Uint8Array | null = null,
    private readonly signingKey: KeyObject | null = null,
  ) {
    this.lastRecord = db.query("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1");
    this.lastEvent = db.query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1");
    this.insertRecord = db.prepare(
      `INSERT INTO audit_records (${storedRecordColumns.join(", ")}) VALUES (${storedRecordColumns.map(() => "?").join(", ")})`,
    );
    this.insertEvent = db.prepare(
      "INSERT INTO audit_events (seq, timestamp, kind, actor, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    this.anyErasure = db.query("SELECT count(*) AS n FROM (SELECT 1 FROM audit_erasures LIMIT 1)");
    this.erasedAt = db.query("SELECT erased_at FROM audit_erasures WHERE user_hmac = ?");
  }

  /** Finalizes the prepared statements, so closing the connection really closes it. */
  finalize(): void {
    for (const statement of [this.lastRecord, this.lastEvent, this.insertRecord, this.insertEvent, this.anyErasure, this.erasedAt]) {
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

  /**
   * Appends records (rows in `columns` order) and events; returns the new tail. `landed` is told
   * each record's seq and hash, and whether its personal fields were redacted as it landed.
   */
  append(rows: readonly SQLValue[][], events: readonly ChainEvent[] = [], landed?: Landed): ChainTail {
    return this.transaction(() => this.appendInTransaction(rows, events, landed));
  }

  /** The same, for callers already inside `transaction` (e.g. an erasure and its event). */
  appendInTransaction(rows: readonly SQLValue[][], events: readonly ChainEvent[] = [], landed?: Landed): ChainTail {
    this.ensureChainRow();
    let { seq, hash } = this.tail();
    const redactErased = this.hashKey !== null && rows.length > 0 && this.anyErasure.get()!.n > 0;
    const salts = randomBytes(16 * rows.length).toString("hex");
    const redactedOnLanding: number[] = [];
    for (let r = 0; r < rows.length; r++) {
      const row = fullRow(rows[r]!).map(wellFormed);
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
      this.insertRecord.run(seq, ...row, erased ? null : salt, commitment, prevHash, hash, currentRecordVersion);
      landed?.(r, seq, hash, erased);
    }
    // Every redaction is accountable (verify checks it): records of an erased user that land now
    // are named by an erasure event in the same transaction.
    const redactions: ChainEvent[] = redactedOnLanding.length
      ? [
          redactionEvent(
            this.redactionSigner(),
            "erasure",
            "erasure",
            { records: redactedOnLanding.length, on_landing: true },
            redactedOnLanding,
          ),
        ]
      : [];
    for (const event of [...redactions, ...events]) {
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
   * What signs this chain's redaction events (./erase.ts, and records redacted on landing); null
   * without the signing key. Inside `transaction`: the chain row is created first if need be.
   */
  redactionSigner(): RedactionSigner | null {
    if (!this.signingKey) return null;
    this.ensureChainRow();
    return { key: this.signingKey, chainId: chainId(this.db)! };
  }

  private ensureChainRow(): void {
    if (this.chainKnown) return;
    ensureChainId(this.db);
    this.chainKnown = true;
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
      const update = db.prepare(
        "UPDATE audit_records SET salt = ?, commitment = ?, prev_hash = ?, hash = ?, hash_version = ? WHERE seq = ?",
      );
      let hash = genesisHash;
      for (const row of rows) {
        const salt = randomBytes(16).toString("hex");
        const commitment = this.hasher.commitment(
          salt,
          personalColumns.map((column) => row[column]!),
        );
        const prevHash = hash;
        hash = this.hasher.record(
          prevHash,
          clearColumns.map((column) => row[column]!),
          commitment,
        );
        update.run(salt, commitment, prevHash, hash, currentRecordVersion, row.seq!);
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

/** The chain id of this database (created with its first append), or null for an empty trail. */
export function chainId(db: Database): string | null {
  return db.query<{ chain_id: string }, []>("SELECT chain_id FROM audit_chain WHERE id = 1").get()?.chain_id ?? null;
}

/** The chain id of this database, creating the chain's row first if it has none (what signed proxy keys name). */
export function ensureChainId(db: Database): string {
  db.run("INSERT OR IGNORE INTO audit_chain (id, chain_id, created_at) VALUES (1, ?, ?)", [crypto.randomUUID(), new Date().toISOString()]);
  return chainId(db)!;
}
