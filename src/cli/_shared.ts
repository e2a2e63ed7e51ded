/** Helpers shared by CLI commands: user-facing errors, option parsing, the audit DB path. */
import { existsSync } from "node:fs";
import { z } from "zod";
import { ConfigError } from "../config/load.ts";
import { PluginError } from "../plugin.ts";
import { errorMessage } from "../errors.ts";

/** A mistake of the user's: printed as one line to stderr, exit code 1, no stack trace. */
export class UsageError extends Error {
  override name = "UsageError";
}

export function withUserErrors<A extends unknown[]>(run: (...args: A) => Promise<void> | void) {
  return async (...args: A) => {
    try {
      await run(...args);
    } catch (error) {
      if (error instanceof UsageError || error instanceof ConfigError || error instanceof PluginError) {
        console.error(`agent-attr: ${error.message}`);
      } else {
        console.error(`agent-attr: internal error: ${errorMessage(error)}`);
        if (process.env.AGENT_ATTR_DEBUG && error instanceof Error) console.error(error.stack);
      }
      process.exit(1);
    }
  };
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


export const portSchema = z.coerce.number().int().min(0).max(65535);

/** The audit database: --log-db, then AGENT_ATTR_LOG_DB, then the config's audit.logDb, then ./audit.db. */
export function resolveLogDb(flag: string | undefined, fromConfig?: string): string {
  return flag ?? process.env.AGENT_ATTR_LOG_DB ?? fromConfig ?? "./audit.db";
}

export function requireExistingDb(path: string): void {
  if (!existsSync(path)) {
    throw new UsageError(`No audit database at ${path}. Pass --log-db PATH (or set AGENT_ATTR_LOG_DB).`);
  }
}

export const logDbArg = {
  type: "string",
  description: "SQLite audit database (default: AGENT_ATTR_LOG_DB or ./audit.db)",
  valueHint: "PATH",
} as const;
