// The plugin contract across stages: authenticate (first non-null), limit (first denial stops),
// price (first non-null), settle (final record), and the error wrapper that names plugin and hook.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { AuditRecord } from "../../src/trail/record.ts";
import { ProxyError } from "../../src/errors.ts";
import { definePlugin, type Plugin } from "../../src/plugin.ts";
import { headerAttribution, openai, sqliteAudit } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
});

async function withProxy(extra: Plugin[], run: (proxy: TestProxy) => Promise<void>) {
  const proxy = await startTestProxy(upstream.url, {
    plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), ...extra, sqliteAudit()],
  });
  try {
    await run(proxy);
  } finally {
    await proxy.stop();
  }
}

const chat = (url: string, body: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
  fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "gpt-4o", messages: [], ...body }),
  });

test("authenticate: the first non-null principal wins and its key id is recorded", async () => {
  const order: string[] = [];
  const auth = (name: string, keyId: string | null) =>
    definePlugin({ name, authenticate: () => (order.push(name), keyId ? { keyId } : null) });
  // A principal means the caller authenticated to the proxy, so the proxy sends its own provider key.
  process.env.OPENAI_API_KEY = "sk-proxy-held";
  try {
    await withProxy([auth("none", null), auth("first", "key_1"), auth("second", "key_2")], async (proxy) => {
      const response = await chat(proxy.url);
      expect(response.status).toBe(200);
      expect(order).toEqual(["none", "first"]);
      expect((await proxy.records()).at(-1)).toMatchObject({ key_id: "key_1", attribution: "verified" });
    });
  } finally {
    delete process.env.OPENAI_API_KEY;
  }
});

test("attribute: later plugins override fields they set, keep the others", async () => {
  const verify = definePlugin({ name: "verify", attribute: () => ({ user_id: "verified-user", attribution: "verified" }) });
  await withProxy([verify], async (proxy) => {
    await (await chat(proxy.url, {}, { "x-agent-id": "agent-1", "x-user-id": "claimed" })).arrayBuffer();
    expect((await proxy.records()).at(-1)).toMatchObject({ agent_id: "agent-1", user_id: "verified-user", attribution: "verified" });
  });
});

test("limit: a denial stops the call before it is forwarded, with its status and headers, recorded", async () => {
  const calls: string[] = [];
  const deny = definePlugin({
    name: "deny",
    limit: {
      check: () => {
        calls.push("deny");
        throw new ProxyError("rate_limited", "Too many requests for agent 'a'; retry in 30 s.", { "retry-after": "30" });
      },
    },
  });
  const never = definePlugin({ name: "never", limit: { check: () => void calls.push("never") } });
  await withProxy([deny, never], async (proxy) => {
    const before = upstream.requests.length;
    const response = await chat(proxy.url);
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("30");
    expect(calls).toEqual(["deny"]);
    expect(upstream.requests.length).toBe(before);
    expect((await proxy.records()).at(-1)).toMatchObject({
      outcome: "rejected",
      status: 429,
      error_type: "rate_limited",
      provider: "openai",
    });
  });
});

test("price and settle: the first quote is recorded, settle sees the final record", async () => {
  const settled: AuditRecord[] = [];
  const pricing = definePlugin({
    name: "flat-price",
    price: ({ usage, provider }) => ({ cost_nano_usd: (usage.input_tokens ?? 0) * 1_000_000, price_source: `test-flat:${provider}` }),
  });
  const ignored = definePlugin({ name: "ignored-price", price: () => ({ cost_nano_usd: 99, price_source: "ignored" }) });
  const settle = definePlugin({ name: "settle", limit: { check: () => {}, settle: (_ctx, record) => void settled.push(record) } });
  await withProxy([pricing, ignored, settle], async (proxy) => {
    await (await chat(proxy.url)).arrayBuffer();
    const record = (await proxy.records()).at(-1)!;
    expect(record).toMatchObject({ cost_usd: 0.012, cost_nano_usd: 12_000_000, price_source: "test-flat:openai", input_tokens: 12 });
    expect(settled.map((r) => r.id)).toEqual([record.id]);
    expect(settled[0]!.outcome).toBe("completed");
  });
});

test("a throwing hook is reported as [plugin NAME] HOOK: message and the call is recorded", async () => {
  const boom = definePlugin({
    name: "boom",
    authenticate: () => {
      throw new Error("kaboom");
    },
  });
  await withProxy([boom], async (proxy) => {
    const response = await chat(proxy.url);
    expect(response.status).toBe(500);
    expect(((await response.json()) as { error: { message: string } }).error.message).toBe("[plugin boom] authenticate: kaboom");
    expect((await proxy.records()).at(-1)).toMatchObject({ outcome: "rejected", error_type: "plugin_error" });
  });
});

test("a throwing meter never changes the bytes the client receives", async () => {
  const inner = openai({ baseURL: `${upstream.url}/v1` }).provider;
  const brokenMeter = definePlugin({
    name: "broken-meter",
    provider: {
      ...inner,
      meter: () => ({
        event: () => {
          throw new Error("meter exploded");
        },
        json: () => {},
        result: () => ({ usage: null, responseModel: null, terminal: true, errorType: null }),
      }),
    },
  });
  const proxy = await startTestProxy(upstream.url, { plugins: [brokenMeter, sqliteAudit()] });
  try {
    const body = { stream: true, stream_options: { include_usage: true } };
    const direct = await (await chat(upstream.url, body)).text();
    expect(await (await chat(proxy.url, body)).text()).toBe(direct);
    expect((await proxy.records()).at(-1)).toMatchObject({ outcome: "completed", provider: "broken-meter" });
  } finally {
    await proxy.stop();
  }
});

test("attribute: tags merge key by key across plugins; a plugin's inbound headers never go upstream", async () => {
  const seen: Record<string, string>[] = [];
  const team = definePlugin({
    name: "team",
    inboundHeaders: ["X-Team"],
    attribute: (ctx) => ({ tags: { team: ctx.request.headers.get("x-team") ?? "none", project: "apollo" } }),
  });
  const override = definePlugin({ name: "override", attribute: () => ({ tags: { team: "platform" } }) });
  const observer = definePlugin({ name: "observer", limit: { check: (ctx) => void seen.push({ ...ctx.attribution.tags }) } });
  await withProxy([team, override, observer], async (proxy) => {
    expect((await chat(proxy.url, {}, { "x-team": "research", "x-keep": "1" })).status).toBe(200);
    expect(seen).toEqual([{ team: "platform", project: "apollo" }]);
    const forwarded = upstream.requests.at(-1)!.headers;
    expect(forwarded["x-team"]).toBeUndefined();
    expect(forwarded["x-keep"]).toBe("1");
  });
});

test("attribute: a header a claim came from is named by the plugin that read it, not by the core", async () => {
  const claims = definePlugin({
    name: "claims",
    authenticate: () => ({ keyId: "key_9", identity: { agent_id: "bot" }, users: [] }),
    attribute: (ctx) => ({ user_id: ctx.request.headers.get("x-person"), sources: { user_id: { header: "X-Person" } } }),
  });
  process.env.OPENAI_API_KEY = "sk-proxy-held";
  try {
    await withProxy([claims], async (proxy) => {
      const response = await chat(proxy.url, {}, { "x-person": "mallory" });
      expect(response.status).toBe(403);
      expect(((await response.json()) as { error: { message: string } }).error.message).toContain(
        "key_9 may not act as user 'mallory' (claimed by the X-Person header)",
      );
    });
  } finally {
    delete process.env.OPENAI_API_KEY;
  }
});

test("limit.check: a verdict's flag is recorded as error_type on a call it lets through; the first flag wins", async () => {
  const flagger = (name: string, flag: string) => definePlugin({ name, limit: { check: () => ({ flag }) } });
  await withProxy([flagger("one", "note:first"), flagger("two", "note:second")], async (proxy) => {
    expect((await chat(proxy.url)).status).toBe(200);
    expect((await proxy.settled(1)).at(-1)).toMatchObject({ outcome: "completed", error_type: "note:first" });
  });
});
