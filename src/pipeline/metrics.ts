/**
 * Prometheus metrics for operators (`GET /metrics`, text format 0.0.4): calls by provider and
 * outcome, their tokens, calls in flight. Counted when a call's final record is written, so they
 * agree with the audit trail.
 */
import type { AuditRecord } from "../audit/record.ts";

export class Metrics {
  private readonly calls = new Map<string, number>();
  private readonly tokens = new Map<string, number>();
  private forwarded = 0;

  /** A call's in-flight record is durable and the call goes upstream. */
  started(): void {
    this.forwarded++;
  }

  /** Counts one final record (a call refused before forwarding was never `started`). */
  observe(record: AuditRecord): void {
    if (record.outcome !== "rejected") this.forwarded--;
    const labels = `provider="${escape(record.provider ?? "none")}",outcome="${record.outcome ?? "unknown"}"`;
    this.calls.set(labels, (this.calls.get(labels) ?? 0) + 1);
    const provider = `provider="${escape(record.provider ?? "none")}"`;
    for (const [kind, value] of [
      ["input", record.input_tokens],
      ["output", record.output_tokens],
    ] as const) {
      if (value) this.tokens.set(`${provider},kind="${kind}"`, (this.tokens.get(`${provider},kind="${kind}"`) ?? 0) + value);
    }
  }

  render(): string {
    const lines = [
      "# HELP agent_attr_calls_total Proxied calls by provider and outcome (one per audit record).",
      "# TYPE agent_attr_calls_total counter",
      ...[...this.calls].map(([labels, n]) => `agent_attr_calls_total{${labels}} ${n}`),
      "# HELP agent_attr_tokens_total Tokens reported by the upstreams, by provider and kind.",
      "# TYPE agent_attr_tokens_total counter",
      ...[...this.tokens].map(([labels, n]) => `agent_attr_tokens_total{${labels}} ${n}`),
      "# HELP agent_attr_inflight_calls Calls forwarded upstream whose response has not ended yet.",
      "# TYPE agent_attr_inflight_calls gauge",
      `agent_attr_inflight_calls ${this.forwarded}`,
    ];
    return `${lines.join("\n")}\n`;
  }
}

function escape(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}
