// End to end with the official SDKs, unchanged but for the base URL and attribution headers:
// every endpoint, plain and streamed, and the record each call leaves (usage from both formats).
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import type { AuditRecord } from "../../src/trail/record.ts";
import { anthropicUsage, chatUsage, startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
let proxy: TestProxy;
let openai: OpenAI;
let anthropic: Anthropic;
const headers = { "X-Agent-ID": "sdk-agent", "X-User-ID": "sdk-user", "X-Task-Context": "e2e" };

beforeAll(async () => {
  upstream = await startFakeUpstream();
  proxy = await startTestProxy(upstream.url);
  openai = new OpenAI({ apiKey: "sk-test", baseURL: `${proxy.url}/v1`, defaultHeaders: headers, maxRetries: 0 });
  anthropic = new Anthropic({ apiKey: "sk-ant-test", baseURL: proxy.url, defaultHeaders: headers, maxRetries: 0 });
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
});

async function lastRecord(): Promise<AuditRecord> {
  const all = await proxy.records();
  return all.at(-1)!;
}

const chatRecordUsage = {
  input_tokens: chatUsage.prompt_tokens,
  output_tokens: chatUsage.completion_tokens,
  cache_read_tokens: chatUsage.prompt_tokens_details.cached_tokens,
  reasoning_tokens: chatUsage.completion_tokens_details.reasoning_tokens,
  cache_write_tokens: null,
  usage_source: "provider",
};
const identity = { agent_id: "sdk-agent", user_id: "sdk-user", task_context: "e2e", attribution: "asserted" };

describe("openai SDK", () => {
  test("chat.completions.create", async () => {
    const completion = await openai.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] });
    expect(completion.choices[0]!.message.content).toBe("Hello world");
    expect(await lastRecord()).toMatchObject({
      ...identity,
      ...chatRecordUsage,
      provider: "openai",
      endpoint: "/v1/chat/completions",
      model: "gpt-4o",
      response_model: "gpt-4o-2025",
      stream: false,
      status: 200,
      outcome: "completed",
    });
  });

  test("chat.completions.create with stream: true", async () => {
    const stream = await openai.chat.completions.create({ model: "gpt-4o", messages: [], stream: true });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    expect(text).toBe("Hello world");
    const record = await lastRecord();
    expect(record).toMatchObject({ ...identity, ...chatRecordUsage, stream: true, outcome: "completed" });
    expect(record.ttfb_ms).toBeGreaterThan(0);
    expect(record.response_hash).toMatch(/^[0-9a-f]{64}$/);
    // The proxy asked for usage on the client's behalf.
    expect(JSON.parse(upstream.requests.at(-1)!.body).stream_options).toEqual({ include_usage: true });
  });

  test("responses.create, plain and streamed", async () => {
    const response = await openai.responses.create({ model: "gpt-5", input: "hi" });
    expect(response.output_text).toBe("Hi");
    const usage = { input_tokens: 20, output_tokens: 11, cache_read_tokens: 8, reasoning_tokens: 3 };
    expect(await lastRecord()).toMatchObject({ ...usage, endpoint: "/v1/responses", stream: false, outcome: "completed" });

    const stream = await openai.responses.create({ model: "gpt-5", input: "hi", stream: true });
    const types: string[] = [];
    for await (const event of stream) types.push(event.type);
    expect(types).toEqual(["response.created", "response.output_text.delta", "response.completed"]);
    expect(await lastRecord()).toMatchObject({ ...usage, stream: true, outcome: "completed", response_model: "gpt-5" });
  });

  test("embeddings.create", async () => {
    const result = await openai.embeddings.create({ model: "text-embedding-3-small", input: "hi", encoding_format: "float" });
    expect(result.data[0]!.embedding).toEqual([0.1, 0.2, 0.3]);
    expect(await lastRecord()).toMatchObject({ endpoint: "/v1/embeddings", input_tokens: 5, output_tokens: 0 });
  });

  test("completions.create", async () => {
    const result = await openai.completions.create({ model: "gpt-3.5-turbo-instruct", prompt: "hi" });
    expect(result.choices[0]!.text).toBe("Hi");
    expect(await lastRecord()).toMatchObject({ endpoint: "/v1/completions", input_tokens: 3, output_tokens: 1 });
  });

  test("models.list", async () => {
    const models = [];
    for await (const model of openai.models.list()) models.push(model.id);
    expect(models).toEqual(["gpt-4o"]);
    expect(await lastRecord()).toMatchObject({ endpoint: "/v1/models", model: null, usage_source: "none", outcome: "completed" });
  });

  test("an upstream error surfaces as the SDK's typed error", async () => {
    const failing = new OpenAI({
      apiKey: "sk-test",
      baseURL: `${proxy.url}/v1`,
      defaultHeaders: { "x-fake-scenario": "error-429" },
      maxRetries: 0,
    });
    const error = await failing.chat.completions.create({ model: "gpt-4o", messages: [] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect(await lastRecord()).toMatchObject({ outcome: "upstream_error", status: 429 });
  });

  test("a proxy refusal surfaces as the SDK's typed error with the proxy's message", async () => {
    const error = await openai.chat.completions.create({ model: 42 as unknown as string, messages: [] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as Error).message).toContain("model");
  });
});

describe("anthropic SDK", () => {
  const anthropicRecordUsage = {
    input_tokens: anthropicUsage.input_tokens + anthropicUsage.cache_read_input_tokens + anthropicUsage.cache_creation_input_tokens,
    output_tokens: anthropicUsage.output_tokens,
    cache_read_tokens: anthropicUsage.cache_read_input_tokens,
    cache_write_tokens: anthropicUsage.cache_creation_input_tokens,
    usage_source: "provider",
  };

  test("messages.create", async () => {
    const message = await anthropic.messages.create({
      model: "claude-sonnet-4-6",
      max_tokens: 16,
      messages: [{ role: "user", content: "hi" }],
    });
    expect(message.content[0]).toMatchObject({ type: "text", text: "Hello" });
    expect(await lastRecord()).toMatchObject({
      ...identity,
      ...anthropicRecordUsage,
      provider: "anthropic",
      endpoint: "/v1/messages",
      stream: false,
      outcome: "completed",
    });
    // The SDK's key reached the upstream; the attribution headers did not.
    const seen = upstream.requests.at(-1)!.headers;
    expect(seen["x-api-key"] ?? seen.authorization).toContain("sk-ant-test");
    expect(seen["x-agent-id"]).toBeUndefined();
  });

  test("messages.stream", async () => {
    const stream = anthropic.messages.stream({ model: "claude-sonnet-4-6", max_tokens: 16, messages: [{ role: "user", content: "hi" }] });
    const final = await stream.finalMessage();
    expect(final.content[0]).toMatchObject({ type: "text", text: "Hello world" });
    expect(await lastRecord()).toMatchObject({ ...identity, ...anthropicRecordUsage, stream: true, outcome: "completed" });
  });

  test("thinking tokens are recorded as reasoning_tokens (a part of output_tokens), plain and streamed", async () => {
    const usage = { input_tokens: 10, output_tokens: 900, output_tokens_details: { thinking_tokens: 640 } };
    const options = { headers: { "x-fake-usage": JSON.stringify(usage) } };
    const thinking = { type: "adaptive" } as const;
    await anthropic.messages.create(
      { model: "claude-sonnet-4-6", max_tokens: 2000, thinking, messages: [{ role: "user", content: "hi" }] },
      options,
    );
    expect(await lastRecord()).toMatchObject({ output_tokens: 900, reasoning_tokens: 640, usage_source: "provider" });
    await anthropic.messages
      .stream({ model: "claude-sonnet-4-6", max_tokens: 2000, thinking, messages: [{ role: "user", content: "hi" }] }, options)
      .finalMessage();
    expect(await lastRecord()).toMatchObject({ output_tokens: 900, reasoning_tokens: 640, stream: true, usage_source: "provider" });
  });

  test("messages.countTokens", async () => {
    const count = await anthropic.messages.countTokens({ model: "claude-sonnet-4-6", messages: [{ role: "user", content: "hi" }] });
    expect(count.input_tokens).toBe(42);
    expect(await lastRecord()).toMatchObject({ endpoint: "/v1/messages/count_tokens", usage_source: "none", outcome: "completed" });
  });

  test("a proxy refusal surfaces as the SDK's typed error with the proxy's message", async () => {
    const error = await anthropic.messages
      .create({ model: "claude-sonnet-4-6", max_tokens: 1, messages: [] }, { headers: { "X-Agent-ID": "x".repeat(1000) } })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Anthropic.BadRequestError);
    expect((error as Error).message).toContain("x-agent-id");
    expect(await lastRecord()).toMatchObject({ outcome: "rejected", status: 400 });
  });
});
