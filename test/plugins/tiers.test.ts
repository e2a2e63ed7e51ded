// Tiers end to end on a controlled clock: GCRA request limits at the boundary (N pass, N+1 is a
// 429 with the right Retry-After and RateLimit headers, recovery), token limits settled to real
// usage, cost budgets reserved before forwarding (concurrent calls cannot overshoot), shadow mode.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { definePlugin, ProxyError, type Plugin } from "../../src/index.ts";
import { anthropic, headerAttribution, openai, pricing, sqliteAudit, tiers } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
});

const clock = { t: Date.UTC(2026, 0, 15, 12, 0, 0) };
const now = () => clock.t;

async function withProxy(extra: Plugin[], run: (proxy: TestProxy) => Promise<void>) {
  const proxy = await startTestProxy(upstream.url, {
    plugins: [
      openai({ baseURL: `${upstream.url}/v1` }),
      anthropic({ baseURL: upstream.url }),
      headerAttribution(),
      ...extra,
      sqliteAudit(),
    ],
  });
  try {
    await run(proxy);
  } finally {
    await proxy.stop();
  }
}

const chat = async (proxy: TestProxy, user: string, body: Record<string, unknown> = {}) => {
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-user-id": user, "x-agent-id": "bot" },
    body: JSON.stringify({ model: "gpt-4o", messages: [], ...body }),
  });
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    text,
    json: () => JSON.parse(text) as { error: { code: string; message: string } },
  };
};

const forwarded = () => upstream.requests.filter((r) => r.path === "/v1/chat/completions").length;

describe("requests per minute (GCRA)", () => {
  const limiter = () => tiers({ tiers: { free: { requestsPerMinute: 3, per: ["user"] } }, default: "free", now });

  test("N pass, N+1 is a 429 with Retry-After and RateLimit headers, not forwarded, recorded; it recovers", async () => {
    await withProxy([limiter()], async (proxy) => {
      clock.t = Date.UTC(2026, 0, 15, 12, 0, 0);
      for (let i = 0; i < 3; i++) expect((await chat(proxy, "alice")).status).toBe(200);
      const before = forwarded();
      const refused = await chat(proxy, "alice");
      expect(refused.status).toBe(429);
      expect(forwarded()).toBe(before);
      expect(refused.headers.get("retry-after")).toBe("20"); // one request every 60/3 s
      expect(refused.headers.get("ratelimit-policy")).toBe('"free.requests_per_minute.user";q=3;w=60');
      expect(refused.headers.get("ratelimit")).toBe('"free.requests_per_minute.user";r=0;t=20');
      expect(refused.json().error).toMatchObject({ code: "rate_limited", type: "rate_limit_error" });
      expect(refused.json().error.message).toContain("requests per minute of user 'alice' (tier free) is 3; retry in 20 s");
      const records = await proxy.settled(4);
      expect(records.at(-1)).toMatchObject({ outcome: "rejected", status: 429, error_type: "rate_limited", user_id: "alice" });

      expect((await chat(proxy, "bob")).status).toBe(200); // another user's meter is untouched

      clock.t += 19_000;
      const early = await chat(proxy, "alice");
      expect(early.status).toBe(429);
      expect(early.headers.get("retry-after")).toBe("1");
      clock.t += 1_000; // exactly Retry-After later
      expect((await chat(proxy, "alice")).status).toBe(200);
      expect((await chat(proxy, "alice")).status).toBe(429);
      clock.t += 60_000; // a full period later the whole burst is back
      for (let i = 0; i < 3; i++) expect((await chat(proxy, "alice")).status).toBe(200);
      expect((await chat(proxy, "alice")).status).toBe(429);
    });
  });

  test("no double burst across a minute boundary (a fixed window would allow 6 here)", async () => {
    await withProxy([limiter()], async (proxy) => {
      clock.t = Date.UTC(2026, 0, 15, 12, 0, 59, 900);
      let passed = 0;
      for (let i = 0; i < 3; i++) passed += (await chat(proxy, "carol")).status === 200 ? 1 : 0;
      clock.t = Date.UTC(2026, 0, 15, 12, 1, 0, 100);
      for (let i = 0; i < 3; i++) passed += (await chat(proxy, "carol")).status === 200 ? 1 : 0;
      expect(passed).toBe(3);
    });
  });

  test("the Anthropic wire format gets its own error shape", async () => {
    await withProxy([tiers({ tiers: { t: { requestsPerMinute: 1, per: ["agent"] } }, default: "t", now })], async (proxy) => {
      const send = () =>
        fetch(`${proxy.url}/v1/messages`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-agent-id": "claude-bot" },
          body: JSON.stringify({ model: "claude-sonnet-4-6", max_tokens: 10, messages: [] }),
        });
      expect((await send()).status).toBe(200);
      const refused = await send();
      expect(refused.status).toBe(429);
      expect(refused.headers.get("retry-after")).toBe("60");
      expect(await refused.json()).toMatchObject({ type: "error", error: { type: "rate_limit_error" } });
    });
  });
});

describe("tier assignment", () => {
  test("a rule by user glob picks the tier; everyone else gets the default", async () => {
    const limiter = tiers({
      tiers: { free: { requestsPerMinute: 1, per: ["user"] }, pro: { requestsPerMinute: 4, per: ["user"] } },
      default: "free",
      assign: [{ user: "vip-*", tier: "pro" }],
      now,
    });
    await withProxy([limiter], async (proxy) => {
      const statuses = async (user: string) => {
        const out: number[] = [];
        for (let i = 0; i < 5; i++) out.push((await chat(proxy, user)).status);
        return out;
      };
      expect(await statuses("vip-ann")).toEqual([200, 200, 200, 200, 429]);
      expect(await statuses("joe")).toEqual([200, 429, 429, 429, 429]);
    });
  });

  test("a key naming a tier the config lacks gets the default tier, with one warning", async () => {
    const warnings: string[] = [];
    const limiter = tiers({ tiers: { free: { requestsPerMinute: 1, per: ["key"] } }, default: "free", now });
    const keyed = definePlugin({ name: "keyed", authenticate: () => ({ keyId: "key_x", tier: "platinum", agents: ["*"], users: ["*"] }) });
    process.env.OPENAI_API_KEY = "sk-proxy-held";
    try {
      await withProxy([keyed, limiter], async (proxy) => {
        // The proxy set the plugin up with the console logger; hand it one the test can read.
        await limiter.setup!({
          logDb: proxy.logDb,
          log: { info() {}, warn: (m) => warnings.push(m), error() {} },
          audit: { checkpoint: { everyRecords: 1000, everySeconds: 60 } },
          keys: proxy.runtime.keys,
          metrics: proxy.runtime.metrics.forPlugins(),
          trail: proxy.runtime.trail,
        });
        clock.t = Date.UTC(2026, 0, 22);
        expect((await chat(proxy, "kim")).status).toBe(200);
        expect((await chat(proxy, "kim")).status).toBe(429);
      });
    } finally {
      delete process.env.OPENAI_API_KEY;
    }
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("key_x names tier 'platinum', which the config does not define");
  });

  test("options naming an unknown tier fail at config time, naming it", () => {
    expect(() => tiers({ tiers: { free: {} }, default: "gold" })).toThrow("unknown tier 'gold'; defined: free");
    expect(() => tiers({ tiers: { free: {} }, default: "free", assign: [{ tier: "free" }] })).toThrow(
      "needs user, agent, task, key or tags",
    );
  });
});

describe("tokens per minute", () => {
  test("the estimate is reserved, then settled to the real tokens", async () => {
    // Each call reserves ~ body/4 + 400 tokens; the fake upstream reports 19 real tokens.
    const limiter = tiers({ tiers: { t: { tokensPerMinute: 1000, per: ["user"] } }, default: "t", now });
    await withProxy([limiter], async (proxy) => {
      clock.t = Date.UTC(2026, 0, 16);
      for (let i = 0; i < 10; i++) {
        expect((await chat(proxy, "dora", { max_tokens: 400 })).status).toBe(200);
        await proxy.settled(i + 1);
      }
      // Two estimates in flight at once fit, a third does not: reservations count before settling.
      const big = await chat(proxy, "erin", { max_tokens: 990 });
      expect(big.status).toBe(200);
      await proxy.settled(11);
      const refused = await chat(proxy, "erin", { max_tokens: 990 });
      expect(refused.status).toBe(429);
      expect(refused.headers.get("ratelimit-policy")).toBe('"t.tokens_per_minute.user";q=1000;w=60;qu="tokens"');
      expect(refused.json().error.message).toContain("tokens per minute of user 'erin' (tier t) is 1000");
    });
  });
});

/** $0.30 per call, whatever its tokens: the estimate equals the real cost. */
const flatPrice = definePlugin({ name: "flat-price", price: () => ({ cost_nano_usd: 300_000_000, price_source: "test" }) });
/** $0.001 per token: the estimate (max_tokens) is far above the real 19 tokens. */
const perToken = definePlugin({
  name: "per-token",
  price: ({ usage }) => ({ cost_nano_usd: ((usage.input_tokens ?? 0) + (usage.output_tokens ?? 0)) * 1_000_000, price_source: "test" }),
});

describe("cost budgets", () => {
  test("concurrent calls cannot overshoot: 10 at once against $1.00 at $0.30 each, 3 pass", async () => {
    const limiter = tiers({ tiers: { t: { costPerDay: 1, per: ["user"] } }, default: "t", now });
    await withProxy([flatPrice, limiter], async (proxy) => {
      clock.t = Date.UTC(2026, 0, 17, 10);
      const results = await Promise.all(Array.from({ length: 10 }, () => chat(proxy, "frank")));
      const statuses = results.map((r) => r.status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(3);
      // The 7 are refused while the 3 are in flight: busy (429, retry in 1 s), not exhausted.
      expect(statuses.filter((s) => s === 429)).toHaveLength(7);
      const busy = results.find((r) => r.status === 429)!;
      expect(busy.json().error.message).toContain(
        "cost budget per day of user 'frank' (tier t) is $1.00, with $0.00 spent and $0.90 reserved by calls in flight",
      );
      const records = await proxy.settled(10);
      const spent = records.filter((r) => r.outcome === "completed").reduce((sum, r) => sum + r.cost_usd!, 0);
      expect(spent).toBeCloseTo(0.9, 9);
      expect(records.filter((r) => r.error_type === "rate_limited")).toHaveLength(7);
      // Once they settled, the budget is exhausted: 402.
      const exhausted = await chat(proxy, "frank");
      expect(exhausted.status).toBe(402);
      const refusal = exhausted.json().error;
      expect(refusal.code).toBe("budget_exceeded");
      expect(refusal.message).toContain("cost budget per day of user 'frank' (tier t): spent $0.90 of $1.00");
      expect(refusal.message).toContain("resets at 2026-01-18T00:00:00.000Z");
      await proxy.settled(11);
      clock.t = Date.UTC(2026, 0, 18, 0, 0, 1); // a new UTC day, a new budget
      expect((await chat(proxy, "frank")).status).toBe(200);
    });
  });

  test("settling to the real cost frees what the estimate held", async () => {
    const limiter = tiers({ tiers: { t: { costPerDay: 1, costPerMonth: 5, per: ["user"] } }, default: "t", now });
    await withProxy([perToken, limiter], async (proxy) => {
      clock.t = Date.UTC(2026, 0, 19, 10);
      // Estimate ≈ (body/4 + 300) tokens ≈ $0.32; real 19 tokens = $0.019. Without settling, call 4 would be refused.
      for (let i = 0; i < 20; i++) {
        expect((await chat(proxy, "gina", { max_tokens: 300 })).status).toBe(200);
        await proxy.settled(i + 1);
      }
      const records = await proxy.records();
      expect(records.reduce((sum, r) => sum + (r.cost_usd ?? 0), 0)).toBeCloseTo(20 * 0.019, 9);
    });
  });

  test("a reservation is given back when a later limiter refuses the call", async () => {
    let denyNext = true;
    const deny = definePlugin({
      name: "deny-once",
      limit: {
        check() {
          if (denyNext) {
            denyNext = false;
            throw new ProxyError("forbidden", "not now");
          }
        },
      },
    });
    const limiter = tiers({ tiers: { t: { costPerDay: 0.6, per: ["user"] } }, default: "t", now });
    await withProxy([flatPrice, limiter, deny], async (proxy) => {
      clock.t = Date.UTC(2026, 0, 20, 10);
      expect((await chat(proxy, "hank")).status).toBe(403);
      await proxy.settled(1);
      expect((await chat(proxy, "hank")).status).toBe(200);
      expect((await chat(proxy, "hank")).status).toBe(200); // $0.60 of $0.60: the refused call holds nothing
      expect((await chat(proxy, "hank")).status).toBe(402);
    });
  });
});

describe("with the real pricing() plugin", () => {
  test("the ceiling is priced from the catalog: a call that alone costs more than the budget is told it can never pass", async () => {
    // gpt-4o output is $10 per million tokens: 1,000 output tokens alone are $0.01, the whole budget;
    // the prompt's tokens push the ceiling past it.
    const limiter = tiers({ tiers: { t: { costPerDay: 0.01, per: ["user"] } }, default: "t", now });
    await withProxy([pricing(), limiter], async (proxy) => {
      clock.t = Date.UTC(2026, 0, 23, 10);
      const messages = [{ role: "user", content: "hello" }];
      const tooBig = await chat(proxy, "lena", { max_tokens: 1000, messages });
      expect(tooBig.status).toBe(402);
      expect(tooBig.headers.get("retry-after")).toBeNull();
      const message = tooBig.json().error.message;
      expect(message).toContain("more than the whole cost budget per day of user 'lena' (tier t) ($0.01): it can never pass");
      expect(message).toContain("Lower the call's max_tokens");
      const small = await chat(proxy, "lena", { max_tokens: 10, messages });
      expect(small.status).toBe(200);
      const [, record] = await proxy.settled(2);
      expect(record!.cost_nano_usd).toBeGreaterThan(0);
    });
  });
});

describe("shadow mode", () => {
  test("records what would have been refused and refuses nothing", async () => {
    const limiter = tiers({ tiers: { t: { requestsPerMinute: 1, per: ["user"], shadow: true } }, default: "t", now });
    await withProxy([limiter], async (proxy) => {
      clock.t = Date.UTC(2026, 0, 21);
      expect((await chat(proxy, "ivy")).status).toBe(200);
      expect((await chat(proxy, "ivy")).status).toBe(200);
      const records = await proxy.settled(2);
      expect(records.map((r) => [r.outcome, r.error_type])).toEqual([
        ["completed", null],
        ["completed", "shadow:rate_limited"],
      ]);
    });
  });
});
