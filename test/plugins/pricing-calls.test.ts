// Priced calls end to end, against hand-computed costs from published prices (USD per million
// tokens): gpt-4o $2.50 in / $1.25 cached / $10 out; gpt-5 $1.25 / $0.125 / $10;
// claude-sonnet-4-6 $3 in / $0.30 cache read / $3.75 5m write / $6 1h write / $15 out;
// gemini-2.5-pro $1.25 / $10 up to 200k input tokens, $2.50 / $15 above.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { countTokens } from "gpt-tokenizer/encoding/o200k_base";
import { anthropic, headerAttribution, openai, openaiCompatible, pricing, sqliteAudit } from "agent-attr/plugins";
import type { AuditRecord } from "agent-attr";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
let proxy: TestProxy;
const warnings: string[] = [];
const originalWarn = console.warn;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  console.warn = (message: string) => void warnings.push(String(message));
  const v1 = `${upstream.url}/v1`;
  proxy = await startTestProxy(upstream.url, {
    plugins: [
      openaiCompatible({ name: "ollama", baseURL: v1, models: ["llama*"] }),
      openaiCompatible({ name: "google", baseURL: v1, models: ["gemini*"], catalog: "google" }),
      openai({ baseURL: v1 }),
      anthropic({ baseURL: upstream.url }),
      headerAttribution(),
      pricing({ models: { "house-model-*": { input: 0.5, cachedInput: 0.05, output: 1.5 } } }),
      sqliteAudit(),
    ],
  });
});
afterAll(async () => {
  console.warn = originalWarn;
  await proxy.stop();
  await upstream.stop();
});

const post = (path: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  fetch(`${proxy.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-agent-id": "pricing-test", ...headers },
    body: JSON.stringify(body),
  });

async function recordOf(response: Response): Promise<AuditRecord> {
  await response.arrayBuffer();
  const id = response.headers.get("x-audit-record-id");
  const records = await proxy.settled(1);
  const record = records.find((r) => r.id === id);
  if (!record) throw new Error(`no record ${id}`);
  return record;
}

const chatUsage = (prompt: number, cached: number, completion: number, reasoning = 0) =>
  JSON.stringify({
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached },
    completion_tokens_details: { reasoning_tokens: reasoning },
  });
const messages = [{ role: "user", content: "Summarise the pull request." }];

describe("OpenAI", () => {
  test("plain and streamed chat with cached input tokens", async () => {
    for (const stream of [false, true]) {
      const record = await recordOf(
        await post("/v1/chat/completions", { model: "gpt-4o", messages, stream }, { "x-fake-usage": chatUsage(1000, 400, 500) }),
      );
      // 600 x 2.50 + 400 x 1.25 + 500 x 10 = 7,000 micro-dollars
      expect(record).toMatchObject({ stream, input_tokens: 1000, cache_read_tokens: 400, output_tokens: 500, usage_source: "provider" });
      expect(record).toMatchObject({ cost_nano_usd: 7_000_000, cost_usd: 0.007, price_source: "genai-prices@0.1.8:openai/gpt-4o" });
    }
  });

  test("plain and streamed chat with reasoning tokens (priced as output)", async () => {
    for (const stream of [false, true]) {
      const response = await post(
        "/v1/chat/completions",
        { model: "gpt-5", messages, stream },
        { "x-fake-usage": chatUsage(2000, 1500, 3000, 2500) },
      );
      const record = await recordOf(response);
      // 500 x 1.25 + 1500 x 0.125 + 3000 x 10 = 30,812.5 micro-dollars
      expect(record).toMatchObject({ stream, reasoning_tokens: 2500, output_tokens: 3000, cost_nano_usd: 30_812_500 });
    }
  });

  test("Responses API usage (input_tokens_details / output_tokens_details)", async () => {
    const usage = {
      input_tokens: 4000,
      input_tokens_details: { cached_tokens: 1000 },
      output_tokens: 900,
      output_tokens_details: { reasoning_tokens: 600 },
      total_tokens: 4900,
    };
    for (const stream of [false, true]) {
      const record = await recordOf(
        await post("/v1/responses", { model: "gpt-4o", input: "hi", stream }, { "x-fake-usage": JSON.stringify(usage) }),
      );
      // 3000 x 2.50 + 1000 x 1.25 + 900 x 10 = 17,750 micro-dollars
      expect(record).toMatchObject({ input_tokens: 4000, cache_read_tokens: 1000, reasoning_tokens: 600, cost_nano_usd: 17_750_000 });
    }
  });

  test("a price from the config wins over the catalog and says so", async () => {
    const record = await recordOf(
      await post("/v1/chat/completions", { model: "house-model-7b", messages }, { "x-fake-usage": chatUsage(2000, 1000, 100) }),
    );
    // 1000 x 0.5 + 1000 x 0.05 + 100 x 1.5 = 700 micro-dollars
    expect(record).toMatchObject({ cost_nano_usd: 700_000, price_source: "config:models[house-model-*]" });
  });

  test("an unknown model is unpriced (null, not $0) and warned about once", async () => {
    for (const stream of [false, true]) {
      const record = await recordOf(await post("/v1/chat/completions", { model: "mystery-model-9", messages, stream }));
      expect(record).toMatchObject({ usage_source: "provider", input_tokens: 12, cost_usd: null, cost_nano_usd: null, price_source: null });
    }
    expect(warnings.filter((w) => w.includes("mystery-model-9"))).toHaveLength(1);
  });
});

describe("Anthropic", () => {
  const usage = JSON.stringify({
    input_tokens: 100,
    cache_read_input_tokens: 2000,
    cache_creation_input_tokens: 3000,
    cache_creation: { ephemeral_5m_input_tokens: 2000, ephemeral_1h_input_tokens: 1000 },
    output_tokens: 400,
  });
  const body = { model: "claude-sonnet-4-6", max_tokens: 1024, messages };

  test("plain and streamed: cache reads, 5-minute and 1-hour cache writes priced apart", async () => {
    for (const stream of [false, true]) {
      const record = await recordOf(await post("/v1/messages", { ...body, stream }, { "x-fake-usage": usage }));
      // 100 x 3 + 2000 x 0.30 + 2000 x 3.75 + 1000 x 6 + 400 x 15 = 20,400 micro-dollars
      expect(record).toMatchObject({
        stream,
        input_tokens: 5100,
        cache_read_tokens: 2000,
        cache_write_tokens: 3000,
        cache_write_1h_tokens: 1000,
        output_tokens: 400,
        cost_nano_usd: 20_400_000,
        price_source: "genai-prices@0.1.8:anthropic/claude-sonnet-4-6",
      });
    }
  });
});

describe("other providers", () => {
  test("a long-context tier: the whole call is priced at the tier once input exceeds 200k", async () => {
    const below = await recordOf(
      await post("/v1/chat/completions", { model: "gemini-2.5-pro", messages }, { "x-fake-usage": chatUsage(100_000, 0, 1000) }),
    );
    // 100,000 x 1.25 + 1000 x 10 = 135,000 micro-dollars
    expect(below).toMatchObject({
      provider: "google",
      cost_nano_usd: 135_000_000,
      price_source: "genai-prices@0.1.8:google/gemini-2.5-pro",
    });
    for (const stream of [false, true]) {
      const above = await recordOf(
        await post("/v1/chat/completions", { model: "gemini-2.5-pro", messages, stream }, { "x-fake-usage": chatUsage(250_000, 0, 1000) }),
      );
      // 250,000 x 2.50 + 1000 x 15 = 640,000 micro-dollars
      expect(above).toMatchObject({ stream, cost_nano_usd: 640_000_000, cost_usd: 0.64 });
    }
  });

  test("embeddings: input tokens only", async () => {
    const usage = JSON.stringify({ prompt_tokens: 1000, total_tokens: 1000 });
    const record = await recordOf(
      await post("/v1/embeddings", { model: "text-embedding-3-small", input: "hi" }, { "x-fake-usage": usage }),
    );
    // 1000 x $0.02 = 20 micro-dollars
    expect(record).toMatchObject({
      input_tokens: 1000,
      output_tokens: 0,
      cost_nano_usd: 20_000,
      price_source: "genai-prices@0.1.8:openai/text-embedding-3-small",
    });
  });

  test("a local server that reports no usage for embeddings: input estimated, free", async () => {
    const record = await recordOf(
      await post("/v1/embeddings", { model: "llama3.1:8b", input: "embed this sentence" }, { "x-fake-usage": "none" }),
    );
    expect(record).toMatchObject({
      usage_source: "estimated",
      input_tokens: countTokens("embed this sentence"),
      output_tokens: 0,
      cost_nano_usd: 0,
    });
  });

  test("a local server that reports no usage, plain or streamed: estimated, flagged, free", async () => {
    const text = "Local models answer without counting tokens.";
    for (const stream of [false, true]) {
      const record = await recordOf(
        await post("/v1/chat/completions", { model: "llama3.1:8b", messages, stream }, { "x-fake-usage": "none", "x-fake-text": text }),
      );
      expect(record).toMatchObject({
        provider: "ollama",
        outcome: "completed",
        usage_source: "estimated",
        input_tokens: countTokens("Summarise the pull request."),
        output_tokens: countTokens(stream ? text : "Hello world"),
        cost_nano_usd: 0,
        price_source: "free:ollama",
      });
    }
  });

  test("a self-hosted model costs 0 and says why", async () => {
    const record = await recordOf(await post("/v1/chat/completions", { model: "llama3.1:8b", messages }));
    expect(record).toMatchObject({ provider: "ollama", input_tokens: 12, cost_nano_usd: 0, cost_usd: 0, price_source: "free:ollama" });
  });
});

describe("calls that never reported their usage are billed by estimate", () => {
  const text = "The pull request renames the audit sink and adds a migration for the new column.";
  const prompt = "Summarise the pull request.";

  async function abortAfterText(path: string, body: Record<string, unknown>, headers: Record<string, string>): Promise<string> {
    const response = await post(path, body, { "x-fake-text": text, ...headers });
    const reader = response.body!.getReader();
    let seen = "";
    while (!seen.includes(text.slice(-10))) seen += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    return response.headers.get("x-audit-record-id")!;
  }

  test("OpenAI stream abandoned by the client: input and output estimated, flagged, priced", async () => {
    const id = await abortAfterText(
      "/v1/chat/completions",
      { model: "gpt-4o", messages, stream: true },
      { "x-fake-scenario": "gap:2000@3" },
    );
    const record = (await proxy.settled(1)).find((r) => r.id === id)!;
    const input = countTokens(prompt);
    const output = countTokens(text);
    expect(record).toMatchObject({ outcome: "client_aborted", usage_source: "estimated", input_tokens: input, output_tokens: output });
    expect(record.cost_nano_usd).toBe(input * 2_500 + output * 10_000);
  });

  test("Anthropic stream abandoned: the provider's input count is kept, output estimated", async () => {
    const usage = JSON.stringify({ input_tokens: 50, cache_read_input_tokens: 0, cache_creation_input_tokens: 0, output_tokens: 1 });
    const id = await abortAfterText(
      "/v1/messages",
      { model: "claude-sonnet-4-6", max_tokens: 1024, messages, stream: true },
      { "x-fake-scenario": "gap:2000@4", "x-fake-usage": usage },
    );
    const record = (await proxy.settled(1)).find((r) => r.id === id)!;
    const output = countTokens(text);
    expect(record).toMatchObject({ outcome: "client_aborted", usage_source: "estimated", input_tokens: 50, output_tokens: output });
    expect(record.cost_nano_usd).toBe(50 * 3_000 + output * 15_000);
  });

  test("an error event mid-stream (Anthropic overloaded_error, Responses response.failed, chat error): upstream_error, billed by estimate", async () => {
    const anthropicUsage = JSON.stringify({
      input_tokens: 100,
      cache_read_input_tokens: 0,
      cache_creation_input_tokens: 0,
      output_tokens: 1,
    });
    const delivered = text.slice(0, Math.ceil(text.length / 2));
    type Case = {
      path: string;
      body: Record<string, unknown>;
      headers: Record<string, string>;
      error: string;
      input: number;
      rates: [number, number];
    };
    const cases: Case[] = [
      {
        path: "/v1/messages",
        body: { model: "claude-sonnet-4-6", max_tokens: 1024, messages, stream: true },
        headers: { "x-fake-usage": anthropicUsage },
        error: "overloaded_error",
        input: 100,
        rates: [3_000, 15_000],
      },
      {
        path: "/v1/responses",
        body: { model: "gpt-4o", input: prompt, stream: true },
        headers: {},
        error: "server_error",
        input: countTokens(prompt),
        rates: [2_500, 10_000],
      },
      {
        path: "/v1/chat/completions",
        body: { model: "gpt-4o", messages, stream: true },
        headers: {},
        error: "server_error",
        input: countTokens(prompt),
        rates: [2_500, 10_000],
      },
    ];
    for (const c of cases) {
      const response = await post(c.path, c.body, { "x-fake-scenario": "sse-error", "x-fake-text": text, ...c.headers });
      const record = await recordOf(response);
      const output = countTokens(c.path === "/v1/responses" ? "Hi" : delivered);
      expect(record).toMatchObject({
        outcome: "upstream_error",
        error_type: c.error,
        usage_source: "estimated",
        input_tokens: c.input,
        output_tokens: output,
      });
      expect(record.cost_nano_usd).toBe(c.input * c.rates[0] + output * c.rates[1]);
    }
  });

  test("a client that hangs up before the answer's headers is billed for the prompt the upstream received", async () => {
    const controller = new AbortController();
    const sent = upstream.requests.length;
    const aborted = fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-agent-id": "pricing-test", "x-fake-scenario": "hang" },
      body: JSON.stringify({ model: "gpt-4o", messages }),
      signal: controller.signal,
    }).catch(() => null);
    for (let i = 0; i < 100 && upstream.requests.length < sent + 1; i++) await Bun.sleep(10);
    controller.abort();
    await aborted;
    const records = await proxy.settled(1);
    const record = records.filter((r) => r.outcome === "client_aborted" && r.usage_source === "estimated" && r.output_tokens === 0).at(-1)!;
    const input = countTokens(prompt);
    expect(record).toMatchObject({ input_tokens: input, output_tokens: 0, cost_nano_usd: input * 2_500 });
  });

  test("an answer too large to buffer is still metered: usage read from its tail; without usage, output stays unknown", async () => {
    const huge = await recordOf(
      await post(
        "/v1/chat/completions",
        { model: "gpt-4o", messages },
        { "x-fake-scenario": "huge", "x-fake-usage": chatUsage(1000, 0, 500) },
      ),
    );
    expect(huge).toMatchObject({
      usage_source: "provider",
      response_model: "gpt-4o-2025",
      input_tokens: 1000,
      output_tokens: 500,
      cost_nano_usd: 7_500_000,
    });
    const unknown = await recordOf(
      await post("/v1/chat/completions", { model: "gpt-4o", messages }, { "x-fake-scenario": "huge", "x-fake-usage": "none" }),
    );
    expect(unknown).toMatchObject({
      usage_source: "estimated",
      input_tokens: countTokens(prompt),
      output_tokens: null,
      cost_nano_usd: null,
    });
  });

  test("upstream failure mid-stream: what was delivered is billed", async () => {
    const response = await post(
      "/v1/chat/completions",
      { model: "gpt-4o", messages, stream: true },
      { "x-fake-scenario": "break", "x-fake-text": text },
    );
    await response.arrayBuffer().catch(() => {}); // the stream ends in an error, as the upstream's did
    const record = (await proxy.settled(1)).find((r) => r.id === response.headers.get("x-audit-record-id"))!;
    const delivered = text.slice(0, Math.ceil(text.length / 2));
    expect(record).toMatchObject({
      outcome: "upstream_error",
      usage_source: "estimated",
      output_tokens: countTokens(delivered),
      input_tokens: countTokens(prompt),
    });
    expect(record.cost_nano_usd).toBe(countTokens(prompt) * 2_500 + countTokens(delivered) * 10_000);
  });
});

test("GET /audit/summary: totals equal the sum of the records, unpriced calls counted", async () => {
  const records = await proxy.settled(1);
  for (const by of ["model", "provider", "day"]) {
    const summary = (await (await fetch(`${proxy.url}/audit/summary?by=${by}&days=1`)).json()) as {
      groups: { key: string; calls: number; cost_nano_usd: number }[];
      total: { calls: number; cost_nano_usd: number; unpriced_calls: number; input_tokens: number };
    };
    expect(summary.total.calls).toBe(records.length);
    expect(summary.total.cost_nano_usd).toBe(records.reduce((sum, r) => sum + (r.cost_nano_usd ?? 0), 0));
    expect(summary.total.input_tokens).toBe(records.reduce((sum, r) => sum + (r.input_tokens ?? 0), 0));
    expect(summary.total.unpriced_calls).toBe(records.filter((r) => r.cost_nano_usd === null && r.usage_source !== "none").length);
  }
  const bad = await fetch(`${proxy.url}/audit/summary?by=planet`);
  expect(bad.status).toBe(400);
  expect(((await bad.json()) as { error: { code: string } }).error.code).toBe("invalid_query");
});
