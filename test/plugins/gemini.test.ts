// gemini(): the native Gemini API through the proxy with the official @google/genai client, against
// a fake upstream that speaks Gemini's wire format (google.rpc.Status errors, `data:` events ended
// by CRLF CRLF, cumulative usageMetadata).
import { GoogleGenAI } from "@google/genai";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { apiKeys, gemini, openai, sqliteAudit } from "../../plugins/index.ts";
import { signedKeyTable } from "../helpers/keys.ts";
import type { AuditRecord } from "../../src/trail/record.ts";
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
let unreachable: TestProxy;
let keyed: TestProxy;
let proxyKey: string;

const usageMetadata = {
  promptTokenCount: 120,
  candidatesTokenCount: 30,
  thoughtsTokenCount: 50,
  cachedContentTokenCount: 100,
  totalTokenCount: 200,
  promptTokensDetails: [{ modality: "TEXT", tokenCount: 120 }],
};

const candidate = (text: string, finishReason?: string) => ({
  content: { parts: [{ text }], role: "model" },
  index: 0,
  ...(finishReason ? { finishReason } : {}),
});

const streamChunks = [
  {
    candidates: [candidate("Hel")],
    usageMetadata: { promptTokenCount: 120, totalTokenCount: 120 },
    modelVersion: "gemini-2.5-flash",
    responseId: "r1",
  },
  {
    candidates: [candidate("lo")],
    usageMetadata: { promptTokenCount: 120, totalTokenCount: 120 },
    modelVersion: "gemini-2.5-flash",
    responseId: "r1",
  },
  { candidates: [candidate("!", "STOP")], usageMetadata, modelVersion: "gemini-2.5-flash", responseId: "r1" },
];

const status = (code: number, message: string, statusName: string) =>
  Response.json({ error: { code, message, status: statusName } }, { status: code });

function answer(request: Request, path: string, body: string): Response {
  if (request.headers.get("x-goog-api-key") !== "AIza-test-key")
    return status(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT");
  const match = /^\/v1(?:beta)?\/models\/([^:]+):(\w+)$/.exec(path);
  if (path === "/v1beta/models/gemini-2.5-flash" && request.method === "GET") {
    return Response.json({ name: "models/gemini-2.5-flash", displayName: "Gemini 2.5 Flash", inputTokenLimit: 1048576 });
  }
  if (!match) return status(404, `Method not found: ${path}`, "NOT_FOUND");
  const [, model, method] = match;
  if (model === "gemini-missing") return status(404, `models/${model} is not found for API version v1beta`, "NOT_FOUND");
  if (JSON.stringify(JSON.parse(body)).includes("overload"))
    return status(503, "The model is overloaded. Please try again later.", "UNAVAILABLE");
  switch (method) {
    case "generateContent":
      return Response.json({
        candidates: [candidate("Hello!", "STOP")],
        usageMetadata,
        modelVersion: "gemini-2.5-flash",
        responseId: "r0",
      });
    case "streamGenerateContent": {
      if (new URL(request.url).searchParams.get("alt") !== "sse") return Response.json(streamChunks);
      const bytes = new TextEncoder();
      return new Response(
        new ReadableStream({
          async start(controller) {
            const slow = body.includes("slow");
            for (const chunk of streamChunks) {
              controller.enqueue(bytes.encode(`data: ${JSON.stringify(chunk)}\r\n\r\n`));
              await Bun.sleep(slow ? 2000 : 5);
            }
            controller.close();
          },
        }),
        { headers: { "content-type": "text/event-stream", "x-gemini-service-tier": "standard" } },
      );
    }
    case "countTokens":
      return Response.json({ totalTokens: 31, promptTokensDetails: [{ modality: "TEXT", tokenCount: 31 }] });
    case "batchEmbedContents":
      return Response.json({ embeddings: [{ values: [0.1, 0.2, 0.3] }] });
  }
  return status(404, `Method not found: ${method}`, "NOT_FOUND");
}

beforeAll(async () => {
  upstream = Bun.serve({
    port: 0,
    async fetch(request) {
      const url = new URL(request.url);
      const body = await request.text();
      seen.push({ method: request.method, path: url.pathname + url.search, headers: Object.fromEntries(request.headers), body });
      return answer(request, url.pathname, body);
    },
  });
  const base = `http://127.0.0.1:${upstream.port}`;
  proxy = await startTestProxy(base, { plugins: [openai(), gemini({ baseURL: base }), sqliteAudit()] });
  unreachable = await startTestProxy(base, { plugins: [gemini({ baseURL: "http://127.0.0.1:9" }), sqliteAudit()] });
  process.env.GEMINI_API_KEY = "AIza-test-key";
  keyed = await startTestProxy(base, { plugins: [gemini({ baseURL: base }), apiKeys(), sqliteAudit()] });
  ({ key: proxyKey } = signedKeyTable(keyed.logDb).create({ agents: ["gemini-bot"] }));
});
afterAll(async () => {
  await proxy.stop();
  await unreachable.stop();
  await keyed.stop();
  upstream.stop(true);
});

const client = (of = proxy, apiKey = "AIza-test-key", apiVersion = "v1beta") =>
  new GoogleGenAI({ apiKey, httpOptions: { baseUrl: of.url, apiVersion } });

async function recordOf(id: string | null | undefined, of = proxy): Promise<AuditRecord | undefined> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const record = (await of.records()).find((r) => (id ? r.id === id : true) && r.outcome !== null);
    if (record || Date.now() > deadline) return record;
    await Bun.sleep(20);
  }
}
const lastRecord = async (of = proxy) => (await of.settled(1)).at(-1);

test("generateContent: forwarded with its key, metered from usageMetadata (thoughts are output, cached content is input) and priced", async () => {
  const result = await client().models.generateContent({ model: "gemini-2.5-flash", contents: "Say hello" });
  expect(result.text).toBe("Hello!");
  expect(seen.at(-1)).toMatchObject({ method: "POST", path: "/v1beta/models/gemini-2.5-flash:generateContent" });
  expect(seen.at(-1)!.headers["x-goog-api-key"]).toBe("AIza-test-key");
  const record = await lastRecord();
  expect(record).toMatchObject({
    provider: "gemini",
    endpoint: "/v1beta/models/gemini-2.5-flash:generateContent",
    model: "gemini-2.5-flash",
    response_model: "gemini-2.5-flash",
    stream: false,
    outcome: "completed",
    status: 200,
    input_tokens: 120,
    cache_read_tokens: 100,
    output_tokens: 80,
    reasoning_tokens: 50,
    usage_source: "provider",
  });
  expect(record!.price_source).toEndWith(":google/gemini-2.5-flash");
  // 20 uncached input at $0.30/M, 100 cached at $0.03/M, 80 output (thoughts included) at $2.50/M.
  expect(record!.cost_usd).toBe(0.000209);
  expect(record!.cost_usd).toBeGreaterThan(0);
  expect(JSON.stringify(record)).not.toContain("AIza-test-key");
});

test("streamGenerateContent?alt=sse: the events pass through byte for byte, usage from the last chunk", async () => {
  const pieces: string[] = [];
  for await (const chunk of await client().models.generateContentStream({ model: "gemini-2.5-flash", contents: "Say hello" })) {
    pieces.push(chunk.text ?? "");
  }
  expect(pieces.join("")).toBe("Hello!");
  expect(seen.at(-1)!.path).toBe("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
  const record = await lastRecord();
  expect(record).toMatchObject({
    endpoint: "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    stream: true,
    outcome: "completed",
    input_tokens: 120,
    output_tokens: 80,
    usage_source: "provider",
  });
  const raw = await fetch(`${proxy.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-goog-api-key": "AIza-test-key" },
    body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "hi" }] }] }),
  });
  expect(raw.headers.get("content-type")).toBe("text/event-stream");
  expect(await raw.text()).toBe(streamChunks.map((chunk) => `data: ${JSON.stringify(chunk)}\r\n\r\n`).join(""));
});

test("countTokens is forwarded and recorded, not billed; models.get too", async () => {
  const counted = await client().models.countTokens({ model: "gemini-2.5-flash", contents: "hello" });
  expect(counted.totalTokens).toBe(31);
  expect(await lastRecord()).toMatchObject({
    endpoint: "/v1beta/models/gemini-2.5-flash:countTokens",
    model: "gemini-2.5-flash",
    usage_source: "none",
    cost_usd: null,
    outcome: "completed",
  });
  const model = await client().models.get({ model: "gemini-2.5-flash" });
  expect(model.displayName).toBe("Gemini 2.5 Flash");
  expect(await lastRecord()).toMatchObject({ endpoint: "/v1beta/models/gemini-2.5-flash", model: null, usage_source: "none" });
});

test("embedContent reports no usage: its input is estimated from the text, output is 0", async () => {
  const result = await client().models.embedContent({
    model: "gemini-embedding-001",
    contents: "the quick brown fox jumps over the lazy dog",
  });
  expect(result.embeddings?.[0]?.values).toEqual([0.1, 0.2, 0.3]);
  expect(seen.at(-1)!.path).toBe("/v1beta/models/gemini-embedding-001:batchEmbedContents");
  const record = await lastRecord();
  expect(record).toMatchObject({ model: "gemini-embedding-001", usage_source: "estimated", output_tokens: 0, outcome: "completed" });
  expect(record!.input_tokens).toBeGreaterThan(5);
});

test("a key sent as ?key= goes upstream as x-goog-api-key, never in a URL or a record", async () => {
  const response = await fetch(`${proxy.url}/v1beta/models/gemini-2.5-flash:generateContent?key=AIza-test-key`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "hi" }] }] }),
  });
  expect(response.status).toBe(200);
  expect(seen.at(-1)!.path).toBe("/v1beta/models/gemini-2.5-flash:generateContent");
  expect(seen.at(-1)!.headers["x-goog-api-key"]).toBe("AIza-test-key");
  const record = await recordOf(response.headers.get("x-audit-record-id"));
  expect(JSON.stringify(record)).not.toContain("AIza");
});

test("Gemini's own errors reach the SDK unchanged and are recorded with their status", async () => {
  const error = await client(proxy, "AIza-wrong")
    .models.generateContent({ model: "gemini-2.5-flash", contents: "hi" })
    .then(
      () => ({ status: 200, message: "" }),
      (e: unknown) => e as { status?: number; message: string },
    );
  expect(error.status).toBe(400);
  expect(error.message).toContain("API key not valid");
  expect(await lastRecord()).toMatchObject({ outcome: "upstream_error", status: 400, error_type: "INVALID_ARGUMENT" });
  const overloaded = await client()
    .models.generateContent({ model: "gemini-2.5-flash", contents: "overload" })
    .then(
      () => ({ status: 200 }),
      (e: unknown) => e as { status?: number },
    );
  expect(overloaded.status).toBe(503);
  expect(await lastRecord()).toMatchObject({ outcome: "upstream_error", status: 503, error_type: "UNAVAILABLE", usage_source: "none" });
});

test("the proxy's own errors on Gemini paths are in Gemini's shape (google.rpc.Status)", async () => {
  const error = await client(unreachable)
    .models.generateContent({ model: "gemini-2.5-flash", contents: "hi" })
    .then(
      () => ({ status: 200, message: "" }),
      (e: unknown) => e as { status?: number; message: string },
    );
  expect(error.status).toBe(502);
  const response = await fetch(`${unreachable.url}/v1beta/models/gemini-2.5-flash:generateContent`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-goog-api-key": "AIza-test-key" },
    body: "{}",
  });
  const body = (await response.json()) as { error: { code: number; status: string; message: string } };
  expect(body.error).toMatchObject({ code: 502, status: "UNAVAILABLE" });
  expect(body.error.message).toContain("provider 'gemini'");
  expect(response.headers.get("x-audit-record-id")).toBeTruthy();
  expect(await recordOf(response.headers.get("x-audit-record-id"), unreachable)).toMatchObject({
    provider: "gemini",
    outcome: "upstream_error",
    error_type: "upstream_unreachable",
  });
});

test("an OpenAI key never reaches Gemini, and /v1 OpenAI paths are untouched by gemini()", async () => {
  await client().models.generateContent({
    model: "gemini-2.5-flash",
    contents: "hi",
    config: { httpOptions: { headers: { "x-api-key": "sk-ant-stray" } } },
  });
  expect(seen.at(-1)!.headers["x-api-key"]).toBeUndefined();
  const models = await fetch(`${proxy.url}/v1/models/gpt-4o`, { headers: { authorization: "Bearer sk" } });
  await models.text();
  expect((await recordOf(models.headers.get("x-audit-record-id")))?.provider).toBe("openai");
});

test("the v1 API's model methods are Gemini's too (the SDK's default version)", async () => {
  const result = await new GoogleGenAI({ apiKey: "AIza-test-key", httpOptions: { baseUrl: proxy.url } }).models.generateContent({
    model: "gemini-2.5-flash",
    contents: "hi",
  });
  expect(result.text).toBe("Hello!");
  expect(seen.at(-1)!.path).toMatch(/^\/v1(beta)?\/models\/gemini-2.5-flash:generateContent$/);
  expect(await lastRecord()).toMatchObject({ provider: "gemini", model: "gemini-2.5-flash", usage_source: "provider", input_tokens: 120 });
});

test("keys mode: the SDK's key is a proxy key (x-goog-api-key or ?key=), verified; Google gets GEMINI_API_KEY, never the proxy key", async () => {
  const result = await client(keyed, proxyKey).models.generateContent({ model: "gemini-2.5-flash", contents: "hi" });
  expect(result.text).toBe("Hello!");
  expect(seen.at(-1)!.headers["x-goog-api-key"]).toBe("AIza-test-key");
  expect(await lastRecord(keyed)).toMatchObject({
    attribution: "verified",
    agent_id: "gemini-bot",
    provider: "gemini",
    usage_source: "provider",
  });
  const viaQuery = await fetch(`${keyed.url}/v1beta/models/gemini-2.5-flash:generateContent?key=${proxyKey}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "hi" }] }] }),
  });
  expect(viaQuery.status).toBe(401); // a key in the query is not a proxy credential
  const wrong = await client(keyed, "not-a-proxy-key")
    .models.generateContent({ model: "gemini-2.5-flash", contents: "hi" })
    .then(
      () => ({ status: 200 }),
      (e: unknown) => e as { status?: number },
    );
  expect(wrong.status).toBe(401);
  expect(JSON.stringify(seen.map((s) => [s.path, s.headers]))).not.toContain(proxyKey);
});

test("streamGenerateContent without alt=sse (one JSON array of chunks) is metered from its last chunk", async () => {
  const response = await fetch(`${proxy.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-goog-api-key": "AIza-test-key" },
    body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "hi" }] }] }),
  });
  expect(await response.json()).toEqual(streamChunks);
  expect(await recordOf(response.headers.get("x-audit-record-id"))).toMatchObject({
    stream: true,
    outcome: "completed",
    input_tokens: 120,
    output_tokens: 80,
    usage_source: "provider",
  });
});

test("a client that hangs up mid-stream: client_aborted, billed by estimate for what was delivered", async () => {
  const abort = new AbortController();
  const stream = await client().models.generateContentStream({
    model: "gemini-2.5-flash",
    contents: "slow please",
    config: { abortSignal: abort.signal },
  });
  const pieces: string[] = [];
  await (async () => {
    for await (const chunk of stream) {
      pieces.push(chunk.text ?? "");
      abort.abort();
    }
  })().catch(() => {});
  expect(pieces).toEqual(["Hel"]);
  const deadline = Date.now() + 5000;
  let record: AuditRecord | undefined;
  while (Date.now() < deadline) {
    record = (await proxy.records()).at(-1);
    if (record?.outcome) break;
    await Bun.sleep(20);
  }
  // The prompt count of the first chunk is kept; the output is counted from the text delivered.
  expect(record).toMatchObject({ outcome: "client_aborted", usage_source: "estimated", input_tokens: 120 });
  expect(record!.output_tokens).toBeGreaterThan(0);
});
