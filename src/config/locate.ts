/**
 * Where in a config file a problem is, so `config check` and `proxy start` can say `FILE:LINE`:
 * the line of an option named by a zod issue path, or the line of the user's file in the stack
 * of an error thrown while the config was imported (a plugin factory refusing its options, a
 * syntax error).
 */
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";

/** This build's own sources (a checkout), or the compiled binary's embedded ones (`/$bunfs/`). */
const sourceRoot = resolve(import.meta.dir, "../..");
const isOurs = (file: string) => file.startsWith(`${sourceRoot}/`) || file.startsWith("/$bunfs/") || file.startsWith("B:/~BUN/");

export interface Location {
  file: string;
  line: number;
}

/**
 * The line of the option at `path` (e.g. `["server", "port"]`): each key is looked for after the
 * previous one, as `key:` or `"key":`. Array indexes are skipped. Null when a key is not written
 * out literally (built by a spread or a variable).
 */
export function optionLine(source: string, path: readonly PropertyKey[]): number | null {
  let at = 0;
  let found = false;
  for (const key of path) {
    if (typeof key !== "string") continue;
    const escaped = key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const pattern = new RegExp(`(?:^|[\\s{,])(?:${escaped}|"${escaped}"|'${escaped}')\\s*:`, "g");
    pattern.lastIndex = at;
    const match = pattern.exec(source);
    if (!match) return null;
    at = match.index + match[0].length;
    found = true;
  }
  return found ? source.slice(0, at).split("\n").length : null;
}

/** The user's file and line an error was thrown from while importing the config, if any. */
export function errorLocation(error: unknown): Location | null {
  // Bun's BuildMessage / ResolveMessage (syntax errors, unresolvable imports) carry a position.
  const position = (error as { position?: { file?: unknown; line?: unknown } } | null)?.position;
  if (position && typeof position.file === "string" && typeof position.line === "number")
    return { file: position.file, line: position.line };
  const stack = error instanceof Error ? (error.stack ?? "") : "";
  for (const frame of stack.split("\n").slice(1)) {
    const match = /\(?((?:\/|[A-Za-z]:[\\/])[^():]*):(\d+):\d+\)?\s*$/.exec(frame.trim());
    if (match && !isOurs(match[1]!) && existsSync(match[1]!)) return { file: match[1]!, line: Number(match[2]) };
  }
  return null;
}

/** Reads a config file's text for `optionLine`; empty when it cannot be read. */
export function sourceOf(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}
