/** `agent-attr audit verify|pubkey|delete`: the tamper-evident trail from the command line. */
import type { Database } from "bun:sqlite";
import { defineCommand } from "citty";
import { readFileSync } from "node:fs";
import { userInfo } from "node:os";
import { parseCheckpointFile } from "../audit/checkpoint.ts";
import { openAuditLog } from "../audit/database.ts";
import { loadHashKey } from "../audit/secret.ts";
import { loadSigningKey, parsePublicKey, publicKeyPem, signingKeyPath } from "../audit/signing.ts";
import { SqliteAuditTrail } from "../audit/trail.ts";
import type { VerifyReport } from "../audit/verify.ts";
import { logDbArg, requireExistingDb, resolveLogDb, UsageError, withUserErrors } from "./_shared.ts";

export const signingKeyArg = {
  type: "string",
  description: "Ed25519 signing key file (default: <log-db>.signing-key)",
  valueHint: "FILE",
} as const;

/** Who acts, for audit events: the operating-system user running the CLI. */
export function cliActor(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return "cli";
  }
}

/** Opens the trail of an existing database; `createKey` generates the signing key if missing. */
export function openTrail(logDbFlag: string | undefined, keyFlag: string | undefined, createKey: boolean) {
  const logDb = resolveLogDb(logDbFlag);
  requireExistingDb(logDb);
  const log = openAuditLog(logDb);
  const key = loadSigningKey(signingKeyPath(logDb, keyFlag), { create: createKey });
  const trail = new SqliteAuditTrail(log.db, key, loadHashKey(logDb));
  return { logDb, log, trail, key };
}

/**
 * Records a CLI query in the chain (audit of the audit: filter names, not values). A read-only
 * copy of the database can still be queried; the user is told the query was not recorded.
 */
export function recordCliQuery(db: Database, logDb: string, route: string, filters: string[], returned: number): void {
  const trail = new SqliteAuditTrail(db, null, loadHashKey(logDb));
  try {
    trail.recordEvent({ kind: "query", actor: cliActor(), details: { route, filters, returned } });
  } catch (error) {
    process.stderr.write(`agent-attr: warning: this query is not recorded in the trail (${error instanceof Error ? error.message : String(error)})\n`);
  } finally {
    trail.close();
  }
}

function readCheckpoints(file: string) {
  try {
    return parseCheckpointFile(readFileSync(file, "utf8"));
  } catch (error) {
    throw new UsageError(`--checkpoints ${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function readPublicKey(file: string) {
  try {
    return parsePublicKey(readFileSync(file, "utf8"));
  } catch (error) {
    throw new UsageError(`--public-key ${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

export function describeReport(report: VerifyReport): string {
  if (report.failure) {
    return `Audit trail TAMPERED at seq ${report.failure.seq} (${report.failure.reason}): ${report.failure.message}\n`;
  }
  return (
    `Audit trail intact: ${report.records} records (${report.redacted} redacted), ${report.events} events, ` +
    `${report.checkpoints} signed checkpoints checked; last seq ${report.last_seq}, hash ${report.last_hash}\n`
  );
}

const verify = defineCommand({
  meta: { name: "verify", description: "Recompute the hash chain and check the signed checkpoints (exit 1 if tampered)" },
  args: {
    format: { type: "enum", options: ["text", "json"], default: "text", description: "Output format" },
    "public-key": { type: "string", description: "Check checkpoints against this public key (PEM) instead of the key file", valueHint: "FILE" },
    checkpoints: { type: "string", description: "Also check the checkpoints in this file (audit.checkpoint.file), kept outside the database", valueHint: "FILE" },
    "signing-key": signingKeyArg,
    "log-db": logDbArg,
  },
  run: withUserErrors(async ({ args }) => {
    const pinned = args["public-key"] ? readPublicKey(args["public-key"]) : undefined;
    const external = args.checkpoints ? readCheckpoints(args.checkpoints) : [];
    const { log, trail, key } = openTrail(args["log-db"], args["signing-key"], false);
    try {
      if (!pinned && !key) process.stderr.write("agent-attr: warning: no signing key file; checkpoints cannot be checked (pass --public-key)\n");
      const report = await trail.verify(cliActor(), { publicKey: pinned, checkpoints: external });
      if (!report.recorded) process.stderr.write("agent-attr: warning: this verification could not be recorded in the trail (read-only or locked database)\n");
      process.stdout.write(args.format === "json" ? `${JSON.stringify(report, null, 2)}\n` : describeReport(report));
      process.exitCode = report.ok ? 0 : 1;
    } finally {
      trail.close();
      log.close();
    }
  }),
});

const pubkey = defineCommand({
  meta: { name: "pubkey", description: "Print the public key that signs checkpoints and export manifests (PEM)" },
  args: { "signing-key": signingKeyArg, "log-db": logDbArg },
  run: withUserErrors(({ args }) => {
    const logDb = resolveLogDb(args["log-db"]);
    requireExistingDb(logDb);
    const key = loadSigningKey(signingKeyPath(logDb, args["signing-key"]), { create: true })!;
    process.stdout.write(publicKeyPem(key));
  }),
});

const erase = defineCommand({
  meta: { name: "delete", description: "Erase a user's personal data from the trail (GDPR Art. 17); the chain stays verifiable" },
  args: {
    user: { type: "string", description: "The user id to erase", required: true },
    "log-db": logDbArg,
  },
  run: withUserErrors(({ args }) => {
    if (!args.user) throw new UsageError("--user: give the id of the user to erase");
    const { log, trail } = openTrail(args["log-db"], undefined, false);
    try {
      trail.eraseUser(args.user, cliActor());
      // The same answer whether or not the user had records: erasure must not reveal existence.
      process.stdout.write("Erased: no record in this trail carries that user's personal data any more.\n");
    } finally {
      trail.close();
      log.close();
    }
  }),
});

export const trailCommands = { verify, pubkey, delete: erase };
