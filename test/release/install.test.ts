// install.sh, run by sh against a local HTTP server serving a release folder, as a user runs it:
// platform detection (uname, sysctl and ldd answered by stand-ins on PATH), the checksum check and
// its refusal, the install folder, the one release URL, the optional signature check. First on a
// small release of stand-in binaries (shell scripts, one per platform), then on the real one.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { binaryName, targets } from "../../scripts/build-config.ts";
import { installScript } from "../../scripts/release.ts";
import { signReleaseFiles } from "../../scripts/release-signature.ts";
import { tempDir } from "../helpers/proxy.ts";
import { repoRoot, serveFolder, testRelease, type FolderServer } from "../helpers/release.ts";

/** Stand-ins for the system commands install.sh asks about the machine. */
function shims(machine: { kernel: string; cpu: string; ldd?: string; rosetta?: boolean }): string {
  const dir = tempDir();
  const write = (name: string, body: string) => {
    writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(dir, name), 0o755);
  };
  write("uname", `case "$1" in -s) echo '${machine.kernel}' ;; -m) echo '${machine.cpu}' ;; *) echo '${machine.kernel}' ;; esac`);
  write("sysctl", `echo ${machine.rosetta ? 1 : 0}`);
  write("ldd", `echo '${machine.ldd ?? "ldd (Debian GLIBC 2.36-9+deb12u14) 2.36"}'`);
  return dir;
}

interface Install {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs install.sh (async: the release server answers from this process's event loop). */
async function install(
  args: string[],
  options: { script?: string; machine?: Parameters<typeof shims>[0]; env?: Record<string, string> } = {},
): Promise<Install> {
  const path = options.machine ? `${shims(options.machine)}:${process.env.PATH}` : process.env.PATH!;
  const child = Bun.spawn(["sh", options.script ?? join(repoRoot, "install.sh"), ...args], {
    env: { PATH: path, HOME: tempDir(), ...options.env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { exitCode, stdout, stderr };
}

describe("on a release of stand-in binaries", () => {
  const folder = tempDir();
  let server: FolderServer;
  const standIn = (platform: string) => `#!/bin/sh\necho "${pkg.version} (stand-in for ${platform})"\n`;
  beforeAll(() => {
    const lines: string[] = [];
    for (const target of targets) {
      const name = binaryName(target);
      writeFileSync(join(folder, name), standIn(target.name));
      lines.push(`${new Bun.CryptoHasher("sha256").update(standIn(target.name)).digest("hex")}  ${name}\n`);
    }
    writeFileSync(join(folder, "SHA256SUMS"), lines.sort().join(""));
    server = serveFolder(folder);
  });
  afterAll(() => server.stop());

  test("detects the platform and installs its binary as DIR/agent-attr", async () => {
    const machines = [
      { machine: { kernel: "Linux", cpu: "x86_64" }, platform: "linux-x64" },
      { machine: { kernel: "Linux", cpu: "aarch64" }, platform: "linux-arm64" },
      { machine: { kernel: "Linux", cpu: "x86_64", ldd: "musl libc (x86_64)" }, platform: "linux-x64-musl" },
      { machine: { kernel: "Darwin", cpu: "arm64" }, platform: "darwin-arm64" },
      { machine: { kernel: "Darwin", cpu: "x86_64" }, platform: "darwin-x64" },
      { machine: { kernel: "Darwin", cpu: "x86_64", rosetta: true }, platform: "darwin-arm64" }, // an x64 shell on Apple silicon
      { machine: { kernel: "MINGW64_NT-10.0-19045", cpu: "x86_64" }, platform: "windows-x64" },
    ];
    for (const { machine, platform } of machines) {
      const dir = join(tempDir(), "bin");
      const file = join(dir, platform === "windows-x64" ? "agent-attr.exe" : "agent-attr");
      const result = await install(["--url", server.url, "--dir", dir], { machine });
      expect(result.exitCode, `${platform}: ${result.stderr}`).toBe(0);
      expect(readFileSync(file, "utf8")).toBe(standIn(platform));
      expect(result.stdout).toBe(`installed ${file}: agent-attr ${pkg.version} (stand-in for ${platform})\n`);
      expect(readdirSync(dir)).toEqual([platform === "windows-x64" ? "agent-attr.exe" : "agent-attr"]);
    }
  });

  test("a system or CPU without a build is refused, naming it, and nothing is installed", async () => {
    const cases = [
      { machine: { kernel: "FreeBSD", cpu: "amd64" }, says: "no agent-attr build for the operating system 'FreeBSD'" },
      { machine: { kernel: "Linux", cpu: "riscv64" }, says: "no agent-attr build for the CPU 'riscv64'" },
      { machine: { kernel: "Linux", cpu: "aarch64", ldd: "musl libc (aarch64)" }, says: "no agent-attr build for linux-arm64 with musl" },
    ];
    for (const { machine, says } of cases) {
      const dir = join(tempDir(), "bin");
      const result = await install(["--url", server.url, "--dir", dir], { machine });
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toContain(says);
      expect(existsSync(dir)).toBe(false);
    }
  });

  test("--platform installs another platform's binary without running it", async () => {
    const dir = join(tempDir(), "bin");
    const result = await install(["--url", server.url, "--dir", dir, "--platform", "linux-x64-musl"], {
      machine: { kernel: "Linux", cpu: "x86_64" },
    });
    expect(result.exitCode).toBe(0);
    expect(readFileSync(join(dir, "agent-attr"), "utf8")).toBe(standIn("linux-x64-musl"));
    expect(result.stdout).toBe(
      `installed ${dir}/agent-attr: agent-attr ${pkg.version} for linux-x64-musl (not run: this machine is linux-x64)\n`,
    );
  });

  test("a corrupted download is refused: nothing is installed, and an agent-attr already there stays as it was", async () => {
    const corrupting = serveFolder(folder, { corrupt: binaryName(targets[0]!) });
    try {
      const dir = join(tempDir(), "bin");
      mkdirSync(dir);
      writeFileSync(join(dir, "agent-attr"), "the version installed before");
      const result = await install(["--url", corrupting.url, "--dir", dir], { machine: { kernel: "Linux", cpu: "x86_64" } });
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toContain(`checksum mismatch for agent-attr-${pkg.version}-linux-x64: SHA256SUMS says `);
      expect(result.stderr).toContain("Nothing was installed");
      expect(readdirSync(dir)).toEqual(["agent-attr"]);
      expect(readFileSync(join(dir, "agent-attr"), "utf8")).toBe("the version installed before");
      expect(corrupting.requests).toEqual(["SHA256SUMS", `agent-attr-${pkg.version}-linux-x64`]);
    } finally {
      await corrupting.stop();
    }
  });

  test("the release URL is set in one place: --url, else AGENT_ATTR_RELEASE_URL, else the URL bun run release wrote in", async () => {
    const machine = { kernel: "Linux", cpu: "x86_64" };
    const fromEnv = await install(["--dir", join(tempDir(), "bin")], { machine, env: { AGENT_ATTR_RELEASE_URL: server.url } });
    expect(fromEnv.exitCode).toBe(0);

    const stamped = join(tempDir(), "install.sh");
    writeFileSync(stamped, installScript(`${server.url}/`));
    const dir = join(tempDir(), "bin");
    const fromScript = await install(["--dir", dir], { script: stamped, machine });
    expect(fromScript.exitCode, fromScript.stderr).toBe(0);
    expect(fromScript.stderr).toContain(`downloading agent-attr-${pkg.version}-linux-x64 from ${server.url}\n`);

    const none = await install(["--dir", join(tempDir(), "bin")], { machine });
    expect(none.exitCode).toBe(2);
    expect(none.stderr).toContain("no release URL: pass --url URL");
  });

  test("the default folder is ~/.local/bin, or AGENT_ATTR_INSTALL_DIR", async () => {
    const home = tempDir();
    const machine = { kernel: "Linux", cpu: "x86_64" };
    expect((await install(["--url", server.url], { machine, env: { HOME: home } })).exitCode).toBe(0);
    expect(existsSync(join(home, ".local/bin/agent-attr"))).toBe(true);
    const chosen = join(tempDir(), "tools");
    const result = await install(["--url", server.url], { machine, env: { AGENT_ATTR_INSTALL_DIR: chosen } });
    expect(result.exitCode).toBe(0);
    expect(existsSync(join(chosen, "agent-attr"))).toBe(true);
    expect(result.stderr).toContain(`${chosen} is not on your PATH`);
  });

  test("plain http is refused except to this machine, and unknown arguments are usage errors", async () => {
    const http = await install(["--url", "http://releases.example/agent-attr/0.1.0", "--dir", tempDir()]);
    expect(http.exitCode).toBe(1);
    expect(http.stderr).toContain("the release URL must be https:// (plain http only to localhost)");
    const unknown = await install(["--url", server.url, "--prefix", "/usr"]);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toContain("unknown argument '--prefix'");
  });

  test("--public-key also checks SHA256SUMS's signature, and refuses one made by another key", async () => {
    const signed = tempDir();
    for (const name of readdirSync(folder)) writeFileSync(join(signed, name), readFileSync(join(folder, name)));
    const releaseKey = generateKeyPairSync("ed25519").privateKey;
    for (const [name, content] of Object.entries(signReleaseFiles(releaseKey, readFileSync(join(signed, "SHA256SUMS")))))
      writeFileSync(join(signed, name), content);
    const otherKey = join(signed, "other.pem");
    writeFileSync(otherKey, generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }));
    const signedServer = serveFolder(signed);
    try {
      const machine = { kernel: "Linux", cpu: "x86_64" };
      const good = await install(
        ["--url", signedServer.url, "--dir", join(tempDir(), "bin"), "--public-key", join(signed, "agent-attr-release.pem")],
        { machine },
      );
      expect(good.exitCode, good.stderr).toBe(0);
      expect(good.stderr).toContain("SHA256SUMS is signed by the key in");
      const dir = join(tempDir(), "bin");
      const bad = await install(["--url", signedServer.url, "--dir", dir, "--public-key", otherKey], { machine });
      expect(bad.exitCode).toBe(1);
      expect(bad.stderr).toContain("the signature of SHA256SUMS does not match the key");
      expect(existsSync(dir)).toBe(false);
    } finally {
      await signedServer.stop();
    }
  });
});

describe("on the release bun run release built", () => {
  const release = testRelease();
  let server: FolderServer;
  beforeAll(() => {
    server = serveFolder(release.dir);
  });
  afterAll(async () => {
    await server.stop();
    release.remove();
  });
  const host = `${pkg.version}-linux-x64`;

  test("its install.sh installs this machine's binary, which runs and says its version", async () => {
    const dir = join(tempDir(), "bin");
    const result = await install(["--url", server.url, "--dir", dir, "--public-key", join(release.dir, "agent-attr-release.pem")], {
      script: join(release.dir, "install.sh"),
    });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toStartWith(`installed ${dir}/agent-attr: agent-attr ${pkg.version} (commit `);
    expect(Buffer.compare(readFileSync(join(dir, "agent-attr")), readFileSync(join(release.dir, `agent-attr-${host}`)))).toBe(0);
  }, 60_000);

  test("a corrupted download of it is refused and nothing is installed", async () => {
    const corrupting = serveFolder(release.dir, { corrupt: `agent-attr-${host}` });
    try {
      const dir = join(tempDir(), "bin");
      const result = await install(["--url", corrupting.url, "--dir", dir], { script: join(release.dir, "install.sh") });
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toContain(`checksum mismatch for agent-attr-${host}`);
      expect(existsSync(dir)).toBe(false);
    } finally {
      await corrupting.stop();
    }
  }, 60_000);
});
