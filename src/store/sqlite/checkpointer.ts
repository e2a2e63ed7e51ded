/**
 * Signed checkpoints (../../trail/checkpoint.ts) in the SQLite driver: kept in `audit_checkpoints`,
 * each signed over the chain's tail inside the chain's write lock, then published beside the
 * database (file, webhook) as the settings say.
 */
import type { Database, Statement } from "bun:sqlite";
import type { KeyObject } from "node:crypto";
import { publishCheckpoint, signCheckpoint, type Checkpoint, type CheckpointSettings } from "../../trail/checkpoint.ts";
import { chainId, type ChainWriter } from "./chain-writer.ts";

export class Checkpointer {
  private readonly lastSeq: Statement<{ seq: number | null }, []>;
  private readonly insert: Statement;

  constructor(
    private readonly writer: ChainWriter,
    private readonly key: KeyObject,
    private readonly settings: CheckpointSettings,
    private readonly onError: (message: string) => void,
  ) {
    const db: Database = writer.db;
    this.lastSeq = db.query("SELECT max(seq) AS seq FROM audit_checkpoints");
    this.insert = db.prepare("INSERT INTO audit_checkpoints (chain_id, seq, hash, time, signature) VALUES (?, ?, ?, ?, ?)");
  }

  finalize(): void {
    this.lastSeq.finalize();
    this.insert.finalize();
  }

  /** Signs the current tail if anything was appended since the last checkpoint; null otherwise. */
  checkpoint(): Checkpoint | null {
    const made = this.writer.transaction(() => {
      const tail = this.writer.tail();
      const id = chainId(this.writer.db);
      if (tail.seq === 0 || id === null || tail.seq <= (this.lastSeq.get()?.seq ?? 0)) return null;
      const checkpoint = signCheckpoint(this.key, { chain_id: id, seq: tail.seq, hash: tail.hash, time: new Date().toISOString() });
      this.insert.run(checkpoint.chain_id, checkpoint.seq, checkpoint.hash, checkpoint.time, checkpoint.signature);
      return checkpoint;
    });
    if (made) publishCheckpoint(made, this.settings, this.onError);
    return made;
  }
}
