/**
 * The one place that says what a binary is built from and for which platforms: `bun run build`
 * (scripts/build.ts, the host) and `bun run release` (scripts/release.ts, every target) both build
 * with `buildArguments`, and test/binary.test.ts compiles from the same list. A new entry point
 * (another worker thread) or an embedded asset goes here, once.
 */
import { resolve } from "node:path";
import pkg from "../package.json" with { type: "json" };
import { auditWorkers } from "../src/store/sqlite/_worker-url.ts";
import { gitCommit } from "../src/version.ts";

export const root = resolve(import.meta.dir, "..");

/**
 * Every entry point the binary must carry: the CLI first, then each worker thread (listed in
 * src/store/sqlite/_worker-url.ts, which finds them in the binary by these paths).
 */
export const entrypoints = ["src/cli/main.ts", ...auditWorkers.map((name) => `src/store/sqlite/${name}.ts`)] as const;

export interface Target {
  /** How the release names it: `agent-attr-<version>-<name>[.exe]`. */
  name: string;
  /** `bun build --target` (Bun downloads this runtime from the npm registry once, then caches it). */
  bun: string;
  os: "linux" | "darwin" | "windows";
  arch: "x64" | "arm64";
  /** The C library a Linux binary links against (musl for Alpine and other musl distributions). */
  libc?: "glibc" | "musl";
}

/** The platforms a release is built for (docs/operators.md, "Install"). */
export const targets: readonly Target[] = [
  { name: "linux-x64", bun: "bun-linux-x64", os: "linux", arch: "x64", libc: "glibc" },
  { name: "linux-arm64", bun: "bun-linux-arm64", os: "linux", arch: "arm64", libc: "glibc" },
  { name: "linux-x64-musl", bun: "bun-linux-x64-musl", os: "linux", arch: "x64", libc: "musl" },
  { name: "darwin-x64", bun: "bun-darwin-x64", os: "darwin", arch: "x64" },
  { name: "darwin-arm64", bun: "bun-darwin-arm64", os: "darwin", arch: "arm64" },
  { name: "windows-x64", bun: "bun-windows-x64", os: "windows", arch: "x64" },
];

export function targetNamed(name: string): Target {
  const target = targets.find((candidate) => candidate.name === name);
  if (!target) throw new Error(`unknown target '${name}'; the targets are ${targets.map((t) => t.name).join(", ")}`);
  return target;
}

/** The release file name of one target's binary. */
export function binaryName(target: Target, version: string = pkg.version): string {
  return `agent-attr-${version}-${target.name}${target.os === "windows" ? ".exe" : ""}`;
}

/** What a binary says about itself (`agent-attr --version`), stamped in at build time (src/version.ts). */
export interface BuildStamp {
  version: string;
  /**
   * The commit built, `-modified` appended when the work tree had uncommitted changes;
   * AGENT_ATTR_BUILD_COMMIT when set (a build without git, such as the Docker build), else `unknown`.
   */
  commit: string;
  /** ISO 8601 UTC; SOURCE_DATE_EPOCH when set (reproducible builds), else the time of the build. */
  date: string;
  /** The target's name, or `host` for `bun run build`. */
  target: string;
}

export function buildStamp(target: string, env: Record<string, string | undefined> = process.env): BuildStamp {
  const epoch = env.SOURCE_DATE_EPOCH;
  const date = epoch && /^\d+$/.test(epoch) ? new Date(Number(epoch) * 1000) : new Date();
  return {
    version: pkg.version,
    commit: env.AGENT_ATTR_BUILD_COMMIT || gitCommit(root) || "unknown",
    date: date.toISOString().replace(/\.\d{3}Z$/, "Z"),
    target,
  };
}

/**
 * The `bun build` arguments for one binary. `target` undefined builds for the host (no download).
 * `AGENT_ATTR_BUILD` is the constant src/version.ts reads.
 */
export function buildArguments(options: { outfile: string; stamp: BuildStamp; target?: Target }): string[] {
  return [
    "build",
    ...entrypoints.map((file) => resolve(root, file)),
    "--compile",
    "--minify",
    ...(options.target ? [`--target=${options.target.bun}`] : []),
    "--define",
    `AGENT_ATTR_BUILD=${JSON.stringify(options.stamp)}`,
    "--outfile",
    options.outfile,
  ];
}

/** Runs `bun build` (this Bun) and throws with its output when it fails. */
export function compile(options: { outfile: string; stamp: BuildStamp; target?: Target }): void {
  const build = Bun.spawnSync([process.execPath, ...buildArguments(options)], { cwd: root, stdout: "pipe", stderr: "pipe" });
  if (build.exitCode !== 0) {
    const output = `${build.stdout.toString()}${build.stderr.toString()}`.trim();
    throw new Error(`bun build for ${options.target?.name ?? "the host"} failed (exit ${build.exitCode}):\n${output}`);
  }
}
