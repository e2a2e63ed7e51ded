// Audit API access: admin and auditor tokens on every audit route, tokens from env and config,
// and the refusal to listen beyond loopback without an admin token.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { accessGuard, resolveAccessTokens } from "../../src/server/roles.ts";
import { startProxy } from "../../src/server/serve.ts";
import { apiKeys, headerAttribution, openai, sqliteAudit } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, tempDir, type TestProxy } from "../helpers/proxy.ts";

const adminToken = "admin-token-0123456789";
const auditorToken = "auditor-token-0123456789";
const configToken = "config-auditor-token-0123";
let upstream: FakeUpstream;
let proxy: TestProxy;
let recordId: string;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  process.env.ROLES_TEST_ADMIN = "env-named-admin-token-0123";
  proxy = await startTestProxy(
    upstream.url,
    {
      admin: {
        tokens: [
          { token: configToken, role: "auditor" },
          { tokenEnv: "ROLES_TEST_ADMIN", role: "admin" },
        ],
      },
    },
    { adminToken, auditorToken },
  );
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-agent-id": "a", "x-user-id": "u", "x-task-context": "t" },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });
  recordId = response.headers.get("x-audit-record-id")!;
  await response.arrayBuffer();
  await proxy.records();
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
  delete process.env.ROLES_TEST_ADMIN;
});

const readRoutes = () => [
  "/audit/records",
  `/audit/records/${recordId}`,
  "/audit/user/u",
  "/audit/agent/a",
  "/audit/task/t",
  "/audit/summary?by=agent",
];
const get = (path: string, token?: string) => fetch(`${proxy.url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });

describe("every audit read route", () => {
  test("refuses a request without a token or with a wrong one (401), and never echoes the token", async () => {
    for (const path of readRoutes()) {
      expect((await get(path)).status).toBe(401);
      const wrong = await get(path, "wrong-token-wrong-token");
      expect(wrong.status).toBe(401);
      const text = await wrong.text();
      expect(text).toContain("Authorization: Bearer");
      expect(text).not.toContain("wrong-token-wrong-token");
    }
  });

  test("answers the admin and the auditor tokens, from env and from the config", async () => {
    for (const token of [adminToken, auditorToken, configToken, process.env.ROLES_TEST_ADMIN!]) {
      for (const path of readRoutes()) {
        const response = await get(path, token);
        expect(response.status).toBe(200);
        await response.arrayBuffer();
      }
    }
  });

  test("the trail routes too: no token is a 401 on each; erasure refuses the auditor with 403", async () => {
    const trailRoutes = ["/audit/verify", "/audit/export/csv", "/audit/exports/nope/manifest", "/audit/pubkey"];
    for (const path of trailRoutes) expect((await get(path)).status).toBe(401);
    expect((await fetch(`${proxy.url}/audit/user/u`, { method: "DELETE" })).status).toBe(401);
    const denied = await fetch(`${proxy.url}/audit/user/u`, { method: "DELETE", headers: { authorization: `Bearer ${auditorToken}` } });
    expect(denied.status).toBe(403);
    const pubkey = await get("/audit/pubkey", auditorToken);
    expect(pubkey.status).toBe(200);
    await pubkey.arrayBuffer();
  });

  test("a token sent without the Bearer scheme is refused with 401 on every route, saying how to send it", async () => {
    const bare = { authorization: adminToken };
    for (const path of [...readRoutes(), "/audit/verify", "/audit/export/csv", "/audit/pubkey"]) {
      const response = await fetch(`${proxy.url}${path}`, { headers: bare });
      expect(response.status).toBe(401);
      const text = await response.text();
      expect(text).toContain("Authorization: Bearer <token>");
      expect(text).not.toContain(adminToken);
    }
    expect((await fetch(`${proxy.url}/audit/user/u`, { method: "DELETE", headers: bare })).status).toBe(401);
    // The scheme's name is case-insensitive (RFC 9110 §11.1); the token itself is not.
    const lower = await fetch(`${proxy.url}/audit/records`, { headers: { authorization: `bearer ${adminToken}` } });
    expect(lower.status).toBe(200);
    await lower.arrayBuffer();
  });

  test("a token that differs only in length or last character is refused", async () => {
    expect((await get("/audit/records", adminToken.slice(0, -1))).status).toBe(401);
    expect((await get("/audit/records", `${adminToken}x`)).status).toBe(401);
    expect((await get("/audit/records", `${adminToken.slice(0, -1)}X`)).status).toBe(401);
  });
});

describe("the role guard", () => {
  const guard = accessGuard([
    { token: adminToken, role: "admin" },
    { token: auditorToken, role: "auditor" },
  ]);
  const request = (token: string) =>
    new Request("http://x/audit/user/u", { method: "DELETE", headers: { authorization: `Bearer ${token}` } });

  test("an auditor is refused an admin route with 403 naming both roles; an admin passes", async () => {
    const denied = guard(request(auditorToken), "admin", "/audit/user/:id");
    expect(denied?.status).toBe(403);
    expect(((await denied!.json()) as { error: { message: string } }).error.message).toBe(
      "This route needs the admin role; the token sent has the auditor role.",
    );
    expect(guard(request(adminToken), "admin", "/audit/user/:id")).toBeNull();
    expect(guard(request(adminToken), "auditor", "/audit/user/:id")).toBeNull();
    expect(guard(request(auditorToken), "auditor", "/audit/user/:id")).toBeNull();
  });

  test("with no token configured the API is open (the server then binds loopback only)", () => {
    expect(accessGuard([])(new Request("http://x/"), "admin", "/audit/user/:id")).toBeNull();
  });

  test("a config entry naming an unset environment variable is an error that names it", () => {
    expect(() => resolveAccessTokens([{ tokenEnv: "ROLES_TEST_UNSET", role: "admin" }], {})).toThrow("ROLES_TEST_UNSET");
  });

  test("tokens are compared as SHA-256 digests, so a token of any length costs the same comparisons", () => {
    const calls: [number, number][] = [];
    const compare = (a: Buffer, b: Buffer) => (calls.push([a.length, b.length]), a.equals(b));
    const counted = accessGuard(
      [
        { token: adminToken, role: "admin" },
        { token: auditorToken, role: "auditor" },
      ],
      compare,
    );
    for (const sent of ["x", adminToken.slice(0, -1), `${adminToken}-and-longer`, auditorToken]) {
      calls.length = 0;
      counted(new Request("http://x/audit/records", { headers: { authorization: `Bearer ${sent}` } }), "auditor", "/audit/records");
      expect(calls).toEqual([
        [32, 32],
        [32, 32],
      ]);
    }
  });

  test("tokens from the environment shorter than 16 characters are refused, naming the variable", () => {
    expect(() => resolveAccessTokens([], { AGENT_ATTR_ADMIN_TOKEN: "short" })).toThrow(
      "AGENT_ATTR_ADMIN_TOKEN is shorter than 16 characters; set it to a long random token",
    );
    expect(() => resolveAccessTokens([], { AGENT_ATTR_AUDITOR_TOKEN: "123456789012345" })).toThrow("AGENT_ATTR_AUDITOR_TOKEN is shorter");
    expect(() => resolveAccessTokens([{ tokenEnv: "SOC", role: "auditor" }], { SOC: "tiny" })).toThrow("SOC is shorter than 16 characters");
    expect(resolveAccessTokens([], { AGENT_ATTR_ADMIN_TOKEN: "1234567890123456" })).toHaveLength(1);
  });

  test("a short inline config token is refused when the config is checked", () => {
    expect(() => parseConfig({ admin: { tokens: [{ token: "short", role: "admin" }] } })).toThrow("at least 16 characters");
  });
});

describe("binding beyond loopback", () => {
  const start = (admin: object, options: { adminToken?: string; auditorToken?: string }) =>
    startProxy(parseConfig({ server: { host: "0.0.0.0", port: 0 }, admin }), { logDb: join(tempDir(), "a.db"), ...options });

  test("is refused without an admin token, even with an auditor token, and says how to fix it", async () => {
    for (const options of [{}, { auditorToken }]) {
      const error = await start({}, options).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toContain("Refusing to listen on 0.0.0.0");
      expect((error as Error).message).toContain("Set AGENT_ATTR_ADMIN_TOKEN");
      expect((error as Error).message).toContain("127.0.0.1");
    }
  });

  test("a short admin token from the environment is a start-up error", async () => {
    const error = await start({}, { adminToken: "too-short" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain("AGENT_ATTR_ADMIN_TOKEN is shorter than 16 characters");
  });

  test("in open mode it warns that any client can assert any identity, and how to verify it", async () => {
    const warnings: string[] = [];
    const log = { info() {}, warn: (m: string) => warnings.push(m), error() {} };
    const open = await startProxy(parseConfig({ server: { host: "0.0.0.0", port: 0 } }), {
      logDb: join(tempDir(), "o.db"),
      adminToken,
      log,
    });
    await open.stop();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(
      "Listening on 0.0.0.0 in open mode: any client that reaches this port can assert any agent, user or task",
    );
    expect(warnings[0]).toContain("add apiKeys() to the config's plugins");
    expect(warnings[0]).toContain("jwtAttribution");
    warnings.length = 0;
    const keyed = await startProxy(
      parseConfig({ server: { host: "0.0.0.0", port: 0 }, plugins: [openai(), headerAttribution(), apiKeys(), sqliteAudit()] }),
      {
        logDb: join(tempDir(), "k.db"),
        adminToken,
        log,
      },
    );
    await keyed.stop();
    expect(warnings).toEqual([]);
  });

  test("starts with an admin token from the config", async () => {
    process.env.ROLES_TEST_ADMIN2 = "another-admin-token-0123";
    try {
      const server = await start({ tokens: [{ tokenEnv: "ROLES_TEST_ADMIN2", role: "admin" }] }, {});
      await server.stop();
    } finally {
      delete process.env.ROLES_TEST_ADMIN2;
    }
  });
});
