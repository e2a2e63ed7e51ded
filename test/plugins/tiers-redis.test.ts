// tiers() on Redis, in process: AGENT_ATTR_REDIS_URL makes Redis the default store (limits shared
// by every proxy on it), and a Redis that does not answer gives 503 limits_unavailable before the
// upstream is called — or, with failOpen, the call goes through flagged in its record and its
// usage is counted once Redis answers again.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { anthropic, headerAttribution, openai, redisLimiterStore, sqliteAudit, tiers } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";
import { dropPrefix, keysUnder, sharedRedisURL, startPrivateRedis, uniquePrefix, type PrivateRedis } from "../helpers/redis.ts";

let upstream: FakeUpstream;
let redis: PrivateRedis;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  redis = await startPrivateRedis();
});
afterAll(async () => {
  await redis.kill();
  await upstream.stop();
});

const plugins = (limiter: ReturnType<typeof tiers>) => [
  openai({ baseURL: `${upstream.url}/v1` }),
  anthropic({ baseURL: upstream.url }),
  headerAttribution(),
  limiter,
  sqliteAudit(),
];

async function withProxies(limiters: ReturnType<typeof tiers>[], run: (proxies: TestProxy[]) => Promise<void>) {
  const proxies: TestProxy[] = [];
  try {
    for (const limiter of limiters) proxies.push(await startTestProxy(upstream.url, { plugins: plugins(limiter) }));
    await run(proxies);
  } finally {
    for (const proxy of proxies) await proxy.stop();
  }
}

const chat = (proxy: TestProxy, user: string) =>
  fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-user-id": user },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });

test("AGENT_ATTR_REDIS_URL makes Redis the default store: two proxies share one limit", async () => {
  const user = `shared-${Bun.randomUUIDv7()}`;
  const previous = process.env.AGENT_ATTR_REDIS_URL;
  process.env.AGENT_ATTR_REDIS_URL = sharedRedisURL;
  const limiters = [0, 1].map(() => tiers({ tiers: { t: { requestsPerMinute: 2, per: ["user"] } }, default: "t" }));
  if (previous === undefined) delete process.env.AGENT_ATTR_REDIS_URL;
  else process.env.AGENT_ATTR_REDIS_URL = previous;
  try {
    await withProxies(limiters, async ([a, b]) => {
      expect((await chat(a!, user)).status).toBe(200);
      expect((await chat(b!, user)).status).toBe(200);
      expect((await chat(a!, user)).status).toBe(429); // with a store per process each would still admit one
      expect((await chat(b!, user)).status).toBe(429);
      // Under the default prefix.
      expect((await keysUnder("agent-attr:g:")).some((k) => k.key.includes(user))).toBe(true);
    });
  } finally {
    for (const { key } of (await keysUnder("agent-attr:g:")).filter((k) => k.key.includes(user))) await dropPrefix(key);
  }
});

test("Redis down: 503 limits_unavailable in the caller's wire format, recorded, not forwarded; back without a restart", async () => {
  const prefix = uniquePrefix("down");
  const limiter = tiers({
    tiers: { t: { requestsPerMinute: 100, per: ["user"] } },
    default: "t",
    store: redisLimiterStore({ url: redis.url, prefix }),
  });
  await withProxies([limiter], async ([proxy]) => {
    expect((await chat(proxy!, "dora")).status).toBe(200);
    await redis.kill();
    const forwarded = upstream.requests.length;
    const refused = await chat(proxy!, "dora");
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("1");
    const { error } = (await refused.json()) as { error: { code: string; type: string; message: string } };
    expect(error.code).toBe("limits_unavailable");
    expect(error.message).toMatch(
      /^Rate limits and budgets cannot be checked right now .* so the call was not forwarded\. Retry in a few seconds/,
    );
    const anthropicRefusal = await fetch(`${proxy!.url}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-user-id": "dora" },
      body: JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 10, messages: [{ role: "user", content: "hi" }] }),
    });
    expect(anthropicRefusal.status).toBe(503);
    expect(((await anthropicRefusal.json()) as { type: string; error: { type: string } }).error.type).toBe("api_error");
    expect(upstream.requests.length).toBe(forwarded);
    const records = await proxy!.settled(3);
    expect(records.slice(-2).map((r) => [r.outcome, r.status, r.error_type])).toEqual([
      ["rejected", 503, "limits_unavailable"],
      ["rejected", 503, "limits_unavailable"],
    ]);
    await redis.start();
    expect((await chat(proxy!, "dora")).status).toBe(200);
  });
  await dropPrefix(prefix, redis.url);
});

test("failOpen: while Redis is down calls pass, flagged limits_unavailable:fail_open; their usage is counted when it returns", async () => {
  const prefix = uniquePrefix("fail-open");
  const limiter = tiers({
    tiers: { t: { requestsPerMinute: 1, per: ["user"] } },
    default: "t",
    store: redisLimiterStore({ url: redis.url, prefix, failOpen: true }),
  });
  await withProxies([limiter], async ([proxy]) => {
    await redis.kill();
    const passed = await chat(proxy!, "fay");
    expect(passed.status).toBe(200);
    expect((await chat(proxy!, "fay")).status).toBe(200); // unchecked: the limit of 1 is not applied
    const records = await proxy!.settled(2);
    expect(records.map((r) => [r.outcome, r.error_type])).toEqual([
      ["completed", "limits_unavailable:fail_open"],
      ["completed", "limits_unavailable:fail_open"],
    ]);
    await redis.start(); // empty: only what the proxy sends from now on is in it
    // Another user's call reconnects; then the two unchecked calls are added to fay's meter.
    const fayMeter = `${prefix}g:${JSON.stringify(["t", "user", ["id", "fay"], "rpm"])}`;
    for (let i = 0; i < 100 && !(await keysUnder(prefix, redis.url)).some((k) => k.key === fayMeter); i++) {
      expect((await chat(proxy!, `other-${i}`)).status).toBe(200);
      await Bun.sleep(20);
    }
    const refused = await chat(proxy!, "fay");
    expect(refused.status).toBe(429);
    // Both count: 2 minutes of a 1-per-minute limit are used, so the wait is 2 minutes, not 1.
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(119);
  });
  await dropPrefix(prefix, redis.url);
});

test("options: a URL that is not redis:// is a config error naming it; none at all says where to put one", () => {
  expect(() => redisLimiterStore({ url: "http://127.0.0.1:6379" })).toThrow(
    /Invalid options for plugin 'tiers': url: expected a redis:\/\/ or rediss:\/\/ URL/,
  );
  const previous = process.env.AGENT_ATTR_REDIS_URL;
  delete process.env.AGENT_ATTR_REDIS_URL;
  try {
    expect(() => redisLimiterStore()).toThrow("redisLimiterStore() needs a url, or AGENT_ATTR_REDIS_URL in the environment");
  } finally {
    if (previous !== undefined) process.env.AGENT_ATTR_REDIS_URL = previous;
  }
});

test("a password in the URL never reaches the log or the caller", async () => {
  const logged: string[] = [];
  const log = { info: (m: string) => logged.push(m), warn: (m: string) => logged.push(m), error: (m: string) => logged.push(m) };
  // The private server has no password set: the client's AUTH fails, as a wrong password would.
  const store = redisLimiterStore({ url: redis.url.replace("redis://", "redis://agent:hunter2-secret@"), prefix: uniquePrefix("secret") });
  await store.open(log);
  const error = await store
    .charge([{ kind: "gcra", key: "k", limit: 1, periodMs: 60_000, amount: 1 }], Date.now())
    .catch((e: unknown) => e as Error);
  await store.close();
  expect(error).toBeInstanceOf(Error);
  expect(logged.join("\n")).toContain("is unreachable");
  expect(logged.join("\n")).not.toContain("hunter2");
  expect(String((error as Error).message)).not.toContain("hunter2");
});
