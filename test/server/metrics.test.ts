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
  expect(text).toContain('agent_attr_calls_total{provider="openai",outcome="completed"} 2');
  expect(text).toContain('agent_attr_calls_total{provider="openai",outcome="upstream_error"} 1');
  expect(text).toContain('agent_attr_calls_total{provider="none",outcome="rejected"} 1');
  expect(text).toContain('agent_attr_tokens_total{provider="openai",kind="input"} 24');
  // gpt-4o: 8 uncached x $2.50 + 4 cached x $1.25 + 7 out x $10 per million = $0.000095 a call.
  expect(text).toContain('agent_attr_cost_usd_total{provider="openai"} 0.00019');
  expect(text).toContain("agent_attr_inflight_calls 0");
});
