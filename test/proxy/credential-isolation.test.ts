// A client's credentials reach only the provider they are meant for: calls that name no model
// (files, retrieving a response) go to the provider that serves every model, not to an
// OpenAI-compatible server whose `modelList` answers GET /v1/models; a Google `?key=` never goes to
// another provider; the dashboard's admin session cookie never goes upstream.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { openai, openaiCompatible, headerAttribution, sqliteAudit } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let openaiUpstream: FakeUpstream;
let thirdParty: FakeUpstream;
let proxy: TestProxy;

beforeAll(async () => {
  openaiUpstream = await startFakeUpstream();
  thirdParty = await startFakeUpstream();
  proxy = await startTestProxy(openaiUpstream.url, {
    plugins: [
      openaiCompatible({ name: "groq", baseURL: `${thirdParty.url}/v1`, models: ["llama*"], modelList: true }),
      openai({ baseURL: `${openaiUpstream.url}/v1` }),
      headerAttribution(),
      sqliteAudit(),
    ],
  });
});
afterAll(async () => {
  await proxy.stop();
  await openaiUpstream.stop();
  await thirdParty.stop();
});

const openaiKey = { authorization: "Bearer sk-CLIENT-OPENAI", "x-agent-id": "bot" };

test("calls that name no model go to the provider serving every model; modelList answers GET /v1/models only", async () => {
  const before = thirdParty.requests.length;
  expect((await fetch(`${proxy.url}/v1/files`, { headers: openaiKey })).status).toBeLessThan(500);
  expect((await fetch(`${proxy.url}/v1/responses/resp_123`, { headers: openaiKey })).status).toBeLessThan(500);
  expect(thirdParty.requests.slice(before).map((r) => r.path)).toEqual([]);
  expect(openaiUpstream.requests.slice(-2).map((r) => r.path)).toEqual(["/v1/files", "/v1/responses/resp_123"]);
  await fetch(`${proxy.url}/v1/models`, { headers: openaiKey });
  expect(thirdParty.requests.slice(before).map((r) => r.path)).toEqual(["/v1/models"]);
});

test("a ?key= parameter (Google's API key) is not sent to another provider; other parameters are", async () => {
  await fetch(`${proxy.url}/v1/files?purpose=batch&key=AIza-CLIENT-SECRET&limit=2`, { headers: openaiKey });
  const seen = openaiUpstream.requests.at(-1)!;
  expect(seen.path).toBe("/v1/files?purpose=batch&limit=2");
  const records = await proxy.records();
  expect(JSON.stringify(records)).not.toContain("AIza-CLIENT-SECRET");
  // By its decoded name, as a server reads it; every other byte of the query as the client sent it.
  await fetch(`${proxy.url}/v1/files?a=b%20c&%6Bey=AIza-ENCODED&key&q=%7E&flag&z=1+2&key=AIza-2`, { headers: openaiKey });
  expect(openaiUpstream.requests.at(-1)!.path).toBe("/v1/files?a=b%20c&q=%7E&flag&z=1+2");
  await fetch(`${proxy.url}/v1/files?key=AIza-ONLY`, { headers: openaiKey });
  expect(openaiUpstream.requests.at(-1)!.path).toBe("/v1/files");
});

test("the dashboard's session cookie is taken out of the Cookie header sent upstream; other cookies pass", async () => {
  await fetch(`${proxy.url}/v1/models`, { headers: { ...openaiKey, cookie: "theme=dark; agent_attr_session=abc123; lang=en" } });
  expect(thirdParty.requests.at(-1)!.headers.cookie).toBe("theme=dark; lang=en");
  await fetch(`${proxy.url}/v1/files`, { headers: { ...openaiKey, cookie: "agent_attr_session=abc123" } });
  expect(openaiUpstream.requests.at(-1)!.headers.cookie).toBeUndefined();
});
