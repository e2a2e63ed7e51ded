/**
 * `agent-attr config check`: everything `proxy start` checks, without opening a database or a
 * port — the config file, the plugins' options, the primary audit store, the listen address and its admin
 * token, the log settings — every problem at once, with file and line where there is one.
 */
import { defineCommand } from "citty";
import { ConfigError } from "../config/load.ts";
import { configuredPlugins } from "../server/runtime.ts";
import { checkStartup } from "../server/startup-check.ts";
import { cliLog, startArgs, startSettings } from "./_shared.ts";

const check = defineCommand({
  meta: { name: "check", description: "Check the config as 'proxy start' would (takes its flags), without starting anything" },
  args: startArgs,
  async run({ args }) {
    const { configFile, config, logDb } = await startSettings(args);
    const plugins = configuredPlugins(config);
    const { problems, warnings } = checkStartup(config, { plugins, logDb, env: process.env });
    for (const warning of warnings) cliLog().warn(warning);
    const source = configFile ?? "no config file, built-in defaults";
    if (problems.length > 0)
      throw new ConfigError(
        `${source}: 'proxy start' would refuse to start (${problems.length} problem${problems.length === 1 ? "" : "s"}):`,
        problems,
      );
    const names = config.plugins ? plugins.map((p) => p.name).join(", ") : `defaults (${plugins.map((p) => p.name).join(", ")})`;
    console.log(
      `agent-attr: ${source} is valid; plugins: ${names}; audit: ${logDb}; listens on ${config.server.host}:${config.server.port}`,
    );
  },
});

export const configCommand = defineCommand({
  meta: { name: "config", description: "Inspect the configuration" },
  subCommands: { check },
});
