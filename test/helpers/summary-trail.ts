/**
 * A trail for summary tests on either driver: 220 records over 10 days at uneven times (ranges cut
 * through days), with unpriced, rejected and keyless calls, and the summary computed the slow,
 * obvious way from the records themselves.
 */
import type { AuditRecord } from "../../src/trail/record.ts";

export const day = 86_400_000;
export const now = Date.now();

export function record(i: number): AuditRecord {
  const priced = i % 7 !== 0;
  const usage = i % 11 !== 0;
  return {
    id: `rec-${i}`,
    seq: 0,
    // Spread over 10 days at uneven times, so ranges cut through days.
    timestamp: new Date(now - 10 * day + i * 3_917_000).toISOString(),
    duration_ms: 10,
    ttfb_ms: 2,
    agent_id: `agent-${i % 3}`,
    user_id: i % 5 === 0 ? null : `user-${i % 4}`,
    task_context: `task ${i % 6}`,
    session_id: null,
    parent_agent_id: null,
    trace_id: null,
    attribution: "asserted",
    key_id: i % 3 === 0 ? null : `key_${i % 2}`,
    provider: i % 2 ? "openai" : "anthropic",
    endpoint: "/v1/chat/completions",
    model: i % 2 ? "gpt-4o" : "claude-sonnet-4-6",
    response_model: null,
    stream: false,
    status: usage ? 200 : i % 2 ? 429 : 402,
    outcome: usage ? "completed" : "rejected",
    input_tokens: usage ? 100 + i : null,
    output_tokens: usage ? 10 + (i % 13) : null,
    cache_read_tokens: usage ? i % 4 : null,
    cache_write_tokens: usage && i % 2 === 0 ? 3 : null,
    cache_write_1h_tokens: usage && i % 4 === 0 ? 1 : null,
    reasoning_tokens: usage && i % 3 === 0 ? 2 : null,
    usage_source: usage ? "provider" : "none",
    cost_usd: usage && priced ? (123_457 * i) / 1e9 : null,
    cost_nano_usd: usage && priced ? 123_457 * i : null,
    price_source: usage && priced ? "test" : null,
    prompt_hash: null,
    response_hash: null,
    error_type: null,
    delegation: null,
    // Some calls untagged, some with a team only, some with team and project; one personal tag.
    tags: i % 4 === 0 ? null : JSON.stringify(i % 4 === 1 ? { team: `team-${i % 3}` } : { project: `p${i % 2}`, team: `team-${i % 3}` }),
    personal_tags: i % 9 === 0 ? JSON.stringify({ email: `u${i % 2}@example.com` }) : null,
    consent_id: i % 4 === 0 ? null : `cns_${String(i % 4).padStart(16, "0")}`,
    purpose: i % 4 === 0 ? null : ["PR review", "triage", "support"][i % 3]!,
    lawful_basis: i % 4 === 0 ? null : i % 2 ? "consent" : "contract",
    consent_source: i % 4 === 0 ? "none" : "lookup",
  };
}

/** A record's value of a tag: clear, else personal. */
export const tagOf = (r: AuditRecord, key: string): string | null =>
  (JSON.parse(r.tags ?? "{}") as Record<string, string>)[key] ??
  (JSON.parse(r.personal_tags ?? "{}") as Record<string, string>)[key] ??
  null;
const fixedKeyOf: Record<string, (r: AuditRecord) => string | null> = {
  agent: (r) => r.agent_id,
  user: (r) => r.user_id,
  task: (r) => r.task_context,
  model: (r) => r.model,
  provider: (r) => r.provider,
  key: (r) => r.key_id,
  day: (r) => r.timestamp.slice(0, 10),
  hour: (r) => r.timestamp.slice(0, 13),
  status: (r) => `${r.outcome ?? ""}:${r.status ?? ""}`,
  purpose: (r) => r.purpose,
  basis: (r) => r.lawful_basis,
  error: (r) => r.error_type,
};
/** A grouping's key of a record (`by` as a summary filter takes it: `tag:KEY` in any case). */
const keyOf = (by: string): ((r: AuditRecord) => string | null) => {
  const lower = by.toLowerCase();
  return lower.startsWith("tag:") ? (r) => tagOf(r, lower.slice(4)) : fixedKeyOf[lower]!;
};

/** The summary computed the slow, obvious way from the records themselves. */
export function bruteForce(records: AuditRecord[], by: string) {
  const groups = new Map<
    string | null,
    { calls: number; input_tokens: number; cost_nano_usd: number; unpriced_calls: number; cache_write_1h_tokens: number }
  >();
  const key = keyOf(by);
  for (const r of records) {
    const g = groups.get(key(r)) ?? { calls: 0, input_tokens: 0, cost_nano_usd: 0, unpriced_calls: 0, cache_write_1h_tokens: 0 };
    g.calls++;
    g.input_tokens += r.input_tokens ?? 0;
    g.cache_write_1h_tokens += r.cache_write_1h_tokens ?? 0;
    g.cost_nano_usd += r.cost_nano_usd ?? 0;
    if (r.cost_nano_usd === null && r.usage_source !== "none") g.unpriced_calls++;
    groups.set(key(r), g);
  }
  return groups;
}

export const at = (offsetDays: number) => new Date(now - offsetDays * day + 12_345).toISOString();
