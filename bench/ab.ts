/**
 * `bun bench/ab.ts <other checkout> [scenarios] [rounds] [seconds]`: this checkout's agent-attr
 * against another one's (e.g. `git worktree add /tmp/before main`, its dependencies installed or
 * its node_modules linked), side by side with the bare forwarder in one run. Each runs in its own
 * process (default pipeline, SQLite audit in a temp dir); one load process per measurement
 * (./load.ts, 32 keep-alive connections), the order of the targets rotating each round, so the
 * drift of a shared machine lands on all of them. Prints, per scenario (`BENCH_SCENARIOS` names,
 * comma-separated; default "openai chat"), each target's CPU time per call (all of its threads,
 * from /proc) and its ratio to the bare forwarder's, and the difference of the two builds: the
 * comparison the full bench cannot make, since its runs of two builds are minutes apart.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { LoadConfig, LoadResult } from "./load.ts";
import { killAll, runChild, startServer, type Server } from "./procs.ts";
import { scenarios } from "./scenarios.ts";

const [other, names = "openai chat", roundsArg = "6", secondsArg = "3"] = process.argv.slice(2);
if (!other) throw new Error("usage: bun bench/ab.ts <other checkout> [scenarios] [rounds] [seconds]");
const rounds = Number(roundsArg);
const seconds = Number(secondsArg);
const selected = names.split(",").map((name) => {
  const scenario = scenarios.find((s) => s.name === name.trim());
  if (!scenario) throw new Error(`no scenario '${name}'; there are: ${scenarios.map((s) => s.name).join(", ")}`);
  return scenario;
});

const bun = process.execPath;
const here = resolve(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "agent-attr-ab-"));
const printedURL = (line: string) => (/^http:\/\/127\.0\.0\.1:\d+$/.test(line) ? line : null);
const listeningURL = (line: string) => (line.includes("listening") ? (/(http:\/\/\S+)/.exec(line)?.[1] ?? null) : null);

async function agentAttr(label: string, root: string, upstream: Server): Promise<Server> {
  const cwd = mkdtempSync(join(dir, `${label}-`));
  return startServer(label, [bun, join(root, "src/cli/main.ts"), "proxy", "start", "--port", "0", "--log-db", join(cwd, "audit.db")], {
    cwd,
    env: {
      ...process.env,
      AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1`,
      AGENT_ATTR_ANTHROPIC_BASE_URL: upstream.url,
      AGENT_ATTR_CONFIG: undefined,
      AGENT_ATTR_LOG_DB: undefined,
      NO_COLOR: "1",
    },
    urlOf: listeningURL,
    timeoutMs: 60_000,
  });
}

try {
  const upstream = await startServer("bench upstream", [bun, join(import.meta.dir, "upstream.ts")], { urlOf: printedURL });
  const targets: Record<string, Server> = {
    bare: await startServer("bare forwarder", [bun, join(import.meta.dir, "bare-forwarder.ts"), upstream.url], { urlOf: printedURL }),
    other: await agentAttr("other", resolve(other), upstream),
    this: await agentAttr("this", here, upstream),
  };
  const order = Object.keys(targets);
  for (const scenario of selected) {
    const sums = new Map(order.map((target) => [target, { calls: 0, cpuMs: 0 }]));
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < order.length; i++) {
        const target = order[(i + round) % order.length]!;
        const server = targets[target]!;
        const config: LoadConfig = {
          url: server.url + scenario.path,
          headers: scenario.headers,
          body: scenario.body,
          connections: 32,
          warmupSeconds: round === 0 ? 2 : 0.5,
          seconds,
          vary: scenario.vary,
          watch: { proxy: server.proc.pid },
        };
        const out = await runChild([bun, join(import.meta.dir, "load.ts"), JSON.stringify(config)], (seconds + 60) * 1000);
        const result = JSON.parse(out.trim().split("\n").at(-1)!) as LoadResult;
        if (result.errors + result.non2xx + result.bodyMismatch > 0) throw new Error(`${target}: ${result.samples.join("; ")}`);
        const sum = sums.get(target)!;
        sum.calls += result.measured;
        sum.cpuMs += result.cpuMs.proxy ?? Number.NaN;
      }
    }
    const us = (target: string) => (sums.get(target)!.cpuMs * 1000) / sums.get(target)!.calls;
    const ratio = (target: string) => `${(us(target) / us("bare")).toFixed(2)}x`;
    console.log(
      `${scenario.name}: CPU µs per call: bare ${us("bare").toFixed(0)}, other ${us("other").toFixed(0)} (${ratio("other")}), ` +
        `this ${us("this").toFixed(0)} (${ratio("this")}); this - other: ${(us("this") - us("other")).toFixed(1)} µs`,
    );
  }
} finally {
  killAll();
  rmSync(dir, { recursive: true, force: true });
}
