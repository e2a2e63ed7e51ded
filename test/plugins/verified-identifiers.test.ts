// The identifier rules hold for identities a credential establishes too: a key's agent and a
// token's claims are NFC like header ids (so they compare equal, and an erasure finds them), an
// invisible character in a claim is refused, and Claude Code's body user in keys mode is kept as
// asserted by its stable part, never refused.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { signedKeyTable } from "../helpers/keys.ts";
import { anthropic, apiKeys, headerAttribution, jwtAttribution, openai, sqliteAudit } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { runCli } from "../helpers/process.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

const secret = "an-hs256-secret-of-at-least-32-bytes!";
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
const utf8 = (text: string) => Buffer.from(text, "utf8").toString("latin1");

async function token(claims: Record<string, unknown>): Promise<string> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ aud: "a", exp: Math.floor(Date.now() / 1000) + 300, ...claims })}`;
  return `${input}.${Buffer.from(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(input))).toString("base64url")}`;
}

let upstream: FakeUpstream;
let keysProxy: TestProxy;
let jwtProxy: TestProxy;
let decomposedAgentKey: string;
let noUsersKey: string;

beforeAll(async () => {
  process.env.OPENAI_API_KEY = "sk-proxy-openai";
  process.env.ANTHROPIC_API_KEY = "sk-proxy-anthropic";
  upstream = await startFakeUpstream();
  const providers = () => [openai({ baseURL: `${upstream.url}/v1` }), anthropic({ baseURL: upstream.url }), headerAttribution()];
  keysProxy = await startTestProxy(upstream.url, { plugins: [...providers(), apiKeys(), sqliteAudit()] });
  jwtProxy = await startTestProxy(upstream.url, { plugins: [...providers(), jwtAttribution({ secret, audience: "a" }), sqliteAudit()] });
  const store = signedKeyTable(keysProxy.logDb);
  // A key stored by an older version (or written by hand) with a decomposed agent id.
  ({ key: decomposedAgentKey } = store.create({ agents: ["rene\u0301-bot"], users: ["jose\u0301*"] }));
  ({ key: noUsersKey } = store.create({ agents: ["claude-code"] }));
  store.close();
});
afterAll(async () => {
  await keysProxy.stop();
  await jwtProxy.stop();
  await upstream.stop();
  delete process.env.OPENAI_API_KEY;
  delete process.env.ANTHROPIC_API_KEY;
});

async function call(proxy: TestProxy, path: string, credential: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${proxy.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${credential}`, ...headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  const id = response.headers.get("x-audit-record-id");
  return { status: response.status, text, record: (await proxy.records()).find((r) => r.id === id)! };
}
const chat = { model: "gpt-4o", messages: [] };

test("a key's agent and user globs compare in NFC: the composed header id is the key's own", async () => {
  const { status, record } = await call(keysProxy, "/v1/chat/completions", decomposedAgentKey, chat, {
    "x-agent-id": utf8("ren\u00e9-bot"),
    "x-user-id": utf8("jos\u00e9.garcia"),
  });
  expect(status).toBe(200);
  expect(record).toMatchObject({ agent_id: "ren\u00e9-bot", user_id: "jos\u00e9.garcia", attribution: "verified" });
});

test("keys mode: Claude Code's body user the key does not allow is kept as asserted by its device id, not refused", async () => {
  const device = "5dd07c33da27e6d2968d94ea20bf47a7b090b6b158b82328d54da2909a108e84";
  const session = "d2e70091-3007-41a3-a916-cb8b0d3098de";
  const body = {
    model: "claude-sonnet-4-6",
    max_tokens: 5,
    messages: [],
    metadata: { user_id: JSON.stringify({ device_id: device, account_uuid: "", session_id: session }) },
  };
  const { status, record } = await call(keysProxy, "/v1/messages", noUsersKey, body);
  expect(status).toBe(200);
  expect(record).toMatchObject({ agent_id: "claude-code", user_id: null, session_id: session, attribution: "verified" });
  expect(JSON.parse(record.delegation!).asserted).toEqual({ user_id: device });
});

test("a token whose sub is decomposed is the same user as the composed X-User-ID header, recorded in NFC", async () => {
  const { status, record } = await call(
    jwtProxy,
    "/v1/chat/completions",
    await token({ sub: "jose\u0301", act: { sub: "planne\u0301r" } }),
    chat,
    {
      "x-user-id": utf8("jos\u00e9"),
    },
  );
  expect(status).toBe(200);
  expect(record).toMatchObject({ user_id: "jos\u00e9", key_id: "jos\u00e9", attribution: "verified" });
  expect(JSON.parse(record.delegation!).act).toEqual({ sub: "plann\u00e9r" });
});

test("a token claim with an invisible character is refused with 400 naming the claim", async () => {
  const { status, text, record } = await call(jwtProxy, "/v1/chat/completions", await token({ sub: "alice\u200b" }), chat);
  expect(status).toBe(400);
  expect(text).toContain("The token's sub claim contains U+200B");
  expect(record).toMatchObject({ outcome: "rejected", error_type: "invalid_attribution", user_id: null, key_id: null });
});

test("keys create holds agent and user globs to the same rules: NFC stored, invisible characters refused", async () => {
  const made = await runCli([
    "keys",
    "create",
    "--agent",
    "rene\u0301-bot",
    "--users",
    "jose\u0301-*",
    "--format",
    "json",
    "--log-db",
    keysProxy.logDb,
  ]);
  expect(made.exitCode).toBe(0);
  expect(JSON.parse(made.stdout)).toMatchObject({ agents: ["ren\u00e9-bot"], users: ["jos\u00e9-*"] });
  const refused = await runCli(["keys", "create", "--agent", "bot\u200b", "--log-db", keysProxy.logDb]);
  expect(refused.exitCode).toBe(2); // a usage error
  expect(refused.stderr).toContain('--agent: "bot\u200b" contains U+200B');
});
