/**
 * Everything `proxy start` refuses before it opens a database or binds a port, in one function
 * that `proxy start` (through `startProxy`) and `config check` both call, so a config that passes
 * the check is one the proxy starts with. It opens nothing and never throws: every problem found
 * is listed, so a user fixes them all in one round.
 */
import type { Config } from "../config/schema.ts";
import { errorMessage } from "../errors.ts";
import { resolveLogSettings } from "../log.ts";
import type { Plugin } from "../plugin.ts";
import { primaryStore, storeProviders } from "../store/open.ts";
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
  /** Where the trail is (`--log-db`, AGENT_ATTR_LOG_DB, `audit.logDb`, ./audit.db): a path or a URL. */
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
        'Set AGENT_ATTR_ADMIN_TOKEN (or add { tokenEnv, role: "admin" } to admin.tokens in the config), or listen on 127.0.0.1.',
    );
  }
  try {
    resolveLogSettings(config.server.log, env);
  } catch (error) {
    problems.push(errorMessage(error));
  }
  problems.push(...pluginProblems(plugins, logDb));
  warnings.push(...sinkWarnings(plugins));
  if (!plugins.some((plugin) => plugin.provider)) warnings.push("no provider plugin is configured; every proxied call will be refused");
  if (!loopback.has(host) && !plugins.some((plugin) => plugin.authenticate)) {
    warnings.push(
      `Listening on ${host} in open mode: any client that reaches this port can assert any agent, user or task (records say attribution "asserted"). ` +
        "To verify identity, add apiKeys() to the config's plugins and hand out keys from 'agent-attr keys create', or add jwtAttribution({...}).",
    );
  }
  return { problems, warnings, tokens };
}

/**
 * Unique names; at most one plugin that provides the primary store; and what the primary store
 * (that plugin's, else the one `logDb` names) says would keep it from opening. Opens nothing.
 */
export function pluginProblems(plugins: readonly Plugin[], logDb: string): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const { name } of plugins) {
    if (seen.has(name)) problems.push(`Two plugins are named '${name}'; plugin names must be unique.`);
    seen.add(name);
  }
  const providers = storeProviders(plugins);
  if (providers.length > 1) {
    problems.push(
      `Plugins ${providers.map((p) => p.plugin).join(", ")} each provide the primary audit store (auditStore); keep one of them (secondary sinks give an \`audit\` hook instead).`,
    );
  }
  const { source, provider } = primaryStore(plugins, logDb);
  try {
    problems.push(...(provider.problems?.({ logDb }) ?? []));
  } catch (error) {
    problems.push(`The audit store (${source}) cannot be checked: ${errorMessage(error)}`);
  }
  return problems;
}

/** Sinks written for the old contract, where the first `audit` was the store: say what they now are. */
function sinkWarnings(plugins: readonly Plugin[]): string[] {
  return plugins.flatMap(({ name, audit }) =>
    audit && ("begin" in audit || "reader" in audit)
      ? [
          `Plugin '${name}' gives \`audit\` a begin or a reader: \`audit\` is a secondary sink, fed each committed record (begin and reader are not used). A plugin that keeps the trail itself provides \`auditStore\` instead.`,
        ]
      : [],
  );
}
