/**
 * Prometheus metrics for operators (`GET /metrics`, text format 0.0.4): calls, tokens and cost by
 * provider and model, latency histograms (duration, time to first byte), refusals by tier and
 * reason, calls in flight, the audit writer's backlog, and what plugins add (PluginMetrics).
 * Counted when a call's final record is handed to the store, so they agree with the audit trail.
 *
 * Label sets stay bounded: providers come from the config, outcomes and refusal reasons from fixed
 * lists, and past `maxModels` distinct models every further model is counted as `other`. Counting a
 * call is a few map lookups and additions into arrays made when a label set is first seen.
 */
import type { PluginCounter, PluginMetrics } from "../plugin.ts";
import type { AuditRecord } from "../trail/record.ts";

export interface MetricsOptions {
  /** Distinct model labels before further models are counted as `other` (default 50). */
  maxModels?: number;
  /** Final records handed to the primary store and not yet committed to the chain. */
  backlog?: () => number | undefined;
}

/** Upper bounds (seconds) of the duration histogram's buckets: LLM calls last up to minutes. */
export const durationBuckets = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300] as const;
/** Upper bounds (seconds) of the time-to-first-byte histogram's buckets. */
export const ttfbBuckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;

class Histogram {
  /** Per bucket (not cumulative), the last one for +Inf. */
  private readonly counts: Float64Array;
  private sum = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(seconds: number): void {
    let i = 0;
    while (i < this.bounds.length && seconds > this.bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
  }

  render(name: string, labels: string, into: string[]): void {
    let cumulative = 0;
    for (const [i, bound] of this.bounds.entries()) {
      cumulative += this.counts[i]!;
      into.push(`${name}_bucket{${labels},le="${bound}"} ${cumulative}`);
    }
    cumulative += this.counts[this.bounds.length]!;
    into.push(
      `${name}_bucket{${labels},le="+Inf"} ${cumulative}`,
      `${name}_sum{${labels}} ${this.sum}`,
      `${name}_count{${labels}} ${cumulative}`,
    );
  }
}

/** Counters of one provider and model; its labels are escaped once. */
interface ModelCounters {
  labels: string;
  calls: Map<string, number>;
  input: number;
  output: number;
  costNano: number;
  duration: Histogram;
  ttfb: Histogram;
}

interface PluginSeries {
  name: string;
  help: string;
  type: "counter" | "gauge";
  read: () => number;
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

export class Metrics {
  /** provider → model label → counters. */
  private readonly providers = new Map<string, Map<string, ModelCounters>>();
  /** Models given a label of their own (at most `maxModels`). */
  private readonly models = new Set<string>();
  private readonly maxModels: number;
  /** tier → reason → refused calls. */
  private readonly refusals = new Map<string, Map<string, number>>();
  private readonly backlog: () => number | undefined;
  private readonly pluginSeries: PluginSeries[] = [];
  private forwarded = 0;

  constructor(options: MetricsOptions = {}) {
    this.maxModels = options.maxModels ?? 50;
    this.backlog = options.backlog ?? (() => undefined);
  }

  /** A call's in-flight record is durable and the call goes upstream. */
  started(): void {
    this.forwarded++;
  }

  /** Calls forwarded upstream whose response has not ended yet. */
  get inflight(): number {
    return this.forwarded;
  }

  /** Counts one final record (a call refused before forwarding was never `started`); `tier` labels a refusal. */
  observe(record: AuditRecord, tier: string | null = null): void {
    // A call no provider took may name any model: it is not given a label of its own.
    const model = record.provider === null ? "none" : (record.model ?? record.response_model ?? "none");
    const counters = this.countersOf(record.provider ?? "none", model);
    const outcome = record.outcome ?? "unknown";
    counters.calls.set(outcome, (counters.calls.get(outcome) ?? 0) + 1);
    counters.input += record.input_tokens ?? 0;
    counters.output += record.output_tokens ?? 0;
    counters.costNano += record.cost_nano_usd ?? 0;
    if (outcome === "rejected") {
      this.refused(tier ?? "none", record.error_type ?? "unknown");
      return;
    }
    this.forwarded--;
    if (record.duration_ms !== null) counters.duration.observe(record.duration_ms / 1000);
    if (record.ttfb_ms !== null) counters.ttfb.observe(record.ttfb_ms / 1000);
  }

  /** Where plugins register their own series (PluginSetupContext.metrics). */
  forPlugins(): PluginMetrics {
    const register = (name: string, help: string, type: PluginSeries["type"], read: () => number) => {
      if (!metricName.test(name)) throw new Error(`'${name}' is not a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)`);
      if (type === "counter" && !name.endsWith("_total")) throw new Error(`the counter '${name}' must end in _total`);
      if (name.startsWith("agent_attr_") && builtIn.has(name.replace(/_(bucket|sum|count)$/, "")))
        throw new Error(`'${name}' is one of the proxy's own metrics`);
      if (this.pluginSeries.some((series) => series.name === name)) throw new Error(`the metric '${name}' is already registered`);
      this.pluginSeries.push({ name, help: help.replace(/\n/g, " "), type, read });
    };
    return {
      counter(name, help): PluginCounter {
        let value = 0;
        register(name, help, "counter", () => value);
        return {
          add(n = 1) {
            if (Number.isFinite(n) && n > 0) value += n;
          },
        };
      },
      gauge(name, help, read) {
        register(name, help, "gauge", read);
      },
    };
  }

  render(): string {
    const all = [...this.providers.values()].flatMap((models) => [...models.values()]);
    const lines = [
      "# HELP agent_attr_calls_total Proxied calls by provider, model (requested) and outcome: one per audit record.",
      "# TYPE agent_attr_calls_total counter",
      ...all.flatMap((m) => [...m.calls].map(([outcome, n]) => `agent_attr_calls_total{${m.labels},outcome="${outcome}"} ${n}`)),
      "# HELP agent_attr_tokens_total Tokens reported by the upstreams (or estimated), by provider, model and kind.",
      "# TYPE agent_attr_tokens_total counter",
      ...all.flatMap((m) => [
        `agent_attr_tokens_total{${m.labels},kind="input"} ${m.input}`,
        `agent_attr_tokens_total{${m.labels},kind="output"} ${m.output}`,
      ]),
      "# HELP agent_attr_cost_usd_total Cost of the priced calls in US dollars, by provider and model (unpriced calls add nothing).",
      "# TYPE agent_attr_cost_usd_total counter",
      ...all.map((m) => `agent_attr_cost_usd_total{${m.labels}} ${m.costNano / 1e9}`),
      "# HELP agent_attr_call_duration_seconds How long forwarded calls took, from the request to the response's end.",
      "# TYPE agent_attr_call_duration_seconds histogram",
    ];
    for (const m of all) m.duration.render("agent_attr_call_duration_seconds", m.labels, lines);
    lines.push(
      "# HELP agent_attr_time_to_first_byte_seconds Time from the request to the upstream answer's first byte, for forwarded calls that got one.",
      "# TYPE agent_attr_time_to_first_byte_seconds histogram",
    );
    for (const m of all) m.ttfb.render("agent_attr_time_to_first_byte_seconds", m.labels, lines);
    lines.push(
      "# HELP agent_attr_refusals_total Calls the proxy refused before forwarding, by tier (none: no tier applied) and reason (the error code).",
      "# TYPE agent_attr_refusals_total counter",
    );
    for (const [tier, reasons] of this.refusals) {
      for (const [reason, n] of reasons)
        lines.push(`agent_attr_refusals_total{tier="${labelValue(tier)}",reason="${labelValue(reason)}"} ${n}`);
    }
    lines.push(
      "# HELP agent_attr_inflight_calls Calls forwarded upstream whose response has not ended yet.",
      "# TYPE agent_attr_inflight_calls gauge",
      `agent_attr_inflight_calls ${this.forwarded}`,
      "# HELP agent_attr_audit_backlog_records Final records handed to the audit store and not yet committed to the chain.",
      "# TYPE agent_attr_audit_backlog_records gauge",
    );
    const backlog = this.backlog();
    if (backlog !== undefined) lines.push(`agent_attr_audit_backlog_records ${backlog}`);
    for (const series of this.pluginSeries) {
      let value: number;
      try {
        value = series.read();
      } catch {
        continue;
      }
      lines.push(`# HELP ${series.name} ${series.help}`, `# TYPE ${series.name} ${series.type}`, `${series.name} ${value}`);
    }
    return `${lines.join("\n")}\n`;
  }

  private countersOf(provider: string, model: string): ModelCounters {
    let models = this.providers.get(provider);
    if (!models) this.providers.set(provider, (models = new Map()));
    const known = models.get(model);
    if (known) return known;
    if (model !== "none" && !this.models.has(model)) {
      if (this.models.size >= this.maxModels) model = "other";
      else this.models.add(model);
    }
    let counters = models.get(model);
    if (!counters) {
      counters = {
        labels: `provider="${labelValue(provider)}",model="${labelValue(model)}"`,
        calls: new Map(),
        input: 0,
        output: 0,
        costNano: 0,
        duration: new Histogram(durationBuckets),
        ttfb: new Histogram(ttfbBuckets),
      };
      models.set(model, counters);
    }
    return counters;
  }

  private refused(tier: string, reason: string): void {
    let reasons = this.refusals.get(tier);
    if (!reasons) this.refusals.set(tier, (reasons = new Map()));
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  }
}

/** The proxy's own metric names (a plugin may not register one). */
const builtIn = new Set([
  "agent_attr_calls_total",
  "agent_attr_tokens_total",
  "agent_attr_cost_usd_total",
  "agent_attr_call_duration_seconds",
  "agent_attr_time_to_first_byte_seconds",
  "agent_attr_refusals_total",
  "agent_attr_inflight_calls",
  "agent_attr_audit_backlog_records",
]);

/** A Prometheus label value: backslash, quote and newline escaped. */
function labelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
