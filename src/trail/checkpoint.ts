/**
 * Signed checkpoints: (chain id, seq, hash, time) signed with the instance's Ed25519 key, stored by
 * the driver (SQLite: `audit_checkpoints`, ../store/sqlite/checkpointer.ts) and optionally appended
 * to a file and POSTed to a webhook outside the database. A checkpoint pins the chain up to its seq: truncating the tail behind it, or rewriting
 * the chain, is detected by `verify` even though the attacker could recompute every hash.
 */
import type { KeyObject } from "node:crypto";
import { appendFileSync } from "node:fs";
import { z } from "zod";
import { signBytes, verifyBytes } from "./signing.ts";
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
    const parsed = checkpointSchema.safeParse(
      (() => {
        try {
          return JSON.parse(line) as unknown;
        } catch {
          return null;
        }
      })(),
    );
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

/** A checkpoint of the chain's tail, signed. */
export function signCheckpoint(key: KeyObject, unsigned: Omit<Checkpoint, "signature">): Checkpoint {
  return { ...unsigned, signature: signBytes(key, checkpointPayload(unsigned)) };
}

/**
 * The seq of the newest checkpoint among `checkpoints` (newest first) that `key` signed for this
 * chain; 0 when none is. A checkpointer bounds its look at what is new by it: a row someone put in
 * the checkpoint table by hand cannot make it skip entries.
 */
export function lastSignedSeq(key: KeyObject, chainId: string, checkpoints: Iterable<Checkpoint>): number {
  for (const checkpoint of checkpoints) {
    if (checkpoint.chain_id === chainId && verifyBytes(key, checkpointPayload(checkpoint), checkpoint.signature))
      return Number(checkpoint.seq);
  }
  return 0;
}

/** Sends a new checkpoint where the settings say, beside the database (file, webhook); failures go to `onError`. */
export function publishCheckpoint(checkpoint: Checkpoint, settings: CheckpointSettings, onError: (message: string) => void): void {
  const { file, webhook } = settings;
  if (file) {
    try {
      appendFileSync(file, `${JSON.stringify(checkpoint)}\n`, { mode: 0o600 });
    } catch (error) {
      onError(`cannot append the checkpoint to ${file}: ${errorMessage(error)}`);
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
        if (!response.ok) onError(`the checkpoint webhook answered ${response.status}`);
      },
      (error: unknown) => onError(`the checkpoint webhook failed: ${errorMessage(error)}`),
    );
  }
}
