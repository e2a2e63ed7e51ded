/** `agent-attr init`: write a commented starter config. */
import { existsSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { defineCommand } from "citty";
// The example config at the top of the repository, embedded as text (TypeScript types it as the module).
import starterModule from "../../agent-attr.config.ts" with { type: "text" };
import { defaultConfigFile } from "../config/load.ts";
import { UsageError } from "./_shared.ts";

const starter = starterModule as unknown as string;

export const initCommand = defineCommand({
  meta: { name: "init", description: `Write a commented ${defaultConfigFile}` },
  args: {
    output: { type: "string", description: `File to write (default ./${defaultConfigFile})` },
    force: { type: "boolean", description: "Overwrite an existing file" },
  },
  run({ args }) {
    const file = resolve(args.output ?? defaultConfigFile);
    if (existsSync(file) && !args.force) throw new UsageError(`${file} already exists; pass --force to overwrite it.`);
    writeFileSync(file, starter);
    console.log(`agent-attr: wrote ${file}; start the proxy with 'agent-attr proxy start'`);
  },
});
