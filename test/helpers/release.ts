/**
 * A release to test against: the one in AGENT_ATTR_RELEASE_DIR (CI passes the dist/release that
 * `bun run release` built, every platform), or one this helper builds for the host alone with an
 * ephemeral signing key, into a temp folder removed by `remove()`. And a local HTTP server that
 * serves a folder, as a release host would, optionally corrupting one file on the way.
 */
import { generateKeyPairSync } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { tempDir } from "./proxy.ts";

export const repoRoot = resolve(import.meta.dir, "../..");

export interface TestRelease {
  dir: string;
  /** Whether this is the full release CI built (every target) rather than the host's alone. */
  full: boolean;
  /** The private key it was signed with (CI names its ephemeral one in AGENT_ATTR_RELEASE_SIGNING_KEY). */
  signingKey: string | undefined;
  remove(): void;
}

/** An Ed25519 private key in PKCS#8 PEM, as `openssl genpkey -algorithm ed25519` writes it. */
export function writeSigningKey(dir: string, name = "release.key"): string {
  const path = join(dir, name);
  const { privateKey } = generateKeyPairSync("ed25519");
  writeFileSync(path, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  return path;
}

/** Runs `bun scripts/release.ts ARGS` as `bun run release` would. */
export function runRelease(args: string[], env: Record<string, string> = {}) {
  const child = Bun.spawnSync(["bun", join(repoRoot, "scripts/release.ts"), ...args], {
    cwd: repoRoot,
    env: { ...process.env, AGENT_ATTR_RELEASE_SIGNING_KEY: "", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { exitCode: child.exitCode, stdout: child.stdout.toString(), stderr: child.stderr.toString() };
}

export function testRelease(options: { baseUrl?: string } = {}): TestRelease {
  if (process.env.AGENT_ATTR_RELEASE_DIR) {
    return {
      dir: resolve(process.env.AGENT_ATTR_RELEASE_DIR),
      full: true,
      signingKey: process.env.AGENT_ATTR_RELEASE_SIGNING_KEY,
      remove: () => {},
    };
  }
  const work = tempDir();
  const dir = join(work, "release");
  const signingKey = writeSigningKey(work);
  const args = ["--targets", "linux-x64", "--out", dir, "--signing-key", signingKey];
  const built = runRelease(options.baseUrl ? [...args, "--base-url", options.baseUrl] : args);
  if (built.exitCode !== 0) throw new Error(`release failed: ${built.stderr}`);
  return { dir, full: false, signingKey, remove: () => rmSync(work, { recursive: true, force: true }) };
}

export interface FolderServer {
  url: string;
  /** Paths asked for, in order. */
  requests: string[];
  stop(): Promise<void>;
}

/** Serves the files of `dir` by name; `corrupt` names a file served with one byte changed. */
export function serveFolder(dir: string, options: { corrupt?: string } = {}): FolderServer {
  const requests: string[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(request) {
      const name = decodeURIComponent(new URL(request.url).pathname.slice(1));
      requests.push(name);
      const file = Bun.file(join(dir, name));
      if (name.includes("/") || !(await file.exists())) return new Response("not found", { status: 404 });
      if (name !== options.corrupt) return new Response(file);
      const bytes = new Uint8Array(await file.arrayBuffer());
      bytes[bytes.length >> 1]! ^= 0xff;
      return new Response(bytes);
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, requests, stop: () => server.stop(true) };
}
