// The command line refuses what it does not know instead of ignoring it: a misspelled flag or
// command is a usage error (exit 2) naming the closest valid one, before anything runs; `help`
// and `version` work as commands and as flags.
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { runCli } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";
import { trailWith } from "../helpers/records.ts";

const exportEvents = (logDb: string) => {
  const db = new Database(logDb, { readonly: true });
  try {
    return db.query<{ n: number }, []>("SELECT count(*) AS n FROM audit_events WHERE kind = 'export'").get()!.n;
  } finally {
    db.close();
  }
};

test("proxy start --prot 23101 is refused with 'did you mean --port', and nothing starts", async () => {
  const dir = tempDir();
  const result = await runCli(["proxy", "start", "--prot", "23101", "--log-db", join(dir, "audit.db")], { cwd: dir, timeoutMs: 8000 });
  expect(result.exitCode).toBe(2);
  expect(result.stderr).toContain("Unknown option '--prot' for 'agent-attr proxy start'. Did you mean '--port'?");
  expect(result.stdout).not.toContain("listening");
  expect(existsSync(join(dir, "audit.db"))).toBe(false);
}, 10_000);

test("audit export --usre alice exports nothing (not everyone) and suggests --user", async () => {
  const logDb = await trailWith(3);
  const before = exportEvents(logDb);
  const output = join(tempDir(), "alice.csv");
  const result = await runCli(["audit", "export", "--format", "csv", "--usre", "alice", "--output", output, "--log-db", logDb]);
  expect(result.exitCode).toBe(2);
  expect(result.stderr).toContain("Did you mean '--user'?");
  expect(existsSync(output)).toBe(false);
  expect(exportEvents(logDb)).toBe(before);
});

test("an unknown command names the closest one and lists the others", async () => {
  const sub = await runCli(["audit", "quer"]);
  expect(sub.exitCode).toBe(2);
  expect(sub.stderr).toContain("Unknown command 'quer' for 'agent-attr audit'. Did you mean 'query'?");
  const top = await runCli(["prxy", "start"]);
  expect(top.exitCode).toBe(2);
  expect(top.stderr).toContain("Did you mean 'proxy'?");
  expect(top.stderr).toContain("Commands: proxy, audit");
}, 15_000);

test("a flag without its value, a flag given twice and a stray argument are usage errors", async () => {
  const logDb = await trailWith(1);
  const cases: [string[], string][] = [
    [["audit", "query", "--log-db", logDb, "--user"], "--user needs a value"],
    [["audit", "query", "--user", "--format", "json", "--log-db", logDb], "--user needs a value"],
    [["audit", "query", "--user", "a", "--user", "b", "--log-db", logDb], "--user is given twice"],
    [["audit", "query", "alice", "--log-db", logDb], "does not take the argument 'alice'"],
    [["init", "--force=maybe"], "--force is a switch"],
    [["audit", "query", "--logDb", logDb], "Did you mean '--log-db'?"],
  ];
  for (const [args, message] of cases) {
    const result = await runCli(args);
    expect({ args, exitCode: result.exitCode }).toEqual({ args, exitCode: 2 });
    expect(result.stderr).toContain(message);
    expect(result.stdout).toBe("");
  }
}, 20_000);

test("a value that starts with -- passes as --name=value", async () => {
  const logDb = await trailWith(1);
  const result = await runCli(["audit", "query", "--task=--x", "--format", "json", "--log-db", logDb]);
  expect(result.exitCode).toBe(0);
  expect(JSON.parse(result.stdout)).toMatchObject({ records: [] });
});

test("help and version: as commands and as flags", async () => {
  for (const args of [["help"], ["--help"]]) {
    const result = await runCli(args);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain("USAGE agent-attr");
    expect(result.stdout).toContain("proxy");
    expect(result.stdout).not.toContain("\u001b[");
  }
  for (const args of [
    ["help", "audit", "export"],
    ["audit", "export", "--help"],
  ]) {
    const result = await runCli(args);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain("USAGE agent-attr audit export");
    expect(result.stdout).toContain("--start-date");
  }
  // A checkout has no build stamp: it says "dev" and the commit git reports (docs/operators.md, "Install").
  const git = (...args: string[]) =>
    Bun.spawnSync(["git", ...args], { cwd: import.meta.dir })
      .stdout.toString()
      .trim();
  const commit = git("rev-parse", "--short=12", "HEAD");
  const modified = git("status", "--porcelain") !== "";
  for (const args of [["version"], ["--version"], ["-v"]]) {
    const result = await runCli(args);
    expect(result).toMatchObject({ exitCode: 0, stdout: `${pkg.version} (dev, commit ${commit}${modified ? "-modified" : ""})\n` });
  }
  const unknown = await runCli(["help", "audit", "nope"]);
  expect(unknown.exitCode).toBe(2);
  const bare = await runCli(["audit"]);
  expect(bare.exitCode).toBe(2);
  expect(bare.stderr).toContain("'agent-attr audit' needs a command: query, summary");
}, 30_000);
