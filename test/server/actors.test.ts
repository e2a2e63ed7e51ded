// Who acted, in the trail: every admin action names the token's holder — a config token by its
// `name` (else its tokenEnv, else its place), AGENT_ATTR_ADMIN_TOKEN as plain `api:admin` — over
// bearer tokens and dashboard sessions alike, and never the token.
import { expect, test } from "bun:test";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { resolveAccessTokens } from "../../src/server/roles.ts";
import { startFakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy } from "../helpers/proxy.ts";

const envAdmin = "env-admin-token-".padEnd(32, "e");
const alice = "alice-admin-token-".padEnd(32, "a");
const ops = "ops-admin-token-".padEnd(32, "o");
const auditor = "inline-auditor-token-".padEnd(32, "u");

test("key changes and queries name the token that made them: api:admin:alice, api:admin:<tokenEnv>, dashboard:admin:alice, api:admin", async () => {
  const upstream = await startFakeUpstream();
  process.env.ACTORS_TEST_OPS_TOKEN = ops;
  const proxy = await startTestProxy(
    upstream.url,
    {
      admin: {
        tokens: [
          { token: alice, role: "admin", name: "alice" },
          { tokenEnv: "ACTORS_TEST_OPS_TOKEN", role: "admin" },
          { token: auditor, role: "auditor" },
        ],
      },
    },
    { adminToken: envAdmin },
  );
  try {
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
    const create = async (headers: Record<string, string>) => {
      const answer = await fetch(`${proxy.url}/audit/keys`, {
        method: "POST",
        headers: { ...headers, "content-type": "application/json" },
        body: JSON.stringify({ agents: ["bot"] }),
      });
      expect(answer.status).toBe(201);
      return ((await answer.json()) as { key: string; record: { id: string } }).record.id;
    };
    const byAlice = await create(bearer(alice));
    const byEnv = await create(bearer(envAdmin));
    const revoke = await fetch(`${proxy.url}/audit/keys/${byAlice}`, { method: "DELETE", headers: bearer(ops) });
    expect(revoke.status).toBe(200);
    const signIn = await fetch(`${proxy.url}/dashboard/session`, {
      method: "POST",
      headers: { "x-agent-attr-dashboard": "1", "content-type": "application/json" },
      body: JSON.stringify({ token: alice }),
    });
    const session = { cookie: signIn.headers.get("set-cookie")!.split(";")[0]!, "x-agent-attr-dashboard": "1" };
    const byDashboard = await create(session);
    expect((await fetch(`${proxy.url}/audit/records`, { headers: bearer(auditor) })).status).toBe(200);

    const page = (await (await fetch(`${proxy.url}/audit/events?limit=100`, { headers: bearer(envAdmin) })).json()) as {
      events: { kind: string; actor: string; details: { key_id?: string } }[];
    };
    const changes = page.events.filter((e) => e.kind.startsWith("key_")).reverse();
    expect(changes.map((e) => [e.kind, e.actor, e.details.key_id])).toEqual([
      ["key_created", "api:admin:alice", byAlice],
      ["key_created", "api:admin", byEnv],
      ["key_revoked", "api:admin:ACTORS_TEST_OPS_TOKEN", byAlice],
      ["key_created", "dashboard:admin:alice", byDashboard],
    ]);
    expect(page.events.some((e) => e.kind === "query" && e.actor === "api:auditor:admin.tokens[2]")).toBe(true);
    const text = JSON.stringify(page);
    for (const token of [envAdmin, alice, ops, auditor]) expect(text).not.toContain(token);
  } finally {
    await proxy.stop();
    await upstream.stop();
    delete process.env.ACTORS_TEST_OPS_TOKEN;
  }
});

test("a token's name is a short label, unique, and never the token itself", () => {
  const named = (name: string, token = alice) => resolveAccessTokens([{ token, role: "admin", name }], {});
  expect(named("alice")).toEqual([{ token: alice, role: "admin", name: "alice" }]);
  expect(() => named(alice, alice)).toThrow("its name is the token itself");
  expect(() =>
    resolveAccessTokens(
      [
        { token: alice, role: "admin", name: "ops" },
        { tokenEnv: "OPS", role: "auditor" },
      ],
      { OPS: ops },
    ),
  ).not.toThrow();
  expect(() =>
    resolveAccessTokens(
      [
        { token: alice, role: "admin", name: "ops" },
        { token: ops, role: "auditor", name: "ops" },
      ],
      {},
    ),
  ).toThrow("two tokens are named 'ops'");
  expect(() => parseConfig({ admin: { tokens: [{ token: alice, role: "admin", name: "alice smith" }] } })).toThrow(ConfigError);
});
