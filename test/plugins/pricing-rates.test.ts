// Exact cost arithmetic and the catalog lookup, checked against hand-computed published prices and
// against genai-prices' own (floating-point) calculation for every model of the main providers.
import { expect, test } from "bun:test";
import { calcPrice, findProvider } from "@pydantic/genai-prices";
import { noUsage, type Usage } from "agent-attr";
import { catalogRates, lookup, pricesAt } from "../../plugins/pricing/catalog.ts";
import { priceDataVersion } from "../../plugins/pricing/index.ts";
import { costNanoUSD } from "../../plugins/pricing/rates.ts";

const usage = (u: Partial<Usage>): Usage => ({ ...noUsage, ...u });

test("cost is exact in nano-dollars where floating point is not", () => {
  // 0.1 + 0.2 style: 3 tokens at $0.1/M and 7 at $0.2/M is 1.7e-6 USD = 1,700 nano-dollars exactly.
  expect(costNanoUSD(usage({ input_tokens: 3, output_tokens: 7 }), { input: 0.1, output: 0.2 })).toBe(1700);
  // $0.0375/M (a cached Gemini Flash rate) for 1M tokens is 37,500,000 nano-dollars.
  expect(costNanoUSD(usage({ input_tokens: 1_000_000, output_tokens: 0 }), { input: 0.0375, output: 0 })).toBe(37_500_000);
  // Half a nano-dollar rounds up once, at the end: 1 token at $0.0005/M = 0.5 nano.
  expect(costNanoUSD(usage({ input_tokens: 1, output_tokens: 0 }), { input: 0.0005, output: 0 })).toBe(1);
});

test("cost: exact whether it fits plain numbers (every real call) or needs BigInt (absurd counts)", () => {
  // The definition, in BigInt throughout: each term tokens × micro-dollars/Mtok, summed, rounded half up.
  const exact = (u: Usage, r: { input: number; output: number; cacheRead?: number; cacheWrite?: number; cacheWrite1h?: number }) => {
    const micro = (usd: number) => BigInt(Math.round(usd * 1e6));
    const read = u.cache_read_tokens ?? 0;
    const write = u.cache_write_tokens ?? 0;
    const write1h = Math.min(u.cache_write_1h_tokens ?? 0, write);
    const uncached = Math.max(0, u.input_tokens! - read - write);
    const pico =
      BigInt(uncached) * micro(r.input) +
      BigInt(read) * micro(r.cacheRead ?? r.input) +
      BigInt(write - write1h) * micro(r.cacheWrite ?? r.input) +
      BigInt(write1h) * micro(r.cacheWrite1h ?? r.cacheWrite ?? r.input) +
      BigInt(u.output_tokens!) * micro(r.output);
    return Number((pico + 500n) / 1000n);
  };
  let seed = 42;
  const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 2000; i++) {
    const scale = [1e3, 1e6, 1e9, 1e13][i % 4]!;
    const u = usage({
      input_tokens: Math.floor(random() * scale),
      output_tokens: Math.floor(random() * scale),
      cache_read_tokens: Math.floor(random() * scale * 0.3),
      cache_write_tokens: Math.floor(random() * scale * 0.2),
      cache_write_1h_tokens: Math.floor(random() * scale * 0.1),
    });
    const r = {
      input: Math.round(random() * 150e6) / 1e6,
      output: Math.round(random() * 600e6) / 1e6,
      cacheRead: Math.round(random() * 15e6) / 1e6,
    };
    expect(costNanoUSD(u, r)).toBe(exact(u, r));
  }
});

test("input counts each token once: uncached, cache read, 5-minute and 1-hour cache writes", () => {
  // claude-sonnet-4-6 published: $3 in, $0.30 cache read, $3.75 5m write, $6 1h write, $15 out.
  const u = usage({
    input_tokens: 5100,
    cache_read_tokens: 2000,
    cache_write_tokens: 3000,
    cache_write_1h_tokens: 1000,
    output_tokens: 400,
  });
  const rates = { input: 3, cacheRead: 0.3, cacheWrite: 3.75, cacheWrite1h: 6, output: 15 };
  // 100x3 + 2000x0.3 + 2000x3.75 + 1000x6 + 400x15 = 20,400 micro-dollars.
  expect(costNanoUSD(u, rates)).toBe(20_400_000);
});

test("missing cache prices fall back to the input price; unknown usage has no price", () => {
  const u = usage({ input_tokens: 1000, cache_read_tokens: 500, cache_write_tokens: 100, output_tokens: 10 });
  expect(costNanoUSD(u, { input: 2, output: 4 })).toBe((1000 * 2 + 10 * 4) * 1000);
  expect(costNanoUSD(usage({ input_tokens: 10 }), { input: 2, output: 4 })).toBeNull();
});

test("catalog: published prices of OpenAI and Anthropic models, dated snapshots included", () => {
  const gpt4o = lookup("gpt-4o-2024-08-06", "openai")!;
  expect(gpt4o.model.id).toBe("gpt-4o");
  expect(catalogRates(pricesAt(gpt4o.model, new Date()), usage({ input_tokens: 10 }))).toMatchObject({
    input: 2.5,
    cacheRead: 1.25,
    output: 10,
  });
  const sonnet = lookup("claude-sonnet-4-6", "anthropic")!;
  expect(catalogRates(pricesAt(sonnet.model, new Date()), usage({ input_tokens: 10 }))).toMatchObject({
    input: 3,
    cacheRead: 0.3,
    cacheWrite: 3.75,
    cacheWrite1h: 6,
    output: 15,
  });
  expect(lookup("no-such-model-anywhere", "openai")).toBeNull();
});

test("catalog: a long-context tier prices the whole call once the input exceeds it", () => {
  const gemini = lookup("gemini-2.5-pro", "google")!;
  const prices = pricesAt(gemini.model, new Date());
  expect(catalogRates(prices, usage({ input_tokens: 200_000 }))).toMatchObject({ input: 1.25, output: 10 });
  expect(catalogRates(prices, usage({ input_tokens: 200_001 }))).toMatchObject({ input: 2.5, output: 15 });
});

test("catalog: every OpenAI, Anthropic and Google model prices like genai-prices itself", () => {
  const at = new Date();
  let checked = 0;
  for (const providerId of ["openai", "anthropic", "google"]) {
    for (const model of findProvider({ providerId })!.models) {
      for (const u of [
        usage({ input_tokens: 12_345, cache_read_tokens: 2_000, cache_write_tokens: 1_000, output_tokens: 678 }),
        usage({ input_tokens: 250_000, cache_read_tokens: 10_000, output_tokens: 5_000 }),
      ]) {
        const prices = pricesAt(model, at);
        const rates = catalogRates(prices, u);
        if (
          !rates ||
          Object.keys(prices).some(
            (key) => key.endsWith("_mtok") && !/^(input|output|cache_read|cache_write|cache_write_1h)_mtok$/.test(key),
          )
        )
          continue;
        const theirs = calcPrice(
          {
            input_tokens: u.input_tokens!,
            cache_read_tokens: u.cache_read_tokens ?? 0,
            cache_write_tokens: u.cache_write_tokens ?? 0,
            output_tokens: u.output_tokens!,
          },
          model.id,
          { providerId, timestamp: at },
        );
        if (!theirs || theirs.model.id !== model.id) continue;
        expect(costNanoUSD(u, rates)! / 1e9).toBeCloseTo(theirs.total_price, 9);
        checked++;
      }
    }
  }
  expect(checked).toBeGreaterThan(100);
});

test("the recorded price-data version is the installed one", async () => {
  const installed = (await Bun.file("node_modules/@pydantic/genai-prices/package.json").json()) as { version: string };
  expect(priceDataVersion).toBe(`genai-prices@${installed.version}`);
});
