/** The printed results: the CPU-per-call headline, the max-load table and the fixed-rate table. */
import type { LoadResult } from "./load.ts";
import { threadKinds } from "./procs.ts";

export type Target = "direct" | "bare" | "agent-attr" | "no audit" | "otel";

export interface Measurement {
  scenario: string;
  target: Target;
  result: LoadResult;
  /** Distinct upstream sockets used during the run (warmup included). */
  upstreamConnections: number;
}

export const fmt = (n: number, digits = 2) => n.toFixed(digits);

const perRequest = (ms: number | null | undefined, requests: number) =>
  ms === null || ms === undefined || requests === 0 ? "-" : fmt((ms * 1000) / requests, 0);

/** Left-aligned first two columns, right-aligned numbers. */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("  ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

const maxRps = (max: Measurement[], scenario: string, target: Target) =>
  max.find((m) => m.scenario === scenario && m.target === target)?.result.rps ?? 0;

export function maxLoadTable(
  max: Measurement[],
  info: { connections: number; seconds: number; warmupSeconds: number; cores: number; rounds: number },
): string {
  const rows = max.map((m) => {
    const r = m.result;
    const bare = maxRps(max, m.scenario, "bare");
    return [
      m.scenario,
      m.target,
      fmt(r.rps, 0),
      fmt(r.p50),
      fmt(r.p99),
      bare > 0 ? fmt(r.rps / bare) : "-",
      perRequest(r.cpuMs.proxy, r.measured),
      perRequest(r.cpuMs.upstream, r.measured),
      perRequest(r.cpuMs.load, r.measured),
      r.machineBusy === null ? "-" : `${fmt(r.machineBusy, 0)}%`,
      String(m.upstreamConnections),
      String(r.errors + r.non2xx + r.bodyMismatch),
    ];
  });
  const header = [
    "scenario",
    "target",
    "req/s",
    "p50 ms",
    "p99 ms",
    "x bare",
    "proxy µs/req",
    "upstr µs/req",
    "load µs/req",
    "cpu busy",
    "conns",
    "errors",
  ];
  return [
    `Max load: closed loop, ${info.connections} keep-alive connections, ${info.seconds} s measured per target in ${info.rounds} ` +
      `interleaved rounds (p50/p99: median of the rounds)`,
    `(x bare: req/s relative to the bare forwarder; µs/req: CPU time of the proxy, upstream and load-generator processes per`,
    ` request; cpu busy: share of all ${info.cores} cores in use; conns: distinct upstream sockets seen in the run;`,
    ` no audit: agent-attr's pipeline with an audit sink that keeps nothing — a reference for what the durable audit costs;`,
    ` otel (BENCH_OTEL=1): agent-attr with the otel() plugin exporting a span per call to a local OTLP endpoint)`,
    "",
    table(header, rows),
  ].join("\n");
}

/** One scenario's open-loop runs at a fixed rate, bare forwarder and agent-attr side by side. */
export interface FixedRate {
  scenario: string;
  /** The rate as a share of the bare forwarder's max req/s. */
  share: number;
  rate: number;
  bare: Measurement;
  agentAttr: Measurement;
}

/** What one scenario measured of agent-attr's memory, and its CPU target (DESIGN §8). */
export interface ScenarioFacts {
  scenario: string;
  cpuTarget: number;
  /** Peak RSS of agent-attr over the scenario's runs (VmHWM reset before them), MiB. */
  peakRssMiB: number | null;
}

/** CPU µs per call of the proxy process (`proxy`), or of its main thread alone (`proxy:main`). */
const cpuPerCall = (max: Measurement[], scenario: string, target: Target, of = "proxy"): number | null => {
  const r = max.find((m) => m.scenario === scenario && m.target === target)?.result;
  const ms = r?.cpuMs[of];
  return r && typeof ms === "number" && r.measured > 0 ? (ms * 1000) / r.measured : null;
};

/**
 * The headline: CPU time of the proxy process (all its threads) per call, agent-attr against the
 * bare forwarder at max load in the same run, with the target and whether it is met.
 */
export function cpuTable(max: Measurement[], facts: ScenarioFacts[]): string {
  const rows = facts.map((f) => {
    const bare = cpuPerCall(max, f.scenario, "bare");
    const aa = cpuPerCall(max, f.scenario, "agent-attr");
    const none = cpuPerCall(max, f.scenario, "no audit");
    const ratio = bare && aa ? aa / bare : null;
    const split = (target: Target) => {
      const parts = threadKinds.map((kind) => cpuPerCall(max, f.scenario, target, `proxy:${kind}`));
      return parts.some((part) => part === null) ? "-" : parts.map((part) => fmt(part!, 0)).join(" / ");
    };
    return [
      f.scenario,
      bare === null ? "-" : fmt(bare, 0),
      aa === null ? "-" : fmt(aa, 0),
      ratio === null ? "-" : `${fmt(ratio)}x`,
      `<= ${fmt(f.cpuTarget, 1)}x`,
      ratio === null ? "-" : ratio <= f.cpuTarget ? "met" : "NOT met",
      split("bare"),
      split("agent-attr"),
      split("no audit"),
      none === null ? "-" : fmt(none, 0),
      bare && none ? `${fmt(none / bare)}x` : "-",
      f.peakRssMiB === null ? "-" : fmt(f.peakRssMiB, 0),
    ];
  });
  const header = [
    "scenario",
    "",
    "bare µs",
    "aa µs",
    "aa/bare",
    "target",
    "met?",
    "threads: bare",
    "aa",
    "no audit",
    "no audit µs",
    "no audit/bare",
    "aa peak RSS MiB",
  ];
  // The first two columns of table() are left-aligned; the scenario takes both here.
  return [
    "CPU per call (the headline, DESIGN §8): CPU time of the proxy process, all threads, per answered call at max load",
    "(aa = agent-attr with its durable audit; no audit: the same pipeline with a store that keeps nothing, a reference;",
    " threads: each one's µs by thread — main (requests) / http (Bun's HTTP client thread, which runs every fetch) /",
    " workers (agent-attr's audit writer and reader) / runtime (JIT, GC, thread pools);",
    " peak RSS: agent-attr's VmHWM over the scenario's runs)",
    "",
    table(
      header,
      rows.map((r) => [r[0]!, "", ...r.slice(1)]),
    ),
  ].join("\n");
}

export function fixedRateTable(
  runs: FixedRate[],
  max: Measurement[],
  info: { seconds: number; maxInFlight: number; rounds: number },
): string {
  const rows = runs.map((h) => {
    const aaMax = maxRps(max, h.scenario, "agent-attr");
    const [b, a] = [h.bare.result, h.agentAttr.result];
    const both = b.measured > 0 && a.measured > 0;
    return [
      h.scenario,
      `${fmt(100 * h.share, 0)}%`,
      String(h.rate),
      aaMax > 0 ? `${fmt((100 * h.rate) / aaMax, 0)}%` : "-",
      fmt(b.p50),
      fmt(a.p50),
      both ? fmt(a.p50 - b.p50) : "-",
      fmt(b.p99),
      fmt(a.p99),
      both ? fmt(a.p99 - b.p99) : "-",
      perRequest(b.cpuMs.proxy, b.measured),
      perRequest(a.cpuMs.proxy, a.measured),
    ];
  });
  const header = [
    "scenario",
    "of bare max",
    "rate/s",
    "aa load",
    "bare p50",
    "aa p50",
    "added p50 ms",
    "bare p99",
    "aa p99",
    "added p99 ms",
    "bare µs/req",
    "aa µs/req",
  ];
  const behind = runs.flatMap((h) =>
    [h.bare, h.agentAttr]
      .filter((m) => m.result.missed > 0)
      .map(
        (m) =>
          `  ${m.scenario} / ${m.target} at ${h.rate}/s: fell behind, ${info.maxInFlight} in flight; ${m.result.missed} scheduled requests never started`,
      ),
  );
  return [
    `Fixed rates: open loop at shares of the bare forwarder's max req/s, ${info.seconds} s measured per rate and target in ${info.rounds} ` +
      "interleaved round(s) (latency from the scheduled start; p50/p99: median of the rounds; target: added p99 <= 1 ms at 25%)",
    "(aa load: the rate as a share of agent-attr's own max: near or over 100%, its p99 is queueing)",
    "",
    table(header, rows),
    ...behind,
  ].join("\n");
}

/** What makes a measurement invalid: failed requests or wrong answers, with sample messages. */
export function problems(m: Measurement): string[] {
  const r = m.result;
  const out: string[] = [];
  if (r.errors) out.push(`${r.errors} transport errors`);
  if (r.non2xx) out.push(`${r.non2xx} non-2xx (${JSON.stringify(r.statuses)})`);
  if (r.bodyMismatch) out.push(`${r.bodyMismatch} bodies of unexpected length`);
  return out.length ? [`${m.scenario} / ${m.target}: ${out.join(", ")}`, ...r.samples.map((s) => `    ${s}`)] : [];
}
