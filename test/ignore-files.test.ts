// Secrets and personal data the proxy writes beside a checkout are never committed or sent to a
// Docker build: every file a quick-start run leaves (the database, WAL, shared memory, intent
// segments, hash key, signing key), beside the repository or in a folder, is covered by
// .gitignore and .dockerignore.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.ts";
import { spawnProxy } from "./helpers/process.ts";
import { tempDir } from "./helpers/proxy.ts";

const root = resolve(import.meta.dir, "..");
let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
});

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" })
    .filter((name) => statSync(join(dir, name)).isFile())
    .map((name) => relative(dir, join(dir, name)))
    .sort();
}

/** Runs the proxy on `logDb` in `dir`, makes a call, and is killed -9 (so intent segments remain). */
async function leaveFiles(dir: string, logDb: string): Promise<void> {
  const proxy = await spawnProxy(["--log-db", logDb], { cwd: dir, env: { AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1` } });
  await (
    await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o", messages: [] }),
    })
  ).text();
  proxy.child.kill("SIGKILL");
  await proxy.child.exited;
}

/** Docker's rules: each pattern matched against the whole path from the context root; `!` re-includes; the last match wins. */
function dockerIgnored(path: string, patterns: string[]): boolean {
  let ignored = false;
  for (const pattern of patterns) {
    const negated = pattern.startsWith("!");
    const glob = new Bun.Glob(negated ? pattern.slice(1) : pattern);
    // A pattern naming a folder excludes what is in it.
    const parts = path.split("/");
    const hit = parts.some((_, i) => glob.match(parts.slice(0, i + 1).join("/")));
    if (hit) ignored = !negated;
  }
  return ignored;
}

test("every file a run of the proxy leaves behind is ignored by git and by docker, at the top and in a folder", async () => {
  const dir = tempDir();
  copyFileSync(join(root, ".gitignore"), join(dir, ".gitignore"));
  mkdirSync(join(dir, "data"));
  await leaveFiles(dir, "./audit.db");
  await leaveFiles(dir, "./data/trail.db");
  const left = filesUnder(dir).filter((file) => file !== ".gitignore");
  // The secrets and the intent log are among them, so the check below is not vacuous.
  for (const expected of ["audit.db", "audit.db.key", "audit.db.signing-key", "data/trail.db.key", "data/trail.db.signing-key"])
    expect(left).toContain(expected);
  expect(left.some((file) => file.startsWith("audit.db.intents-"))).toBe(true);

  expect(Bun.spawnSync(["git", "init", "-q"], { cwd: dir }).exitCode).toBe(0);
  const status = Bun.spawnSync(["git", "status", "--porcelain", "--untracked-files=all"], { cwd: dir }).stdout.toString();
  expect(status.trim().split("\n")).toEqual(["?? .gitignore"]);

  const patterns = readFileSync(join(root, ".dockerignore"), "utf8")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"));
  expect(left.filter((file) => !dockerIgnored(file, patterns))).toEqual([]);
  // The sources the build needs are still sent.
  for (const needed of ["package.json", "bun.lock", "src/cli/main.ts", "plugins/index.ts", "agent-attr.config.ts"])
    expect(dockerIgnored(needed, patterns)).toBe(false);
}, 30_000);
