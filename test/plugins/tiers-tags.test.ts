// Tiers by tag: `per: ["tag:team"]` gives each team its own meter; assignment rules select a tier
// by tag; in keys mode only a tag the key fixes selects a tier or a team's meter — a header
// claiming another team's tag is metered per key, so it can neither drain nor escape that team's limit.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { signedKeyTable } from "../helpers/keys.ts";
import { apiKeys, headerAttribution, openai, sqliteAudit, tiers } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
beforeAll(async () => {
  process.env.OPENAI_API_KEY = "sk-proxy-openai";
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
  delete process.env.OPENAI_API_KEY;
});

const clock = { t: 1_000_000 };
const now = () => clock.t;
const limiter = () =>
  tiers({
    tiers: {
      team: { requestsPerMinute: 2, per: ["Tag:Team"] },
      vip: { requestsPerMinute: 100, per: ["tag:team"] },
    },
    default: "team",
    assign: [{ tier: "vip", tags: { Team: "exec*" } }],
    now,
  });

async function withProxy(plugins: unknown[], run: (proxy: TestProxy) => Promise<void>) {
  const proxy = await startTestProxy(upstream.url, {
    plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), ...(plugins as never[]), sqliteAudit()],
  });
  try {
    await run(proxy);
  } finally {
    await proxy.stop();
  }
}

const chat = async (proxy: TestProxy, headers: Record<string, string>) => {
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-agent-id": "bot", ...headers },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });
  await response.arrayBuffer();
  return response;
};

test("per tag:team: each team has its own meter; a rule by tag picks the tier", async () => {
  await withProxy([limiter()], async (proxy) => {
    const platform = { "X-Attr-Tag-Team": "platform" };
    expect((await chat(proxy, platform)).status).toBe(200);
    expect((await chat(proxy, { ...platform, "X-User-ID": "someone-else" })).status).toBe(200);
    const refused = await chat(proxy, platform);
    expect(refused.status).toBe(429);
    expect(refused.headers.get("ratelimit-policy")).toContain('"team.requests_per_minute.tag:team"');
    expect((await chat(proxy, { "X-Attr-Tag-Team": "search" })).status).toBe(200);
    // Calls without the tag share the meter of "no team".
    expect((await chat(proxy, {})).status).toBe(200);
    expect((await chat(proxy, {})).status).toBe(200);
    expect((await chat(proxy, {})).status).toBe(429);
    // exec-* teams are assigned the vip tier.
    for (let i = 0; i < 5; i++) expect((await chat(proxy, { "X-Attr-Tag-Team": "exec-office" })).status).toBe(200);
  });
});

test("keys mode: only a tag the key fixes selects a tier or a team's meter", async () => {
  await withProxy([apiKeys(), limiter()], async (proxy) => {
    const keys = signedKeyTable(proxy.logDb);
    try {
      const exec = keys.create({ agents: ["bot"], tags: { team: "exec-office" } }).key;
      const loose = keys.create({ agents: ["bot"] }).key;
      const other = keys.create({ agents: ["bot"] }).key;
      const as = (key: string, headers: Record<string, string> = {}) => ({ authorization: `Bearer ${key}`, ...headers });
      // The fixed exec tag gives the vip tier.
      for (let i = 0; i < 4; i++) expect((await chat(proxy, as(exec))).status).toBe(200);
      // A claimed exec tag does not: the default tier, metered for this key alone.
      expect((await chat(proxy, as(loose, { "X-Attr-Tag-Team": "exec-office" }))).status).toBe(200);
      expect((await chat(proxy, as(loose, { "X-Attr-Tag-Team": "exec-office" }))).status).toBe(200);
      expect((await chat(proxy, as(loose, { "X-Attr-Tag-Team": "exec-office" }))).status).toBe(429);
      // Another key claiming the same team has a meter of its own: the first key did not drain it.
      expect((await chat(proxy, as(other, { "X-Attr-Tag-Team": "exec-office" }))).status).toBe(200);
    } finally {
      keys.close();
    }
  });
});

test("a scope or rule tag key that is not one is a config error", () => {
  expect(() => tiers({ tiers: { t: { requestsPerMinute: 1, per: ["tag:te am" as "tag:x"] } }, default: "t" })).toThrow("not a scope");
  expect(() => tiers({ tiers: { t: { requestsPerMinute: 1 } }, default: "t", assign: [{ tier: "t", tags: { "a b": "x" } }] })).toThrow(
    "not a tag key",
  );
});
