// Budget alerts end to end: real calls through the proxy spend a cost budget, and a local HTTP
// receiver gets one signed POST per window, scope and threshold — retried after a 500, flushed at
// shutdown, never twice across a restart or across two runtimes on one Redis — and each alert is a
// budget_alert chain event without the user's id.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { headerAttribution, openai, pricing, redisLimiterStore, sqliteAudit, tiers } from "../../plugins/index.ts";
import type { BudgetAlert } from "../../plugins/tiers/index.ts";
import type { Logger } from "../../src/index.ts";
import { WebhookDeliveries, resolveWebhooks } from "../../plugins/tiers/webhook.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, tempDir, type TestProxy } from "../helpers/proxy.ts";
import { namedBlock } from "../helpers/doc-blocks.ts";
import { dropPrefix, sharedRedisURL, uniquePrefix } from "../helpers/redis.ts";
import { join } from "node:path";

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
});

interface Received {
  headers: Headers;
  body: string;
}

/** A webhook receiver on port 0: keeps every request; `answers` are the statuses of the first requests (then 200). */
function startReceiver(answers: number[] = []) {
  const received: Received[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(request) {
      received.push({ headers: request.headers, body: await request.text() });
      return new Response(null, { status: answers.shift() ?? 200 });
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}/hooks/budget`,
    received,
    alerts: () => received.map((r) => JSON.parse(r.body) as BudgetAlert),
    async until(n: number, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (received.length < n && Date.now() < deadline) await Bun.sleep(10);
      return received;
    },
    stop: () => server.stop(true),
  };
}

const secret = "whsec-test-0123456789abcdef";
const prices = pricing({ models: { "gpt-alert": { input: 0, output: 100 } }, catalog: false });
// 2,500 output tokens at $100/M: each call costs $0.25 of a $1.00 daily budget.
const quarter = JSON.stringify({ prompt_tokens: 0, completion_tokens: 2500, total_tokens: 2500 });

const chat = (proxy: TestProxy, user: string) =>
  fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-user-id": user, "x-fake-usage": quarter },
    body: JSON.stringify({ model: "gpt-alert", max_tokens: 2500, messages: [{ role: "user", content: "hi" }] }),
  }).then(async (r) => {
    await r.text();
    return r.status;
  });

type Limiter = ReturnType<typeof tiers>;
type WebhookOptions = Partial<NonNullable<Parameters<typeof tiers>[0]["webhooks"]>[string]>;

function limiter(
  url: string,
  extra: { store?: Parameters<typeof tiers>[0]["store"]; hook?: WebhookOptions; now?: () => number } = {},
): Limiter {
  return tiers({
    tiers: { team: { costPerDay: 1, per: ["user"], alerts: [{ budget: "costPerDay", thresholds: [0.5, 0.8, 1], webhook: "ops" }] } },
    default: "team",
    webhooks: { ops: { url, secret, backoffMs: 50, ...extra.hook } },
    ...(extra.store ? { store: extra.store } : {}),
    ...(extra.now ? { now: extra.now } : {}),
  });
}

const start = (tier: Limiter, logDb = join(tempDir(), "audit.db"), log?: Logger) =>
  startTestProxy(
    upstream.url,
    { plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), prices, tier, sqliteAudit()] },
    { logDb, ...(log ? { log } : {}) },
  );

async function alertEvents(proxy: TestProxy) {
  const page = await proxy.runtime.trail.events({ kind: "budget_alert", limit: 100 });
  return page.events.reverse();
}

describe("budget alerts on the in-memory store", () => {
  test("each threshold alerts once per scope and window, signed; the chain holds each as an event without the user", async () => {
    const receiver = startReceiver();
    const clock = { t: Date.UTC(2026, 4, 12, 9) };
    const proxy = await start(limiter(receiver.url, { now: () => clock.t }));
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push(await chat(proxy, "alice"));
      // $0.25 a call: the 5th would pass $1.00.
      expect(statuses).toEqual([200, 200, 200, 200, 402, 402]);
      await proxy.settled(6);
      await receiver.until(3);
      await Bun.sleep(100); // nothing more comes
      const alerts = receiver.alerts();
      expect(alerts.map((a) => [a.who, a.threshold, a.used])).toEqual([
        ["alice", 0.5, 500_000_000],
        ["alice", 0.8, 1_000_000_000],
        ["alice", 1, 1_000_000_000],
      ]);
      expect(alerts[0]).toMatchObject({
        type: "budget_alert",
        tier: "team",
        budget: "cost_per_day",
        scope: "user",
        limit: 1_000_000_000,
        unit: "nano_usd",
        window_end: "2026-05-13T00:00:00.000Z",
      });
      expect(alerts[0]!.text).toBe(
        "agent-attr: user alice has used 50% of the daily cost budget of tier team ($0.50 of $1.00; alert at 50%). It resets at 2026-05-13T00:00:00.000Z.",
      );
      for (const { headers, body } of receiver.received) {
        expect(headers.get("content-type")).toBe("application/json");
        expect(headers.get("x-agent-attr-event")).toBe("budget_alert");
        expect(headers.get("x-agent-attr-delivery")).toBe((JSON.parse(body) as BudgetAlert).id);
        expect(verify(headers.get("x-agent-attr-signature")!, body)).toBe(true);
        expect(verify(headers.get("x-agent-attr-signature")!, body.replace("alice", "mallory"))).toBe(false);
      }

      // Another user's budget is another scope; the next day is another window.
      expect(await chat(proxy, "bob")).toBe(200);
      expect(await chat(proxy, "bob")).toBe(200);
      clock.t = Date.UTC(2026, 4, 13, 9);
      expect(await chat(proxy, "alice")).toBe(200);
      expect(await chat(proxy, "alice")).toBe(200);
      await proxy.settled(10);
      await receiver.until(5);
      await Bun.sleep(100);
      expect(
        receiver
          .alerts()
          .slice(3)
          .map((a) => [a.who, a.threshold, a.window_end]),
      ).toEqual([
        ["bob", 0.5, "2026-05-13T00:00:00.000Z"],
        ["alice", 0.5, "2026-05-14T00:00:00.000Z"],
      ]);

      const events = await alertEvents(proxy);
      expect(events.map((e) => [e.actor, e.details.threshold, e.details.alert_id])).toEqual(
        receiver.alerts().map((a) => ["plugin:tiers", a.threshold, a.id]),
      );
      expect(events[0]!.details).toEqual({
        alert_id: alerts[0]!.id,
        tier: "team",
        budget: "cost_per_day",
        threshold: 0.5,
        scope: "user",
        used: 500_000_000,
        limit: 1_000_000_000,
        unit: "nano_usd",
        window_end: "2026-05-13T00:00:00.000Z",
        webhook: "ops",
      });
      expect(JSON.stringify(events)).not.toContain("alice");
      expect(JSON.stringify(events)).not.toContain("bob");
      expect((await proxy.runtime.trail.verify("test")).ok).toBe(true);
    } finally {
      await proxy.stop();
      receiver.stop();
    }
  });

  test("a receiver that answers 500 gets the same alert again after the backoff, and it is delivered once", async () => {
    const receiver = startReceiver([500]);
    const proxy = await start(limiter(receiver.url));
    try {
      expect(await chat(proxy, "carol")).toBe(200);
      expect(await chat(proxy, "carol")).toBe(200);
      await receiver.until(2);
      await Bun.sleep(200);
      expect(receiver.received).toHaveLength(2);
      const [first, second] = receiver.received;
      expect(second!.body).toBe(first!.body);
      expect(second!.headers.get("x-agent-attr-delivery")).toBe(first!.headers.get("x-agent-attr-delivery"));
      expect(verify(second!.headers.get("x-agent-attr-signature")!, second!.body)).toBe(true);
    } finally {
      await proxy.stop();
      receiver.stop();
    }
  });

  test("a receiver that refuses (4xx) is not retried; attempts are bounded", async () => {
    const refusing = startReceiver([401, 401]);
    const failing = startReceiver([503, 503, 503, 503]);
    const proxy = await start(
      tiers({
        tiers: {
          team: {
            costPerDay: 1,
            per: ["user"],
            alerts: [
              { budget: "costPerDay", thresholds: [0.5], webhook: "refusing" },
              { budget: "costPerDay", thresholds: [0.5], webhook: "failing" },
            ],
          },
        },
        default: "team",
        webhooks: {
          refusing: { url: refusing.url, secret, backoffMs: 20 },
          failing: { url: failing.url, secret, backoffMs: 20, attempts: 3 },
        },
      }),
    );
    try {
      expect(await chat(proxy, "dan")).toBe(200);
      expect(await chat(proxy, "dan")).toBe(200);
      await failing.until(3);
      await Bun.sleep(300);
      expect(refusing.received).toHaveLength(1);
      expect(failing.received).toHaveLength(3);
    } finally {
      await proxy.stop();
      refusing.stop();
      failing.stop();
    }
  });

  test("shutdown gives an alert waiting to retry its last attempt now, within the flush deadline", async () => {
    const receiver = startReceiver([500]);
    const warnings: string[] = [];
    const log = { info() {}, warn: (line: string) => void warnings.push(line), error() {} };
    const proxy = await start(limiter(receiver.url, { hook: { backoffMs: 600_000 } }), join(tempDir(), "audit.db"), log);
    expect(await chat(proxy, "erin")).toBe(200);
    expect(await chat(proxy, "erin")).toBe(200);
    // The first attempt has failed and the alert waits 10 minutes for its retry.
    for (const deadline = Date.now() + 10_000; !warnings.some((w) => w.includes("retrying")) && Date.now() < deadline; )
      await Bun.sleep(10);
    expect(receiver.received).toHaveLength(1);
    const started = performance.now();
    await proxy.stop();
    expect(performance.now() - started).toBeLessThan(5_000 + 2_000);
    expect(receiver.received).toHaveLength(2);
    expect(receiver.received[1]!.body).toBe(receiver.received[0]!.body);
    receiver.stop();
  });

  test("a daily token quota per agent: the alert counts tokens, and its chain event names the agent (agents are not personal data)", async () => {
    const receiver = startReceiver();
    const proxy = await start(
      tiers({
        tiers: { bots: { tokensPerDay: 10_000, per: ["agent"], alerts: [{ budget: "tokensPerDay", thresholds: [0.2], webhook: "ops" }] } },
        default: "bots",
        webhooks: { ops: { url: receiver.url, secret } },
      }),
    );
    try {
      const answer = await fetch(`${proxy.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-agent-id": "nightly-bot", "x-user-id": "hana", "x-fake-usage": quarter },
        body: JSON.stringify({ model: "gpt-alert", max_tokens: 2500, messages: [{ role: "user", content: "hi" }] }),
      });
      expect(answer.status).toBe(200);
      await answer.text();
      const [received] = await receiver.until(1);
      expect(JSON.parse(received!.body)).toMatchObject({
        who: "nightly-bot",
        scope: "agent",
        budget: "tokens_per_day",
        unit: "tokens",
        used: 2500,
        limit: 10_000,
      });
      expect((JSON.parse(received!.body) as BudgetAlert).text).toContain(
        "has used 25% of the daily token quota of tier bots (2,500 tokens of 10,000 tokens",
      );
      const [event] = await alertEvents(proxy);
      expect(event!.details).toMatchObject({ agent_id: "nightly-bot", scope: "agent", unit: "tokens", used: 2500 });
      expect(JSON.stringify(event)).not.toContain("hana");
    } finally {
      await proxy.stop();
      receiver.stop();
    }
  });

  test("a slack webhook gets { text } only, signed when it has a secret", async () => {
    const receiver = startReceiver();
    const proxy = await start(limiter(receiver.url, { hook: { format: "slack" } }));
    try {
      expect(await chat(proxy, "fay")).toBe(200);
      expect(await chat(proxy, "fay")).toBe(200);
      const [received] = await receiver.until(1);
      const body = JSON.parse(received!.body) as Record<string, unknown>;
      expect(Object.keys(body)).toEqual(["text"]);
      expect(body.text).toStartWith("agent-attr: user fay has used 50% of the daily cost budget of tier team ($0.50 of $1.00;");
      expect(verify(received!.headers.get("x-agent-attr-signature")!, received!.body)).toBe(true);
    } finally {
      await proxy.stop();
      receiver.stop();
    }
  });
});

describe("budget alerts on Redis", () => {
  test("two runtimes on one Redis alert each threshold once between them, and a restarted runtime does not alert again", async () => {
    const receiver = startReceiver();
    const prefix = uniquePrefix("alerts");
    const store = () => redisLimiterStore({ url: sharedRedisURL, prefix });
    const dbA = join(tempDir(), "audit.db");
    let a = await start(limiter(receiver.url, { store: store() }), dbA);
    const b = await start(limiter(receiver.url, { store: store() }));
    try {
      // gus spends $0.25 per call, alternating replicas: $0.50 is reached on b, $1.00 on b.
      expect(await chat(a, "gus")).toBe(200);
      expect(await chat(b, "gus")).toBe(200);
      expect(await chat(a, "gus")).toBe(200);
      await Promise.all([a.settled(2), b.settled(1)]);
      await receiver.until(1);
      await a.stop();
      a = await start(limiter(receiver.url, { store: store() }), dbA); // the same trail, a new process's memory
      expect(await chat(a, "gus")).toBe(200);
      expect(await chat(b, "gus")).toBe(402);
      expect(await chat(a, "gus")).toBe(402);
      await Promise.all([a.settled(4), b.settled(2)]);
      await receiver.until(3);
      await Bun.sleep(200);
      expect(receiver.alerts().map((alert) => [alert.who, alert.threshold])).toEqual([
        ["gus", 0.5],
        ["gus", 0.8],
        ["gus", 1],
      ]);
      const events = [...(await alertEvents(a)), ...(await alertEvents(b))];
      expect(events.map((e) => e.details.alert_id).sort()).toEqual(
        receiver
          .alerts()
          .map((alert) => alert.id)
          .sort(),
      );
    } finally {
      await a.stop();
      await b.stop();
      receiver.stop();
      await dropPrefix(prefix);
    }
  });
});

describe("alert options and the delivery queue", () => {
  const base = { default: "t", webhooks: { ops: { url: "https://alerts.example/hook", secret } } };
  const invalid = (options: unknown) => {
    try {
      tiers(options as Parameters<typeof tiers>[0]);
    } catch (error) {
      return (error as Error).message;
    }
    return "accepted";
  };

  test("an alert names a budget its tier sets and a defined webhook; a json webhook needs a secret", () => {
    const tier = (alerts: unknown[]) => ({ t: { costPerDay: 5, alerts } });
    expect(invalid({ ...base, tiers: tier([{ budget: "costPerMonth", webhook: "ops" }]) })).toContain(
      "tiers.t.alerts.0.budget: tier 't' sets no costPerMonth to alert on",
    );
    expect(invalid({ ...base, tiers: tier([{ budget: "costPerDay", webhook: "pager" }]) })).toContain(
      "tiers.t.alerts.0.webhook: unknown webhook 'pager'; defined: ops",
    );
    expect(invalid({ ...base, tiers: tier([{ budget: "costPerDay", webhook: "ops", thresholds: [0.5, 1.5] }]) })).toContain(
      "tiers.t.alerts.0.thresholds.1",
    );
    expect(invalid({ ...base, webhooks: { ops: { url: "https://alerts.example/hook" } }, tiers: tier([]) })).toContain(
      "webhooks.ops: a json webhook needs a secret or secretEnv",
    );
    expect(invalid({ ...base, webhooks: { ops: { url: "ftp://alerts.example/hook", secret } }, tiers: tier([]) })).toContain(
      "webhooks.ops.url",
    );
    expect(
      invalid({ ...base, webhooks: { ops: { url: "https://alerts.example/hook", secretEnv: "NOT_SET_ANYWHERE_X" } }, tiers: tier([]) }),
    ).toContain("webhooks.ops.secretEnv names NOT_SET_ANYWHERE_X, which is not set");
    expect(
      invalid({
        ...base,
        webhooks: { ops: { url: "https://hooks.slack.com/services/T/B/X", format: "slack" } },
        tiers: tier([{ budget: "costPerDay", webhook: "ops" }]),
      }),
    ).toBe("accepted");
  });

  test("the queue is bounded: past maxQueuedAlerts new alerts are dropped and logged, never waiting in memory", async () => {
    const held = Promise.withResolvers<void>();
    const server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: async () => (await held.promise, new Response(null, { status: 204 })),
    });
    const hooks = resolveWebhooks({
      ops: { url: `http://127.0.0.1:${server.port}/`, format: "json", secret, attempts: 3, backoffMs: 10, timeoutMs: 5000 },
    });
    const deliveries = new WebhookDeliveries(hooks, 2);
    const errors: string[] = [];
    deliveries.log = { info() {}, warn() {}, error: (m) => errors.push(m) };
    const alert = (id: string) => ({ id, type: "budget_alert", text: "t" }) as BudgetAlert;
    expect([
      deliveries.enqueue("ops", alert("a1")),
      deliveries.enqueue("ops", alert("a2")),
      deliveries.enqueue("ops", alert("a3")),
    ]).toEqual([true, true, false]);
    expect(deliveries.size).toBe(2);
    expect(errors[0]).toContain("1 budget alert(s) dropped (2 wait for delivery already, maxQueuedAlerts); the latest, a3");
    held.resolve();
    await deliveries.flush(5000);
    expect(deliveries.size).toBe(0);
    server.stop(true);
  });
});

// The receiver's check: the block docs/operators.md shows (verify-alert.ts), run as it is.
const docBlock = join(tempDir(), "verify-alert.ts");
writeFileSync(docBlock, namedBlock("docs/operators.md", "verify-alert.ts"));
const { verified } = (await import(docBlock)) as { verified: (header: string, body: string, secret: string) => boolean };
const verify = (header: string, body: string) => verified(header, body, secret);
