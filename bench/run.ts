/**
 * `bun run bench`: agent-attr against the floor of one Bun hop, side by side in one run.
 *
 * Processes (all on loopback, each its own process): the bench upstream (bench/upstream.ts), a bare
 * Bun forwarder (bench/bare-forwarder.ts), agent-attr (`proxy start`, default pipeline, SQLite
 * audit in a temp dir, run from that dir so no agent-attr.config.ts is picked up), the same
 * pipeline with an audit sink that keeps nothing ("no audit", bench/no-audit.config.ts: a
 * reference line, what the durable audit costs by difference), and one load generator per
 * measurement (bench/load.ts).
 *
 * 1. Max load (closed loop, BENCH_CONNECTIONS keep-alive connections) for each scenario against
 *    the upstream directly, the bare forwarder, agent-attr and the no-audit reference, in
 *    BENCH_ROUNDS interleaved rounds (the order of the targets rotates each round): this machine's
 *    speed drifts over tens of seconds, and interleaving spreads the drift over every target.
 * 2. Fixed rates: open loops at 10%, 25% and 50% of the bare forwarder's max (BENCH_RATES), against
 *    the forwarder and agent-attr (two interleaved rounds each); the difference of their p50 and p99
 *    is what agent-attr adds (if it can carry that rate at all).
 *    The headline is CPU per call (DESIGN §8): the proxy process's CPU time, all its threads, per
 *    call at max load, agent-attr against the bare forwarder, with the target per scenario; peak
 *    RSS is read per scenario (VmHWM reset before it).
 * 3. agent-attr is stopped with SIGTERM (it flushes); the audit DB must hold one row per request it
 *    answered, or the run fails. So does any transport error, non-2xx or truncated body.
 *
 * 4. Summaries over a 1,000,000-record log (bench/summary.ts; BENCH_SUMMARY_RECORDS, 0 skips).
 *
 * BENCH_OTEL=1 adds the target "otel" at max load: agent-attr with its own audit DB and the otel()
 * plugin switched on by OTEL_EXPORTER_OTLP_ENDPOINT, exporting to a local OTLP endpoint
 * (bench/otlp-sink.ts) — by difference with agent-attr, what a span per call costs.
 *
 * Env: BENCH_SECONDS (measured seconds at max load, default 8, split over the rounds; each fixed
 * rate runs half as long), BENCH_RATES (default 0.1,0.25,0.5), BENCH_ROUNDS (default 4), BENCH_WARMUP_SECONDS (default 2; later rounds warm
 * up for 0.5 s), BENCH_CONNECTIONS (default 32), BENCH_KEEP=1 keeps the temp dir.
 * The CPU columns (from /proc) say where the time goes. wrk is not used: the open loop needs a
 * fixed rate (wrk2) and the audit check needs every request answered, not cut at the deadline.
 */
import { Database } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { LoadConfig, LoadResult } from "./load.ts";
import { cpuMs, killAll, peakRssMiB, resetPeakRss, runChild, startServer, stopGracefully, type Server } from "./procs.ts";
import {
  cpuTable,
  fixedRateTable,
  fmt,
  maxLoadTable,
  problems,
  type FixedRate,
  type Measurement,
  type ScenarioFacts,
  type Target,
} from "./report.ts";
import { scenarios, type Scenario } from "./scenarios.ts";
import { benchSummaries } from "./summary.ts";

function envNumber(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) throw new Error(`${name} must be a number from ${min} to ${max}`);
  return value;
}

const seconds = envNumber("BENCH_SECONDS", 8, 1, 120);
const warmupSeconds = envNumber("BENCH_WARMUP_SECONDS", 2, 0, 30);
const connections = Math.round(envNumber("BENCH_CONNECTIONS", 32, 1, 256));
const rounds = Math.round(envNumber("BENCH_ROUNDS", 4, 1, 20));
const laterRoundWarmupSeconds = Math.min(0.5, warmupSeconds);
/** Fixed rates alternate bare and agent-attr in (up to) two rounds. */
const halfRounds = Math.min(rounds, 2);
/** BENCH_RATES: the fixed rates, as shares of the bare forwarder's max req/s (DESIGN §8: 10%, 25%, 50%). */
const rateShares = (process.env.BENCH_RATES ?? "0.1,0.25,0.5").split(",").map((share) => {
  const value = Number(share.trim());
  if (!Number.isFinite(value) || value <= 0 || value > 1)
    throw new Error("BENCH_RATES must list shares above 0 and at most 1, e.g. 0.1,0.25,0.5");
  return value;
});
const summaryRecords = Math.round(envNumber("BENCH_SUMMARY_RECORDS", 1_000_000, 0, 100_000_000));
const halfSeconds = Math.max(1, Math.ceil(seconds / 2));
const halfWarmupSeconds = Math.min(1, warmupSeconds);
/** Open loop: the most requests in flight before the generator counts the server as behind. */
const maxInFlight = connections * 4;

/** BENCH_SCENARIOS="openai chat,openai chat stream" runs only those (for quick comparisons). */
const only = process.env.BENCH_SCENARIOS?.split(",").map((name) => name.trim());
const selected = only ? scenarios.filter((scenario) => only.includes(scenario.name)) : scenarios;
if (selected.length === 0) throw new Error(`BENCH_SCENARIOS matched none of: ${scenarios.map((s) => s.name).join(", ")}`);

const root = resolve(import.meta.dir, "..");
const bun = process.execPath;
const dir = mkdtempSync(join(tmpdir(), "agent-attr-bench-"));
const logDb = join(dir, "audit.db");
const startedAt = performance.now();

/** Progress goes to stderr, stamped with the seconds since the start. */
const progress = (message: string) => console.error(`[${fmt((performance.now() - startedAt) / 1000, 1).padStart(5)} s] ${message}`);

async function startServers(): Promise<Record<Target, Server>> {
  const printedURL = (line: string) => (/^http:\/\/127\.0\.0\.1:\d+$/.test(line) ? line : null);
  const upstream = await startServer("bench upstream", [bun, join(import.meta.dir, "upstream.ts")], { urlOf: printedURL });
  const bare = await startServer("bare forwarder", [bun, join(import.meta.dir, "bare-forwarder.ts"), upstream.url], { urlOf: printedURL });
  const agentAttr = await startServer(
    "agent-attr",
    [bun, join(root, "src/cli/main.ts"), "proxy", "start", "--port", "0", "--log-db", logDb],
    {
      cwd: dir,
      env: agentAttrEnv(upstream),
      urlOf: listeningURL,
    },
  );
  const noAudit = await startServer(
    "no audit",
    [
      bun,
      join(root, "src/cli/main.ts"),
      "proxy",
      "start",
      "--port",
      "0",
      "--log-db",
      join(dir, "empty.db"),
      "--config",
      join(import.meta.dir, "no-audit.config.ts"),
    ],
    { cwd: dir, env: agentAttrEnv(upstream), urlOf: listeningURL },
  );
  const servers: Partial<Record<Target, Server>> = { direct: upstream, bare, "agent-attr": agentAttr, "no audit": noAudit };
  if (withOtel) {
    otlpSink = await startServer("otlp sink", [bun, join(import.meta.dir, "otlp-sink.ts")], { urlOf: printedURL });
    servers.otel = await startServer(
      "otel",
      [bun, join(root, "src/cli/main.ts"), "proxy", "start", "--port", "0", "--log-db", join(dir, "otel.db")],
      { cwd: dir, env: { ...agentAttrEnv(upstream), OTEL_EXPORTER_OTLP_ENDPOINT: otlpSink.url }, urlOf: listeningURL },
    );
  }
  return servers as Record<Target, Server>;
}

/** BENCH_OTEL=1: the "otel" target and its OTLP endpoint. */
const withOtel = process.env.BENCH_OTEL === "1";
let otlpSink: Server | null = null;

function agentAttrEnv(upstream: Server): Record<string, string | undefined> {
  return {
    ...process.env,
    AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1`,
    AGENT_ATTR_ANTHROPIC_BASE_URL: upstream.url,
    AGENT_ATTR_CONFIG: undefined,
    AGENT_ATTR_LOG_DB: undefined,
    AGENT_ATTR_ADMIN_TOKEN: undefined,
    NO_COLOR: "1",
  };
}

const listeningURL = (line: string) => (line.includes("listening") ? (/(http:\/\/\S+)/.exec(line)?.[1] ?? null) : null);

async function upstreamStats(upstream: Server, reset: boolean): Promise<{ requests: number; connections: number }> {
  const response = await fetch(`${upstream.url}/__bench/${reset ? "reset" : "stats"}`, { method: reset ? "POST" : "GET" });
  return reset ? { requests: 0, connections: 0 } : ((await response.json()) as { requests: number; connections: number });
}

/** One request per scenario and target, before any load: all must answer 2xx with the same body. */
async function sanityCheck(targets: Record<Target, Server>): Promise<number> {
  let agentAttrCalls = 0;
  for (const scenario of selected) {
    const lengths: string[] = [];
    for (const [target, server] of Object.entries(targets)) {
      const response = await fetch(server.url + scenario.path, { method: "POST", headers: scenario.headers, body: scenario.body });
      const body = await response.text();
      if (target === "agent-attr") agentAttrCalls++;
      if (!response.ok) throw new Error(`sanity check: ${target} answered ${scenario.name} with ${response.status}: ${body.slice(0, 300)}`);
      if (target === "agent-attr" && !response.headers.get("x-audit-record-id")) {
        throw new Error("sanity check: agent-attr's answer has no x-audit-record-id header");
      }
      lengths.push(`${target}=${body.length}`);
    }
    if (new Set(lengths.map((l) => l.split("=")[1])).size !== 1) {
      throw new Error(`sanity check: ${scenario.name} bodies differ: ${lengths.join(" ")}`);
    }
  }
  return agentAttrCalls;
}

/** Stops the run when a server died: what it printed on stderr is the finding. */
function assertAlive(servers: Server[]): void {
  for (const server of servers) {
    const { exitCode, signalCode } = server.proc;
    if (exitCode !== null || signalCode !== null) {
      throw new Error(`${server.name} died (exit code ${exitCode}, signal ${signalCode}); its stderr:\n${server.stderr}`);
    }
  }
}

async function load(config: LoadConfig): Promise<LoadResult> {
  const timeoutMs = (config.warmupSeconds + config.seconds + 60) * 1000;
  const out = await runChild([bun, join(import.meta.dir, "load.ts"), JSON.stringify(config)], timeoutMs);
  const last = out.trim().split("\n").at(-1);
  if (!last) throw new Error("the load generator printed nothing");
  return JSON.parse(last) as LoadResult;
}

async function measure(
  scenario: Scenario,
  target: Target,
  targets: Record<Target, Server>,
  options: { rate?: number; warmup: number; seconds: number },
): Promise<Measurement> {
  const server = targets[target];
  const upstream = targets.direct;
  assertAlive([server, upstream]);
  await upstreamStats(upstream, true);
  const result = await load({
    url: server.url + scenario.path,
    headers: scenario.headers,
    body: scenario.body,
    connections: options.rate === undefined ? connections : maxInFlight,
    warmupSeconds: options.warmup,
    seconds: options.seconds,
    rate: options.rate,
    vary: scenario.vary,
    watch: target === "direct" ? { upstream: upstream.proc.pid } : { upstream: upstream.proc.pid, proxy: server.proc.pid },
  });
  const stats = await upstreamStats(upstream, false);
  const failures = result.errors + result.non2xx > 0 ? `  errors ${result.errors}, non-2xx ${result.non2xx}` : "";
  progress(
    `${(options.rate === undefined ? "max" : `${options.rate}/s`).padEnd(8)} ${scenario.name.padEnd(26)} ${target.padEnd(10)} ` +
      `${fmt(result.rps, 0).padStart(6)} req/s  p50 ${fmt(result.p50)} ms  p99 ${fmt(result.p99)} ms${failures}`,
  );
  return { scenario: scenario.name, target, result, upstreamConnections: stats.connections };
}

/**
 * One measurement from interleaved rounds: requests, seconds, CPU and failures add up; p50 and p99
 * are the median of the rounds' (the load processes keep no samples).
 */
function combineRounds(parts: Measurement[]): Measurement {
  const results = parts.map((part) => part.result);
  const sum = (of: (r: LoadResult) => number) => results.reduce((total, r) => total + of(r), 0);
  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = sorted.length / 2;
    return sorted.length === 0 ? 0 : Number.isInteger(mid) ? (sorted[mid - 1]! + sorted[mid]!) / 2 : sorted[Math.floor(mid)]!;
  };
  const cpuMs: Record<string, number | null> = {};
  for (const label of Object.keys(results[0]?.cpuMs ?? {})) {
    cpuMs[label] = results.every((r) => typeof r.cpuMs[label] === "number") ? sum((r) => r.cpuMs[label]!) : null;
  }
  const statuses: Record<string, number> = {};
  for (const r of results) for (const [status, n] of Object.entries(r.statuses)) statuses[status] = (statuses[status] ?? 0) + n;
  const busy = results.map((r) => r.machineBusy).filter((b): b is number => b !== null);
  const measured = sum((r) => r.measured);
  const measuredSeconds = sum((r) => r.seconds);
  return {
    ...parts[0]!,
    upstreamConnections: Math.max(...parts.map((part) => part.upstreamConnections)),
    result: {
      measured,
      seconds: measuredSeconds,
      rps: measuredSeconds > 0 ? measured / measuredSeconds : 0,
      p50: median(results.map((r) => r.p50)),
      p99: median(results.map((r) => r.p99)),
      max: Math.max(...results.map((r) => r.max)),
      responses: sum((r) => r.responses),
      non2xx: sum((r) => r.non2xx),
      errors: sum((r) => r.errors),
      bodyMismatch: sum((r) => r.bodyMismatch),
      missed: sum((r) => r.missed),
      statuses,
      samples: [...new Set(results.flatMap((r) => r.samples))].slice(0, 5),
      cpuMs,
      machineBusy: busy.length ? busy.reduce((a, b) => a + b, 0) / busy.length : null,
    },
  };
}

/** Counts the audit rows (after agent-attr flushed and exited) against the requests it answered. */
function verifyAudit(answered: number, transportErrors: number): boolean {
  const db = new Database(logDb, { readonly: true });
  try {
    const count = (sql: string) => db.query<{ n: number }, []>(sql).get()?.n ?? 0;
    const rows = count("SELECT count(*) AS n FROM audit_records");
    const attributed = count("SELECT count(*) AS n FROM audit_records WHERE agent_id LIKE 'bench-agent%' AND user_id LIKE 'bench-user%'");
    const outcomes = db
      .query<{ outcome: string | null; n: number }, []>("SELECT outcome, count(*) AS n FROM audit_records GROUP BY outcome ORDER BY n DESC")
      .all()
      .map((o) => `${o.outcome ?? "NULL (in flight)"}=${o.n}`);
    const errors = transportErrors ? ` (+${transportErrors} transport errors)` : "";
    console.log(`audit rows: ${rows}; requests agent-attr answered: ${answered}${errors} -> ${rows === answered ? "match" : "MISMATCH"}`);
    console.log(`  outcomes: ${outcomes.join(", ")}; attributed to the bench's agents and users: ${attributed}`);
    return rows === answered;
  } finally {
    db.close();
  }
}

async function main(): Promise<boolean> {
  const targets = await startServers();
  const agentAttr = targets["agent-attr"];
  progress(`upstream ${targets.direct.url}, bare forwarder ${targets.bare.url}, agent-attr ${agentAttr.url}`);
  progress(
    `${connections} connections, ${rounds} interleaved rounds of ${fmt(seconds / rounds, 1)} s per target at max load ` +
      `(warmup ${warmupSeconds} s, then ${laterRoundWarmupSeconds} s), ${halfWarmupSeconds} s + ` +
      `${halfSeconds} s per fixed-rate run (${rateShares.map((r) => `${r * 100}%`).join(", ")} of bare max); ${navigator.hardwareConcurrency} CPU cores shared by all processes`,
  );
  const sanityCalls = await sanityCheck(targets);

  const max: Measurement[] = [];
  const fixed: FixedRate[] = [];
  const facts: ScenarioFacts[] = [];
  const order: Target[] = ["direct", "bare", "agent-attr", "no audit", ...(withOtel ? (["otel"] as const) : [])];
  for (const scenario of selected) {
    const rssResettable = resetPeakRss(agentAttr.proc.pid);
    const runs = new Map<Target, Measurement[]>(order.map((target) => [target, []]));
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < order.length; i++) {
        const target = order[(i + round) % order.length]!;
        const warmup = round === 0 ? warmupSeconds : laterRoundWarmupSeconds;
        runs.get(target)!.push(await measure(scenario, target, targets, { warmup, seconds: seconds / rounds }));
      }
    }
    for (const target of order) max.push(combineRounds(runs.get(target)!));
    const bareMax = max.find((m) => m.scenario === scenario.name && m.target === "bare")?.result.rps ?? 0;
    for (const share of rateShares) {
      const rate = Math.max(1, Math.round(bareMax * share));
      // Interleaved too (bare, agent-attr, agent-attr, bare): a slow spell of the machine then lands on both.
      const options = { rate, warmup: halfWarmupSeconds, seconds: halfSeconds / halfRounds };
      const at: Record<"bare" | "agent-attr", Measurement[]> = { bare: [], "agent-attr": [] };
      for (let round = 0; round < halfRounds; round++) {
        for (const target of round % 2 === 0 ? (["bare", "agent-attr"] as const) : (["agent-attr", "bare"] as const)) {
          at[target].push(await measure(scenario, target, targets, options));
        }
      }
      fixed.push({ scenario: scenario.name, share, rate, bare: combineRounds(at.bare), agentAttr: combineRounds(at["agent-attr"]) });
    }
    facts.push({
      scenario: scenario.name,
      cpuTarget: scenario.cpuTarget,
      peakRssMiB: rssResettable ? peakRssMiB(agentAttr.proc.pid) : null,
    });
  }

  if (otlpSink) {
    const sink = (await (await fetch(`${otlpSink.url}/__bench/stats`)).json()) as { requests: number; bytes: number };
    const otelCalls = max.filter((m) => m.target === "otel").reduce((sum, m) => sum + m.result.responses, 0);
    progress(`otel: ${otelCalls} calls answered; the OTLP endpoint got ${sink.requests} export(s), ${fmt(sink.bytes / 1e6, 1)} MB so far`);
  }
  const peakRss = peakRssMiB(agentAttr.proc.pid);
  const cpuTotal = cpuMs(agentAttr.proc.pid);
  progress("stopping agent-attr (SIGTERM)");
  const exitCode = await stopGracefully(agentAttr, 45_000);

  const cores = navigator.hardwareConcurrency;
  console.log(`\n${cpuTable(max, facts)}`);
  console.log(`\n${maxLoadTable(max, { connections, seconds, warmupSeconds, cores, rounds })}`);
  console.log(`\n${fixedRateTable(fixed, max, { seconds: halfSeconds, maxInFlight, rounds: halfRounds })}\n`);
  console.log(
    `agent-attr peak RSS (VmHWM): ${peakRss === null ? "not measurable" : `${fmt(peakRss, 1)} MiB`}; ` +
      `CPU time over the run: ${cpuTotal === null ? "-" : `${fmt(cpuTotal / 1000, 1)} s`}; ` +
      `exit after SIGTERM: ${exitCode === null ? "none within 45 s (killed)" : `code ${exitCode}`}`,
  );
  const all = [...max, ...fixed.flatMap((h) => [h.bare, h.agentAttr])];
  const ofAgentAttr = all.filter((m) => m.target === "agent-attr").map((m) => m.result);
  const answered = sanityCalls + ofAgentAttr.reduce((sum, r) => sum + r.responses, 0);
  let ok =
    verifyAudit(
      answered,
      ofAgentAttr.reduce((sum, r) => sum + r.errors, 0),
    ) && exitCode === 0;

  const issues = all.flatMap(problems);
  if (issues.length) {
    ok = false;
    console.log(`\nProblems:\n${issues.join("\n")}`);
  }
  for (const server of Object.values(targets)) {
    const stderr = server.stderr.toString().trim();
    if (stderr) console.log(`\n${server.name} stderr:\n${stderr}`);
  }
  if (summaryRecords > 0) console.log(`\n${await benchSummaries(summaryRecords, progress)}`);
  return ok;
}

/** Kills every child and removes the temp dir; safe to call more than once. */
function cleanUp(): void {
  killAll();
  if (process.env.BENCH_KEEP === "1") console.error(`kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}

process.on("exit", killAll);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    cleanUp();
    process.exit(130);
  });
}

try {
  const ok = await main();
  console.log(ok ? "\nbench: ok" : "\nbench: FAILED");
  process.exitCode = ok ? 0 : 1;
} catch (error) {
  console.error(`bench: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  cleanUp();
}
