// The complete example plugin and the secondary-sink example in docs/plugins.md work as documented
// (and are the same code as test/fixtures/).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { AuditRecord } from "../src/trail/record.ts";
import { registerPublicModules } from "../src/config/load.ts";
import { headerAttribution, openai, sqliteAudit } from "../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.ts";
import { startTestProxy, tempDir, type TestProxy } from "./helpers/proxy.ts";

let upstream: FakeUpstream;
let proxy: TestProxy;
const fixture = resolve(import.meta.dir, "fixtures/team-tags.ts");

beforeAll(async () => {
  registerPublicModules();
  const teamTags = (await import(fixture)).default;
  upstream = await startFakeUpstream();
  proxy = await startTestProxy(upstream.url, {
    plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), teamTags, sqliteAudit()],
  });
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
});

test("docs/plugins.md shows this plugin verbatim", () => {
  const readme = readFileSync(resolve(import.meta.dir, "../docs/plugins.md"), "utf8");
  expect(readme).toContain(readFileSync(fixture, "utf8"));
});

const call = (agent: string, url = proxy.url) =>
  fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-agent-id": agent },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });

test("an owned agent's call is tagged with its team", async () => {
  expect((await call("planner")).status).toBe(200);
  expect((await proxy.records()).at(-1)).toMatchObject({ agent_id: "planner", tags: '{"team":"research"}' });
});

test("an unowned agent is refused with 403 and the reason, and recorded", async () => {
  const response = await call("stranger");
  expect(response.status).toBe(403);
  expect(((await response.json()) as { error: { message: string } }).error.message).toContain("'stranger' has no owning team");
  expect((await proxy.records()).at(-1)).toMatchObject({ agent_id: "stranger", outcome: "rejected", status: 403 });
});

const sinkFixture = resolve(import.meta.dir, "fixtures/jsonl-sink.ts");

test("docs/plugins.md shows the secondary-sink example verbatim", () => {
  const readme = readFileSync(resolve(import.meta.dir, "../docs/plugins.md"), "utf8");
  expect(readme).toContain(readFileSync(sinkFixture, "utf8"));
});

test("the README's sink writes every committed record, with seq and hash, as a JSON line by shutdown", async () => {
  const { jsonLinesSink } = (await import(sinkFixture)) as typeof import("./fixtures/jsonl-sink.ts");
  const file = join(tempDir(), "records.jsonl");
  const withSink = await startTestProxy(upstream.url, {
    plugins: [jsonLinesSink(file), openai({ baseURL: `${upstream.url}/v1` }), headerAttribution()],
  });
  let stored: AuditRecord[] = [];
  try {
    for (const agent of ["planner", "code-review-bot"]) expect((await call(agent, withSink.url)).status).toBe(200);
    stored = await withSink.records();
  } finally {
    await withSink.stop();
  }
  const lines = readFileSync(file, "utf8")
    .trimEnd()
    .split("\n")
    .map((line) => JSON.parse(line) as AuditRecord & { hash: string });
  expect(lines.map(({ id, seq, agent_id }) => ({ id, seq, agent_id }))).toEqual(
    stored.map(({ id, seq, agent_id }) => ({ id, seq, agent_id })),
  );
  for (const line of lines) expect(line.hash).toMatch(/^[0-9a-f]{64}$/);
});
