/**
 * Signed checkpoints: (chain id, seq, hash, time) signed with the instance's Ed25519 key, stored in
 * `audit_checkpoints` and optionally appended to a file and POSTed to a webhook outside the
 * database. A checkpoint pins the chain up to its seq: truncating the tail behind it, or rewriting
 * the chain, is detected by `verify` even though the attacker could recompute every hash.
 */
import type { Database, Statement } from "bun:sqlite";
import type { KeyObject } from "node:crypto";
import { appendFileSync } from "node:fs";
import { z } from "zod";
import { chainId, type ChainWriter } from "./chain.ts";
import { signBytes } from "./signing.ts";
import { errorMessage } from "../errors.ts";

export const checkpointSchema = z.object({
  chain_id: z.string(),
  seq: z.number().int().positive(),
  hash: z.string(),
  time: z.string(),
  /** Ed25519 over `checkpointPayload`, base64. */
  signature: z.string(),
});
export type Checkpoint = z.infer<typeof checkpointSchema>;

/** Checkpoints from a checkpoint file (one JSON object per line, as `audit.checkpoint.file` writes). */
export function parseCheckpointFile(text: string): Checkpoint[] {
  return text.split("\n").flatMap((line, i) => {
    if (!line.trim()) return [];
    const parsed = checkpointSchema.safeParse((() => {
      try {
        return JSON.parse(line) as unknown;
      } catch {
        return null;
      }
    })());
    if (!parsed.success) throw new Error(`line ${i + 1} is not a checkpoint (a JSON object with chain_id, seq, hash, time, signature)`);
    return [parsed.data];
  });
}

export interface CheckpointSettings {
  everyRecords: number;
  everySeconds: number;
  /** Also append each checkpoint (one JSON line) to this file. */
  file?: string;
  /** Also POST each checkpoint (JSON) to this URL. */
  webhook?: string;
}

export const defaultCheckpointSettings: CheckpointSettings = { everyRecords: 1000, everySeconds: 60 };

/** The signed bytes. */
export function checkpointPayload(c: Omit<Checkpoint, "signature">): string {
  return `agent-attr-checkpoint/v1\n${c.chain_id}\n${c.seq}\n${c.hash}\n${c.time}`;
}

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
      const unsigned = { chain_id: id, seq: tail.seq, hash: tail.hash, time: new Date().toISOString() };
      const checkpoint = { ...unsigned, signature: signBytes(this.key, checkpointPayload(unsigned)) };
      this.insert.run(checkpoint.chain_id, checkpoint.seq, checkpoint.hash, checkpoint.time, checkpoint.signature);
      return checkpoint;
    });
    if (made) this.publish(made);
    return made;
  }

  private publish(checkpoint: Checkpoint): void {
    const { file, webhook } = this.settings;
    if (file) {
      try {
        appendFileSync(file, `${JSON.stringify(checkpoint)}\n`, { mode: 0o600 });
      } catch (error) {
        this.onError(`cannot append the checkpoint to ${file}: ${errorMessage(error)}`);
      }
    }
    if (webhook) {
      fetch(webhook, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(checkpoint),
        signal: AbortSignal.timeout(10_000),
      }).then(
        (response) => {
          if (!response.ok) this.onError(`the checkpoint webhook answered ${response.status}`);
        },
        (error: unknown) => this.onError(`the checkpoint webhook failed: ${errorMessage(error)}`),
      );
    }
  }
}
