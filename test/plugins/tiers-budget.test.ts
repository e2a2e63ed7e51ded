// Cost budgets under concurrency, with prices where a call really costs more than a typical
// estimate: the output ceiling (max_tokens or maxOutputTokens), every input token at the dearest
// input rate (1-hour cache writes), text counted by bytes and media by part. Calls are held in
// flight (streams with a pause) so every check runs before any call settles.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { anthropic, headerAttribution, openai, openaiCompatible, pricing, sqliteAudit, tiers } from "../../plugins/index.ts";
import { reservationOf } from "../../plugins/tiers/reserve.ts";
import type { CallContext } from "../../src/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
});

const clock = { t: Date.UTC(2026, 1, 3, 9) };
const now = () => clock.t;
const prices = pricing({
  models: {
    "gpt-budget": { input: 10, output: 100 },
    "claude-budget": { input: 10, cacheWrite: 12.5, cacheWrite1h: 40, output: 10 },
  },
  catalog: false,
});

async function withProxy(costPerDay: number, run: (proxy: TestProxy) => Promise<void>) {
  const limiter = tiers({ tiers: { t: { costPerDay, per: ["user"] } }, default: "t", now });
  const proxy = await startTestProxy(upstream.url, {
    plugins: [
      openai({ baseURL: `${upstream.url}/v1` }),
      anthropic({ baseURL: upstream.url }),
      headerAttribution(),
      prices,
      limiter,
      sqliteAudit(),
    ],
  });
  try {
    await run(proxy);
  } finally {
    await proxy.stop();
  }
}

const completedCost = (records: { outcome: string | null; cost_nano_usd: number | null }[]) =>
  records.filter((r) => r.outcome === "completed").reduce((sum, r) => sum + r.cost_nano_usd!, 0);

describe("concurrent calls against a cost budget never spend past it", () => {
  test("no max_tokens: the 4,096-token output ceiling is reserved; 10 calls that use it all spend ≤ $1.00", async () => {
    // Each call really costs 4,096 output × $100/M = $0.4096 (+ input): a 1,024-token guess would let 9 of 10 through.
    await withProxy(1, async (proxy) => {
      const usage = JSON.stringify({ prompt_tokens: 8, completion_tokens: 4096, total_tokens: 4104 });
      const call = () =>
        fetch(`${proxy.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-user-id": "uma", "x-fake-usage": usage, "x-fake-scenario": "gap:300" },
          body: JSON.stringify({ model: "gpt-budget", stream: true, messages: [{ role: "user", content: "write me a long essay" }] }),
        }).then(async (r) => ({ status: r.status, text: await r.text() }));
      const results = await Promise.all(Array.from({ length: 10 }, call));
      expect(results.filter((r) => r.status === 200)).toHaveLength(2);
      expect(results.filter((r) => r.status === 429)).toHaveLength(8); // busy: the 2 in flight hold the budget
      const records = await proxy.settled(10);
      const spent = completedCost(records);
      expect(spent).toBe(2 * (4096 * 100_000 + 8 * 10_000));
      expect(spent).toBeLessThanOrEqual(1e9);
    });
  });

  test("cache writes at the 1-hour rate (4× input) are inside the reservation: 10 calls against $0.50", async () => {
    // Real: 3,000 tokens written to the 1-hour cache at $40/M = $0.12 per call; a bytes/4 guess at $10/M is ~$0.011.
    await withProxy(0.5, async (proxy) => {
      const prompt = "x".repeat(3900);
      const usage = JSON.stringify({
        input_tokens: 10,
        cache_creation_input_tokens: 3000,
        cache_creation: { ephemeral_1h_input_tokens: 3000, ephemeral_5m_input_tokens: 0 },
        cache_read_input_tokens: 0,
        output_tokens: 100,
      });
      const call = () =>
        fetch(`${proxy.url}/v1/messages`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-user-id": "vic", "x-fake-usage": usage, "x-fake-scenario": "gap:300" },
          body: JSON.stringify({ model: "claude-budget", max_tokens: 100, stream: true, messages: [{ role: "user", content: prompt }] }),
        }).then(async (r) => ({ status: r.status, text: await r.text() }));
      const results = await Promise.all(Array.from({ length: 10 }, call));
      const passed = results.filter((r) => r.status === 200).length;
      expect(passed).toBe(3); // ceiling ≈ (3,995 body bytes + 48) × $40/M + 100 × $10/M ≈ $0.1627; 3 fit in $0.50
      const records = await proxy.settled(10);
      const spent = completedCost(records);
      expect(spent).toBe(passed * (10 * 10_000 + 3000 * 40_000 + 100 * 10_000));
      expect(spent).toBeLessThanOrEqual(0.5e9);
    });
  });

  test("a schema-heavy tool: its keys and numbers count, so 10 calls of 16,000 real input tokens spend ≤ $1.00", async () => {
    // 2,000 properties: ~62 KB of JSON whose strings alone are a few hundred bytes; each call really costs $0.161.
    await withProxy(1, async (proxy) => {
      const properties: Record<string, unknown> = {};
      for (let i = 0; i < 2000; i++) properties[`field_${i}`] = { type: "string", maxLength: 64 };
      const tools = [{ type: "function", function: { name: "f", parameters: { type: "object", properties } } }];
      const usage = JSON.stringify({ prompt_tokens: 16_000, completion_tokens: 10, total_tokens: 16_010 });
      const call = () =>
        fetch(`${proxy.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-user-id": "tom", "x-fake-usage": usage, "x-fake-scenario": "gap:300" },
          body: JSON.stringify({ model: "gpt-budget", max_tokens: 10, stream: true, messages: [{ role: "user", content: "hi" }], tools }),
        }).then(async (r) => ({ status: r.status, text: await r.text() }));
      const results = await Promise.all(Array.from({ length: 10 }, call));
      expect(results.filter((r) => r.status === 200).length).toBeGreaterThanOrEqual(1);
      const records = await proxy.settled(10);
      const spent = completedCost(records);
      expect(spent).toBe(results.filter((r) => r.status === 200).length * (16_000 * 10_000 + 10 * 100_000));
      expect(spent).toBeLessThanOrEqual(1e9);
    });
  });

  test("n without max_tokens reserves maxOutputTokens × n: 4 calls of n=2 using it all spend ≤ $2.00", async () => {
    // Each call really costs 2 × 4,096 output × $100/M = $0.8192 (+ input); reserving 4,096 once would let all 4 through ($3.28).
    await withProxy(2, async (proxy) => {
      const usage = JSON.stringify({ prompt_tokens: 8, completion_tokens: 2 * 4096, total_tokens: 8 + 2 * 4096 });
      const call = () =>
        fetch(`${proxy.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-user-id": "nia", "x-fake-usage": usage, "x-fake-scenario": "gap:300" },
          body: JSON.stringify({ model: "gpt-budget", n: 2, stream: true, messages: [{ role: "user", content: "two essays" }] }),
        }).then(async (r) => ({ status: r.status, text: await r.text() }));
      const results = await Promise.all(Array.from({ length: 4 }, call));
      expect(results.filter((r) => r.status === 200)).toHaveLength(2);
      const records = await proxy.settled(4);
      const spent = completedCost(records);
      expect(spent).toBe(2 * (2 * 4096 * 100_000 + 8 * 10_000));
      expect(spent).toBeLessThanOrEqual(2e9);
    });
  });
});

describe("the reservation", () => {
  const ctx = (body: Record<string, unknown>, kind: CallContext["endpoint"]["kind"] = "chat.completions") =>
    ({
      body,
      rawBody: new TextEncoder().encode(JSON.stringify(body)),
      endpoint: { kind, wire: "openai", path: "/", method: "POST", billed: kind !== "messages.count_tokens" },
    }) as unknown as CallContext;

  const bytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value));

  test("counts the body's JSON bytes and a base64 image as one media part, not by its bytes", () => {
    const image = { type: "image_url", image_url: { url: `data:image/png;base64,${"A".repeat(400_000)}` } };
    const body = { model: "m", max_tokens: 50, messages: [{ role: "user", content: [{ type: "text", text: "héllo" }, image] }] };
    const r = reservationOf(ctx(body), 4096);
    // Every byte of the body but the image's + 32 per request + 16 for the message + 3,000 for the image; 50 output.
    expect(r.ceiling.input_tokens).toBe(bytes(body) - bytes(image) + 32 + 16 + 3000);
    expect(r.ceiling.input_tokens).toBeLessThan(3300);
    expect(r.ceiling.output_tokens).toBe(50);
    expect(r.outputFromRequest).toBe(true);
  });

  test("several output limits: the largest is reserved (a server may honour any one of them); a non-integer one is refused", () => {
    const r = reservationOf(ctx({ model: "m", max_tokens: 1, max_completion_tokens: 100_000, messages: [] }), 4096);
    expect(r.ceiling.output_tokens).toBe(100_000);
    expect(() => reservationOf(ctx({ model: "m", max_tokens: "100000", messages: [] }), 4096)).toThrow(
      /max_tokens must be a positive integer/,
    );
  });

  test("a base64 PDF is one file part; a plain-text document is counted by its bytes", () => {
    const pdf = { type: "document", source: { type: "base64", media_type: "application/pdf", data: "J".repeat(300_000) } };
    const text = { type: "document", source: { type: "text", media_type: "text/plain", data: "abcdefgh" } };
    const body = { model: "m", max_tokens: 1, messages: [{ role: "user", content: [pdf, text] }] };
    const r = reservationOf(ctx(body, "messages"), 4096);
    expect(r.ceiling.input_tokens).toBe(bytes(body) - bytes(pdf) + 32 + 16 + 3000);
  });

  test("tool schemas count by every byte, keys and numbers included, plus the tool-use system prompt", () => {
    const properties: Record<string, unknown> = {};
    for (let i = 0; i < 2000; i++) properties[`customer_account_reference_field_${i}`] = { type: "string", maxLength: 64 };
    const tool = { name: "f", input_schema: { type: "object", properties } };
    const body = { model: "m", max_tokens: 10, messages: [{ role: "user", content: "hi" }], tools: [tool], tool_choice: { type: "auto" } };
    const r = reservationOf(ctx(body, "messages"), 4096);
    expect(r.ceiling.input_tokens).toBe(bytes(body) + 32 + 16 * 2 + 600);
    expect(r.ceiling.input_tokens).toBeGreaterThan(100_000);
  });

  test("output is max tokens × the completions generated (n, best_of), with or without max tokens; embeddings have none", () => {
    expect(reservationOf(ctx({ model: "m", max_completion_tokens: 100, n: 3, messages: [] }), 4096).ceiling.output_tokens).toBe(300);
    const none = reservationOf(ctx({ model: "m", messages: [] }), 8000);
    expect(none.ceiling.output_tokens).toBe(8000);
    expect(none.outputFromRequest).toBe(false);
    expect(reservationOf(ctx({ model: "m", n: 8, messages: [] }), 4096).ceiling.output_tokens).toBe(8 * 4096);
    // best_of candidates are generated and billed server-side; n ≤ best_of are returned.
    expect(
      reservationOf(ctx({ model: "m", prompt: "x", max_tokens: 10, best_of: 5, n: 2 }, "completions"), 4096).ceiling.output_tokens,
    ).toBe(50);
    expect(reservationOf(ctx({ model: "m", prompt: "x", best_of: 3 }, "completions"), 4096).ceiling.output_tokens).toBe(3 * 4096);
    const embed = { model: "m", input: "abc" };
    expect(reservationOf(ctx(embed, "embeddings"), 4096).ceiling).toMatchObject({ input_tokens: bytes(embed) + 32 + 16, output_tokens: 0 });
  });
});

describe("a limit held only by calls in flight is busy, not exhausted", () => {
  async function withTier(tier: Record<string, unknown>, run: (proxy: TestProxy) => Promise<void>) {
    const limiter = tiers({ tiers: { t: { ...tier, per: ["user"] } }, default: "t", now });
    const proxy = await startTestProxy(upstream.url, {
      plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), prices, limiter, sqliteAudit()],
    });
    try {
      await run(proxy);
    } finally {
      await proxy.stop();
    }
  }
  const send = (proxy: TestProxy, user: string, maxTokens: number, usage: Record<string, number>, scenario = "gap:400") =>
    fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-user-id": user,
        "x-fake-usage": JSON.stringify(usage),
        "x-fake-scenario": scenario,
      },
      body: JSON.stringify({ model: "gpt-budget", max_tokens: maxTokens, stream: true, messages: [] }),
    });
  const error = async (response: Response) => ((await response.json()) as { error: { code: string; message: string } }).error;
  const small = { prompt_tokens: 5, completion_tokens: 10, total_tokens: 15 };

  test("tokens per day: Retry-After 1 s and a message naming the calls in flight; the retry passes once they settle", async () => {
    await withTier({ tokensPerDay: 1000 }, async (proxy) => {
      clock.t = Date.UTC(2026, 4, 1, 9); // 15 h before the UTC day ends
      const held = await send(proxy, "ida", 600, small); // headers arrive; the stream is still in flight
      expect(held.status).toBe(200);
      const refused = await send(proxy, "ida", 600, small);
      expect(refused.status).toBe(429);
      expect(refused.headers.get("retry-after")).toBe("1");
      const { message } = await error(refused);
      expect(message).toMatch(
        /^Limit busy: tokens per day of user 'ida' \(tier t\) is 1000, with 0 spent and \d+ reserved by calls in flight; .*Retry in 1 s\.$/,
      );
      await held.text();
      await proxy.settled(2);
      expect((await send(proxy, "ida", 600, small, "")).status).toBe(200);
    });
  });

  test("cost budget: busy while calls in flight hold it (429, Retry-After 1 s); exhausted says what is spent and what is reserved (402)", async () => {
    await withTier({ costPerDay: 1 }, async (proxy) => {
      clock.t = Date.UTC(2026, 4, 2, 9);
      // 6,000 output tokens at $100/M: a ceiling of $0.60 (+ input); two do not fit in $1 at once.
      const held = await send(proxy, "jo", 6000, { prompt_tokens: 5, completion_tokens: 5000, total_tokens: 5005 });
      expect(held.status).toBe(200);
      const busy = await send(proxy, "jo", 6000, small);
      expect(busy.status).toBe(429);
      expect(busy.headers.get("retry-after")).toBe("1");
      const busyError = await error(busy);
      expect(busyError.code).toBe("rate_limited");
      expect(busyError.message).toMatch(
        /^Limit busy: cost budget per day of user 'jo' \(tier t\) is \$1\.00, with \$0\.00 spent and \$0\.60\d+ reserved by calls in flight; this call may cost up to \$0\.60\d+ and fits once those calls settle/,
      );
      await held.text();
      await proxy.settled(2); // the held call settles to $0.50005 real
      // $0.50005 spent + $0.30 held by a call in flight + $0.60 > $1, and still > $1 without the held call: exhausted.
      const second = await send(proxy, "jo", 3000, small);
      expect(second.status).toBe(200);
      const exhausted = await send(proxy, "jo", 6000, small);
      expect(exhausted.status).toBe(402);
      expect(exhausted.headers.get("retry-after")).toBeNull();
      expect((await error(exhausted)).message).toMatch(
        /^Budget exhausted: cost budget per day of user 'jo' \(tier t\): spent \$0\.500050 and \$0\.30\d+ reserved by calls in flight of \$1\.00, and this call may cost up to \$0\.60\d+\. It resets at 2026-05-03T00:00:00\.000Z\.$/,
      );
      await second.text();
      await proxy.settled(4);
    });
  });
});

describe("a call under a cost budget that names no output limit is sent the reserved one", () => {
  const lastBody = () => JSON.parse(upstream.requests.at(-1)!.body) as Record<string, unknown>;
  const send = (proxy: TestProxy, path: string, body: Record<string, unknown>) =>
    fetch(`${proxy.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-user-id": "cap" },
      body: JSON.stringify(body),
    }).then((r) => r.text());

  test("OpenAI chat gets max_completion_tokens, the Responses API max_output_tokens, /v1/completions max_tokens", async () => {
    await withProxy(100, async (proxy) => {
      await send(proxy, "/v1/chat/completions", { model: "gpt-budget", messages: [{ role: "user", content: "hi" }] });
      expect(lastBody()).toMatchObject({ max_completion_tokens: 4096 });
      await send(proxy, "/v1/responses", { model: "gpt-budget", input: "hi" });
      expect(lastBody()).toMatchObject({ max_output_tokens: 4096 });
      await send(proxy, "/v1/completions", { model: "gpt-budget", prompt: "hi" });
      expect(lastBody()).toMatchObject({ max_tokens: 4096 });
    });
  });

  test("the cap is inserted into the body's own bytes: every other byte reaches the upstream as sent", async () => {
    await withProxy(100, async (proxy) => {
      const raw = '{"model":"gpt-budget","seed":9223372036854775807,"top_p":1.0,"messages":[{"role":"user","content":"hi"}]}';
      await fetch(`${proxy.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-user-id": "cap" },
        body: raw,
      }).then((r) => r.text());
      expect(upstream.requests.at(-1)!.body).toBe(`{"max_completion_tokens":4096,${raw.slice(1)}`);
      const nulled = '{"model":"gpt-budget","max_tokens":null,"messages":[]}';
      await fetch(`${proxy.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-user-id": "cap" },
        body: nulled,
      }).then((r) => r.text());
      expect(upstream.requests.at(-1)!.body).toBe(`{"max_completion_tokens":4096,${nulled.slice(1)}`);
    });
  });

  test("a limit the client set is never changed, and nothing is added beside it", async () => {
    await withProxy(100, async (proxy) => {
      await send(proxy, "/v1/chat/completions", { model: "gpt-budget", max_tokens: 50, messages: [{ role: "user", content: "hi" }] });
      expect(lastBody().max_tokens).toBe(50);
      expect(lastBody()).not.toHaveProperty("max_completion_tokens");
    });
  });

  test("no budget, capOutput: false, or a shadow tier: the body passes unchanged", async () => {
    for (const options of [
      { tiers: { t: { requestsPerMinute: 100 } }, default: "t" },
      { tiers: { t: { costPerDay: 100 } }, default: "t", capOutput: false },
      { tiers: { t: { costPerDay: 100, shadow: true } }, default: "t" },
    ]) {
      const proxy = await startTestProxy(upstream.url, {
        plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), prices, tiers({ ...options, now }), sqliteAudit()],
      });
      try {
        const body = { model: "gpt-budget", messages: [{ role: "user", content: "hi" }] };
        await send(proxy, "/v1/chat/completions", body);
        expect(upstream.requests.at(-1)!.body).toBe(JSON.stringify(body));
      } finally {
        await proxy.stop();
      }
    }
  });

  test("an OpenAI-compatible server gets max_tokens, the field such servers know", async () => {
    const proxy = await startTestProxy(upstream.url, {
      plugins: [
        openaiCompatible({ name: "vllm", baseURL: `${upstream.url}/v1`, models: ["llama*"] }),
        headerAttribution(),
        pricing({ providers: { vllm: { input: 1, output: 1 } }, catalog: false }),
        tiers({ tiers: { t: { costPerDay: 100 } }, default: "t", maxOutputTokens: 777, now }),
        sqliteAudit(),
      ],
    });
    try {
      await send(proxy, "/v1/chat/completions", { model: "llama3", messages: [{ role: "user", content: "hi" }] });
      expect(lastBody()).toMatchObject({ max_tokens: 777 });
    } finally {
      await proxy.stop();
    }
  });
});

describe("calls whose real cost the proxy never sees keep their reservation", () => {
  const post = (
    proxy: TestProxy,
    path: string,
    body: Record<string, unknown>,
    headers: Record<string, string> = {},
    signal?: AbortSignal,
  ) =>
    fetch(`${proxy.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-user-id": "bg", ...headers },
      body: JSON.stringify(body),
      signal,
    });

  test("a background Responses call: its answer is queued, so the ceiling stays spent", async () => {
    // Ceiling ≈ 8,000 output × $100/M = $0.80 (+ input): one fits in $1.00, the second does not.
    await withProxy(1, async (proxy) => {
      const body = { model: "gpt-budget", input: "hi", background: true, max_output_tokens: 8000 };
      expect((await post(proxy, "/v1/responses", body)).status).toBe(200);
      await proxy.settled(1);
      const second = await post(proxy, "/v1/responses", body);
      expect(second.status).toBe(402);
    });
  });

  test("a non-streamed call whose client hangs up before the headers: the ceiling stays spent", async () => {
    await withProxy(1, async (proxy) => {
      const body = { model: "gpt-budget", messages: [{ role: "user", content: "hi" }], max_completion_tokens: 8000 };
      const controller = new AbortController();
      const sent = upstream.requests.length;
      const aborted = post(proxy, "/v1/chat/completions", body, { "x-fake-scenario": "hang" }, controller.signal).catch(() => null);
      for (let i = 0; i < 100 && upstream.requests.length === sent; i++) await Bun.sleep(10);
      controller.abort();
      await aborted;
      await proxy.settled(1);
      expect((await post(proxy, "/v1/chat/completions", body)).status).toBe(402);
    });
  });

  test("a string max_tokens under a tier is a 400, recorded, not forwarded", async () => {
    await withProxy(1, async (proxy) => {
      const sent = upstream.requests.length;
      const response = await post(proxy, "/v1/chat/completions", { model: "gpt-budget", max_tokens: "100000", messages: [] });
      expect(response.status).toBe(400);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe("invalid_body");
      expect(upstream.requests.length).toBe(sent);
    });
  });
});
