/**
 * Prometheus metrics for operators (`GET /metrics`, text format 0.0.4): calls by provider and
 * outcome, their tokens, calls in flight. Counted when a call's final record is written, so they
 * agree with the audit trail.
 */
import type { AuditRecord } from "../trail/record.ts";

/** Counters of one provider; its label is escaped once. */
interface ProviderCounters {
  label: string;
  calls: Map<string, number>;
  input: number;
  output: number;
  costNano: number;
}

export class Metrics {
  private readonly providers = new Map<string, ProviderCounters>();
  private forwarded = 0;

  /** A call's in-flight record is durable and the call goes upstream. */
  started(): void {
    this.forwarded++;
  }

  /** Calls forwarded upstream whose response has not ended yet. */
  get inflight(): number {
    return this.forwarded;
  }

  /** Counts one final record (a call refused before forwarding was never `started`). */
  observe(record: AuditRecord): void {
    if (record.outcome !== "rejected") this.forwarded--;
    const name = record.provider ?? "none";
    let counters = this.providers.get(name);
    if (!counters) {
      counters = { label: `provider="${labelValue(name)}"`, calls: new Map(), input: 0, output: 0, costNano: 0 };
      this.providers.set(name, counters);
    }
    const outcome = record.outcome ?? "unknown";
    counters.calls.set(outcome, (counters.calls.get(outcome) ?? 0) + 1);
    counters.input += record.input_tokens ?? 0;
    counters.output += record.output_tokens ?? 0;
    counters.costNano += record.cost_nano_usd ?? 0;
  }

  render(): string {
    const providers = [...this.providers.values()];
    const lines = [
      "# HELP agent_attr_calls_total Proxied calls by provider and outcome (one per audit record).",
      "# TYPE agent_attr_calls_total counter",
      ...providers.flatMap((p) => [...p.calls].map(([outcome, n]) => `agent_attr_calls_total{${p.label},outcome="${outcome}"} ${n}`)),
      "# HELP agent_attr_tokens_total Tokens reported by the upstreams (or estimated), by provider and kind.",
      "# TYPE agent_attr_tokens_total counter",
      ...providers.flatMap((p) => [
        `agent_attr_tokens_total{${p.label},kind="input"} ${p.input}`,
        `agent_attr_tokens_total{${p.label},kind="output"} ${p.output}`,
      ]),
      "# HELP agent_attr_cost_usd_total Cost of the priced calls in US dollars, by provider (unpriced calls add nothing).",
      "# TYPE agent_attr_cost_usd_total counter",
      ...providers.map((p) => `agent_attr_cost_usd_total{${p.label}} ${p.costNano / 1e9}`),
      "# HELP agent_attr_inflight_calls Calls forwarded upstream whose response has not ended yet.",
      "# TYPE agent_attr_inflight_calls gauge",
      `agent_attr_inflight_calls ${this.forwarded}`,
    ];
    return `${lines.join("\n")}\n`;
  }
}

/** A Prometheus label value: backslash, quote and newline escaped. */
function labelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
