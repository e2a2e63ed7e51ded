// JWT mode: tokens signed HS256, RS256 (PEM) and ES256 (JWKS) verified; claims become the verified
// identity; the RFC 8693 act chain is recorded; every bad token is a 401 that is recorded and
// never forwarded; a header claiming someone else is a 403; both SDKs send the token unchanged.
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import { anthropic, headerAttribution, jwtAttribution, openai, sqliteAudit } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, tempDir, type TestProxy } from "../helpers/proxy.ts";

const secret = "an-hs256-secret-of-at-least-32-bytes!";
const audience = "agent-attr";
const issuer = "https://idp.example";
const b64 = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
const nowSec = () => Math.floor(Date.now() / 1000);

async function sign(header: Record<string, unknown>, payload: Record<string, unknown>, key: CryptoKey | null): Promise<string> {
  const input = `${b64(header)}.${b64(payload)}`;
  if (!key) return `${input}.`;
  const algorithm = key.algorithm.name === "ECDSA" ? { name: "ECDSA", hash: "SHA-256" } : key.algorithm.name;
  const signature = await crypto.subtle.sign(algorithm, key, new TextEncoder().encode(input));
  return `${input}.${Buffer.from(signature).toString("base64url")}`;
}

const hmacKey = (value: string) =>
  crypto.subtle.importKey("raw", new TextEncoder().encode(value), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);

const claims = (extra: Record<string, unknown> = {}) => ({
  iss: issuer,
  aud: audience,
  sub: "alice",
  client_id: "code-review-bot",
  task: "PR review #456",
  exp: nowSec() + 300,
  // alice delegated to the orchestrator, which delegated to this sub-agent.
  act: { sub: "code-review-bot", act: { sub: "orchestrator" } },
  ...extra,
});

let upstream: FakeUpstream;
let hsProxy: TestProxy;
let hs: CryptoKey;
const dir = tempDir();

const plugins = (jwt: ReturnType<typeof jwtAttribution>) => [
  openai({ baseURL: `${upstream.url}/v1` }),
  anthropic({ baseURL: upstream.url }),
  headerAttribution(),
  jwt,
  sqliteAudit(),
];

beforeAll(async () => {
  process.env.OPENAI_API_KEY = "sk-proxy-openai";
  process.env.ANTHROPIC_API_KEY = "sk-proxy-anthropic";
  upstream = await startFakeUpstream();
  hs = await hmacKey(secret);
  hsProxy = await startTestProxy(upstream.url, { plugins: plugins(jwtAttribution({ secret, audience, issuer })) });
});
afterAll(async () => {
  await hsProxy.stop();
  await upstream.stop();
  delete process.env.OPENAI_API_KEY;
  delete process.env.ANTHROPIC_API_KEY;
});

const chat = (proxy: TestProxy, token: string | null, headers: Record<string, string> = {}) =>
  fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });

async function recordOf(proxy: TestProxy, response: Response) {
  await response.arrayBuffer();
  const id = response.headers.get("x-audit-record-id")!;
  await proxy.settled(1);
  return (await proxy.records()).find((r) => r.id === id)!;
}

describe("a valid token", () => {
  test("HS256: claims are the verified identity, sub is the key_id, the act chain is recorded", async () => {
    const token = await sign({ alg: "HS256", typ: "JWT" }, claims(), hs);
    const before = upstream.requests.length;
    const response = await chat(hsProxy, token);
    expect(response.status).toBe(200);
    const record = await recordOf(hsProxy, response);
    expect(record).toMatchObject({
      agent_id: "code-review-bot",
      user_id: "alice",
      task_context: "PR review #456",
      attribution: "verified",
      key_id: "alice",
    });
    expect(JSON.parse(record.delegation!)).toEqual({ act: { sub: "code-review-bot", act: { sub: "orchestrator" } } });
    const seen = upstream.requests.slice(before);
    expect(seen[0]!.headers.authorization).toBe("Bearer sk-proxy-openai");
    expect(JSON.stringify(seen)).not.toContain(token);
    expect(JSON.stringify(record)).not.toContain(token);
  });

  test("both SDKs send the token where they send their key", async () => {
    const token = await sign({ alg: "HS256" }, claims(), hs);
    const oai = new OpenAI({ apiKey: token, baseURL: `${hsProxy.url}/v1`, maxRetries: 0 });
    expect((await oai.chat.completions.create({ model: "gpt-4o", messages: [] })).choices[0]!.message.content).toBe("Hello world");
    const ant = new Anthropic({ apiKey: token, baseURL: hsProxy.url, maxRetries: 0 });
    expect((await ant.messages.create({ model: "claude-sonnet-4-6", max_tokens: 8, messages: [] })).type).toBe("message");
    expect(upstream.requests.at(-1)!.headers["x-api-key"]).toBe("sk-proxy-anthropic");
    expect((await hsProxy.records()).at(-1)).toMatchObject({ user_id: "alice", attribution: "verified" });
  });

  test("RS256 from a PEM file and ES256 from a JWKS file", async () => {
    const rsa = (await crypto.subtle.generateKey(
      { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
      true,
      ["sign", "verify"],
    )) as CryptoKeyPair;
    const spki = Buffer.from(await crypto.subtle.exportKey("spki", rsa.publicKey)).toString("base64");
    const pemFile = join(dir, "rs256.pem");
    writeFileSync(pemFile, `-----BEGIN PUBLIC KEY-----\n${spki.match(/.{1,64}/g)!.join("\n")}\n-----END PUBLIC KEY-----\n`);
    const ec = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const jwksFile = join(dir, "jwks.json");
    writeFileSync(
      jwksFile,
      JSON.stringify({ keys: [{ ...(await crypto.subtle.exportKey("jwk", ec.publicKey)), kid: "ec-1", use: "sig" }] }),
    );

    const rsProxy = await startTestProxy(upstream.url, { plugins: plugins(jwtAttribution({ publicKeyFile: pemFile, audience })) });
    const esProxy = await startTestProxy(upstream.url, { plugins: plugins(jwtAttribution({ jwksFile, audience })) });
    try {
      expect((await chat(rsProxy, await sign({ alg: "RS256" }, claims(), rsa.privateKey))).status).toBe(200);
      expect((await chat(esProxy, await sign({ alg: "ES256", kid: "ec-1" }, claims(), ec.privateKey))).status).toBe(200);
      const wrongKid = await chat(esProxy, await sign({ alg: "ES256", kid: "other" }, claims(), ec.privateKey));
      expect(wrongKid.status).toBe(401);
      expect(await wrongKid.text()).toContain("no configured key has kid 'other'");
      // Algorithm confusion: an HS256 token "signed" with the public key's PEM text must not pass.
      const confused = await sign({ alg: "HS256" }, claims(), await hmacKey(await Bun.file(pemFile).text()));
      const refused = await chat(rsProxy, confused);
      expect(refused.status).toBe(401);
      expect(await refused.text()).toContain("algorithm 'HS256' is not accepted here (accepted: RS256)");
    } finally {
      await rsProxy.stop();
      await esProxy.stop();
    }
  });
});

describe("a bad token is a 401, recorded as rejected, never forwarded", () => {
  const cases: [string, () => Promise<string>, string][] = [
    ["alg none", () => sign({ alg: "none" }, claims(), null), "algorithm 'none' is not accepted"],
    [
      "wrong key",
      async () => sign({ alg: "HS256" }, claims(), await hmacKey("another-secret-of-at-least-32-bytes!!")),
      "signature does not verify",
    ],
    [
      "tampered payload",
      async () => {
        const [h, , s] = (await sign({ alg: "HS256" }, claims(), hs)).split(".");
        return `${h}.${b64(claims({ sub: "mallory" }))}.${s}`;
      },
      "signature does not verify",
    ],
    ["expired", () => sign({ alg: "HS256" }, claims({ exp: nowSec() - 120 }), hs), "the token expired at"],
    ["no exp", () => sign({ alg: "HS256" }, claims({ exp: undefined }), hs), "has no 'exp'"],
    ["not yet valid", () => sign({ alg: "HS256" }, claims({ nbf: nowSec() + 600 }), hs), "not valid before"],
    ["wrong audience", () => sign({ alg: "HS256" }, claims({ aud: "someone-else" }), hs), `does not include '${audience}'`],
    ["wrong issuer", () => sign({ alg: "HS256" }, claims({ iss: "https://evil.example" }), hs), "issuer 'https://evil.example' is not"],
    ["not a JWT", async () => "sk-proj-plain-provider-key", "not a JWT"],
  ];
  for (const [name, make, says] of cases) {
    test(name, async () => {
      const token = await make();
      const before = upstream.requests.length;
      const response = await chat(hsProxy, token);
      expect(response.status).toBe(401);
      const body = (await response.clone().json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("unauthorized");
      expect(body.error.message).toContain(says);
      expect(body.error.message).not.toContain(token);
      expect(await recordOf(hsProxy, response)).toMatchObject({ outcome: "rejected", status: 401, error_type: "unauthorized" });
      expect(upstream.requests.length).toBe(before);
    });
  }

  test("a token within the clock tolerance still passes", async () => {
    expect((await chat(hsProxy, await sign({ alg: "HS256" }, claims({ exp: nowSec() - 5 }), hs))).status).toBe(200);
  });
});

describe("spoofed identity", () => {
  test("a header naming another user than the token is a 403 naming it", async () => {
    const token = await sign({ alg: "HS256" }, claims(), hs);
    const response = await chat(hsProxy, token, { "x-user-id": "bob" });
    expect(response.status).toBe(403);
    expect(await response.clone().text()).toContain(
      "alice may not act as user 'bob' (claimed by the X-User-ID header): it is restricted to user 'alice'",
    );
    expect(await recordOf(hsProxy, response)).toMatchObject({ outcome: "rejected", key_id: "alice" });
  });

  test("a token without an agent claim allows no claimed agent; a header task it does not fix is kept, marked unverified", async () => {
    const { client_id: _agent, task: _task, act: _act, ...rest } = claims();
    const token = await sign({ alg: "HS256" }, rest, hs);
    const refused = await chat(hsProxy, token, { "x-agent-id": "deploy-bot" });
    expect(refused.status).toBe(403);
    expect(await refused.clone().text()).toContain(
      "alice may not act as agent 'deploy-bot' (claimed by the X-Agent-ID header): it fixes no agent",
    );
    await refused.arrayBuffer();
    const ok = await chat(hsProxy, token, { "x-task-context": "PR #9", "x-session-id": "s-1" });
    expect(ok.status).toBe(200);
    const record = await recordOf(hsProxy, ok);
    expect(record).toMatchObject({ agent_id: null, user_id: "alice", task_context: "PR #9", session_id: "s-1", attribution: "verified" });
    expect(JSON.parse(record.delegation!)).toEqual({ unverified: ["task_context", "session_id"] });
  });

  test("headers naming the token's own identity pass", async () => {
    const token = await sign({ alg: "HS256" }, claims(), hs);
    expect((await chat(hsProxy, token, { "x-user-id": "alice", "x-agent-id": "code-review-bot" })).status).toBe(200);
  });
});

test("options: exactly one key source, and a short secret, are config errors", () => {
  expect(() => jwtAttribution({ audience })).toThrow("give exactly one of secret");
  expect(() => jwtAttribution({ secret: "short", audience })).toThrow("at least 32 bytes");
});
