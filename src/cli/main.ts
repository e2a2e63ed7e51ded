#!/usr/bin/env bun
/** The `agent-attr` command line (citty, run through ./_run.ts). Group commands have no `run` of their own. */
import { defineCommand } from "citty";
import pkg from "../../package.json" with { type: "json" };
import { auditCommand } from "./audit.ts";
import { configCommand } from "./config.ts";
import { healthCommand } from "./health.ts";
import { initCommand, typesCommand } from "./init.ts";
import { consentCommand } from "./consent.ts";
import { keysCommand } from "./keys.ts";
import { pricingCommand } from "./pricing.ts";
import { proxyCommand } from "./proxy.ts";
import { runCommandLine } from "./_run.ts";
import { versionLine } from "../version.ts";

const version = defineCommand({
  meta: { name: "version", description: "Print the version, the commit and the build date (also: --version)" },
  run: () => void process.stdout.write(`${versionLine()}\n`),
});

// `help [COMMAND...]` is answered by the runner, which knows the whole tree; listed here so it shows.
const help = defineCommand({
  meta: { name: "help", description: "Show the commands, or one command's options: 'agent-attr help audit export' (also: --help)" },
});

const main = defineCommand({
  meta: { name: "agent-attr", version: pkg.version, description: "Attribution and audit proxy for AI agents" },
  subCommands: {
    proxy: proxyCommand,
    audit: auditCommand,
    keys: keysCommand,
    consent: consentCommand,
    pricing: pricingCommand,
    config: configCommand,
    init: initCommand,
    types: typesCommand,
    health: healthCommand,
    help,
    version,
  },
});

await runCommandLine(main, process.argv.slice(2));
