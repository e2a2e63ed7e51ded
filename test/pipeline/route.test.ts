// Stage 1 (route): which provider serves a call, and clear errors for calls nobody serves.
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { anthropic, openai, openaiCompatible, sqliteAudit } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
let local: FakeUpstream;
let claude: FakeUpstream;
let proxy: TestProxy;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  local = await startFakeUpstream();
  claude = await startFakeUpstream();
  proxy = await startTestProxy(upstream.url, {
    plugins: [
      openaiCompatible({ name: "ollama", baseURL: `${local.url}/v1`, models: ["llama*", "qwen*"] }),
      openai({ baseURL: `${upstream.url}/v1` }),
      anthropic({ baseURL: claude.url, models: ["claude-*"] }),
      sqliteAudit(),
    ],
  });
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
  await local.stop();
  await claude.stop();
});

const post = (path: string, body: unknown) =>
  fetch(`${proxy.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

test("an OpenAI-compatible provider serves the models matching its patterns, openai the rest", async () => {
  expect((await post("/v1/chat/completions", { model: "llama3.2", messages: [] })).status).toBe(200);
  expect((await post("/v1/chat/completions", { model: "gpt-4o", messages: [] })).status).toBe(200);
  expect(local.requests.map((r) => JSON.parse(r.body).model)).toEqual(["llama3.2"]);
  expect(upstream.requests.map((r) => JSON.parse(r.body).model)).toEqual(["gpt-4o"]);
  const records = await proxy.settled(2);
  expect(records.map((r) => [r.model, r.provider])).toEqual([
    ["llama3.2", "ollama"],
    ["gpt-4o", "openai"],
  ]);
});

test("GET /v1/models goes to the first provider that lists models", async () => {
  const response = await fetch(`${proxy.url}/v1/models`);
  expect(response.status).toBe(200);
  expect(((await response.json()) as { data: unknown[] }).data.length).toBe(1);
  expect(upstream.requests.at(-1)?.path).toBe("/v1/models");
});

test("GET /v1/models with Anthropic's headers goes to the Anthropic provider, with its key only", async () => {
  const openaiSeen = upstream.requests.length;
  const response = await fetch(`${proxy.url}/v1/models`, { headers: { "x-api-key": "sk-ant-secret", "anthropic-version": "2023-06-01" } });
  expect(response.status).toBe(200);
  expect(((await response.json()) as { data: { type: string; id: string }[] }).data[0]).toMatchObject({
    type: "model",
    id: "claude-sonnet-4-6",
  });
  expect(claude.requests.at(-1)).toMatchObject({ path: "/v1/models", headers: { "x-api-key": "sk-ant-secret" } });
  expect(upstream.requests.length).toBe(openaiSeen);
  const record = (await proxy.records()).find((r) => r.id === response.headers.get("x-audit-record-id"));
  expect(record).toMatchObject({ provider: "anthropic", endpoint: "/v1/models", outcome: "completed" });
});

test("the Anthropic SDK's models.list() lists Anthropic's models; an x-api-key alone is Anthropic's too", async () => {
  const client = new Anthropic({ apiKey: "sk-ant-sdk", baseURL: proxy.url, maxRetries: 0 });
  const ids: string[] = [];
  for await (const model of client.models.list()) ids.push(model.id);
  expect(ids).toEqual(["claude-sonnet-4-6"]);
  const openaiSeen = upstream.requests.length;
  await (await fetch(`${proxy.url}/v1/models`, { headers: { "x-api-key": "sk-ant-alone" } })).text();
  expect(claude.requests.at(-1)?.headers["x-api-key"]).toBe("sk-ant-alone");
  expect(upstream.requests.length).toBe(openaiSeen);
});

test("an OpenAI-format call never carries an x-api-key upstream, only its Authorization", async () => {
  await (await fetch(`${proxy.url}/v1/models`, { headers: { authorization: "Bearer sk-openai" } })).text();
  await (
    await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer sk-openai", "x-api-key": "sk-ant-stray" },
      body: JSON.stringify({ model: "gpt-4o", messages: [] }),
    })
  ).text();
  const [models, chat] = upstream.requests.slice(-2);
  expect(models).toMatchObject({ path: "/v1/models", headers: { authorization: "Bearer sk-openai" } });
  expect(chat!.headers.authorization).toBe("Bearer sk-openai");
  expect(chat!.headers["x-api-key"]).toBeUndefined();
});

test("a model no provider serves is a 404 in the wire format's error shape, recorded as rejected", async () => {
  const response = await post("/v1/messages", { model: "gpt-4o", max_tokens: 5, messages: [] });
  expect(response.status).toBe(404);
  const body = (await response.json()) as { type: string; error: { type: string; message: string } };
  expect(body.type).toBe("error");
  expect(body.error.type).toBe("not_found_error");
  expect(body.error.message).toContain("gpt-4o");
  const record = (await proxy.settled(4)).find((r) => r.id === response.headers.get("x-audit-record-id"));
  expect(record?.outcome).toBe("rejected");
  expect(record?.status).toBe(404);
});

test("an unknown /v1 path is forwarded to the routed provider and recorded, with no usage", async () => {
  const response = await post("/v1/images/generations", { model: "dall-e" });
  expect(response.status).toBe(404); // the fake upstream knows no such path: its answer passes through
  expect(upstream.requests.at(-1)).toMatchObject({ method: "POST", path: "/v1/images/generations" });
  expect(JSON.parse(upstream.requests.at(-1)!.body)).toEqual({ model: "dall-e" });
  const record = (await proxy.records()).find((r) => r.id === response.headers.get("x-audit-record-id"));
  expect(record).toMatchObject({
    provider: "openai",
    endpoint: "/v1/images/generations",
    outcome: "upstream_error",
    status: 404,
    usage_source: "none",
    cost_usd: null,
  });
});

test("another method on a model call's path is another endpoint, forwarded (GET /v1/chat/completions lists stored ones)", async () => {
  const response = await fetch(`${proxy.url}/v1/chat/completions?limit=2`, { headers: { authorization: "Bearer sk-openai" } });
  await response.text();
  expect(upstream.requests.at(-1)).toMatchObject({ method: "GET", path: "/v1/chat/completions?limit=2" });
  const record = (await proxy.records()).find((r) => r.id === response.headers.get("x-audit-record-id"));
  expect(record).toMatchObject({ provider: "openai", endpoint: "/v1/chat/completions", model: null, usage_source: "none" });
});

test("a route outside /v1 and /audit is a JSON 404", async () => {
  const response = await fetch(`${proxy.url}/nope`);
  expect(response.status).toBe(404);
  expect(((await response.json()) as { error: { code: string } }).error.code).toBe("not_found");
});
