/**
 * The audit settings a CLI command uses, from the same places as `proxy start`: flags first, then
 * AGENT_ATTR_LOG_DB, then the config file (--config, AGENT_ATTR_CONFIG or ./agent-attr.config.ts)
 * — its `audit.logDb`, `audit.signingKey` and `audit.checkpoint.file` — then the defaults. So the
 * CLI checks checkpoints with the key the proxy signs them with, and reads the checkpoint file.
 */
import type { CheckpointSettings } from "../trail/checkpoint.ts";
import { signingKeyPath } from "../trail/signing.ts";
import { configuredSettings, resolveLogDb } from "./_shared.ts";
import { storeKindFor } from "../store/open.ts";
import { defaultSigningKey } from "../store/postgres/trail.ts";

export interface CliAuditSettings {
  logDb: string;
  /** The signing key file: --signing-key, audit.signingKey, or `<log-db>.signing-key`. */
  signingKey: string;
  /** Where the key path came from, for error messages. */
  signingKeySource: string;
  checkpoint: CheckpointSettings;
}

export async function cliAuditSettings(flags: { logDb?: string; signingKey?: string; config?: string }): Promise<CliAuditSettings> {
  const { config } = await configuredSettings(flags.config);
  const logDb = resolveLogDb(flags.logDb, config.audit.logDb);
  const signingKeySource = flags.signingKey
    ? "--signing-key"
    : process.env.AGENT_ATTR_SIGNING_KEY
      ? "AGENT_ATTR_SIGNING_KEY"
      : config.audit.signingKey
        ? "the config's audit.signingKey"
        : storeKindFor(logDb) === "postgres"
          ? `the default ./${defaultSigningKey}`
          : "the default beside the database";
  return {
    logDb,
    signingKey:
      storeKindFor(logDb) === "postgres"
        ? (flags.signingKey ?? config.audit.signingKey ?? process.env.AGENT_ATTR_SIGNING_KEY ?? defaultSigningKey)
        : signingKeyPath(logDb, flags.signingKey ?? config.audit.signingKey),
    signingKeySource,
    checkpoint: config.audit.checkpoint,
  };
}
