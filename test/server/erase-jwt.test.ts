// Erasure end to end when identity comes from a JWT: the token's `sub` is both the user and the
// key id, and a delegation chain (`act.sub`) in another call names the same person. After
// DELETE /audit/user/:id no query or export returns the id, and the chain still verifies (both drivers).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { anthropic, headerAttribution, jwtAttribution, openai, sqliteAudit } from "../../plugins/index.ts";
import { postgresDriver, proxyOn, sqliteDriver, type TestDriver } from "../helpers/drivers.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import type { TestProxy } from "../helpers/proxy.ts";

const secret = "an-hs256-secret-of-at-least-32-bytes!";
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

async function token(claims: Record<string, unknown>): Promise<string> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ iss: "i", aud: "a", exp: Math.floor(Date.now() / 1000) + 300, ...claims })}`;
  return `${input}.${Buffer.from(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(input))).toString("base64url")}`;
}

process.env.OPENAI_API_KEY ??= "sk-test";
process.env.ANTHROPIC_API_KEY ??= "sk-test";
let pg: PgSchema;
let upstream: FakeUpstream;
beforeAll(async () => {
  pg = await pgSchema("erase_jwt");
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
  await pg.drop();
});

describe.each([sqliteDriver, postgresDriver(() => pg)])("JWT subjects on $name", (driver: TestDriver) => {
  let proxy: TestProxy;
  beforeAll(async () => {
    // sqliteAudit() without a path follows --log-db, a postgres:// one included.
    proxy = await proxyOn(await driver.open("jwt"), upstream.url, {
      plugins: [
        openai({ baseURL: `${upstream.url}/v1` }),
        anthropic({ baseURL: upstream.url }),
        headerAttribution(),
        jwtAttribution({ secret, audience: "a", issuer: "i" }),
        sqliteAudit(),
      ],
    });
  });
  afterAll(async () => {
    await proxy.stop();
  });

  async function call(bearer: string): Promise<void> {
    const response = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${bearer}` },
      body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] }),
    });
    await response.arrayBuffer();
  }

  test("DELETE /audit/user/:id erases a JWT subject everywhere: user, key id and other records' delegation", async () => {
    const alice = "alice@example.com";
    await call(await token({ sub: alice }));
    await call(await token({ sub: "svc-bot", act: { sub: alice } }));
    await call(await token({ sub: "bob@example.com" }));
    await proxy.settled(3);
    const before = await (await fetch(`${proxy.url}/audit/records`)).text();
    expect(before).toContain(`"key_id":"${alice}"`);
    expect(before).toContain(`\\"sub\\":\\"${alice}\\"`);

    expect((await fetch(`${proxy.url}/audit/user/${encodeURIComponent(alice)}`, { method: "DELETE" })).status).toBe(200);
    const records = await (await fetch(`${proxy.url}/audit/records`)).text();
    expect(records).not.toContain(alice);
    expect(records).toContain("bob@example.com");
    for (const format of ["csv", "json", "ndjson"]) {
      expect(await (await fetch(`${proxy.url}/audit/export/${format}`)).text()).not.toContain(alice);
    }
    const report = (await (await fetch(`${proxy.url}/audit/verify`)).json()) as { ok: boolean; redacted: number };
    expect(report).toMatchObject({ ok: true, redacted: 2 });
  });
});
