// tsc as a user of the binary runs it on their own folder: no node_modules, no @types, only the
// declarations `agent-attr init` writes beside the config.
import { resolve } from "node:path";

const tsc = resolve(import.meta.dir, "../../node_modules/.bin/tsc");

/** Type-checks `files` in `dir`: strict, DOM and ESNext libraries, no @types. */
export function typeCheck(dir: string, files: string[]): { exitCode: number; output: string } {
  const result = Bun.spawnSync(
    [
      tsc,
      "--noEmit",
      "--strict",
      "--target",
      "ESNext",
      "--module",
      "preserve",
      "--moduleResolution",
      "bundler",
      "--allowImportingTsExtensions",
      "--lib",
      "ESNext,DOM",
      "--types",
      "",
      ...files,
    ],
    { cwd: dir },
  );
  return { exitCode: result.exitCode, output: result.stdout.toString() + result.stderr.toString() };
}
