/** Helpers shared by CLI commands: errors and exit codes, option parsing, the config and database they use. */
import { existsSync } from "node:fs";
import { z } from "zod";
import { ConfigError, findConfigFile, loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { errorMessage } from "../errors.ts";
import { createLogger, defaultLogSettings, resolveLogSettings } from "../log.ts";
import { PluginError, type Logger } from "../plugin.ts";
import { ExportRefusedError } from "../trail/export-check.ts";
import { isRedactionRefusal } from "../trail/erase-check.ts";
import { SchemaDamagedError } from "../store/contract.ts";

/**
 * Exit codes, one meaning each (docs/operators.md, "CLI errors and exit codes"). Only a verdict about the trail or an export
 * exits 1, so a script can tell tampering from a typo or a missing file.
 */
export const exitCodes = {
  ok: 0,
  /**
   * `audit verify`: the trail is tampered; `audit verify-export`: the file or its manifest changed;
   * `audit export`: a record to be exported does not match the chain (nothing is signed).
   */
  tampered: 1,
  /** A mistake on the command line: unknown command or flag, a bad or missing value. */
  usage: 2,
  /** The config (file, plugin options, environment) is invalid, or the proxy refuses to start with it. */
  config: 3,
  /** A file or database cannot be found, read or written (no audit database, disk full, not a database). */
  io: 4,
  /** A bug: anything else (AGENT_ATTR_DEBUG=1 prints the stack). */
  internal: 5,
  /** Intact as far as could be checked, but not confirmed: checkpoints without a key, an export's signer not pinned. */
  unconfirmed: 6,
  /** `health`: the proxy did not answer /healthz with 200 in time. */
  unhealthy: 7,
  /** Stopped by SIGINT/SIGTERM before it finished (an export is then recorded as cancelled). */
  interrupted: 130,
} as const;

/** A mistake of the user's on the command line. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** A file or database that cannot be found, read or written. */
export class IoError extends Error {
  override name = "IoError";
}

/** The command was stopped by a signal before it finished. */
export class InterruptedError extends Error {
  override name = "InterruptedError";
}

/** An error the operating system or SQLite raised (ENOENT, EACCES, ENOSPC, SQLITE_CORRUPT…). */
function isSystemError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  return error.name === "SQLiteError" || error.name === "PostgresError" || (typeof code === "string" && /^E[A-Z0-9]+$/.test(code));
}

export function exitCodeOf(error: unknown): number {
  if (error instanceof UsageError) return exitCodes.usage;
  if (error instanceof ExportRefusedError || error instanceof SchemaDamagedError || isRedactionRefusal(error)) return exitCodes.tampered;
  if (error instanceof InterruptedError) return exitCodes.interrupted;
  if (error instanceof IoError || isSystemError(error)) return exitCodes.io;
  if (error instanceof PluginError) return isSystemError(error.cause) ? exitCodes.io : exitCodes.config;
  if (error instanceof ConfigError) return exitCodes.config;
  return exitCodes.internal;
}

/** One line per message (config errors: one per problem), escaped by the logger; no stack unless AGENT_ATTR_DEBUG. */
export function reportError(error: unknown, log: Logger): void {
  if (error instanceof ConfigError) {
    log.error(error.summary);
    for (const problem of error.problems) log.error(`  ${problem}`);
    return;
  }
  const code = exitCodeOf(error);
  const kind = code === exitCodes.internal ? "internal error: " : isSystemError(error) ? "I/O error: " : "";
  log.error(`${kind}${errorMessage(error)}`);
  if (process.env.AGENT_ATTR_DEBUG && error instanceof Error) process.stderr.write(`${error.stack}\n`);
}

let log: Logger | null = null;

/**
 * The CLI's own log (warnings, errors): the format and level of AGENT_ATTR_LOG_FORMAT /
 * AGENT_ATTR_LOG_LEVEL, text when they are unset or wrong (a wrong one is reported as a config error).
 */
export function cliLog(): Logger {
  if (!log) {
    let settings = defaultLogSettings;
    try {
      settings = resolveLogSettings(defaultLogSettings);
    } catch {
      // checkStartup reports it where it matters; the CLI still says what went wrong in text.
    }
    log = createLogger(settings);
  }
  return log;
}

/** Parses a CLI option with zod, turning a failure into a UsageError that names the flag. */
export function parseFlag<S extends z.ZodType>(flag: string, schema: S, value: unknown): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new UsageError(`--${flag}: ${result.error.issues.map((issue) => issue.message).join("; ")}`);
}

/** Parses option values with a schema; the first problem is a UsageError naming its flag. */
export function parseOptions<S extends z.ZodType>(schema: S, values: unknown): z.output<S> {
  const result = schema.safeParse(values);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  throw new UsageError(`--${issue.path.join(".")}: ${issue.message}`);
}

const portMessage = "expected a port number from 0 to 65535";
export const portSchema = z.coerce.number({ error: portMessage }).int({ error: portMessage }).min(0, portMessage).max(65535, portMessage);

/** The audit database: --log-db, then AGENT_ATTR_LOG_DB, then the config's audit.logDb, then ./audit.db. */
export function resolveLogDb(flag: string | undefined, fromConfig: string | undefined): string {
  return flag ?? process.env.AGENT_ATTR_LOG_DB ?? fromConfig ?? "./audit.db";
}

export function requireExistingDb(path: string): void {
  if (!existsSync(path)) {
    throw new IoError(`No audit database at ${path}. Pass --log-db PATH (or set AGENT_ATTR_LOG_DB, or audit.logDb in the config).`);
  }
}

/** Runs `open` (a database, a file), reporting a failure as an I/O error that names `what`. */
export function opening<T>(what: string, open: () => T): T {
  const fail = (error: unknown) => {
    throw error instanceof IoError ? error : new IoError(`${what}: ${errorMessage(error)}`);
  };
  try {
    const result = open();
    return (result instanceof Promise ? result.catch(fail) : result) as T;
  } catch (error) {
    return fail(error);
  }
}

export const logDbArg = {
  type: "string",
  description: "SQLite audit database (default: AGENT_ATTR_LOG_DB, the config's audit.logDb, or ./audit.db)",
  valueHint: "PATH",
} as const;

export const configArg = {
  type: "string",
  description: "Config file (default: AGENT_ATTR_CONFIG or ./agent-attr.config.ts)",
  valueHint: "FILE",
} as const;

/** The flags `proxy start` and `config check` share: what is checked is what would start. */
export const startArgs = {
  port: { type: "string", description: "Port to listen on (default: PORT, the config's server.port, or 8080)" },
  host: { type: "string", description: "Address to bind (default: HOST, the config's server.host, or 127.0.0.1)" },
  "log-db": logDbArg,
  config: configArg,
} as const;

export interface StartSettings {
  configFile: string | null;
  config: Config;
  logDb: string;
}

/**
 * The config `proxy start` runs with: the file (--config, AGENT_ATTR_CONFIG, ./agent-attr.config.ts),
 * then the listen address from --port/--host, else PORT/HOST (as container platforms set them).
 */
export async function startSettings(args: { port?: string; host?: string; "log-db"?: string; config?: string }): Promise<StartSettings> {
  const { configFile, config } = await configuredSettings(args.config);
  const port = args.port ?? (process.env.PORT || undefined);
  if (port !== undefined) config.server.port = parseFlag(args.port !== undefined ? "port" : "port (from PORT)", portSchema, port);
  const host = args.host ?? (process.env.HOST || undefined);
  if (host !== undefined) config.server.host = host;
  return { configFile, config, logDb: resolveLogDb(args["log-db"], config.audit.logDb) };
}

/**
 * The config file (--config, AGENT_ATTR_CONFIG, ./agent-attr.config.ts) and its settings, with
 * AGENT_ATTR_SIGNING_KEY over `audit.signingKey` (so an image can keep the key on its own volume).
 */
export async function configuredSettings(flag: string | undefined): Promise<{ configFile: string | null; config: Config }> {
  const configFile = findConfigFile(flag);
  const config = await loadConfig(configFile);
  if (process.env.AGENT_ATTR_SIGNING_KEY) config.audit.signingKey = process.env.AGENT_ATTR_SIGNING_KEY;
  return { configFile, config };
}
