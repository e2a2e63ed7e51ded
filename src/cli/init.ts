/**
 * `agent-attr init`: write a commented starter config, and beside it the types of "agent-attr"
 * and "agent-attr/plugins" (agent-attr-env.d.ts, referenced from the config), so an editor
 * completes `defineConfig({...})` and plugin options with no node_modules. `agent-attr types`
 * writes (or, after an upgrade, rewrites) only the types.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { defineCommand } from "citty";
// The example config at the top of the repository, embedded as text (TypeScript types it as the module).
import starterModule from "../../agent-attr.config.ts" with { type: "text" };
import { defaultConfigFile } from "../config/load.ts";
import { opening, UsageError } from "./_shared.ts";
import { environmentDeclarations, environmentFile } from "./types/embedded.ts";

const starter = starterModule as unknown as string;
const reference = `/// <reference path="./${environmentFile}" />`;

/** Writes agent-attr-env.d.ts into `folder`; returns its path. */
function writeTypes(folder: string): string {
  const file = join(folder, environmentFile);
  opening(`cannot write ${file}`, () => writeFileSync(file, environmentDeclarations));
  return file;
}

export const initCommand = defineCommand({
  meta: { name: "init", description: `Write a commented ${defaultConfigFile} and its editor types (${environmentFile})` },
  args: {
    output: { type: "string", description: `File to write (default ./${defaultConfigFile}); the types go beside it`, valueHint: "FILE" },
    force: { type: "boolean", description: "Overwrite an existing config" },
  },
  run({ args }) {
    const file = resolve(args.output ?? defaultConfigFile);
    if (existsSync(file) && !args.force)
      throw new UsageError(`${file} already exists; pass --force to overwrite it (or 'agent-attr types' to write only the types).`);
    opening(`cannot write ${file}`, () => writeFileSync(file, `${reference}\n${starter}`));
    const types = writeTypes(dirname(file));
    console.log(`agent-attr: wrote ${file} and ${types} (editor types); start the proxy with 'agent-attr proxy start'`);
  },
});

export const typesCommand = defineCommand({
  meta: {
    name: "types",
    description: `Write ${environmentFile} beside the config: editor types for "agent-attr" and "agent-attr/plugins"`,
  },
  args: {
    output: { type: "string", description: `Folder to write it to (default: the current one)`, valueHint: "DIR" },
  },
  run({ args }) {
    const folder = resolve(args.output ?? ".");
    if (!existsSync(folder)) throw new UsageError(`--output: the folder ${folder} does not exist.`);
    const types = writeTypes(folder);
    console.log(`agent-attr: wrote ${types}`);
    const config = join(folder, defaultConfigFile);
    if (existsSync(config) && !readFileSync(config, "utf8").includes(environmentFile)) {
      console.log(`agent-attr: add this first line to ${config} (or list ${environmentFile} in your tsconfig.json):\n${reference}`);
    }
  },
});
