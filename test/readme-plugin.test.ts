// The complete example plugin in docs/plugins.md works as documented (and is the same code as here).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { registerPublicModules } from "../src/config/load.ts";
import { headerAttribution, openai, sqliteAudit } from "../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "./helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "./helpers/proxy.ts";

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
  const guide = readFileSync(resolve(import.meta.dir, "../docs/plugins.md"), "utf8");
  expect(guide).toContain(readFileSync(fixture, "utf8"));
});

const call = (agent: string) =>
  fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-agent-id": agent },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });

test("an owned agent's call is tagged with its team", async () => {
  expect((await call("planner")).status).toBe(200);
  expect((await proxy.records()).at(-1)).toMatchObject({ agent_id: "planner", session_id: "team:research" });
});

test("an unowned agent is refused with 403 and the reason, and recorded", async () => {
  const response = await call("stranger");
  expect(response.status).toBe(403);
  expect(((await response.json()) as { error: { message: string } }).error.message).toContain("'stranger' has no owning team");
  expect((await proxy.records()).at(-1)).toMatchObject({ agent_id: "stranger", outcome: "rejected", status: 403 });
});
