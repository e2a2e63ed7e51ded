// GET /metrics: Prometheus counters that agree with the audit trail.
import { expect, test } from "bun:test";
import { proxyBeforeAll } from "../helpers/proxy.ts";

const setup = proxyBeforeAll();

const call = (body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${setup.proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  }).then((r) => r.arrayBuffer());

test("calls by provider and outcome, tokens, cost, and nothing left in flight", async () => {
  await call({ model: "gpt-4o", messages: [] });
  await call({ model: "gpt-4o", messages: [] });
  await call({ model: "gpt-4o", messages: [] }, { "x-fake-scenario": "error-500" });
  await call({ messages: [] }); // refused: no model
  await setup.proxy.records();
  const response = await fetch(`${setup.proxy.url}/metrics`);
  expect(response.headers.get("content-type")).toContain("text/plain");
  const text = await response.text();
  expect(text).toContain('agent_attr_calls_total{provider="openai",model="gpt-4o",outcome="completed"} 2');
  expect(text).toContain('agent_attr_calls_total{provider="openai",model="gpt-4o",outcome="upstream_error"} 1');
  expect(text).toContain('agent_attr_calls_total{provider="none",model="none",outcome="rejected"} 1');
  expect(text).toContain('agent_attr_tokens_total{provider="openai",model="gpt-4o",kind="input"} 24');
  // gpt-4o: 8 uncached x $2.50 + 4 cached x $1.25 + 7 out x $10 per million = $0.000095 a call.
  expect(text).toContain('agent_attr_cost_usd_total{provider="openai",model="gpt-4o"} 0.00019');
  expect(text).toContain("agent_attr_inflight_calls 0");
});

/** The value of one series in a Prometheus text page (undefined when absent). */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test("latency histograms by provider and model: duration and time to first byte, cumulative buckets", async () => {
  await call({ model: "gpt-4o-mini", messages: [] });
  await call({ model: "gpt-4o-mini", messages: [], stream: true }, { "x-fake-scenario": "gap:300" });
  await setup.proxy.records();
  const text = await (await fetch(`${setup.proxy.url}/metrics`)).text();
  const labels = 'provider="openai",model="gpt-4o-mini"';
  expect(text).toContain("# TYPE agent_attr_call_duration_seconds histogram");
  expect(text).toContain("# TYPE agent_attr_time_to_first_byte_seconds histogram");
  expect(sample(text, `agent_attr_call_duration_seconds_count{${labels}}`)).toBe(2);
  expect(sample(text, `agent_attr_call_duration_seconds_bucket{${labels},le="+Inf"}`)).toBe(2);
  expect(sample(text, `agent_attr_time_to_first_byte_seconds_count{${labels}}`)).toBe(2);
  // The second call paused 300 ms before its last chunk: it is not in the 0.25 s bucket.
  expect(sample(text, `agent_attr_call_duration_seconds_bucket{${labels},le="0.25"}`)).toBeLessThanOrEqual(1);
  expect(sample(text, `agent_attr_call_duration_seconds_sum{${labels}}`)).toBeGreaterThanOrEqual(0.3);
  const buckets = text
    .split("\n")
    .filter((l) => l.startsWith(`agent_attr_call_duration_seconds_bucket{${labels}`))
    .map((l) => Number(l.split(" ")[1]));
  expect(buckets.length).toBe(14);
  for (let i = 1; i < buckets.length; i++) expect(buckets[i]!).toBeGreaterThanOrEqual(buckets[i - 1]!);
});

test("the audit backlog is a gauge of what the store has not committed yet", async () => {
  await setup.proxy.records();
  const text = await (await fetch(`${setup.proxy.url}/metrics`)).text();
  expect(text).toContain("# TYPE agent_attr_audit_backlog_records gauge");
  expect(sample(text, "agent_attr_audit_backlog_records")).toBe(0);
});
