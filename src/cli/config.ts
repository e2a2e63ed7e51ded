/** `agent-attr config check`: load and validate the config without starting anything. */
import { defineCommand } from "citty";
import { findConfigFile, loadConfig } from "../config/load.ts";
import { withUserErrors } from "./_shared.ts";

const check = defineCommand({
  meta: { name: "check", description: "Validate the config file" },
  args: { config: { type: "string", description: "Config file (default: AGENT_ATTR_CONFIG or ./agent-attr.config.ts)" } },
  run: withUserErrors(async ({ args }) => {
    const file = findConfigFile(args.config);
    const config = await loadConfig(file);
    const plugins = config.plugins?.map((p) => p.name).join(", ") ?? "defaults (openai, anthropic, header-attribution, pricing, sqlite-audit)";
    console.log(`agent-attr: ${file ?? "no config file, built-in defaults"} is valid; plugins: ${plugins}`);
  }),
});

export const configCommand = defineCommand({
  meta: { name: "config", description: "Inspect the configuration" },
  subCommands: { check },
});
