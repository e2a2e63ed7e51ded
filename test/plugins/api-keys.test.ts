// Keys mode end to end: the real SDKs send a proxy key where they send their provider key; the
// proxy verifies it, pins the identity, and calls the provider with its own key. Key lifecycle
// through the CLI against a running proxy (create, use, revoke, expire) and spoofed identities.
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { signedKeyTable } from "../helpers/keys.ts";
import { anthropic, apiKeys, headerAttribution, openai, sqliteAudit } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { runCli } from "../helpers/process.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

const realOpenAIKey = "sk-real-openai-provider-key";
const realAnthropicKey = "sk-ant-real-provider-key";
let upstream: FakeUpstream;
let proxy: TestProxy;
let keys: ReturnType<typeof signedKeyTable>;
let botKey: string;
let botKeyId: string;
let teamKey: string;

const plugins = (onMismatch: "reject" | "record" = "reject") => [
  openai({ baseURL: `${upstream.url}/v1` }),
  anthropic({ baseURL: upstream.url }),
  headerAttribution(),
  apiKeys({ onMismatch }),
  sqliteAudit(),
];

beforeAll(async () => {
  process.env.OPENAI_API_KEY = realOpenAIKey;
  process.env.ANTHROPIC_API_KEY = realAnthropicKey;
  upstream = await startFakeUpstream();
  proxy = await startTestProxy(upstream.url, { plugins: plugins() });
  keys = signedKeyTable(proxy.logDb);
  ({
    key: botKey,
    record: { id: botKeyId },
  } = keys.create({ agents: ["code-review-bot"], users: ["team-a-*"], tier: "pro" }));
  ({ key: teamKey } = keys.create({ agents: ["team-*"] }));
});
afterAll(async () => {
  keys.close();
  await proxy.stop();
  await upstream.stop();
  delete process.env.OPENAI_API_KEY;
  delete process.env.ANTHROPIC_API_KEY;
});

const chat = (key: string | null, headers: Record<string, string> = {}) =>
  fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });

async function recordOf(response: Response) {
  await response.arrayBuffer();
  const id = response.headers.get("x-audit-record-id")!;
  await proxy.settled(1);
  return (await proxy.records()).find((r) => r.id === id)!;
}

/** No request the upstream saw carried the proxy key anywhere. */
const upstreamNeverSaw = (secret: string) => expect(upstream.requests.some((r) => JSON.stringify(r).includes(secret))).toBe(false);

describe("the real SDKs with a proxy key", () => {
  test("openai: Bearer proxy key in, the provider key out, identity verified", async () => {
    const client = new OpenAI({
      apiKey: botKey,
      baseURL: `${proxy.url}/v1`,
      maxRetries: 0,
      defaultHeaders: { "X-User-ID": "team-a-alice" },
    });
    const before = upstream.requests.length;
    const completion = await client.chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] });
    expect(completion.choices[0]!.message.content).toBe("Hello world");
    const seen = upstream.requests.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers.authorization).toBe(`Bearer ${realOpenAIKey}`);
    upstreamNeverSaw(botKey);
    const record = (await proxy.records()).at(-1)!;
    expect(record).toMatchObject({
      agent_id: "code-review-bot",
      user_id: "team-a-alice",
      attribution: "verified",
      key_id: botKeyId,
      outcome: "completed",
    });
    expect(JSON.stringify(record)).not.toContain(botKey);
  });

  test("anthropic: x-api-key proxy key in, the provider key out", async () => {
    const client = new Anthropic({ apiKey: botKey, baseURL: proxy.url, maxRetries: 0 });
    const before = upstream.requests.length;
    const message = await client.messages.create({
      model: "claude-sonnet-4-6",
      max_tokens: 16,
      messages: [{ role: "user", content: "hi" }],
    });
    expect(message.type).toBe("message");
    const seen = upstream.requests.slice(before);
    expect(seen[0]!.headers["x-api-key"]).toBe(realAnthropicKey);
    expect(seen[0]!.headers.authorization).toBeUndefined();
    upstreamNeverSaw(botKey);
    expect((await proxy.records()).at(-1)).toMatchObject({ agent_id: "code-review-bot", attribution: "verified", key_id: botKeyId });
  });

  test("a spoofed agent is a 403 the SDK raises as PermissionDeniedError, naming the identity", async () => {
    const client = new OpenAI({
      apiKey: botKey,
      baseURL: `${proxy.url}/v1`,
      maxRetries: 0,
      defaultHeaders: { "X-Agent-ID": "deploy-bot" },
    });
    const before = upstream.requests.length;
    const error = await client.chat.completions.create({ model: "gpt-4o", messages: [] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((error as Error).message).toContain(
      `${botKeyId} may not act as agent 'deploy-bot' (claimed by the X-Agent-ID header): it is restricted to agent 'code-review-bot'`,
    );
    expect(upstream.requests.length).toBe(before);
  });
});

describe("identity restrictions", () => {
  test("a user outside the key's globs is refused and recorded as rejected with the key id", async () => {
    const response = await chat(botKey, { "x-user-id": "team-b-mallory" });
    expect(response.status).toBe(403);
    const body = (await response.clone().json()) as { error: { message: string; code: string } };
    expect(body.error.code).toBe("forbidden");
    expect(body.error.message).toContain("may not act as user 'team-b-mallory'");
    expect(body.error.message).toContain("'team-a-*'");
    expect(await recordOf(response)).toMatchObject({
      outcome: "rejected",
      status: 403,
      error_type: "forbidden",
      key_id: botKeyId,
      user_id: "team-b-mallory",
    });
  });

  test("a body `user` field outside the key's globs does not become the call's user: kept as asserted, not refused", async () => {
    const response = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${botKey}` },
      body: JSON.stringify({ model: "gpt-4o", messages: [], user: "root" }),
    });
    expect(response.status).toBe(200);
    const record = await recordOf(response);
    expect(record).toMatchObject({ user_id: null, key_id: botKeyId, attribution: "verified" });
    expect(JSON.parse(record.delegation!).asserted).toEqual({ user_id: "root" });
  });

  test("a key with agent globs accepts a matching claimed agent and refuses others", async () => {
    const ok = await chat(teamKey, { "x-agent-id": "team-planner" });
    expect(ok.status).toBe(200);
    expect(await recordOf(ok)).toMatchObject({ agent_id: "team-planner", attribution: "verified" });
    const refused = await chat(teamKey, { "x-agent-id": "intruder" });
    expect(refused.status).toBe(403);
    await refused.arrayBuffer();
  });

  test("with onMismatch: record, the claim is kept as asserted beside the verified identity", async () => {
    const recording = await startTestProxy(upstream.url, { plugins: plugins("record") });
    try {
      const store = signedKeyTable(recording.logDb);
      const { key, record: made } = store.create({ agents: ["code-review-bot"], users: ["team-a-*"] });
      store.close();
      const response = await fetch(`${recording.url}/v1/chat/completions`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${key}`,
          "x-agent-id": "deploy-bot",
          "x-user-id": "team-b-x",
        },
        body: JSON.stringify({ model: "gpt-4o", messages: [] }),
      });
      expect(response.status).toBe(200);
      await response.arrayBuffer();
      const [record] = await recording.settled(1);
      expect(record).toMatchObject({ agent_id: "code-review-bot", user_id: null, attribution: "verified", key_id: made.id });
      expect(JSON.parse(record!.delegation!)).toEqual({ asserted: { agent_id: "deploy-bot", user_id: "team-b-x" } });
    } finally {
      await recording.stop();
    }
  });
});

describe("refused credentials (401, recorded, never forwarded)", () => {
  test("no key, an unknown key, or a provider key sent by the client", async () => {
    const before = upstream.requests.length;
    for (const [key, says] of [
      [null, "carried none"],
      ["aa-not-a-real-key", "not a key of this proxy"],
      ["sk-proj-someone-elses-openai-key", "not a key of this proxy"],
    ] as const) {
      const response = await chat(key, { "x-agent-id": "code-review-bot" });
      expect(response.status).toBe(401);
      const text = await response.clone().text();
      expect(text).toContain(says);
      if (key) expect(text).not.toContain(key);
      const record = await recordOf(response);
      expect(record).toMatchObject({ outcome: "rejected", error_type: "unauthorized", key_id: null });
      if (key) expect(JSON.stringify(record)).not.toContain(key);
    }
    expect(upstream.requests.length).toBe(before);
  });
});

describe("key lifecycle through the CLI, against the running proxy", () => {
  test("create, use, revoke: the proxy sees both without a restart", async () => {
    const created = await runCli([
      "keys",
      "create",
      "--agent",
      "nightly-job",
      "--tier",
      "free",
      "--format",
      "json",
      "--log-db",
      proxy.logDb,
    ]);
    expect(created.exitCode).toBe(0);
    const { id, key, agents, tier } = JSON.parse(created.stdout) as { id: string; key: string; agents: string[]; tier: string };
    expect(agents).toEqual(["nightly-job"]);
    expect(tier).toBe("free");
    const used = await chat(key);
    expect(used.status).toBe(200);
    expect(await recordOf(used)).toMatchObject({ agent_id: "nightly-job", key_id: id, attribution: "verified" });

    const listed = await runCli(["keys", "list", "--log-db", proxy.logDb]);
    expect(listed.stdout).toContain(id);
    expect(listed.stdout).not.toContain(key);
    const db = signedKeyTable(proxy.logDb);
    expect(JSON.stringify(db.list())).not.toContain(key);
    db.close();

    const revoked = await runCli(["keys", "revoke", id, "--log-db", proxy.logDb]);
    expect(revoked.exitCode).toBe(0);
    const refused = await chat(key);
    expect(refused.status).toBe(401);
    expect(await refused.clone().text()).toContain(`Proxy key ${id} was revoked`);
    expect(await recordOf(refused)).toMatchObject({ outcome: "rejected", error_type: "unauthorized" });
  });

  test("an expired key is refused with when it expired", async () => {
    const { key, record } = keys.create({ agents: ["short-lived"], expiresAt: new Date(Date.now() + 300) });
    expect((await chat(key)).status).toBe(200);
    await Bun.sleep(350);
    const refused = await chat(key);
    expect(refused.status).toBe(401);
    expect(await refused.text()).toContain(`Proxy key ${record.id} expired at ${record.expires_at}`);
  });

  test("CLI mistakes are one line with the fix", async () => {
    const badExpiry = await runCli(["keys", "create", "--agent", "x", "--expires", "soon", "--log-db", proxy.logDb]);
    expect(badExpiry.exitCode).toBe(2);
    expect(badExpiry.stderr).toContain("--expires: 'soon' is neither a duration");
    const unknown = await runCli(["keys", "revoke", "key_nope", "--log-db", proxy.logDb]);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toContain("No proxy key has id 'key_nope'");
  });
});

test("a verified call with no provider key in the proxy's environment is refused naming the variable", async () => {
  delete process.env.OPENAI_API_KEY;
  try {
    const response = await chat(botKey);
    expect(response.status).toBe(500);
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("provider_key_missing");
    expect(body.error.message).toContain("OPENAI_API_KEY");
  } finally {
    process.env.OPENAI_API_KEY = realOpenAIKey;
  }
});

test("open mode (no apiKeys): the same spoofed headers pass through as asserted, with no key_id", async () => {
  const open = await startTestProxy(upstream.url, {
    plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), sqliteAudit()],
  });
  try {
    const before = upstream.requests.length;
    const response = await fetch(`${open.url}/v1/chat/completions`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        authorization: "Bearer sk-client-own-key",
        "x-agent-id": "deploy-bot",
        "x-user-id": "root",
      },
      body: JSON.stringify({ model: "gpt-4o", messages: [] }),
    });
    expect(response.status).toBe(200);
    await response.arrayBuffer();
    expect(upstream.requests.slice(before)[0]!.headers.authorization).toBe("Bearer sk-client-own-key");
    const [record] = await open.settled(1);
    expect(record).toMatchObject({ agent_id: "deploy-bot", user_id: "root", attribution: "asserted", key_id: null, delegation: null });
    // The proxy's own OPENAI_API_KEY is for verified callers only, never lent to anonymous ones.
    const anonymous = await fetch(`${open.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o", messages: [] }),
    });
    await anonymous.arrayBuffer();
    expect(upstream.requests.at(-1)!.headers.authorization).toBeUndefined();
  } finally {
    await open.stop();
  }
});
