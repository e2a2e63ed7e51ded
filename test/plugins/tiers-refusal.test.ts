// What a refused call is told: the longest wait among every refusing meter, exact IETF RateLimit
// headers (w = the window's length, t = seconds until more quota is made available), and a call
// larger than a whole daily limit told that it can never pass instead of a retry time.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { headerAttribution, openai, sqliteAudit, tiers } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
});

const clock = { t: 0 };
const now = () => clock.t;

async function withProxy(limiter: ReturnType<typeof tiers>, run: (proxy: TestProxy) => Promise<void>) {
  const proxy = await startTestProxy(upstream.url, {
    plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), limiter, sqliteAudit()],
  });
  try {
    await run(proxy);
  } finally {
    await proxy.stop();
  }
}

const chat = async (
  proxy: TestProxy,
  who: { user: string; agent?: string },
  body: Record<string, unknown> = {},
  headers: Record<string, string> = {},
) => {
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-user-id": who.user, "x-agent-id": who.agent ?? "bot", ...headers },
    body: JSON.stringify({ model: "gpt-4o", messages: [], ...body }),
  });
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    error: () => (JSON.parse(text) as { error: { code: string; message: string } }).error,
  };
};

test("Retry-After is the longest wait among the refusing meters, so the retry passes", async () => {
  const limiter = tiers({ tiers: { t: { requestsPerMinute: 1, per: ["user", "agent"] } }, default: "t", now });
  await withProxy(limiter, async (proxy) => {
    clock.t = Date.UTC(2026, 2, 2, 12);
    expect((await chat(proxy, { user: "alice", agent: "x" })).status).toBe(200);
    clock.t += 40_000;
    expect((await chat(proxy, { user: "bob", agent: "y" })).status).toBe(200);
    clock.t += 1_000;
    // alice's meter frees in 19 s, agent y's in 59 s.
    const refused = await chat(proxy, { user: "alice", agent: "y" });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe("59");
    expect(refused.headers.get("ratelimit-policy")).toBe('"t.requests_per_minute.agent";q=1;w=60');
    expect(refused.error().message).toContain("of agent 'y'");
    clock.t += 59_000;
    expect((await chat(proxy, { user: "alice", agent: "y" })).status).toBe(200);
  });
});

describe("IETF RateLimit headers", () => {
  test("tokens per minute: w is the 60 s period; t is 0 while quota remains", async () => {
    const limiter = tiers({ tiers: { t: { tokensPerMinute: 1000, per: ["user"] } }, default: "t", now });
    await withProxy(limiter, async (proxy) => {
      clock.t = Date.UTC(2026, 2, 3, 12);
      const usage = JSON.stringify({ prompt_tokens: 10, completion_tokens: 980, total_tokens: 990 });
      expect((await chat(proxy, { user: "cy" }, { max_tokens: 990 }, { "x-fake-usage": usage })).status).toBe(200);
      await proxy.settled(1);
      // 990 of 1,000 tokens spent: 10 remain; a call needing 145 (100 output + 49 body bytes / 4 + 32 per
      // request) passes once 135 more have replenished (8.1 s).
      const refused = await chat(proxy, { user: "cy" }, { max_tokens: 100 });
      expect(refused.status).toBe(429);
      expect(refused.headers.get("retry-after")).toBe("9");
      expect(refused.headers.get("ratelimit-policy")).toBe('"t.tokens_per_minute.user";q=1000;w=60;qu="tokens"');
      expect(refused.headers.get("ratelimit")).toBe('"t.tokens_per_minute.user";r=10;t=0');
    });
  });

  test("requests per minute: t is the seconds until the next request is allowed", async () => {
    const limiter = tiers({ tiers: { t: { requestsPerMinute: 2, per: ["user"] } }, default: "t", now });
    await withProxy(limiter, async (proxy) => {
      clock.t = Date.UTC(2026, 2, 4, 12);
      expect((await chat(proxy, { user: "di" })).status).toBe(200);
      clock.t += 10_000;
      expect((await chat(proxy, { user: "di" })).status).toBe(200);
      clock.t += 5_000;
      const refused = await chat(proxy, { user: "di" });
      expect(refused.headers.get("ratelimit")).toBe('"t.requests_per_minute.user";r=0;t=15');
      expect(refused.headers.get("retry-after")).toBe("15");
    });
  });

  test("tokens per day: w is 86400 and t the seconds until the UTC day ends", async () => {
    const limiter = tiers({ tiers: { t: { tokensPerDay: 1000, per: ["user"] } }, default: "t", now });
    await withProxy(limiter, async (proxy) => {
      clock.t = Date.UTC(2026, 2, 5, 18); // 6 h before midnight
      expect((await chat(proxy, { user: "ed" }, { max_tokens: 900 })).status).toBe(200);
      await proxy.settled(1); // settles to the fake upstream's 19 real tokens
      const refused = await chat(proxy, { user: "ed" }, { max_tokens: 940 }); // 940 + 45 > 981 left
      expect(refused.status).toBe(429);
      expect(refused.headers.get("retry-after")).toBe("21600");
      expect(refused.headers.get("ratelimit-policy")).toBe('"t.tokens_per_day.user";q=1000;w=86400;qu="tokens"');
      expect(refused.headers.get("ratelimit")).toBe('"t.tokens_per_day.user";r=981;t=21600');
    });
  });
});

test("a call larger than a whole daily token limit is told it can never pass, without a retry time", async () => {
  const limiter = tiers({ tiers: { t: { tokensPerDay: 1000, per: ["user"] } }, default: "t", now });
  await withProxy(limiter, async (proxy) => {
    clock.t = Date.UTC(2026, 2, 6, 12);
    const forwardedBefore = upstream.requests.length;
    const refused = await chat(proxy, { user: "flo" }, { max_tokens: 4096 });
    expect(refused.status).toBe(413);
    expect(refused.headers.get("retry-after")).toBeNull();
    expect(refused.error().code).toBe("exceeds_limit");
    expect(refused.error().message).toBe(
      // 4,096 output + 50 body bytes / 4 + 32 per request.
      "This call needs up to 4141 tokens, more than the whole tokens per day of user 'flo' (tier t) (1000): it can never pass, and waiting will not help. Lower the call's max_tokens or shorten its prompt, or raise the limit in the tiers config.",
    );
    expect(upstream.requests.length).toBe(forwardedBefore);
    const noMax = await chat(proxy, { user: "flo" });
    expect(noMax.error().message).toContain("without one, the tiers option maxOutputTokens is assumed");
    const [record] = await proxy.settled(2);
    expect(record).toMatchObject({ outcome: "rejected", status: 413, error_type: "exceeds_limit" });
  });
});
