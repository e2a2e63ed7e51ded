// Verified tags: a proxy key made with `keys create --tag team=platform`, or a JWT claim mapped to
// a tag, fixes that tag; a header claiming another value is a 403 (or, with onMismatch "record",
// the fixed value is recorded and the claim kept in delegation.asserted.tags), as for agent/user.
import { afterAll, beforeAll, expect, test } from "bun:test";
import OpenAI from "openai";
import { headerAttribution, jwtAttribution, openai, sqliteAudit, apiKeys } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { runCli } from "../helpers/process.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

const secret = "an-hs256-secret-of-at-least-32-bytes!";
const audience = "agent-attr";
let upstream: FakeUpstream;
let keysProxy: TestProxy;
let jwtProxy: TestProxy;
let teamKey: string;
let teamKeyId: string;

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
async function token(payload: Record<string, unknown>): Promise<string> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(payload)}`;
  const signature = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(input));
  return `${input}.${Buffer.from(signature).toString("base64url")}`;
}

beforeAll(async () => {
  process.env.OPENAI_API_KEY = "sk-proxy-openai";
  upstream = await startFakeUpstream();
  keysProxy = await startTestProxy(upstream.url, {
    plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), apiKeys(), sqliteAudit()],
  });
  jwtProxy = await startTestProxy(upstream.url, {
    plugins: [
      openai({ baseURL: `${upstream.url}/v1` }),
      headerAttribution(),
      jwtAttribution({ secret, audience, tags: { team: "team", Cost_Center: "https://example.com/cc" }, onMismatch: "record" }),
      sqliteAudit(),
    ],
  });
  // Through the CLI, as an operator does: repeated --tag, keys read as tags are.
  const created = await runCli([
    "keys",
    "create",
    "--agent",
    "billing-bot",
    "--tag",
    "team=platform",
    "--tag",
    "Cost_Center=cc-42",
    "--format",
    "json",
    "--log-db",
    keysProxy.logDb,
  ]);
  expect({ exit: created.exitCode, stderr: created.stderr }).toMatchObject({ exit: 0 });
  const made = JSON.parse(created.stdout) as { id: string; key: string; tags: Record<string, string> };
  expect(made.tags).toEqual({ "cost-center": "cc-42", team: "platform" });
  ({ id: teamKeyId, key: teamKey } = made);
});
afterAll(async () => {
  await keysProxy.stop();
  await jwtProxy.stop();
  await upstream.stop();
  delete process.env.OPENAI_API_KEY;
});

const chat = (proxy: TestProxy, credential: string, headers: Record<string, string> = {}) =>
  fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${credential}`, ...headers },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });

async function recordOf(proxy: TestProxy, response: Response) {
  await response.arrayBuffer();
  const id = response.headers.get("x-audit-record-id")!;
  const all = await proxy.settled((await proxy.records()).length);
  return all.find((r) => r.id === id)!;
}

test("a key's tags are on every call made with it, with or without a matching header", async () => {
  const plain = await recordOf(keysProxy, await chat(keysProxy, teamKey));
  expect(plain).toMatchObject({ key_id: teamKeyId, attribution: "verified", tags: '{"cost-center":"cc-42","team":"platform"}' });
  expect(plain.delegation).toBeNull();
  const matching = await recordOf(keysProxy, await chat(keysProxy, teamKey, { "X-Attr-Tag-Team": "platform" }));
  expect(matching.tags).toBe('{"cost-center":"cc-42","team":"platform"}');
});

test("a header claiming another value for a key's tag is a 403 the SDK raises, naming the tag; it is recorded", async () => {
  const client = new OpenAI({
    apiKey: teamKey,
    baseURL: `${keysProxy.url}/v1`,
    maxRetries: 0,
    defaultHeaders: { "X-Attr-Tag-Team": "finance" },
  });
  const before = upstream.requests.length;
  const error = await client.chat.completions.create({ model: "gpt-4o", messages: [] }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(OpenAI.PermissionDeniedError);
  expect((error as Error).message).toContain("fixes the tag team to 'platform'");
  expect(upstream.requests.length).toBe(before);
  const refused = (await keysProxy.settled((await keysProxy.records()).length)).at(-1)!;
  expect(refused).toMatchObject({ outcome: "rejected", status: 403, key_id: teamKeyId });
});

test("tags a key does not fix stay as sent, named unverified in the record's delegation", async () => {
  const record = await recordOf(keysProxy, await chat(keysProxy, teamKey, { "X-Attr-Tag-Project": "atlas" }));
  expect(JSON.parse(record.tags!)).toEqual({ "cost-center": "cc-42", project: "atlas", team: "platform" });
  expect(JSON.parse(record.delegation!).unverified).toEqual(["tag:project"]);
});

test("jwt: claims mapped to tags fix them; with onMismatch 'record' another header value is kept as asserted", async () => {
  const now = Math.floor(Date.now() / 1000);
  const jwt = await token({
    aud: audience,
    sub: "alice",
    client_id: "bot",
    team: "research",
    "https://example.com/cc": "cc-7",
    exp: now + 300,
  });
  const fixed = await recordOf(jwtProxy, await chat(jwtProxy, jwt));
  expect(fixed).toMatchObject({ attribution: "verified", tags: '{"cost-center":"cc-7","team":"research"}' });
  const asserted = await recordOf(jwtProxy, await chat(jwtProxy, jwt, { "X-Attr-Tag-Team": "platform" }));
  expect(asserted.status).toBe(200);
  expect(JSON.parse(asserted.tags!).team).toBe("research");
  expect(JSON.parse(asserted.delegation!).asserted).toEqual({ tags: { team: "platform" } });
  // A token without the claim sets no tag; a header then stays as sent, unverified.
  const without = await token({ aud: audience, sub: "bob", client_id: "bot", exp: now + 300 });
  const loose = await recordOf(jwtProxy, await chat(jwtProxy, without, { "X-Attr-Tag-Team": "platform" }));
  expect(JSON.parse(loose.tags!)).toEqual({ team: "platform" });
  expect(JSON.parse(loose.delegation!).unverified).toEqual(["tag:team"]);
});

test("jwt: a tag key that is not one is a config error when the plugin is made", () => {
  expect(() => jwtAttribution({ secret, audience, tags: { "te am": "team" } })).toThrow("not a tag key");
});
