// The attack issue 4 names: a key holder claiming someone else's identity to drain their limits.
// A key made without --users acts for no user (403, or the claim kept only as asserted); a task the
// key does not vouch for is metered per key and never selects a tier.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { anthropic, apiKeys, headerAttribution, openai, sqliteAudit, tiers } from "../../plugins/index.ts";
import { signedKeyTable } from "../helpers/keys.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
beforeAll(async () => {
  process.env.OPENAI_API_KEY = "sk-proxy-held";
  process.env.ANTHROPIC_API_KEY = "sk-ant-proxy-held";
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
  delete process.env.OPENAI_API_KEY;
  delete process.env.ANTHROPIC_API_KEY;
});

const clock = { t: Date.UTC(2026, 3, 1, 12) };
const now = () => clock.t;

async function withProxy(
  onMismatch: "reject" | "record",
  limiter: ReturnType<typeof tiers>,
  run: (proxy: TestProxy, keys: ReturnType<typeof signedKeyTable>) => Promise<void>,
) {
  const proxy = await startTestProxy(upstream.url, {
    plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), apiKeys({ onMismatch }), limiter, sqliteAudit()],
  });
  const keys = signedKeyTable(proxy.logDb);
  try {
    await run(proxy, keys);
  } finally {
    keys.close();
    await proxy.stop();
  }
}

const chat = async (proxy: TestProxy, key: string, headers: Record<string, string>) => {
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}`, ...headers },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });
  return { status: response.status, text: await response.text() };
};

const perUser = () => tiers({ tiers: { t: { requestsPerMinute: 1, per: ["user"] } }, default: "t", now });

test("reject mode: a key without --users claiming a victim is a 403; --users '*' opts in", async () => {
  await withProxy("reject", perUser(), async (proxy, keys) => {
    const { key: bot } = keys.create({ agents: ["bot"] });
    const refused = await chat(proxy, bot, { "x-user-id": "victim" });
    expect(refused.status).toBe(403);
    expect(refused.text).toContain("may not act as user 'victim' (claimed by the X-User-ID header): it allows no user claims");
    const { key: any } = keys.create({ agents: ["gateway"], users: ["*"] });
    expect((await chat(proxy, any, { "x-user-id": "carol" })).status).toBe(200);
  });
});

test("record mode: the victim's claim is kept as asserted, charges no meter of the victim, and the victim still passes", async () => {
  await withProxy("record", perUser(), async (proxy, keys) => {
    clock.t += 3_600_000;
    const { key: attacker, record: attackerKey } = keys.create({ agents: ["bot"] });
    const { key: own } = keys.create({ agents: ["victim-app"], users: ["victim"] });
    expect((await chat(proxy, attacker, { "x-user-id": "victim" })).status).toBe(200);
    const [record] = await proxy.settled(1);
    expect(record).toMatchObject({ user_id: null, agent_id: "bot", attribution: "verified", key_id: attackerKey.id });
    expect(JSON.parse(record!.delegation!)).toEqual({ asserted: { user_id: "victim" } });
    // The victim's own per-user limit (1 a minute) is untouched.
    expect((await chat(proxy, own, { "x-user-id": "victim" })).status).toBe(200);
    // Calls without a user are metered per key: the attacker's spent its own, not another key's.
    const { key: other } = keys.create({ agents: ["other"] });
    expect((await chat(proxy, other, {})).status).toBe(200);
    const again = await chat(proxy, attacker, {});
    expect(again.status).toBe(429);
    expect(again.text).toContain(`user '(none) (key ${attackerKey.id})'`);
  });
});

test("an unvouched task is metered per key and never selects a tier", async () => {
  const limiter = tiers({
    tiers: { t: { requestsPerMinute: 1, per: ["task"] }, big: { requestsPerMinute: 100, per: ["task"] } },
    default: "t",
    assign: [{ task: "batch-*", tier: "big" }],
    now,
  });
  await withProxy("reject", limiter, async (proxy, keys) => {
    clock.t += 3_600_000;
    const { key: a } = keys.create({ agents: ["a"] });
    const { key: b } = keys.create({ agents: ["b"] });
    expect((await chat(proxy, a, { "x-task-context": "PR #7" })).status).toBe(200);
    // Another key naming the same task has its own meter: a cannot drain b's task budget.
    expect((await chat(proxy, b, { "x-task-context": "PR #7" })).status).toBe(200);
    const again = await chat(proxy, a, { "x-task-context": "PR #7" });
    expect(again.status).toBe(429);
    expect(again.text).toContain("task 'PR #7 (asserted by key_");
    // Claiming a batch-* task does not buy the bigger tier.
    expect((await chat(proxy, a, { "x-task-context": "batch-nightly" })).status).toBe(200);
    const second = await chat(proxy, a, { "x-task-context": "batch-nightly" });
    expect(second.status).toBe(429);
    expect(second.text).toContain("(tier t)");
  });
});

test("a claimed identity spelled like an internal meter's name never reaches that meter", async () => {
  await withProxy("reject", perUser(), async (proxy, keys) => {
    clock.t += 3_600_000;
    const { key: victim, record: victimKey } = keys.create({ agents: ["victim-bot"] });
    const { key: gateway, record: gatewayKey } = keys.create({ agents: ["gateway"], users: ["*"] });
    // The gateway may claim any user, including the display name of the victim's "no user" meter.
    const spoof = `(none) (key ${victimKey.id})`;
    expect((await chat(proxy, gateway, { "x-user-id": spoof })).status).toBe(200);
    expect((await chat(proxy, gateway, { "x-user-id": spoof })).status).toBe(429);
    // The victim's calls without a user still have their own, untouched meter.
    expect((await chat(proxy, victim, {})).status).toBe(200);
    // Nor can a vouched claim reach another key's unvouched-task meter.
    expect((await chat(proxy, gateway, { "x-user-id": `x (asserted by ${gatewayKey.id})` })).status).toBe(200);
  });
});

test("SDK bodies that always carry a user (OpenAI `user`, Anthropic `metadata.user_id`) pass on a key without --users; the user is kept as asserted", async () => {
  const proxy = await startTestProxy(upstream.url, {
    plugins: [
      openai({ baseURL: `${upstream.url}/v1` }),
      anthropic({ baseURL: upstream.url }),
      headerAttribution(),
      apiKeys(),
      perUser(),
      sqliteAudit(),
    ],
  });
  const keys = signedKeyTable(proxy.logDb);
  try {
    clock.t += 3_600_000;
    const { key, record: made } = keys.create({ agents: ["claude-code"] });
    const post = (path: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
      fetch(`${proxy.url}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": key, ...headers },
        body: JSON.stringify(body),
      }).then(async (r) => ({ status: r.status, text: await r.text() }));
    const claudeUser = "user_3f2a_account_9c1d_session_77e0";
    expect(
      (
        await post("/v1/messages", {
          model: "claude-sonnet-4-5",
          max_tokens: 10,
          messages: [{ role: "user", content: "hi" }],
          metadata: { user_id: claudeUser },
        })
      ).status,
    ).toBe(200);
    clock.t += 60_000;
    expect((await post("/v1/chat/completions", { model: "gpt-4o", messages: [], user: "end-user-42" })).status).toBe(200);
    const records = await proxy.settled(2);
    expect(records.map((r) => [r.user_id, r.key_id, JSON.parse(r.delegation!).asserted.user_id])).toEqual([
      [null, made.id, claudeUser],
      [null, made.id, "end-user-42"],
    ]);
    // An explicit header is still a claim: refused, naming where it came from.
    const header = await post("/v1/chat/completions", { model: "gpt-4o", messages: [] }, { "x-user-id": "victim" });
    expect(header.status).toBe(403);
    expect(header.text).toContain("may not act as user 'victim' (claimed by the X-User-ID header): it allows no user claims");
  } finally {
    keys.close();
    await proxy.stop();
  }
});
