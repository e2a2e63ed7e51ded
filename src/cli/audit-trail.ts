/** `agent-attr audit verify|pubkey|delete`: the tamper-evident trail from the command line. */
import type { Database } from "bun:sqlite";
import { defineCommand } from "citty";
import { readFileSync } from "node:fs";
import { userInfo } from "node:os";
import { parseCheckpointFile } from "../trail/checkpoint.ts";
import { openAuditLog } from "../store/sqlite/database.ts";
import { loadHashKey } from "../trail/secret.ts";
import { loadSigningKey, parsePublicKey, publicKeyPem } from "../trail/signing.ts";
import { SqliteAuditTrail } from "../store/sqlite/trail.ts";
import type { VerifyReport } from "../trail/verify.ts";
import type { AuditReader, AuditTrail } from "../store/contract.ts";
import type { ExportFormat, ExportRun, ParsedExportFilter } from "../trail/export.ts";
import { storeKindFor } from "../store/open.ts";
import { openPgAdmin } from "../store/postgres/index.ts";
import { cliAuditSettings, type CliAuditSettings } from "./audit-settings.ts";
import { cliLog, configArg, exitCodes, IoError, logDbArg, opening, requireExistingDb, UsageError } from "./_shared.ts";
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

/** The signing key named by the settings; null if its file does not exist (never created here). */
function existingSigningKey(settings: CliAuditSettings) {
  return loadSigningKey(settings.signingKey, { create: false });
}

/** What to do about a missing signing key. */
export function missingKeyHelp(settings: CliAuditSettings): string {
  return (
    `No signing key at ${settings.signingKey} (${settings.signingKeySource}). The proxy creates it on first start; ` +
    "if it lives elsewhere, set audit.signingKey in the config or pass --signing-key FILE (to only check, pass --public-key FILE)."
  );
}

/**
 * Opens the trail of an existing database with the configured signing key (never created here):
 * the events the command appends are sealed with a signed checkpoint when the key is present.
 */
export function openTrail(settings: CliAuditSettings) {
  const log = openExistingAuditLog(settings.logDb);
  try {
    const key = opening("the signing key", () => existingSigningKey(settings));
    return { log, trail: cliTrail(log.db, settings, key), key };
  } catch (error) {
    log.close();
    throw error;
  }
}

/** The trail operations the CLI's commands use, on either driver. */
export interface CliTrail extends Pick<AuditTrail, "verify" | "eraseUser" | "recordEvent"> {
  export(format: ExportFormat, filter: ParsedExportFilter, actor: string): ExportRun;
}

/**
 * The trail `--log-db` names, for a CLI command: a SQLite file (see `openTrail`) or a PostgreSQL
 * URL (the driver's admin handle; the tables must exist — the CLI never creates a trail).
 */
export async function openCliTrail(settings: CliAuditSettings): Promise<{ trail: CliTrail; reader: AuditReader; key: boolean; close(): Promise<void> }> {
  if (storeKindFor(settings.logDb) === "postgres") {
    const admin = await opening("cannot open the trail", () =>
      openPgAdmin({ logDb: settings.logDb, log: cliLog(), audit: { checkpoint: settings.checkpoint, signingKey: settings.signingKey }, create: false }),
    );
    return { trail: admin.trail, reader: admin.reader, key: admin.signs, close: () => admin.close() };
  }
  const { log, trail, key } = openTrail(settings);
  return {
    trail,
    reader: log.reader,
    key: key !== null,
    close: async () => {
      trail.close();
      log.close();
    },
  };
}

/** The audit database at `path`, which must exist (the CLI never creates one). */
export function openExistingAuditLog(path: string) {
  requireExistingDb(path);
  return opening(`cannot read the audit database ${path}`, () => openAuditLog(path));
}

/** The trail on `db` as the CLI uses it: events sealed when the key is present, problems as warnings. */
function cliTrail(db: Database, settings: CliAuditSettings, key = existingSigningKey(settings)): SqliteAuditTrail {
  return new SqliteAuditTrail(db, key, loadHashKey(settings.logDb), {
    checkpoint: settings.checkpoint,
    sealEvents: true,
    onError: (message) => cliLog().warn(message),
  });
}

/**
 * Records a CLI query in the chain (audit of the audit: filter names, not values), sealed with a
 * checkpoint when the signing key is present. A read-only copy of the database can still be
 * queried; the user is told the query was not recorded.
 */
export async function recordCliQuery(db: Database, settings: CliAuditSettings, route: string, filters: string[], returned: number): Promise<void> {
  const trail = cliTrail(db, settings);
  try {
    await trail.recordEvent({ kind: "query", actor: cliActor(), details: { route, filters, returned } });
  } catch (error) {
    cliLog().warn(`this query is not recorded in the trail (${errorMessage(error)})`);
  } finally {
    trail.close();
  }
}

/** Opens the existing audit database the settings name (flags, then config), runs `use`, closes it. */
export async function withConfiguredAuditLog<T>(
  flags: { logDb?: string; config?: string },
  use: (handle: { reader: AuditReader; recordQuery(route: string, filters: string[], returned: number): Promise<void> }, settings: CliAuditSettings) => Promise<T>,
): Promise<T> {
  const settings = await cliAuditSettings(flags);
  if (storeKindFor(settings.logDb) === "postgres") {
    const opened = await openCliTrail(settings);
    try {
      const recordQuery = async (route: string, filters: string[], returned: number) => {
        try {
          await opened.trail.recordEvent({ kind: "query", actor: cliActor(), details: { route, filters, returned } });
        } catch (error) {
          cliLog().warn(`this query is not recorded in the trail (${errorMessage(error)})`);
        }
      };
      return await use({ reader: opened.reader, recordQuery }, settings);
    } finally {
      await opened.close();
    }
  }
  const log = openExistingAuditLog(settings.logDb);
  try {
    return await use({ reader: log.reader, recordQuery: (route, filters, returned) => recordCliQuery(log.db, settings, route, filters, returned) }, settings);
  } finally {
    log.close();
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
  return (
    `Audit trail intact: ${report.records} records (${report.redacted} redacted), ${report.events} events, ` +
    `${report.checkpoints} signed checkpoints checked; last seq ${report.last_seq}, hash ${report.last_hash}\n`
  );
}

const verify = defineCommand({
  meta: {
    name: "verify",
    description: "Recompute the hash chain and check the signed checkpoints (exit 0 intact, 1 tampered, 6 chain intact but checkpoints unverifiable: no key)",
  },
  args: {
    format: { type: "enum", options: ["text", "json"], default: "text", description: "Output format" },
    "public-key": { type: "string", description: "Check checkpoints against this public key (PEM) instead of the key file", valueHint: "FILE" },
    checkpoints: { type: "string", description: "Check the checkpoints in this file (default: the config's audit.checkpoint.file), kept outside the database", valueHint: "FILE" },
    "signing-key": signingKeyArg,
    "log-db": logDbArg,
    config: configArg,
  },
  async run({ args }) {
    const pinned = args["public-key"] ? readPublicKey(args["public-key"]) : undefined;
    const external = args.checkpoints ? readCheckpoints(args.checkpoints) : undefined;
    const settings = await cliAuditSettings({ logDb: args["log-db"], signingKey: args["signing-key"], config: args.config });
    const { trail, key, close } = await openCliTrail(settings);
    try {
      if (!pinned && !key) cliLog().warn(missingKeyHelp(settings));
      const report = await opening("cannot verify the trail", () => trail.verify(cliActor(), { publicKey: pinned, checkpoints: external }));
      if (!report.recorded) cliLog().warn("this verification could not be recorded in the trail (read-only or locked database)");
      process.stdout.write(args.format === "json" ? `${JSON.stringify(report, null, 2)}\n` : describeReport(report));
      process.exitCode = !report.ok ? exitCodes.tampered : report.unverified_checkpoints > 0 ? exitCodes.unconfirmed : exitCodes.ok;
    } finally {
      await close();
    }
  },
});

const pubkey = defineCommand({
  meta: { name: "pubkey", description: "Print the public key that signs checkpoints and export manifests (PEM)" },
  args: { "signing-key": signingKeyArg, "log-db": logDbArg, config: configArg },
  async run({ args }) {
    const settings = await cliAuditSettings({ logDb: args["log-db"], signingKey: args["signing-key"], config: args.config });
    if (storeKindFor(settings.logDb) === "sqlite") requireExistingDb(settings.logDb);
    // Never create a key here: a new key would sign nothing the proxy wrote, and hide the real one.
    const key = opening("the signing key", () => existingSigningKey(settings));
    if (!key) throw new IoError(missingKeyHelp(settings));
    process.stdout.write(publicKeyPem(key));
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
    const settings = await cliAuditSettings({ logDb: args["log-db"], signingKey: args["signing-key"], config: args.config });
    const { trail, close } = await openCliTrail(settings);
    try {
      await trail.eraseUser(args.user, cliActor());
      // The same answer whether or not the user had records: erasure must not reveal existence.
      process.stdout.write("Erased: no record in this trail carries that user's personal data any more.\n");
    } finally {
      await close();
    }
  },
});

export const trailCommands = { verify, pubkey, delete: erase };
