// azureOpenAI(): both Azure path styles with the official openai SDK's AzureOpenAI client (api-key
// and Entra ID bearer auth) and the v1 API, against a fake Azure upstream (OpenAI wire format,
// `api-version` required on deployment paths, Azure's error shape).
import { afterAll, beforeAll, expect, test } from "bun:test";
import OpenAI, { AzureOpenAI } from "openai";
import { apiKeys, azureOpenAI, openai, sqliteAudit } from "../../plugins/index.ts";
import { signedKeyTable } from "../helpers/keys.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

interface Seen {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

const seen: Seen[] = [];
let upstream: ReturnType<typeof Bun.serve>;
let proxy: TestProxy;
let keyed: TestProxy;
let proxyKey: string;

const usage = { prompt_tokens: 1000, completion_tokens: 200, total_tokens: 1200, prompt_tokens_details: { cached_tokens: 0 } };
const chat = (model: string) => ({
  id: "chatcmpl-1",
  object: "chat.completion",
  created: 1,
  model,
  choices: [{ index: 0, message: { role: "assistant", content: "Hi from Azure" }, finish_reason: "stop" }],
  usage,
});

function answer(request: Request, url: URL, body: string): Response {
  const authorised = request.headers.get("api-key") === "azure-key" || request.headers.get("authorization") === "Bearer entra-token";
  if (!authorised) {
    return Response.json(
      { error: { code: "401", message: "Access denied due to invalid subscription key or wrong API endpoint." } },
      { status: 401 },
    );
  }
  const deployment = /^\/openai\/deployments\/([^/]+)\/chat\/completions$/.exec(url.pathname);
  if (deployment) {
    if (!url.searchParams.get("api-version")) {
      return Response.json({ error: { code: "404", message: "Resource not found" } }, { status: 404 });
    }
    if (deployment[1] === "missing") {
      return Response.json(
        { error: { code: "DeploymentNotFound", message: "The API deployment for this resource does not exist." } },
        { status: 404 },
      );
    }
    const parsed = JSON.parse(body) as { stream?: boolean };
    if (parsed.stream) {
      const chunk = (data: unknown) => `data: ${JSON.stringify(data)}\n\n`;
      const text =
        chunk({
          id: "c",
          object: "chat.completion.chunk",
          created: 1,
          model: "gpt-4o-2024-11-20",
          choices: [{ index: 0, delta: { content: "Hi" } }],
        }) +
        chunk({
          id: "c",
          object: "chat.completion.chunk",
          created: 1,
          model: "gpt-4o-2024-11-20",
          choices: [{ index: 0, delta: {}, finish_reason: "stop" }],
        }) +
        chunk({ id: "c", object: "chat.completion.chunk", created: 1, model: "gpt-4o-2024-11-20", choices: [], usage }) +
        "data: [DONE]\n\n";
      return new Response(text, { headers: { "content-type": "text/event-stream" } });
    }
    return Response.json(chat("gpt-4o-2024-11-20"));
  }
  if (url.pathname === "/openai/v1/chat/completions") return Response.json(chat("gpt-4o-2024-11-20"));
  if (url.pathname === "/openai/responses" || url.pathname === "/openai/v1/responses") {
    return Response.json({
      id: "resp_az",
      object: "response",
      created_at: 1,
      status: "completed",
      model: "gpt-4o-2024-11-20",
      output: [],
      usage: { input_tokens: 1000, output_tokens: 200, total_tokens: 1200 },
    });
  }
  if (url.pathname === "/openai/v1/models") return Response.json({ object: "list", data: [{ id: "gpt-4o", object: "model" }] });
  return Response.json({ error: { code: "404", message: "Resource not found" } }, { status: 404 });
}

beforeAll(async () => {
  upstream = Bun.serve({
    port: 0,
    async fetch(request) {
      const url = new URL(request.url);
      const body = await request.text();
      seen.push({ method: request.method, path: url.pathname + url.search, headers: Object.fromEntries(request.headers), body });
      return answer(request, url, body);
    },
  });
  const base = `http://127.0.0.1:${upstream.port}`;
  proxy = await startTestProxy(base, {
    plugins: [azureOpenAI({ endpoint: base, deployments: { "prod-chat": "gpt-4o" } }), openai(), sqliteAudit()],
  });
  keyed = await startTestProxy(base, { plugins: [azureOpenAI({ endpoint: base }), apiKeys(), sqliteAudit()] });
  ({ key: proxyKey } = signedKeyTable(keyed.logDb).create({ agents: ["azure-bot"] }));
});
afterAll(async () => {
  await proxy.stop();
  await keyed.stop();
  upstream.stop(true);
});

const lastRecord = async () => (await proxy.settled(1)).at(-1);
const apiVersion = "2024-10-21";

test("deployment paths with api-key: forwarded with api-version, the deployment mapped to its model, priced from Azure's prices", async () => {
  const client = new AzureOpenAI({ apiKey: "azure-key", endpoint: proxy.url, apiVersion, deployment: "prod-chat", maxRetries: 0 });
  const completion = await client.chat.completions.create({ model: "prod-chat", messages: [{ role: "user", content: "hi" }] });
  expect(completion.choices[0]!.message.content).toBe("Hi from Azure");
  expect(seen.at(-1)!.path).toBe(`/openai/deployments/prod-chat/chat/completions?api-version=${apiVersion}`);
  expect(seen.at(-1)!.headers["api-key"]).toBe("azure-key");
  const record = await lastRecord();
  expect(record).toMatchObject({
    provider: "azure-openai",
    endpoint: "/openai/deployments/prod-chat/chat/completions",
    model: "gpt-4o",
    response_model: "gpt-4o-2024-11-20",
    input_tokens: 1000,
    output_tokens: 200,
    usage_source: "provider",
    outcome: "completed",
  });
  expect(record!.price_source).toContain(":azure/");
  expect(record!.cost_usd).toBeGreaterThan(0);
  expect(JSON.stringify(record)).not.toContain("azure-key");
});

test("Entra ID bearer auth passes through; a stream is asked for its usage and metered", async () => {
  const client = new AzureOpenAI({
    azureADTokenProvider: async () => "entra-token",
    endpoint: proxy.url,
    apiVersion,
    deployment: "prod-chat",
    maxRetries: 0,
  });
  const stream = await client.chat.completions.create({ model: "prod-chat", stream: true, messages: [{ role: "user", content: "hi" }] });
  const pieces: string[] = [];
  for await (const chunk of stream) pieces.push(chunk.choices[0]?.delta?.content ?? "");
  expect(pieces.join("")).toBe("Hi");
  expect(seen.at(-1)!.headers.authorization).toBe("Bearer entra-token");
  expect(JSON.parse(seen.at(-1)!.body).stream_options).toEqual({ include_usage: true });
  expect(await lastRecord()).toMatchObject({ stream: true, outcome: "completed", input_tokens: 1000, output_tokens: 200, model: "gpt-4o" });
});

test("an unmapped deployment is recorded under its own name; Azure's errors pass through", async () => {
  const client = new AzureOpenAI({ apiKey: "azure-key", endpoint: proxy.url, apiVersion, deployment: "missing", maxRetries: 0 });
  const error = await client.chat.completions.create({ model: "missing", messages: [] }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(OpenAI.NotFoundError);
  expect(await lastRecord()).toMatchObject({ model: "missing", outcome: "upstream_error", status: 404, error_type: "DeploymentNotFound" });
  const denied = await new AzureOpenAI({
    apiKey: "wrong",
    endpoint: proxy.url,
    apiVersion,
    deployment: "prod-chat",
    maxRetries: 0,
  }).chat.completions
    .create({ model: "prod-chat", messages: [] })
    .catch((e: unknown) => e);
  expect(denied).toBeInstanceOf(OpenAI.AuthenticationError);
});

test("AzureOpenAI's responses.create goes to /openai/responses and is billed", async () => {
  const client = new AzureOpenAI({ apiKey: "azure-key", endpoint: proxy.url, apiVersion, maxRetries: 0 });
  const response = await client.responses.create({ model: "prod-chat", input: "hi" });
  expect(response.id).toBe("resp_az");
  expect(seen.at(-1)!.path).toBe(`/openai/responses?api-version=${apiVersion}`);
  expect(await lastRecord()).toMatchObject({
    endpoint: "/openai/responses",
    model: "prod-chat",
    input_tokens: 1000,
    usage_source: "provider",
  });
});

test("the v1 API (/openai/v1/): the OpenAI client with the Azure key as bearer; other paths forwarded, not billed", async () => {
  const client = new OpenAI({
    apiKey: "azure-key",
    baseURL: `${proxy.url}/openai/v1`,
    defaultHeaders: { "api-key": "azure-key" },
    maxRetries: 0,
  });
  const completion = await client.chat.completions.create({ model: "prod-chat", messages: [{ role: "user", content: "hi" }] });
  expect(completion.model).toBe("gpt-4o-2024-11-20");
  expect(seen.at(-1)!.path).toBe("/openai/v1/chat/completions");
  const record = await lastRecord();
  expect(record).toMatchObject({
    provider: "azure-openai",
    endpoint: "/openai/v1/chat/completions",
    model: "prod-chat",
    usage_source: "provider",
  });
  expect(record!.cost_usd).toBeGreaterThan(0);
  const models = await client.models.list();
  expect(models.data[0]!.id).toBe("gpt-4o");
  expect(await lastRecord()).toMatchObject({ endpoint: "/openai/v1/models", usage_source: "none", outcome: "completed" });
});

test("keys mode: the client's api-key is a proxy key, verified; Azure gets AZURE_OPENAI_API_KEY, never the proxy key", async () => {
  const client = new AzureOpenAI({ apiKey: proxyKey, endpoint: keyed.url, apiVersion, deployment: "prod-chat", maxRetries: 0 });
  // Read by the proxy when it forwards (and by the SDK when it is given no key: set only here).
  process.env.AZURE_OPENAI_API_KEY = "azure-key";
  try {
    await client.chat.completions.create({ model: "prod-chat", messages: [{ role: "user", content: "hi" }] });
  } finally {
    delete process.env.AZURE_OPENAI_API_KEY;
  }
  expect(seen.at(-1)!.headers["api-key"]).toBe("azure-key");
  expect(JSON.stringify(seen.map((s) => s.headers))).not.toContain(proxyKey);
  expect((await keyed.settled(1)).at(-1)).toMatchObject({ attribution: "verified", agent_id: "azure-bot", provider: "azure-openai" });
});
