/**
 * Verification as every driver reports it: the reasons a chain fails (see the SQLite walk,
 * ../store/sqlite/verify.ts), the report `audit verify` prints and `GET /audit/verify` answers,
 * and the chain event that records a verification.
 */
import { existsSync, readFileSync } from "node:fs";
import { z } from "zod";
import type { ChainEvent } from "./chain.ts";
import { parseCheckpointFile, type Checkpoint } from "./checkpoint.ts";
import { errorMessage } from "../errors.ts";

export const verifyReasons = [
  "edited", "missing", "reordered", "truncated", "checkpoint_invalid", "checkpoint_mismatch", "unauthorised_redaction", "rollup_mismatch",
] as const;
export type VerifyReason = (typeof verifyReasons)[number];

export const verifyReportSchema = z.object({
  ok: z.boolean(),
  chain_id: z.string().nullable(),
  records: z.number().int(),
  events: z.number().int(),
  /** Records whose personal fields were erased (their commitment still verifies). */
  redacted: z.number().int(),
  checkpoints: z.number().int(),
  /**
   * Checkpoints that could not be checked because no key was available (not a sign of tampering;
   * the chain itself was checked). Pass the public key to check them.
   */
  unverified_checkpoints: z.number().int(),
  last_seq: z.number().int(),
  last_hash: z.string(),
  failure: z.object({ seq: z.number().int(), reason: z.enum(verifyReasons), message: z.string() }).nullable(),
});

export type VerifyReport = z.infer<typeof verifyReportSchema>;
export type VerifyFailure = NonNullable<VerifyReport["failure"]>;

/**
 * A verification's report, with its chain event appended. A read-only copy (or a locked database)
 * can still be verified: `recorded` says whether the event was written, and the caller decides what
 * an unrecorded verification means (the API refuses it, the CLI warns).
 */
export async function recordVerification(
  report: VerifyReport,
  actor: string,
  record: (event: ChainEvent) => Promise<void>,
): Promise<VerifyReport & { recorded: boolean }> {
  const details = { ok: report.ok, last_seq: report.last_seq, bad_seq: report.failure?.seq ?? null, reason: report.failure?.reason ?? null };
  try {
    await record({ kind: "verify", actor, details });
    return { ...report, recorded: true };
  } catch {
    return { ...report, recorded: false };
  }
}

/** The checkpoints of a checkpoint file; none if it does not exist (yet). */
export function readCheckpointFile(file: string | undefined): Checkpoint[] {
  if (!file || !existsSync(file)) return [];
  try {
    return parseCheckpointFile(readFileSync(file, "utf8"));
  } catch (error) {
    throw new Error(`the checkpoint file ${file} cannot be read: ${errorMessage(error)}`);
  }
}
