/**
 * `bun run release`: the binary for every platform (build-config.ts `targets`) in dist/release/, as
 * agent-attr-<version>-<platform>[.exe], each checked to be its platform's executable format and
 * to carry its worker threads where it will look for them; install.sh beside them (the release URL
 * written in with --base-url); SHA256SUMS over all of them and its detached signatures
 * (release-signature.ts). docs/operators.md "Install" tells users how to check them.
 *
 *   bun run release --signing-key PATH [--base-url URL] [--targets linux-x64,linux-arm64] [--out DIR]
 *
 * The signing key is an Ed25519 private key in PEM (`openssl genpkey -algorithm ed25519 -out
 * agent-attr-release.key`; *.key is git-ignored), named by --signing-key or by
 * AGENT_ATTR_RELEASE_SIGNING_KEY. It is never copied anywhere; only its public half is published.
 */
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import pkg from "../package.json" with { type: "json" };
import { auditWorkers, auditWorkerURL } from "../src/store/sqlite/_worker-url.ts";
import { errorMessage } from "../src/errors.ts";
import { binaryName, buildStamp, compile, root, targetNamed, targets, type BuildStamp, type Target } from "./build-config.ts";
import { executableFormat, formatMismatch } from "./executable-format.ts";
import { keyFingerprints, loadReleaseKey, signatureFiles, signReleaseFiles } from "./release-signature.ts";

class ReleaseError extends Error {}

/** A URL that goes into install.sh between double quotes: nothing the shell would expand. */
const baseUrl = z.url({ protocol: /^https?$/ }).refine((url) => !/["$`\\\s]/.test(url), "must not contain quotes, $, `, \\ or spaces");

const optionsSchema = z.object({
  "signing-key": z.string().min(1).optional(),
  "base-url": baseUrl.optional(),
  targets: z
    .string()
    .transform((list) => list.split(",").map((name) => targetNamed(name.trim())))
    .optional(),
  out: z.string().min(1).default("dist/release"),
});

function parseOptions(argv: string[]): z.infer<typeof optionsSchema> {
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { "signing-key": { type: "string" }, "base-url": { type: "string" }, targets: { type: "string" }, out: { type: "string" } },
      strict: true,
    }));
  } catch (error) {
    throw new ReleaseError(
      `${(error as Error).message}\nusage: bun run release --signing-key PATH [--base-url URL] [--targets a,b] [--out DIR]`,
    );
  }
  try {
    return optionsSchema.parse(values);
  } catch (error) {
    throw new ReleaseError(error instanceof z.ZodError ? z.prettifyError(error) : (error as Error).message);
  }
}

/** Files of an earlier release in the folder, which this one replaces. */
const releaseFile = /^(agent-attr-|SHA256SUMS|install\.sh$)/;

async function sha256(path: string): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  for await (const chunk of Bun.file(path).stream()) hasher.update(chunk);
  return hasher.digest("hex");
}

/** The workers missing from a binary: each must be at the path its _worker-url.ts asks for on that platform. */
export function missingWorkers(target: Target, binary: Buffer): string[] {
  const moduleURL = target.os === "windows" ? "file:///B:/~BUN/root/agent-attr.exe" : "file:///$bunfs/root/agent-attr";
  return auditWorkers.map((name) => auditWorkerURL(name, moduleURL)).filter((path) => !binary.includes(path));
}

async function buildTarget(target: Target, out: string, stamp: BuildStamp): Promise<string> {
  const name = binaryName(target);
  const outfile = join(out, name);
  const started = performance.now();
  compile({ outfile, target, stamp: { ...stamp, target: target.name } });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const binary = readFileSync(outfile);
  const wrong = formatMismatch(target, executableFormat(binary.subarray(0, 65536)));
  if (wrong) throw new ReleaseError(`${name}: ${wrong}`);
  const missing = missingWorkers(target, binary);
  if (missing.length > 0)
    throw new ReleaseError(`${name} lacks the worker threads ${missing.join(", ")}: list them in scripts/build-config.ts entrypoints`);
  console.log(`  ${name.padEnd(40)} ${(binary.length / 2 ** 20).toFixed(0).padStart(4)} MiB  ${seconds} s`);
  return name;
}

/** install.sh as the release ships it: with the release's URL written in when there is one. */
export function installScript(url: string | undefined): string {
  const script = readFileSync(join(root, "install.sh"), "utf8");
  if (url === undefined) return script;
  const line = /^RELEASE_URL=""$/m;
  if (!line.test(script)) throw new ReleaseError(`install.sh has no line RELEASE_URL="" to write the release URL into`);
  return script.replace(line, `RELEASE_URL="${url.replace(/\/+$/, "")}"`);
}

export async function release(argv: string[], env: Record<string, string | undefined> = process.env): Promise<void> {
  const options = parseOptions(argv);
  const keyPath = options["signing-key"] ?? env.AGENT_ATTR_RELEASE_SIGNING_KEY;
  if (!keyPath) {
    throw new ReleaseError(
      "no signing key: pass --signing-key PATH or set AGENT_ATTR_RELEASE_SIGNING_KEY=PATH (an Ed25519 key in PEM; make one with: openssl genpkey -algorithm ed25519 -out agent-attr-release.key)",
    );
  }
  const out = resolve(root, options.out);
  if (!relative(out, resolve(keyPath)).startsWith(".."))
    throw new ReleaseError(`the signing key ${keyPath} is inside the release folder ${out}: keep it elsewhere`);
  const key = loadReleaseKey(keyPath);
  if (!readFileSync(join(root, "CHANGELOG.md"), "utf8").includes(`## [${pkg.version}]`)) {
    throw new ReleaseError(`CHANGELOG.md has no section '## [${pkg.version}]': write this release's entries first`);
  }

  mkdirSync(out, { recursive: true });
  for (const entry of readdirSync(out)) if (releaseFile.test(entry)) rmSync(join(out, entry), { force: true });
  // One commit and one date for every binary of the release.
  const stamp = buildStamp("release", env);
  if (stamp.commit.endsWith("-modified"))
    console.warn(`warning: the work tree has uncommitted changes; the binaries say commit ${stamp.commit}`);

  console.log(
    `agent-attr ${pkg.version} (commit ${stamp.commit}, ${stamp.date}) → ${relative(root, out).startsWith("..") ? out : relative(root, out)}`,
  );
  const names: string[] = [];
  for (const target of options.targets ?? targets) names.push(await buildTarget(target, out, stamp));

  writeFileSync(join(out, "install.sh"), installScript(options["base-url"]));
  chmodSync(join(out, "install.sh"), 0o755);
  names.push("install.sh");

  const sums = Buffer.from((await Promise.all(names.sort().map(async (name) => `${await sha256(join(out, name))}  ${name}\n`))).join(""));
  writeFileSync(join(out, "SHA256SUMS"), sums);
  for (const [name, content] of Object.entries(signReleaseFiles(key, sums))) writeFileSync(join(out, name), content);

  const fingerprints = keyFingerprints(key);
  console.log(`  SHA256SUMS (${names.length} files), signed: ${signatureFiles.raw}, ${signatureFiles.ssh}`);
  console.log(`  public key: ${signatureFiles.publicPem}, ${signatureFiles.allowedSigners}`);
  console.log(`  key fingerprints: ${fingerprints.ssh} (ssh-keygen), ${fingerprints.spki} (SHA-256 of the PEM's DER)`);
  if (options["base-url"]) console.log(`  install.sh installs from ${options["base-url"]}`);
  const total = names.reduce((sum, name) => sum + statSync(join(out, name)).size, 0);
  console.log(`  ${(total / 2 ** 20).toFixed(0)} MiB in all`);
}

if (import.meta.main) {
  try {
    await release(process.argv.slice(2));
  } catch (error) {
    console.error(`release: ${errorMessage(error)}`);
    process.exit(1);
  }
}
