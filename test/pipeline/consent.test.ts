/**
 * The consent stage through the real proxy: enforce refuses an uncovered call with 403
 * consent_required in the caller's wire shape (recorded, never forwarded); a grant over the audit
 * API covers the next call and the record names the consent, its purpose and lawful basis; a
 * withdrawal applies from the next call; X-Consent-ID is asserted and never sent upstream; a
 * token's consent_id claim is verified; modes per tier; record mode passes and says none covered.
 */
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { anthropic, headerAttribution, jwtAttribution, openai } from "../../plugins/index.ts";
import { sweepConsentExpiries } from "../../src/pipeline/consent.ts";
import { eventFilterSchema } from "../../src/trail/events.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

const adminToken = "consent-admin-token-0123456789";
const auditorToken = "consent-auditor-token-0123456789";
let upstream: FakeUpstream;
let proxy: TestProxy;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  proxy = await startTestProxy(upstream.url, { consent: "enforce" }, { adminToken, auditorToken });
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
});

const chat = (p: TestProxy, headers: Record<string, string>) =>
  fetch(`${p.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer sk-client", ...headers },
    body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "review" }] }),
  });
const alice = { "x-agent-id": "code-review-bot", "x-user-id": "alice", "x-task-context": "PR review #456" };
const api = (path: string, init: RequestInit & { token?: string } = {}) =>
  fetch(`${proxy.url}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${init.token ?? adminToken}`, "content-type": "application/json", ...init.headers },
  });
const grant = async (body: Record<string, unknown>) => {
  const response = await api("/audit/consents", { method: "POST", body: JSON.stringify(body) });
  expect(response.status).toBe(201);
  return (await response.json()) as { id: string; status: string };
};
const recordOf = async (response: Response) => {
  const id = response.headers.get("x-audit-record-id")!;
  await response.arrayBuffer();
  return (await proxy.records()).find((r) => r.id === id)!;
};

describe("consent: enforce", () => {
  test("a call no consent covers is refused with 403 consent_required, recorded, never forwarded", async () => {
    const before = upstream.requests.length;
    const response = await chat(proxy, alice);
    expect(response.status).toBe(403);
    const body = (await response.clone().json()) as { error: { code: string; type: string; message: string } };
    expect(body.error.code).toBe("consent_required");
    expect(body.error.type).toBe("permission_error");
    expect(body.error.message).toContain("agent-attr consent grant");
    const record = await recordOf(response);
    expect(record).toMatchObject({
      outcome: "rejected",
      status: 403,
      error_type: "consent_required",
      consent_source: "none",
      consent_id: null,
    });
    expect(upstream.requests.length).toBe(before);
  });

  test("an SDK sees the refusal in its own wire format (OpenAI and Anthropic)", async () => {
    const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: "sk-client", maxRetries: 0, defaultHeaders: { "x-user-id": "carol" } });
    const refused = await client.chat.completions.create({ model: "gpt-4o", messages: [] }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((refused as InstanceType<typeof OpenAI.PermissionDeniedError>).code).toBe("consent_required");
    const claude = new Anthropic({ baseURL: proxy.url, apiKey: "sk-ant", maxRetries: 0, defaultHeaders: { "x-user-id": "carol" } });
    const denied = await claude.messages
      .create({ model: "claude-sonnet-4-6", max_tokens: 10, messages: [{ role: "user", content: "hi" }] })
      .catch((error: unknown) => error);
    expect(denied).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect(JSON.stringify((denied as InstanceType<typeof Anthropic.PermissionDeniedError>).error)).toContain("No active consent");
  });

  test("a grant covers the next call, the record names it; a withdrawal refuses the one after", async () => {
    const consent = await grant({
      user: "alice",
      agents: ["code-review-*"],
      purpose: "PR review",
      task_pattern: "PR review #*",
      lawful_basis: "contract",
    });
    const allowed = await chat(proxy, alice);
    expect(allowed.status).toBe(200);
    expect(await recordOf(allowed)).toMatchObject({
      outcome: "completed",
      consent_id: consent.id,
      purpose: "PR review",
      lawful_basis: "contract",
      consent_source: "lookup",
    });
    // Another agent, or another task, is not covered by it.
    expect((await chat(proxy, { ...alice, "x-agent-id": "deploy-bot" })).status).toBe(403);
    expect((await chat(proxy, { ...alice, "x-task-context": "rewrite the README" })).status).toBe(403);
    // An auditor reads consents but cannot withdraw them.
    const listed = await api("/audit/consents?user=alice", { token: auditorToken });
    expect(((await listed.json()) as { consents: { id: string }[] }).consents.map((c) => c.id)).toContain(consent.id);
    expect((await api(`/audit/consents/${consent.id}`, { method: "DELETE", token: auditorToken })).status).toBe(403);
    const withdrawn = await api(`/audit/consents/${consent.id}`, { method: "DELETE" });
    expect(((await withdrawn.json()) as { status: string }).status).toBe("withdrawn");
    expect((await chat(proxy, alice)).status).toBe(403);
    const events = (await (await api("/audit/events?limit=200", { token: auditorToken })).json()) as {
      events: { kind: string; actor: string; details: Record<string, unknown> }[];
    };
    const mine = events.events.filter((e) => e.details.consent_id === consent.id).map((e) => e.kind);
    expect(mine).toEqual(["consent_withdrawn", "consent_granted"]);
    expect(events.events.find((e) => e.kind === "consent_granted")!.actor).toBe("api:admin");
  });

  test("X-Consent-ID names the consent (asserted), must cover the call itself, and never reaches the upstream", async () => {
    const bobs = await grant({ user: "bob", agents: ["*"], purpose: "support" });
    const mine = await grant({ user: "dave", agents: ["*"], purpose: "triage" });
    const sent = upstream.requests.length;
    const response = await chat(proxy, { "x-user-id": "dave", "x-agent-id": "helper", "x-consent-id": mine.id });
    expect(response.status).toBe(200);
    expect(await recordOf(response)).toMatchObject({ consent_id: mine.id, purpose: "triage", consent_source: "header" });
    const forwarded = upstream.requests.slice(sent);
    expect(forwarded).toHaveLength(1);
    expect(Object.keys(forwarded[0]!.headers)).not.toContain("x-consent-id");
    // Naming another user's consent does not cover the call.
    const refused = await chat(proxy, { "x-user-id": "dave", "x-agent-id": "helper", "x-consent-id": bobs.id });
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain("not for this user");
  });

  test("a call that acts for no user is not held to a consent", async () => {
    const response = await chat(proxy, { "x-agent-id": "batch-job" });
    expect(response.status).toBe(200);
    expect(await recordOf(response)).toMatchObject({ consent_source: "none", consent_id: null });
  });

  test("the API refuses a malformed grant, naming the field", async () => {
    const response = await api("/audit/consents", { method: "POST", body: JSON.stringify({ user: "x", agents: [], purpose: "p" }) });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { message: string } }).error.message).toContain("agents");
    const basis = await api("/audit/consents", {
      method: "POST",
      body: JSON.stringify({ user: "x", agents: ["*"], purpose: "p", lawful_basis: "because" }),
    });
    expect(basis.status).toBe(400);
  });
});

test("record mode lets an uncovered call through and says none covered it; off records nothing", async () => {
  const recording = await startTestProxy(upstream.url, { consent: "record" });
  const off = await startTestProxy(upstream.url, {});
  try {
    const response = await chat(recording, alice);
    expect(response.status).toBe(200);
    const id = response.headers.get("x-audit-record-id");
    await response.arrayBuffer();
    expect((await recording.records()).find((r) => r.id === id)).toMatchObject({ outcome: "completed", consent_source: "none" });
    const plain = await chat(off, alice);
    expect(plain.status).toBe(200);
    await plain.arrayBuffer();
    expect((await off.records()).at(-1)).toMatchObject({ consent_source: null, consent_id: null, purpose: null });
  } finally {
    await recording.stop();
    await off.stop();
  }
});

describe("consent with signed tokens, per tier", () => {
  const secret = "an-hs256-secret-of-at-least-32-bytes!";
  let jwtProxy: TestProxy;
  let key: CryptoKey;
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const token = async (claims: Record<string, unknown>) => {
    const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ aud: "agent-attr", exp: Math.floor(Date.now() / 1000) + 300, ...claims })}`;
    const signature = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(input));
    return `${input}.${Buffer.from(signature).toString("base64url")}`;
  };
  beforeAll(async () => {
    process.env.OPENAI_API_KEY = "sk-proxy-openai";
    key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    jwtProxy = await startTestProxy(upstream.url, {
      plugins: [
        openai({ baseURL: `${upstream.url}/v1` }),
        anthropic(),
        headerAttribution(),
        jwtAttribution({ secret, audience: "agent-attr" }),
      ],
      consent: { mode: "off", tiers: { regulated: "enforce" } },
    });
  });
  afterAll(async () => {
    await jwtProxy.stop();
    delete process.env.OPENAI_API_KEY;
  });
  const call = async (claims: Record<string, unknown>, headers: Record<string, string> = {}) =>
    chat(jwtProxy, { authorization: `Bearer ${await token(claims)}`, ...headers });

  test("enforced for the tier that asks for it only; a token's consent_id claim is recorded as from the token", async () => {
    const base = { sub: "erin", client_id: "code-review-bot" };
    const free = await call(base);
    expect(free.status).toBe(200);
    await free.arrayBuffer();
    expect((await call({ ...base, tier: "regulated" })).status).toBe(403);
    const consent = await jwtProxy.runtime.consents.grant(
      { user: "erin", agents: ["code-review-bot"], purpose: "PR review", task_pattern: null, lawful_basis: "consent", expires_at: null },
      "cli:test",
    );
    const named = await call({ ...base, tier: "regulated", consent_id: consent.id });
    expect(named.status).toBe(200);
    const id = named.headers.get("x-audit-record-id");
    await named.arrayBuffer();
    expect((await jwtProxy.records()).find((r) => r.id === id)).toMatchObject({ consent_id: consent.id, consent_source: "jwt" });
    // A purpose claim must be the consent's own.
    expect((await call({ ...base, tier: "regulated", purpose: "marketing" })).status).toBe(403);
    expect((await call({ ...base, tier: "regulated", purpose: "PR review" })).status).toBe(200);
    // With a principal, X-Consent-ID is not taken as the claim (the token's word is).
    const other = await jwtProxy.runtime.consents.grant(
      { user: "erin", agents: ["*"], purpose: "other", task_pattern: null, lawful_basis: "consent", expires_at: null },
      "cli:test",
    );
    const ignored = await call({ ...base, tier: "regulated", consent_id: consent.id }, { "x-consent-id": other.id });
    const ignoredId = ignored.headers.get("x-audit-record-id");
    await ignored.arrayBuffer();
    expect((await jwtProxy.records()).find((r) => r.id === ignoredId)).toMatchObject({ consent_id: consent.id });
  });
});

test("a consent's end refuses calls from then on, and the sweep records its expiry as a chain event", async () => {
  const consent = await proxy.runtime.consents.grant(
    {
      user: "frank",
      agents: ["*"],
      purpose: "PR review",
      task_pattern: null,
      lawful_basis: "consent",
      expires_at: new Date(Date.now() + 400).toISOString(),
    },
    "cli:test",
  );
  const covered = await chat(proxy, { "x-user-id": "frank" });
  expect(covered.status).toBe(200);
  await covered.arrayBuffer();
  while ((await proxy.runtime.consents.find(consent.id))?.status === "active") await Bun.sleep(50);
  expect((await chat(proxy, { "x-user-id": "frank" })).status).toBe(403);
  const stop = sweepConsentExpiries(proxy.runtime, 50);
  try {
    const expired = async () =>
      (await proxy.runtime.trail.events(eventFilterSchema.parse({ kind: "consent_expired" }))).events.filter(
        (e) => e.details.consent_id === consent.id,
      );
    for (let i = 0; i < 100 && (await expired()).length === 0; i++) await Bun.sleep(50);
    expect(await expired()).toHaveLength(1);
    expect((await expired())[0]!.actor).toBe("expiry");
  } finally {
    stop();
  }
});
