// The whole OpenAI and Anthropic surface: every endpoint the SDKs call beyond the model calls is
// forwarded and recorded (usage_source none), uploads stream through unread, unknown /v1 paths are
// forwarded unless the config refuses them. Real SDK clients against a fake upstream.
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, expect, test } from "bun:test";
import OpenAI, { toFile } from "openai";
import { anthropic, openai, sqliteAudit } from "../../plugins/index.ts";
import type { AuditRecord } from "../../src/trail/record.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

interface Seen {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Uint8Array;
}

const seen: Seen[] = [];
let upstream: ReturnType<typeof Bun.serve>;
let proxy: TestProxy;
let refusing: TestProxy;

const response = (id: string, status = "completed") => ({
  id,
  object: "response",
  created_at: 1,
  status,
  model: "gpt-4o-2024-08-06",
  output: [],
  usage: { input_tokens: 100, output_tokens: 50, total_tokens: 150 },
});

/** Answers each path as the real APIs do (shapes trimmed to what the SDKs read). */
function answer(method: string, path: string, body: Uint8Array): Response {
  const route = `${method} ${path.split("?")[0]}`;
  switch (route) {
    case "POST /v1/responses":
      return Response.json({ ...response("resp_1", "queued"), usage: null });
    case "GET /v1/responses/resp_1":
      return Response.json(response("resp_1"));
    case "DELETE /v1/responses/resp_1":
      return Response.json({ id: "resp_1", object: "response.deleted", deleted: true });
    case "POST /v1/responses/resp_1/cancel":
      return Response.json(response("resp_1", "cancelled"));
    case "GET /v1/responses/resp_1/input_items":
      return Response.json({ object: "list", data: [], first_id: null, last_id: null, has_more: false });
    case "POST /v1/responses/input_tokens":
      return Response.json({ object: "response.input_tokens", input_tokens: 11 });
    case "POST /v1/responses/compact":
      return Response.json({
        id: "cmp_1",
        object: "response.compaction",
        created_at: 1,
        output: [],
        usage: { input_tokens: 400, output_tokens: 30, total_tokens: 430 },
      });
    case "GET /v1/models/gpt-4o":
      return Response.json({ id: "gpt-4o", object: "model", created: 1, owned_by: "openai" });
    case "POST /v1/moderations":
      return Response.json({
        id: "modr_1",
        model: "omni-moderation-latest",
        results: [{ flagged: false, categories: {}, category_scores: {} }],
      });
    case "POST /v1/files":
      return Response.json({
        id: "file_1",
        object: "file",
        bytes: body.byteLength,
        created_at: 1,
        filename: "batch.jsonl",
        purpose: "batch",
      });
    case "GET /v1/files/file_1/content":
      return new Response('{"custom_id":"a"}\n', { headers: { "content-type": "application/octet-stream" } });
    case "POST /v1/batches":
    case "GET /v1/batches/batch_1":
      return Response.json({
        id: "batch_1",
        object: "batch",
        endpoint: "/v1/chat/completions",
        status: "validating",
        input_file_id: "file_1",
      });
    case "POST /v1/messages/batches":
    case "GET /v1/messages/batches/msgbatch_1":
      return Response.json({
        id: "msgbatch_1",
        type: "message_batch",
        processing_status: "in_progress",
        request_counts: { processing: 1, succeeded: 0, errored: 0, canceled: 0, expired: 0 },
      });
  }
  return Response.json({ error: { message: `Invalid URL (${method} ${path})`, type: "invalid_request_error" } }, { status: 404 });
}

beforeAll(async () => {
  upstream = Bun.serve({
    port: 0,
    async fetch(request) {
      const url = new URL(request.url);
      const body = new Uint8Array(await request.arrayBuffer());
      seen.push({ method: request.method, path: url.pathname + url.search, headers: Object.fromEntries(request.headers), body });
      return answer(request.method, url.pathname + url.search, body);
    },
  });
  const base = `http://127.0.0.1:${upstream.port}`;
  const plugins = () => [openai({ baseURL: `${base}/v1` }), anthropic({ baseURL: base }), sqliteAudit()];
  proxy = await startTestProxy(base, { plugins: plugins(), server: { maxBodyBytes: 4096, maxUploadBytes: 256 * 1024 } });
  refusing = await startTestProxy(base, { plugins: plugins(), server: { unknownPaths: "refuse" } });
});
afterAll(async () => {
  await proxy.stop();
  await refusing.stop();
  upstream.stop(true);
});

const client = () => new OpenAI({ apiKey: "sk-openai", baseURL: `${proxy.url}/v1`, maxRetries: 0 });
const claude = () => new Anthropic({ apiKey: "sk-ant", baseURL: proxy.url, maxRetries: 0 });

/** The records written since `from`, oldest first. */
async function recordsAfter(from: number, count: number, of = proxy): Promise<AuditRecord[]> {
  return (await of.settled(from + count)).slice(from);
}

test("the Responses API beyond create: retrieve, cancel, delete, input items, token counts — forwarded, recorded, not billed", async () => {
  const before = (await proxy.records()).length;
  const openaiClient = client();
  expect((await openaiClient.responses.retrieve("resp_1")).status).toBe("completed");
  expect((await openaiClient.responses.cancel("resp_1")).status).toBe("cancelled");
  await openaiClient.responses.delete("resp_1");
  expect((await openaiClient.responses.inputItems.list("resp_1")).data).toEqual([]);
  expect((await openaiClient.responses.inputTokens.count({ model: "gpt-4o", input: "hi" })).input_tokens).toBe(11);
  expect(seen.slice(-5).map((s) => `${s.method} ${s.path.split("?")[0]}`)).toEqual([
    "GET /v1/responses/resp_1",
    "POST /v1/responses/resp_1/cancel",
    "DELETE /v1/responses/resp_1",
    "GET /v1/responses/resp_1/input_items",
    "POST /v1/responses/input_tokens",
  ]);
  expect(seen.at(-1)!.headers.authorization).toBe("Bearer sk-openai");
  const records = await recordsAfter(before, 5);
  expect(records.map((r) => [r.endpoint, r.provider, r.outcome, r.status, r.usage_source, r.input_tokens, r.cost_usd])).toEqual([
    ["/v1/responses/resp_1", "openai", "completed", 200, "none", null, null],
    ["/v1/responses/resp_1/cancel", "openai", "completed", 200, "none", null, null],
    ["/v1/responses/resp_1", "openai", "completed", 200, "none", null, null],
    ["/v1/responses/resp_1/input_items", "openai", "completed", 200, "none", null, null],
    ["/v1/responses/input_tokens", "openai", "completed", 200, "none", null, null],
  ]);
  // The token count names its model; a retrieve names none.
  expect(records.map((r) => r.model)).toEqual([null, null, null, null, "gpt-4o"]);
});

test("a background response is recorded unpriced with its reason (not estimated), and polling it works", async () => {
  const before = (await proxy.records()).length;
  const queued = await client().responses.create({ model: "gpt-4o", input: "a long task", background: true });
  expect(queued.status).toBe("queued");
  expect((await client().responses.retrieve(queued.id)).status).toBe("completed");
  const [created, polled] = await recordsAfter(before, 2);
  expect(created).toMatchObject({
    endpoint: "/v1/responses",
    outcome: "completed",
    usage_source: "none",
    input_tokens: null,
    cost_usd: null,
    price_source: "unpriced:background",
  });
  expect(polled).toMatchObject({ endpoint: "/v1/responses/resp_1", usage_source: "none", price_source: null });
});

test("responses.compact is a model call: metered and priced", async () => {
  const before = (await proxy.records()).length;
  await client().responses.compact({ model: "gpt-4o", input: "a long conversation" });
  const [record] = await recordsAfter(before, 1);
  expect(record).toMatchObject({ endpoint: "/v1/responses/compact", usage_source: "provider", input_tokens: 400, output_tokens: 30 });
  expect(record!.cost_usd).toBeGreaterThan(0);
});

test("models.retrieve and moderations are forwarded and recorded", async () => {
  const before = (await proxy.records()).length;
  expect((await client().models.retrieve("gpt-4o")).id).toBe("gpt-4o");
  expect((await client().moderations.create({ model: "omni-moderation-latest", input: "hello" })).results[0]!.flagged).toBe(false);
  const records = await recordsAfter(before, 2);
  expect(records.map((r) => [r.endpoint, r.model, r.outcome, r.usage_source])).toEqual([
    ["/v1/models/gpt-4o", null, "completed", "none"],
    ["/v1/moderations", "omni-moderation-latest", "completed", "none"],
  ]);
});

test("a file upload streams through unread: larger than server.maxBodyBytes, byte for byte, its multipart boundary kept", async () => {
  const before = (await proxy.records()).length;
  const lines = Array.from({ length: 400 }, (_, i) => `{"custom_id":"r${i}","method":"POST","url":"/v1/chat/completions"}\n`).join("");
  expect(lines.length).toBeGreaterThan(4096 * 4);
  const file = await client().files.create({ file: await toFile(Buffer.from(lines), "batch.jsonl"), purpose: "batch" });
  expect(file.id).toBe("file_1");
  const upload = seen.at(-1)!;
  expect(upload.headers["content-type"]).toMatch(/^multipart\/form-data; boundary=/);
  expect(upload.headers["content-length"]).toBe(String(upload.body.byteLength));
  const text = new TextDecoder().decode(upload.body);
  expect(text).toContain(lines);
  expect(text).toContain('name="purpose"');
  expect(file.bytes).toBe(upload.body.byteLength);
  const [record] = await recordsAfter(before, 1);
  expect(record).toMatchObject({ endpoint: "/v1/files", outcome: "completed", usage_source: "none", prompt_hash: null });
});

test("an upload over server.maxUploadBytes is refused with 413 before it is forwarded, and recorded", async () => {
  const before = (await proxy.records()).length;
  const forwarded = seen.length;
  const big = Buffer.alloc(300 * 1024, 97);
  const error = await client()
    .files.create({ file: await toFile(big, "big.jsonl"), purpose: "batch" })
    .catch((e: unknown) => e);
  expect(error).toBeInstanceOf(OpenAI.APIError);
  expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(413);
  expect((error as InstanceType<typeof OpenAI.APIError>).message).toContain("server.maxUploadBytes");
  expect(seen.length).toBe(forwarded);
  const [record] = await recordsAfter(before, 1);
  expect(record).toMatchObject({ endpoint: "/v1/files", outcome: "rejected", status: 413, error_type: "body_too_large" });
});

test("a chunked upload that passes server.maxUploadBytes is cut off, and recorded as failed", async () => {
  const before = (await proxy.records()).length;
  const chunk = new Uint8Array(64 * 1024).fill(98);
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent++ < 8) controller.enqueue(chunk);
      else controller.close();
    },
  });
  const answer = await fetch(`${proxy.url}/v1/files`, {
    method: "POST",
    headers: { authorization: "Bearer sk-openai", "content-type": "multipart/form-data; boundary=x" },
    body,
  }).catch((e: unknown) => e);
  if (answer instanceof Response) expect(answer.status).toBeGreaterThanOrEqual(400);
  const [record] = await recordsAfter(before, 1);
  expect(record).toMatchObject({ endpoint: "/v1/files", outcome: "upstream_error" });
  expect(seen.some((s) => s.body.byteLength > 256 * 1024)).toBe(false);
});

test("files.content passes the file's bytes through", async () => {
  const content = await client().files.content("file_1");
  expect(await content.text()).toBe('{"custom_id":"a"}\n');
});

test("batches are forwarded and recorded; creating one is recorded without usage", async () => {
  const before = (await proxy.records()).length;
  const batch = await client().batches.create({ input_file_id: "file_1", endpoint: "/v1/chat/completions", completion_window: "24h" });
  expect((await client().batches.retrieve(batch.id)).status).toBe("validating");
  const records = await recordsAfter(before, 2);
  expect(records.map((r) => [r.endpoint, r.outcome, r.usage_source, r.cost_usd, r.price_source])).toEqual([
    ["/v1/batches", "completed", "none", null, "unpriced:batch"],
    ["/v1/batches/batch_1", "completed", "none", null, null],
  ]);
});

test("Anthropic message batches go to the Anthropic provider with its key", async () => {
  const before = (await proxy.records()).length;
  const batch = await claude().messages.batches.create({
    requests: [{ custom_id: "a", params: { model: "claude-sonnet-4-6", max_tokens: 10, messages: [{ role: "user", content: "hi" }] } }],
  });
  expect((await claude().messages.batches.retrieve(batch.id)).processing_status).toBe("in_progress");
  expect(seen.at(-1)).toMatchObject({ method: "GET", path: "/v1/messages/batches/msgbatch_1" });
  const { authorization, "x-api-key": apiKey } = seen.at(-1)!.headers;
  expect(apiKey ?? authorization).toContain("sk-ant");
  const records = await recordsAfter(before, 2);
  expect(records.map((r) => [r.endpoint, r.provider, r.outcome, r.usage_source, r.price_source])).toEqual([
    ["/v1/messages/batches", "anthropic", "completed", "none", "unpriced:batch"],
    ["/v1/messages/batches/msgbatch_1", "anthropic", "completed", "none", null],
  ]);
});

test("an error on a non-model endpoint passes through and is recorded as upstream_error", async () => {
  const before = (await proxy.records()).length;
  const error = await client()
    .responses.retrieve("resp_missing")
    .catch((e: unknown) => e);
  expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(404);
  const [record] = await recordsAfter(before, 1);
  expect(record).toMatchObject({ endpoint: "/v1/responses/resp_missing", outcome: "upstream_error", status: 404 });
});

test("with server.unknownPaths 'refuse', a path the proxy does not know is a recorded 404 and never forwarded", async () => {
  const forwarded = seen.length;
  const answer = await fetch(`${refusing.url}/v1/vector_stores`, { headers: { authorization: "Bearer sk-openai" } });
  expect(answer.status).toBe(404);
  expect(((await answer.json()) as { error: { message: string } }).error.message).toContain("server.unknownPaths");
  expect(seen.length).toBe(forwarded);
  const record = (await refusing.settled(1)).find((r) => r.id === answer.headers.get("x-audit-record-id"));
  expect(record).toMatchObject({ endpoint: "/v1/vector_stores", outcome: "rejected", status: 404 });
  // Known endpoints are still served.
  expect((await new OpenAI({ apiKey: "k", baseURL: `${refusing.url}/v1`, maxRetries: 0 }).models.retrieve("gpt-4o")).id).toBe("gpt-4o");
});

test("a query string is forwarded but never recorded", async () => {
  const before = (await proxy.records()).length;
  await (await fetch(`${proxy.url}/v1/responses/resp_1?include[]=x&token=secret-value`)).text();
  expect(seen.at(-1)!.path).toBe("/v1/responses/resp_1?include[]=x&token=secret-value");
  const [record] = await recordsAfter(before, 1);
  expect(record!.endpoint).toBe("/v1/responses/resp_1");
  expect(JSON.stringify(record)).not.toContain("secret-value");
});
