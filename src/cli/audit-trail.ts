/** `agent-attr audit verify|pubkey|delete`: the tamper-evident trail from the command line, through the configured store. */
import { defineCommand } from "citty";
import { readFileSync } from "node:fs";
import { userInfo } from "node:os";
import type { AuditAdmin } from "../store/contract.ts";
import { parseCheckpointFile } from "../trail/checkpoint.ts";
import { parsePublicKey } from "../trail/signing.ts";
import type { VerifyReport } from "../trail/verify.ts";
import { withCliAdmin, type CliAuditSettings } from "./audit-settings.ts";
import { cliLog, configArg, exitCodes, IoError, logDbArg, opening, UsageError } from "./_shared.ts";
import { errorMessage } from "../errors.ts";

export const signingKeyArg = {
  type: "string",
  description: "Ed25519 signing key file (default: the config's audit.signingKey, else <log-db>.signing-key)",
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

/** What to do about a missing signing key. */
export function missingKeyHelp(settings: CliAuditSettings): string {
  return (
    `No signing key at ${settings.signingKey} (${settings.signingKeySource}). The proxy creates it on first start; ` +
    "if it lives elsewhere, set audit.signingKey in the config or pass --signing-key FILE (to only check, pass --public-key FILE)."
  );
}

/**
 * Records a CLI query in the chain (audit of the audit: filter names, not values), sealed with a
 * checkpoint when the signing key is present. A read-only copy of the database can still be
 * queried; the user is told the query was not recorded.
 */
export async function recordCliQuery(admin: AuditAdmin, route: string, filters: string[], returned: number): Promise<void> {
  try {
    await admin.trail.recordEvent({ kind: "query", actor: cliActor(), details: { route, filters, returned } });
  } catch (error) {
    cliLog().warn(`this query is not recorded in the trail (${errorMessage(error)})`);
  }
}

const readCheckpoints = (file: string) => opening(`--checkpoints ${file}`, () => parseCheckpointFile(readFileSync(file, "utf8")));
const readPublicKey = (file: string) => opening(`--public-key ${file}`, () => parsePublicKey(readFileSync(file, "utf8")));

export function describeReport(report: VerifyReport): string {
  if (report.failure) {
    return `Audit trail TAMPERED at seq ${report.failure.seq} (${report.failure.reason}): ${report.failure.message}\n`;
  }
  if (report.unverified_checkpoints > 0) {
    return (
      `Audit trail chain intact (${report.records} records, ${report.redacted} redacted, ${report.events} events; last seq ${report.last_seq}), ` +
      `but ${report.unverified_checkpoints} signed checkpoint(s) could NOT be checked: no key. ` +
      "Pass --public-key FILE or --signing-key FILE (or set audit.signingKey) to check them.\n"
    );
  }
  const intact =
    `Audit trail intact: ${report.records} records (${report.redacted} redacted), ${report.events} events, ` +
    `${report.checkpoints} signed checkpoints checked; last seq ${report.last_seq}, hash ${report.last_hash}\n`;
  return intact + signedNote(report);
}

/**
 * How far signatures vouch for an intact chain. The chain alone proves only that it is consistent:
 * anyone who can write to the database can rewrite it from any seq on and delete the checkpoints
 * stored beside it, so the note says when nothing kept outside the database was checked.
 */
function signedNote(report: VerifyReport): string {
  if (report.last_seq === 0) return "";
  if (report.signed_through === 0) {
    return (
      "WARNING: no signed checkpoint covers this chain, so nothing shows it was not rewritten by someone with write access " +
      "to the database. A running proxy signs one every audit.checkpoint.everySeconds and on shutdown: on an older " +
      "trail they were deleted. Check against a copy kept outside the database (--checkpoints FILE).\n"
    );
  }
  const unsigned = report.last_seq - report.signed_through;
  const through = `Signed through seq ${report.signed_through}${unsigned > 0 ? ` (${unsigned} newer entries not yet signed)` : ""}`;
  if (report.external_checkpoints > 0) return `${through}; ${report.external_checkpoints} checkpoints kept outside the database checked.\n`;
  return (
    `${through}, by checkpoints stored in the database only: deleting them all would let a rewritten chain pass. ` +
    "Keep them outside it too (audit.checkpoint.file or .webhook) and verify with --checkpoints FILE.\n"
  );
}

const verify = defineCommand({
  meta: {
    name: "verify",
    description:
      "Recompute the hash chain and check the signed checkpoints (exit 0 intact, 1 tampered, 6 chain intact but checkpoints unverifiable: no key)",
  },
  args: {
    format: { type: "enum", options: ["text", "json"], default: "text", description: "Output format" },
    "public-key": {
      type: "string",
      description: "Check checkpoints against this public key (PEM) instead of the key file",
      valueHint: "FILE",
    },
    checkpoints: {
      type: "string",
      description: "Check the checkpoints in this file (default: the config's audit.checkpoint.file), kept outside the database",
      valueHint: "FILE",
    },
    "signing-key": signingKeyArg,
    "log-db": logDbArg,
    config: configArg,
  },
  async run({ args }) {
    const pinned = args["public-key"] ? readPublicKey(args["public-key"]) : undefined;
    const external = args.checkpoints ? readCheckpoints(args.checkpoints) : undefined;
    await withCliAdmin({ logDb: args["log-db"], signingKey: args["signing-key"], config: args.config }, async (admin, settings) => {
      if (!pinned && !admin.signs) cliLog().warn(missingKeyHelp(settings));
      const report = await opening("cannot verify the trail", () =>
        admin.trail.verify(cliActor(), { publicKey: pinned, checkpoints: external }),
      );
      if (!report.recorded) cliLog().warn("this verification could not be recorded in the trail (read-only or locked database)");
      process.stdout.write(args.format === "json" ? `${JSON.stringify(report, null, 2)}\n` : describeReport(report));
      process.exitCode = !report.ok ? exitCodes.tampered : report.unverified_checkpoints > 0 ? exitCodes.unconfirmed : exitCodes.ok;
    });
  },
});

const pubkey = defineCommand({
  meta: { name: "pubkey", description: "Print the public key that signs checkpoints and export manifests (PEM)" },
  args: { "signing-key": signingKeyArg, "log-db": logDbArg, config: configArg },
  async run({ args }) {
    // Never create a key here: a new key would sign nothing the proxy wrote, and hide the real one.
    await withCliAdmin({ logDb: args["log-db"], signingKey: args["signing-key"], config: args.config }, async (admin, settings) => {
      if (!admin.signs) throw new IoError(missingKeyHelp(settings));
      process.stdout.write(admin.trail.publicKey());
    });
  },
});

const erase = defineCommand({
  meta: { name: "delete", description: "Erase a user's personal data from the trail (GDPR Art. 17); the chain stays verifiable" },
  args: {
    user: { type: "string", description: "The user id to erase", required: true },
    "signing-key": signingKeyArg,
    "log-db": logDbArg,
    config: configArg,
  },
  async run({ args }) {
    if (!args.user) throw new UsageError("--user: give the id of the user to erase");
    const user = args.user;
    await withCliAdmin({ logDb: args["log-db"], signingKey: args["signing-key"], config: args.config }, async (admin, settings) => {
      // The erasure event is signed: verify accepts no redaction an unsigned event names.
      if (!admin.signs) throw new IoError(`erasures are signed: ${missingKeyHelp(settings)}`);
      await admin.trail.eraseUser(user, cliActor());
      // The same answer whether or not the user had records: erasure must not reveal existence.
      process.stdout.write("Erased: no record in this trail carries that user's personal data any more.\n");
    });
  },
});

export const trailCommands = { verify, pubkey, delete: erase };
