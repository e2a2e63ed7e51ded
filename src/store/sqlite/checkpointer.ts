/**
 * Signed checkpoints (../../trail/checkpoint.ts) in the SQLite driver: kept in `audit_checkpoints`,
 * each signed over the chain's tail inside the chain's write lock, then published beside the
 * database (file, webhook) as the settings say. No checkpoint is signed over an erasure or
 * retention event without a valid signature (../../trail/redaction.ts `unsignedRedaction`): that
 * would bless a forged redaction under verify's legacy rule.
 */
import type { Database, Statement } from "bun:sqlite";
import { createPublicKey, type KeyObject } from "node:crypto";
import { lastSignedSeq, publishCheckpoint, signCheckpoint, type Checkpoint, type CheckpointSettings } from "../../trail/checkpoint.ts";
import { unsignedRedaction } from "../../trail/redaction.ts";
import { chainId, type ChainWriter } from "./chain-writer.ts";

type RedactionRow = { seq: number; kind: string; details: string };

export class Checkpointer {
  private readonly lastSeq: Statement<{ seq: number | null }, []>;
  private readonly newest: Statement<Checkpoint, []>;
  private readonly redactionsAfter: Statement<RedactionRow, [number]>;
  private readonly insert: Statement;
  private readonly publicKey: KeyObject;
  /** The last refusal reported, so a refusal repeated every interval is reported once. */
  private refused: string | null = null;

  constructor(
    private readonly writer: ChainWriter,
    private readonly key: KeyObject,
    private readonly settings: CheckpointSettings,
    private readonly onError: (message: string) => void,
  ) {
    const db: Database = writer.db;
    this.publicKey = createPublicKey(key);
    this.lastSeq = db.query("SELECT max(seq) AS seq FROM audit_checkpoints");
    // Newest first by rowid (no sort): a row replayed or forged later only moves the bound back.
    this.newest = db.query("SELECT chain_id, seq, hash, time, signature FROM audit_checkpoints ORDER BY id DESC");
    // By primary key: only the events since the last signed checkpoint are read.
    this.redactionsAfter = db.query(
      "SELECT seq, kind, details FROM audit_events WHERE seq > ? AND kind IN ('erasure', 'retention') ORDER BY seq",
    );
    this.insert = db.prepare("INSERT INTO audit_checkpoints (chain_id, seq, hash, time, signature) VALUES (?, ?, ?, ?, ?)");
  }

  finalize(): void {
    for (const statement of [this.lastSeq, this.newest, this.redactionsAfter, this.insert]) statement.finalize();
  }

  /**
   * Signs the current tail if anything was appended since the last checkpoint; null otherwise, and
   * when an unsigned redaction event since the last signed checkpoint forbids it (told to `onError`).
   */
  checkpoint(): Checkpoint | null {
    const made = this.writer.transaction(() => {
      const tail = this.writer.tail();
      const id = chainId(this.writer.db);
      if (tail.seq === 0 || id === null || tail.seq <= (this.lastSeq.get()?.seq ?? 0)) return null;
      if (this.forbidden(id)) return null;
      const checkpoint = signCheckpoint(this.key, { chain_id: id, seq: tail.seq, hash: tail.hash, time: new Date().toISOString() });
      this.insert.run(checkpoint.chain_id, checkpoint.seq, checkpoint.hash, checkpoint.time, checkpoint.signature);
      return checkpoint;
    });
    if (made) publishCheckpoint(made, this.settings, this.onError);
    return made;
  }

  private forbidden(id: string): boolean {
    const signedUpTo = lastSignedSeq(this.publicKey, id, this.newest.iterate());
    const problem = unsignedRedaction(this.publicKey, id, this.redactionsAfter.iterate(signedUpTo));
    if (problem !== null && problem !== this.refused) this.onError(problem);
    this.refused = problem;
    return problem !== null;
  }
}
