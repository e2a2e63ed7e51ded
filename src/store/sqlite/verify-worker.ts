/**
 * Runs `verifyChain` off the proxy's event loop (a million records take seconds): opens the
 * database read-only, verifies, answers once with the report (or an error) as JSON.
 */
import { Database } from "bun:sqlite";
import type { Checkpoint } from "../../trail/checkpoint.ts";
import { parsePublicKey } from "../../trail/signing.ts";
import { verifyChain } from "./verify.ts";
import { errorMessage } from "../../errors.ts";

declare const self: Worker;

export interface VerifyRequest {
  path: string;
  /** SPKI PEM of the key checkpoints must be signed with. */
  publicKey: string;
  checkpoints: Checkpoint[];
}

self.onmessage = (event: MessageEvent<string>) => {
  const request = JSON.parse(event.data) as VerifyRequest;
  let db: Database | null = null;
  try {
    db = new Database(request.path, { readonly: true, strict: true });
    db.run("PRAGMA busy_timeout = 5000");
    const report = verifyChain(db, parsePublicKey(request.publicKey), request.checkpoints);
    self.postMessage(JSON.stringify({ report }));
  } catch (error) {
    self.postMessage(JSON.stringify({ error: errorMessage(error) }));
  } finally {
    db?.close();
  }
};
