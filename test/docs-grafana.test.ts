// docs/grafana/agent-attr-dashboard.json reads /metrics: it is valid Grafana JSON, and every metric
// its queries name is one a running proxy (with the otel plugin) exports.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { headerAttribution, openai, otel, pricing, tiers } from "../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.ts";
import { startOtlpReceiver, type OtlpReceiver } from "./helpers/otlp-receiver.ts";
import { startTestProxy, type TestProxy } from "./helpers/proxy.ts";

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  targets: { refId: string; expr: string }[];
}

const dashboard = JSON.parse(readFileSync(resolve(import.meta.dir, "../docs/grafana/agent-attr-dashboard.json"), "utf8")) as {
  title: string;
  uid: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { name: string; query: unknown }[] };
};

let upstream: FakeUpstream;
let receiver: OtlpReceiver;
let proxy: TestProxy;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  receiver = await startOtlpReceiver();
  proxy = await startTestProxy(upstream.url, {
    plugins: [
      openai({ baseURL: `${upstream.url}/v1` }),
      headerAttribution(),
      tiers({ tiers: { free: { requestsPerMinute: 1000 } }, default: "free" }),
      pricing(),
      otel({ endpoint: `${receiver.url}/v1/traces` }),
    ],
  });
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
  await receiver.stop();
});

test("the dashboard is a Grafana dashboard: panels with unique ids, a place on the grid and Prometheus queries", () => {
  expect(dashboard.title).toBe("agent-attr");
  expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
  expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(30);
  expect(dashboard.panels.length).toBeGreaterThanOrEqual(8);
  expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
  for (const panel of dashboard.panels) {
    expect(panel.title.length).toBeGreaterThan(0);
    expect(["timeseries", "stat"]).toContain(panel.type);
    expect(panel.gridPos.x + panel.gridPos.w).toBeLessThanOrEqual(24);
    expect(panel.targets.length).toBeGreaterThan(0);
    for (const target of panel.targets) {
      expect(target.refId).toMatch(/^[A-Z]$/);
      // Balanced parentheses and braces: a query Prometheus can parse at least that far.
      for (const [open, close] of ["()", "{}", "[]"]) {
        expect(target.expr.split(open!).length).toBe(target.expr.split(close!).length);
      }
    }
  }
});

test("every metric the dashboard queries is one /metrics exports", async () => {
  await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  }).then((r) => r.arrayBuffer());
  await proxy.records();
  const page = await (await fetch(`${proxy.url}/metrics`)).text();
  const exported = new Set([...page.matchAll(/^# TYPE (\S+) (\w+)$/gm)].map((m) => m[1]));
  const queries = [
    ...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)),
    ...dashboard.templating.list.map((v) => JSON.stringify(v.query)),
  ];
  const queried = new Set(queries.flatMap((q) => [...q.matchAll(/\b(agent_attr_[a-z0-9_]+)/g)].map((m) => m[1]!)));
  expect(queried.size).toBeGreaterThanOrEqual(10);
  const missing = [...queried].filter((name) => !exported.has(name) && !exported.has(name.replace(/_(bucket|sum|count)$/, "")));
  expect(missing).toEqual([]);
  // Histogram quantiles read the histograms' buckets.
  for (const name of queried) if (name.endsWith("_bucket")) expect(page).toContain(`# TYPE ${name.slice(0, -7)} histogram`);
});
