/**
 * Finds, imports and validates `agent-attr.config.ts`. Configs and plugins import "agent-attr" and
 * "agent-attr/plugins"; those names are served from this build (a Bun runtime plugin), so a config
 * loads the same way from a checkout and from the compiled binary, with no node_modules.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import * as pluginsAPI from "../../plugins/index.ts";
import * as api from "../index.ts";
import { configSchema, type Config } from "./schema.ts";
import { errorMessage } from "../errors.ts";
import { errorLocation, optionLine, sourceOf } from "./locate.ts";

/**
 * A config the proxy refuses. `problems` lists every problem found, each one line (prefixed
 * `FILE:LINE:` where the line is known); the message holds the summary and all of them.
 */
export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(
    readonly summary: string,
    readonly problems: readonly string[] = [],
  ) {
    super(problems.length === 0 ? summary : `${summary}\n${problems.map((problem) => `  ${problem}`).join("\n")}`);
  }
}

let modulesRegistered = false;

export function registerPublicModules(): void {
  if (modulesRegistered) return;
  modulesRegistered = true;
  Bun.plugin({
    name: "agent-attr public modules",
    setup(build) {
      build.module("agent-attr", () => ({ exports: { ...api }, loader: "object" }));
      build.module("agent-attr/plugins", () => ({ exports: { ...pluginsAPI }, loader: "object" }));
    },
  });
}

export const defaultConfigFile = "agent-attr.config.ts";

/** The config file to load: the flag, AGENT_ATTR_CONFIG, or ./agent-attr.config.ts if present. */
export function findConfigFile(flag?: string): string | null {
  const named = flag ?? process.env.AGENT_ATTR_CONFIG;
  if (named) {
    const path = resolve(named);
    if (!existsSync(path)) throw new ConfigError(`Config file ${path} does not exist. Create it with 'agent-attr init'.`);
    return path;
  }
  const local = resolve(defaultConfigFile);
  return existsSync(local) ? local : null;
}

export async function loadConfig(file: string | null): Promise<Config> {
  if (!file) return configSchema.parse({});
  registerPublicModules();
  let exported: unknown;
  try {
    const mod: { default?: unknown } = await import(file);
    exported = mod.default;
  } catch (error) {
    const at = errorLocation(error);
    const where = at ? `${at.file}:${at.line}: ` : "";
    throw new ConfigError(
      `Could not load ${file}:`,
      errorMessage(error)
        .trim()
        .split("\n")
        .map((line, i) => (i === 0 ? `${where}${line}` : `  ${line}`)),
    );
  }
  if (exported === undefined) {
    throw new ConfigError(`${file} has no default export; write \`export default defineConfig({ ... })\`.`);
  }
  return parseConfig(exported, file);
}

/** Validates a config; every wrong option is one problem naming its path (and line, given the file). */
export function parseConfig(value: unknown, file?: string): Config {
  const result = configSchema.safeParse(value);
  if (result.success) return result.data;
  const source = file ? sourceOf(file) : "";
  const problems = result.error.issues.map((issue) => {
    const keys = issue.code === "unrecognized_keys" ? [...issue.path, issue.keys[0]!] : issue.path;
    const line = file ? (optionLine(source, keys) ?? optionLine(source, issue.path)) : null;
    const where = file ? `${file}${line ? `:${line}` : ""}: ` : "";
    return `${where}${issue.path.length ? `${issue.path.join(".")}: ` : ""}${issue.message}`;
  });
  throw new ConfigError(`Invalid ${file ?? "config"} (${problems.length} problem${problems.length === 1 ? "" : "s"}):`, problems);
}
