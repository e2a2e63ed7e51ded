/**
 * Finds, imports and validates `agent-attr.config.ts`. Configs and plugins import "agent-attr" and
 * "agent-attr/plugins"; those names are served from this build (a Bun runtime plugin), so a config
 * loads the same way from a checkout and from the compiled binary, with no node_modules.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { z } from "zod";
import * as pluginsAPI from "../../plugins/index.ts";
import * as api from "../index.ts";
import { configSchema, type Config } from "./schema.ts";
import { errorMessage } from "../errors.ts";

export class ConfigError extends Error {
  override name = "ConfigError";
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
    throw new ConfigError(`Could not load ${file}: ${errorMessage(error)}`);
  }
  if (exported === undefined) {
    throw new ConfigError(`${file} has no default export; write \`export default defineConfig({ ... })\`.`);
  }
  return parseConfig(exported, file);
}

export function parseConfig(value: unknown, source = "config"): Config {
  const result = configSchema.safeParse(value);
  if (!result.success) throw new ConfigError(`Invalid ${source}:\n${z.prettifyError(result.error)}`);
  return result.data;
}
