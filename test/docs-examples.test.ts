// The plugin guide's examples do what it says when a proxy runs them: the provider serves its
// models and meters them, the tag plugin's header never goes upstream, the flagging limit flags,
// the price hook prices before pricing(), and the secondary sink receives every record as JSON lines.
// The examples are taken from docs/plugins.md as they are; only their URLs point at this test's servers.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Plugin } from "../src/index.ts";
import { registerPublicModules } from "../src/config/load.ts";
import { headerAttribution, pricing, sqliteAudit } from "../plugins/index.ts";
import { namedBlock } from "./helpers/doc-blocks.ts";
import { chatUsage, type FakeUpstream, startFakeUpstream } from "./helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy, tempDir } from "./helpers/proxy.ts";

const guide = "docs/plugins.md";
let upstream: FakeUpstream;
let collector: ReturnType<typeof Bun.serve>;
let proxy: TestProxy;
const received: string[] = [];
let stopped = false;

/** Writes a block of the guide into `dir`, with its URLs replaced, and imports it. */
async function example(dir: string, file: string, urls: Record<string, string>): Promise<Plugin> {
  let code = namedBlock(guide, file);
  for (const [from, to] of Object.entries(urls)) {
    expect(code).toContain(from);
    code = code.replaceAll(from, to);
  }
  writeFileSync(join(dir, file), code);
  return (await import(join(dir, file))).default as Plugin;
}

beforeAll(async () => {
  registerPublicModules();
  upstream = await startFakeUpstream();
  collector = Bun.serve({
    port: 0,
    async fetch(request) {
      received.push(await request.text());
      return new Response(null, { status: 204 });
    },
  });
  const dir = tempDir();
  const miniLlm = await example(dir, "mini-llm.ts", { "http://127.0.0.1:9000": upstream.url });
  const collectorSink = await example(dir, "collector-sink.ts", {
    "http://127.0.0.1:9200/records": `http://127.0.0.1:${collector.port}/records`,
  });
  const teamHeader = await example(dir, "team-header.ts", {});
  const taskRequired = await example(dir, "task-required.ts", {});
  // Its rate applies to calls served by the provider named "ollama": here, the guide's provider.
  const internalRates = await example(dir, "internal-rates.ts", { '"ollama"': '"mini-llm"' });
  proxy = await startTestProxy(upstream.url, {
    plugins: [miniLlm, headerAttribution(), teamHeader, taskRequired, internalRates, pricing(), sqliteAudit(), collectorSink],
  });
});
afterAll(async () => {
  if (!stopped) await proxy?.stop();
  await upstream?.stop();
  collector?.stop(true);
});

const call = (headers: Record<string, string>) =>
  fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-agent-id": "planner", ...headers },
    body: JSON.stringify({ model: "mini-1", messages: [{ role: "user", content: "hi" }] }),
  });

test("the provider serves its models and meters them; the price hook prices them; X-Team is not forwarded", async () => {
  const response = await call({ "x-team": "research", "x-task-context": "PR #7" });
  expect(response.status).toBe(200);
  const seen = upstream.requests.at(-1)!;
  expect(seen.path).toBe("/v1/chat/completions");
  expect(seen.headers["x-team"]).toBeUndefined();
  const record = (await proxy.records()).at(-1)!;
  expect(record).toMatchObject({
    provider: "mini-llm",
    input_tokens: chatUsage.prompt_tokens,
    output_tokens: chatUsage.completion_tokens,
    cost_nano_usd: chatUsage.completion_tokens * 500,
    price_source: "config:internal-rates",
    error_type: null,
  });
});

test("a call without a task passes, flagged by the sequential limit", async () => {
  expect((await call({})).status).toBe(200);
  expect((await proxy.records()).at(-1)).toMatchObject({ outcome: "completed", error_type: "shadow:no_task_context" });
});

test("the secondary sink receives every committed record, with its seq and hash, as JSON lines: the rest at shutdown", async () => {
  const records = await proxy.records();
  await proxy.stop(); // the sinks' flush runs here
  stopped = true;
  const lines = received
    .join("")
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { id: string; seq: number; hash: string });
  expect(lines.map((r) => r.id).sort()).toEqual(records.map((r) => r.id).sort());
  for (const line of lines) expect(line.seq).toBeGreaterThan(0);
  for (const line of lines) expect(line.hash).toMatch(/^[0-9a-f]{64}$/);
});
