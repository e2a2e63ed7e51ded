// /metrics label sets stay bounded (models past the cap are `other`), refusals count by tier and
// reason, and plugins add their own series.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Metrics } from "../../src/pipeline/metrics.ts";
import { definePlugin, type PluginCounter } from "../../src/index.ts";
import { headerAttribution, openai, pricing, tiers } from "../../plugins/index.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { auditRecordSchema, type AuditRecord } from "../../src/trail/record.ts";

const base: AuditRecord = auditRecordSchema.parse({
  id: "r",
  seq: 0,
  timestamp: new Date(0).toISOString(),
  duration_ms: 120,
  ttfb_ms: 40,
  agent_id: null,
  user_id: null,
  task_context: null,
  session_id: null,
  parent_agent_id: null,
  trace_id: null,
  attribution: "asserted",
  key_id: null,
  provider: "openai",
  endpoint: "/v1/chat/completions",
  model: "m",
  response_model: null,
  stream: false,
  status: 200,
  outcome: "completed",
  input_tokens: 1,
  output_tokens: 1,
  cache_read_tokens: null,
  cache_write_tokens: null,
  reasoning_tokens: null,
  usage_source: "provider",
  cost_usd: null,
  price_source: null,
  prompt_hash: null,
  response_hash: null,
  error_type: null,
  delegation: null,
});

test("past maxModels distinct models, further models are counted as other", () => {
  const metrics = new Metrics({ maxModels: 3 });
  for (const model of ["a", "b", "c", "d", "e", "a"]) {
    metrics.started();
    metrics.observe({ ...base, model });
  }
  const text = metrics.render();
  const models = new Set([...text.matchAll(/agent_attr_calls_total\{provider="openai",model="([^"]+)"/g)].map((m) => m[1]));
  expect([...models].sort()).toEqual(["a", "b", "c", "other"]);
  expect(text).toContain('agent_attr_calls_total{provider="openai",model="other",outcome="completed"} 2');
  expect(text).toContain('agent_attr_calls_total{provider="openai",model="a",outcome="completed"} 2');
  expect(text).toContain("agent_attr_inflight_calls 0");
});

test("a call no provider took does not spend a model label, whatever model it names", () => {
  const metrics = new Metrics({ maxModels: 1 });
  metrics.observe({ ...base, provider: null, model: "junk-1", outcome: "rejected", error_type: "no_route" });
  metrics.started();
  metrics.observe({ ...base, model: "gpt-4o" });
  const text = metrics.render();
  expect(text).toContain('agent_attr_calls_total{provider="none",model="none",outcome="rejected"} 1');
  expect(text).toContain('agent_attr_calls_total{provider="openai",model="gpt-4o",outcome="completed"} 1');
  expect(text).toContain('agent_attr_refusals_total{tier="none",reason="no_route"} 1');
});

test("plugin series: counters and gauges in the page; bad or taken names are refused", () => {
  const metrics = new Metrics();
  const registry = metrics.forPlugins();
  const counter = registry.counter("my_plugin_things_total", "Things.");
  counter.add();
  counter.add(2);
  counter.add(-5);
  registry.gauge("my_plugin_queue", "Queue.", () => 7);
  const text = metrics.render();
  expect(text).toContain("# TYPE my_plugin_things_total counter\nmy_plugin_things_total 3");
  expect(text).toContain("# TYPE my_plugin_queue gauge\nmy_plugin_queue 7");
  expect(() => registry.counter("my_plugin_things_total", "again")).toThrow("already registered");
  expect(() => registry.counter("my-plugin", "x")).toThrow("not a valid Prometheus metric name");
  expect(() => registry.counter("my_plugin_things", "x")).toThrow("must end in _total");
  expect(() => registry.gauge("agent_attr_inflight_calls", "x", () => 1)).toThrow("the proxy's own");
});

const counted = { calls: 0 };
const setup = {} as { upstream: FakeUpstream; proxy: TestProxy };
beforeAll(async () => {
  setup.upstream = await startFakeUpstream();
  setup.proxy = await startTestProxy(setup.upstream.url, {
    plugins: [
      openai({ baseURL: `${setup.upstream.url}/v1` }),
      headerAttribution(),
      tiers({ tiers: { free: { requestsPerMinute: 1, per: ["agent"] } }, default: "free" }),
      pricing(),
      countingPlugin(),
    ],
  });
});
afterAll(async () => {
  await setup.proxy.stop();
  await setup.upstream.stop();
});

/** A plugin that counts the calls it observes in a counter of its own. */
function countingPlugin() {
  let calls: PluginCounter | null = null;
  return definePlugin({
    name: "counting",
    setup({ metrics }) {
      calls = metrics.counter("counting_calls_total", "Calls this plugin observed.");
    },
    observe() {
      counted.calls++;
      calls?.add();
    },
  });
}

test("refusals by tier and reason, through the real tiers plugin; a plugin's counter in /metrics", async () => {
  const post = () =>
    fetch(`${setup.proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-agent-id": "bot-1" },
      body: JSON.stringify({ model: "gpt-4o", messages: [] }),
    }).then(async (r) => (await r.arrayBuffer(), r.status));
  expect(await post()).toBe(200);
  expect(await post()).toBe(429);
  expect(await post()).toBe(429);
  await setup.proxy.records();
  const text = await (await fetch(`${setup.proxy.url}/metrics`)).text();
  expect(text).toContain('agent_attr_refusals_total{tier="free",reason="rate_limited"} 2');
  expect(text).toContain('agent_attr_calls_total{provider="openai",model="gpt-4o",outcome="rejected"} 2');
  // Refused calls are not in the latency histograms.
  expect(text).toContain('agent_attr_call_duration_seconds_count{provider="openai",model="gpt-4o"} 1');
  expect(counted.calls).toBe(3);
  expect(text).toContain("counting_calls_total 3");
});
