/**
 * Everything `proxy start` refuses before it opens a database or binds a port, in one function
 * that `proxy start` (through `startProxy`) and `config check` both call, so a config that passes
 * the check is one the proxy starts with. It opens nothing and never throws: every problem found
 * is listed, so a user fixes them all in one round.
 */
import { accessSync, constants, existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { Config } from "../config/schema.ts";
import { errorMessage } from "../errors.ts";
import { resolveLogSettings } from "../log.ts";
import type { Plugin } from "../plugin.ts";
import { resolveAccessTokens, type AccessToken } from "./roles.ts";

export interface StartupCheck {
  /** Reasons the proxy would refuse to start; empty when it starts. */
  problems: string[];
  /** Things an operator should know that do not stop it. */
  warnings: string[];
  /** The audit API tokens in force (when they could be resolved). */
  tokens: AccessToken[];
}

const loopback = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

export interface StartupInputs {
  /** The pipeline as it will run (see `configuredPlugins`). */
  plugins: readonly Plugin[];
  /** The audit database path (`--log-db`, AGENT_ATTR_LOG_DB, `audit.logDb`, ./audit.db). */
  logDb: string;
  /** The environment, with AGENT_ATTR_ADMIN_TOKEN / AGENT_ATTR_AUDITOR_TOKEN as given to the proxy. */
  env: Record<string, string | undefined>;
}

export function checkStartup(config: Config, { plugins, logDb, env }: StartupInputs): StartupCheck {
  const problems: string[] = [];
  const warnings: string[] = [];
  let tokens: AccessToken[] = [];
  try {
    tokens = resolveAccessTokens(config.admin.tokens, env);
  } catch (error) {
    problems.push(errorMessage(error));
  }
  const { host } = config.server;
  if (!loopback.has(host) && !tokens.some((t) => t.role === "admin")) {
    problems.push(
      `Refusing to listen on ${host} without an admin token: the audit API would be open to the network. ` +
        "Set AGENT_ATTR_ADMIN_TOKEN (or add { tokenEnv, role: \"admin\" } to admin.tokens in the config), or listen on 127.0.0.1.",
    );
  }
  try {
    resolveLogSettings(config.server.log, env);
  } catch (error) {
    problems.push(errorMessage(error));
  }
  problems.push(...pluginProblems(plugins), ...logDbProblems(logDb));
  if (!plugins.some((plugin) => plugin.provider)) warnings.push("no provider plugin is configured; every proxied call will be refused");
  if (!loopback.has(host) && !plugins.some((plugin) => plugin.authenticate)) {
    warnings.push(
      `Listening on ${host} in open mode: any client that reaches this port can assert any agent, user or task (records say attribution "asserted"). ` +
        "To verify identity, add apiKeys() to the config's plugins and hand out keys from 'agent-attr keys create', or add jwtAttribution({...}).",
    );
  }
  return { problems, warnings, tokens };
}

/** Unique names, and a primary (first) audit sink that can be read back. Reads no plugin state. */
export function pluginProblems(plugins: readonly Plugin[]): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const { name } of plugins) {
    if (seen.has(name)) problems.push(`Two plugins are named '${name}'; plugin names must be unique.`);
    seen.add(name);
  }
  // `in`, not a read: a sink's reader is typically a getter that needs setup to have run.
  const primary = plugins.find((plugin) => plugin.audit)?.audit;
  if (!primary || !("reader" in primary)) {
    problems.push("No audit sink with a reader is configured; add sqliteAudit() (from 'agent-attr/plugins') to plugins.");
  }
  return problems;
}

/**
 * The folder of the audit database must exist and be writable: SQLite's WAL and shared memory, the
 * intent log and the key files live beside the database. A URL is its server's to check.
 */
function logDbProblems(logDb: string): string[] {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(logDb) || logDb === ":memory:") return [];
  const folder = dirname(resolve(logDb));
  const elsewhere = "choose another path with --log-db (or AGENT_ATTR_LOG_DB, or audit.logDb in the config)";
  if (!existsSync(folder) || !statSync(folder).isDirectory()) {
    return [`The audit database ${logDb} cannot be created: the folder ${folder} does not exist. Create it, or ${elsewhere}.`];
  }
  try {
    accessSync(folder, constants.W_OK);
  } catch {
    const uid = process.getuid?.();
    const who = uid === undefined ? "this process" : `user id ${uid}`;
    // In a container with a bind-mounted /data, the host folder belongs to a host user.
    return [`The folder ${folder} of the audit database is not writable by ${who}. Give ${who} write access (chown ${uid ?? "<uid>"} ${folder}), or ${elsewhere}.`];
  }
  return [];
}
