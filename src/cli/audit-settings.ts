/**
 * The audit settings a CLI command uses, from the same places as `proxy start`: flags first, then
 * AGENT_ATTR_LOG_DB, then the config file (--config, AGENT_ATTR_CONFIG or ./agent-attr.config.ts)
 * — its `audit.logDb`, `audit.signingKey` and `audit.checkpoint.file` — then the defaults. So the
 * CLI checks checkpoints with the key the proxy signs them with, and reads the checkpoint file.
 */
import type { Config } from "../config/schema.ts";
import { errorMessage } from "../errors.ts";
import { configuredPlugins } from "../server/runtime.ts";
import { SchemaDamagedError, TrailNotFoundError, type AuditAdmin } from "../store/contract.ts";
import { primaryStore } from "../store/open.ts";
import type { CheckpointSettings } from "../trail/checkpoint.ts";
import { signingKeyPath } from "../trail/signing.ts";
import { isPostgresUrl } from "../store/postgres/connection.ts";
import { defaultSigningKey } from "../store/postgres/trail.ts";
import { cliLog, configuredSettings, IoError, resolveLogDb } from "./_shared.ts";

export interface CliAuditSettings {
  config: Config;
  logDb: string;
  /** The signing key named by a flag, AGENT_ATTR_SIGNING_KEY or the config (else the store's default). */
  signingKeyGiven?: string;
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
        : isPostgresUrl(logDb)
          ? `the default ./${defaultSigningKey}`
          : "the default beside the database";
  const signingKeyGiven = flags.signingKey ?? config.audit.signingKey;
  return {
    config,
    logDb,
    signingKeyGiven,
    signingKey: isPostgresUrl(logDb)
      ? (signingKeyGiven ?? process.env.AGENT_ATTR_SIGNING_KEY ?? defaultSigningKey)
      : signingKeyPath(logDb, signingKeyGiven),
    signingKeySource,
    checkpoint: config.audit.checkpoint,
  };
}

/**
 * The admin handle on the trail the proxy with this config writes: the store a plugin provides
 * (`auditStore`), else the one --log-db names — the same choice `proxy start` makes. The CLI never
 * creates a trail by reading one (`create` only for `keys create`).
 */
export async function openCliAdmin(settings: CliAuditSettings, options: { create?: boolean } = {}): Promise<AuditAdmin> {
  const { provider } = primaryStore(configuredPlugins(settings.config), settings.logDb);
  try {
    return await provider.openAdmin({
      logDb: settings.logDb,
      log: cliLog(),
      audit: { checkpoint: settings.checkpoint, signingKey: settings.signingKeyGiven },
      create: options.create ?? false,
    });
  } catch (error) {
    if (error instanceof TrailNotFoundError) throw new IoError(error.message);
    if (error instanceof SchemaDamagedError) throw error; // tampering, not an unreadable database
    throw error instanceof IoError ? error : new IoError(`cannot read the audit database ${settings.logDb}: ${errorMessage(error)}`);
  }
}

/** Opens the admin handle for the settings the flags and config name, runs `use`, closes it. */
export async function withCliAdmin<T>(
  flags: { logDb?: string; signingKey?: string; config?: string },
  use: (admin: AuditAdmin, settings: CliAuditSettings) => Promise<T>,
  options: { create?: boolean } = {},
): Promise<T> {
  const settings = await cliAuditSettings(flags);
  const admin = await openCliAdmin(settings, options);
  try {
    return await use(admin, settings);
  } finally {
    await admin.close();
  }
}
