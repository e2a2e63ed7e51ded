/**
 * What `agent-attr --version` (and `version`) prints, on one line that starts with the version:
 *
 *   0.1.0 (commit 0db1d0b1a2b3, built 2026-12-01T21:40:05Z, linux-arm64)   a built binary
 *   0.1.0 (dev, commit 0db1d0b1a2b3)                                        a checkout
 *
 * A build stamps `AGENT_ATTR_BUILD` in with `bun build --define` (scripts/build-config.ts). A
 * checkout has no stamp, so it says so and asks git for the commit it runs: it has no build date.
 */
import { execFileSync } from "node:child_process";
import pkg from "../package.json" with { type: "json" };

/** Replaced by `bun build --define AGENT_ATTR_BUILD={...}`; undeclared (typeof "undefined") in a checkout. */
declare const AGENT_ATTR_BUILD: { version: string; commit: string; date: string; target: string } | undefined;

export function versionLine(): string {
  if (typeof AGENT_ATTR_BUILD !== "undefined") {
    const { version, commit, date, target } = AGENT_ATTR_BUILD;
    return `${version} (commit ${commit}, built ${date}, ${target})`;
  }
  return `${pkg.version} (dev, commit ${gitCommit(import.meta.dir) ?? "unknown"})`;
}

/**
 * The commit checked out in `dir`, `-modified` appended when the work tree differs from it (files
 * changed, or new files git does not ignore); null where there is no git or no repository. The
 * build stamps the same (scripts/build-config.ts).
 */
export function gitCommit(dir: string): string | null {
  try {
    const git = (...args: string[]) =>
      execFileSync("git", args, { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    const commit = git("rev-parse", "--short=12", "HEAD");
    return git("status", "--porcelain") === "" ? commit : `${commit}-modified`;
  } catch {
    return null;
  }
}
