#!/usr/bin/env bun
/** The `agent-attr` command line (citty). Group commands have no `run` of their own. */
import { defineCommand, runMain } from "citty";
import pkg from "../../package.json" with { type: "json" };
import { auditCommand } from "./audit.ts";
import { configCommand } from "./config.ts";
import { initCommand } from "./init.ts";
import { keysCommand } from "./keys.ts";
import { pricingCommand } from "./pricing.ts";
import { proxyCommand } from "./proxy.ts";

const main = defineCommand({
  meta: { name: "agent-attr", version: pkg.version, description: "Attribution and audit proxy for AI agents" },
  subCommands: { proxy: proxyCommand, audit: auditCommand, init: initCommand, config: configCommand, pricing: pricingCommand, keys: keysCommand },
});

await runMain(main);
