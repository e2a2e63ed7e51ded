// `bun run release` (scripts/release.ts): what it puts in the release folder, and what it refuses.
// Against the full release CI built (AGENT_ATTR_RELEASE_DIR) or a host-only one built here.
import { afterAll, expect, test } from "bun:test";
import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { binaryName, targets } from "../../scripts/build-config.ts";
import { executableFormat, formatMismatch } from "../../scripts/executable-format.ts";
import { missingWorkers } from "../../scripts/release.ts";
import { tempDir } from "../helpers/proxy.ts";
import { repoRoot, runRelease, testRelease, writeSigningKey } from "../helpers/release.ts";

const baseUrl = "https://releases.example/agent-attr/0.1.0";
const release = testRelease({ baseUrl });
afterAll(() => release.remove());
const built = release.full ? targets : targets.filter((target) => target.name === "linux-x64");
const run = (command: string[], options: { cwd?: string; stdin?: Uint8Array } = {}) => {
  const child = Bun.spawnSync(command, { cwd: options.cwd, stdin: options.stdin ?? "ignore", stdout: "pipe", stderr: "pipe" });
  return { exitCode: child.exitCode, output: `${child.stdout.toString()}${child.stderr.toString()}` };
};

test("one binary per platform, the version in its name, and SHA256SUMS covering each of them and install.sh", async () => {
  const names = built.map((target) => binaryName(target));
  expect(names.every((name) => name.startsWith(`agent-attr-${pkg.version}-`))).toBe(true);
  expect(names.filter((name) => name.endsWith(".exe"))).toEqual(release.full ? [`agent-attr-${pkg.version}-windows-x64.exe`] : []);
  const sums = readFileSync(join(release.dir, "SHA256SUMS"), "utf8");
  const listed = sums
    .trimEnd()
    .split("\n")
    .map((line) => /^([0-9a-f]{64}) {2}(\S+)$/.exec(line)!.slice(1) as [string, string]);
  expect(listed.map(([, name]) => name)).toEqual([...names, "install.sh"].sort());
  for (const [hash, name] of listed) {
    expect(new Bun.CryptoHasher("sha256").update(await Bun.file(join(release.dir, name)).arrayBuffer()).digest("hex")).toBe(hash);
  }
  expect(run(["sha256sum", "--check", "--strict", "SHA256SUMS"], { cwd: release.dir }).exitCode).toBe(0);
}, 30_000);

test("each binary is its platform's executable and carries its worker threads where it will look for them", async () => {
  for (const target of built) {
    const binary = Buffer.from(await Bun.file(join(release.dir, binaryName(target))).arrayBuffer());
    expect(formatMismatch(target, executableFormat(binary.subarray(0, 65536)))).toBeNull();
    expect(missingWorkers(target, binary), target.name).toEqual([]);
  }
}, 30_000);

test("SHA256SUMS's signature checks with openssl pkeyutl and with ssh-keygen, and fails once one byte of it changes", () => {
  const copy = tempDir();
  for (const name of [
    "SHA256SUMS",
    "SHA256SUMS.sig",
    "SHA256SUMS.sshsig",
    "agent-attr-release.pem",
    "agent-attr-release.allowed_signers",
  ]) {
    copyFileSync(join(release.dir, name), join(copy, name));
  }
  // The commands docs/operators.md "Verifying a download" gives.
  const openssl = [
    "openssl",
    "pkeyutl",
    "-verify",
    "-pubin",
    "-inkey",
    "agent-attr-release.pem",
    "-rawin",
    "-in",
    "SHA256SUMS",
    "-sigfile",
    "SHA256SUMS.sig",
  ];
  const sshKeygen = [
    "ssh-keygen",
    "-Y",
    "verify",
    "-f",
    "agent-attr-release.allowed_signers",
    "-I",
    "agent-attr-release",
    "-n",
    "file",
    "-s",
    "SHA256SUMS.sshsig",
  ];
  const sums = () => readFileSync(join(copy, "SHA256SUMS"));
  expect(run(openssl, { cwd: copy })).toMatchObject({ exitCode: 0, output: expect.stringContaining("Signature Verified Successfully") });
  expect(run(sshKeygen, { cwd: copy, stdin: sums() })).toMatchObject({
    exitCode: 0,
    output: expect.stringContaining('Good "file" signature for agent-attr-release'),
  });

  const tampered = sums();
  tampered[0] = tampered[0] === 0x30 ? 0x31 : 0x30; // one hex digit of the first checksum
  writeFileSync(join(copy, "SHA256SUMS"), tampered);
  expect(run(openssl, { cwd: copy }).exitCode).not.toBe(0);
  expect(run(sshKeygen, { cwd: copy, stdin: sums() }).exitCode).not.toBe(0);
});

test("install.sh is in the release, with the release URL written in when --base-url was given", () => {
  const script = readFileSync(join(release.dir, "install.sh"), "utf8");
  const original = readFileSync(join(repoRoot, "install.sh"), "utf8");
  if (release.full)
    expect(script).toBe(original); // CI builds without --base-url
  else expect(script).toBe(original.replace('\nRELEASE_URL=""\n', `\nRELEASE_URL="${baseUrl}"\n`));
});

test("the signing key stays out of the release: only its public half is published", () => {
  expect(release.signingKey, "the test needs the key the release was signed with").toBeDefined();
  const key = createPrivateKey(readFileSync(release.signingKey!, "utf8"));
  const secrets = [
    Buffer.from(key.export({ format: "jwk" }).d!, "base64url"), // the 32-byte seed
    Buffer.from(key.export({ format: "jwk" }).d!),
    key.export({ type: "pkcs8", format: "der" }),
    Buffer.from(key.export({ type: "pkcs8", format: "pem" }).toString().split("\n")[1]!),
  ];
  for (const name of readdirSync(release.dir)) {
    const bytes = readFileSync(join(release.dir, name));
    for (const secret of secrets) expect(bytes.includes(secret), name).toBe(false);
    expect(/-----BEGIN (ENCRYPTED )?PRIVATE KEY-----\r?\n[A-Za-z0-9+/]{16}/.test(bytes.toString("latin1")), name).toBe(false);
  }
  const published = createPublicKey(readFileSync(join(release.dir, "agent-attr-release.pem"), "utf8"));
  expect(published.export({ format: "jwk" })).toEqual(createPublicKey(key).export({ format: "jwk" }));
});

test("refuses without a signing key, with a key that is not Ed25519 or inside the release folder, an unknown target, a URL the shell would expand", () => {
  const work = tempDir();
  const out = join(work, "out");
  const none = runRelease(["--out", out]);
  expect(none.exitCode).toBe(1);
  expect(none.stderr).toContain("no signing key: pass --signing-key PATH or set AGENT_ATTR_RELEASE_SIGNING_KEY=PATH");
  expect(none.stderr).toContain("openssl genpkey -algorithm ed25519");

  const rsa = join(work, "rsa.key");
  writeFileSync(rsa, generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }));
  const wrongKind = runRelease(["--out", out, "--signing-key", rsa]);
  expect(wrongKind.exitCode).toBe(1);
  expect(wrongKind.stderr).toContain("is rsa, not Ed25519");

  const inside = runRelease(["--out", work, "--signing-key", writeSigningKey(work)]);
  expect(inside.exitCode).toBe(1);
  expect(inside.stderr).toContain("is inside the release folder");

  const unknown = runRelease(["--out", out, "--signing-key", writeSigningKey(work, "ok.key"), "--targets", "linux-mips"]);
  expect(unknown.exitCode).toBe(1);
  expect(unknown.stderr).toContain("unknown target 'linux-mips'; the targets are linux-x64, linux-arm64");
  const shellInUrl = runRelease(["--out", out, "--signing-key", join(work, "ok.key"), "--base-url", 'https://releases.example/"$(id)"']);
  expect(shellInUrl.exitCode).toBe(1);
  expect(shellInUrl.stderr).toContain("must not contain quotes, $, `, \\ or spaces");
  expect(readdirSync(work).sort()).toEqual(["ok.key", "release.key", "rsa.key"]); // nothing was built
});
