// Refused audit API calls (401, 403) are chain events — what was refused, for which role, from
// which address, never the token — aggregated so that an attacker cannot grow the chain at will (both drivers).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { cliOn, postgresDriver, proxyOn, sqliteDriver, type TestDriver } from "../helpers/drivers.ts";
import { startFakeUpstream } from "../helpers/fake-upstream.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";

let pg: PgSchema;
beforeAll(async () => {
  pg = await pgSchema("access_denied");
});
afterAll(async () => {
  await pg.drop();
});

const adminToken = "denied-test-admin-token-0123";
const auditorToken = "denied-test-auditor-token-0123";
const wrongToken = "not-a-token-of-this-proxy-0123";

test.each([sqliteDriver, postgresDriver(() => pg)])(
  "on $name: refused audit API calls leave one access_denied event per minute: route, method, roles, client and a count, never the token",
  async (driver: TestDriver) => {
    const upstream = await startFakeUpstream();
    const trail = await driver.open("denied");
    const proxy = await proxyOn(trail, upstream.url, {}, { adminToken, auditorToken });
    const send = async (path: string, init: RequestInit = {}) => {
      const response = await fetch(`${proxy.url}${path}`, init);
      await response.arrayBuffer();
      return response.status;
    };
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push(await send("/audit/records")); // no token
    statuses.push(await send("/audit/user/alice", { headers: { authorization: `Bearer ${wrongToken}` } }));
    statuses.push(await send("/audit/user/alice", { headers: { authorization: adminToken } })); // no Bearer scheme
    statuses.push(await send("/audit/user/bob", { method: "DELETE", headers: { authorization: `Bearer ${auditorToken}` } }));
    expect(statuses).toEqual([...Array(30).fill(401), 401, 401, 403]);
    // An accepted call is not a refusal.
    expect(await send("/audit/records", { headers: { authorization: `Bearer ${auditorToken}` } })).toBe(200);
    await proxy.stop(); // writes the refusals counted so far
    await upstream.stop();

    const all = await trail.query<{ kind: string; actor: string; details: string }>(
      "SELECT kind, actor, details FROM audit_events ORDER BY seq",
    );
    const denied = all.filter((e) => e.kind === "access_denied");
    expect(denied).toHaveLength(1);
    expect(denied[0]!.actor).toBe("api");
    const details = JSON.parse(denied[0]!.details) as { refusals: number; groups: Record<string, unknown>[]; other_refusals: number };
    expect(details.refusals).toBe(33);
    expect(details.other_refusals).toBe(0);
    const client = details.groups[0]!.client;
    expect(client).toMatch(/127\.0\.0\.1|::1/);
    expect(details.groups).toEqual([
      {
        method: "GET",
        route: "/audit/records",
        status: 401,
        reason: "no_token",
        required_role: "auditor",
        presented_role: null,
        client,
        count: 30,
      },
      {
        method: "GET",
        route: "/audit/user/:id",
        status: 401,
        reason: "unknown_token",
        required_role: "auditor",
        presented_role: null,
        client,
        count: 1,
      },
      {
        method: "GET",
        route: "/audit/user/:id",
        status: 401,
        reason: "not_bearer",
        required_role: "auditor",
        presented_role: null,
        client,
        count: 1,
      },
      {
        method: "DELETE",
        route: "/audit/user/:id",
        status: 403,
        reason: "insufficient_role",
        required_role: "admin",
        presented_role: "auditor",
        client,
        count: 1,
      },
    ]);
    // Neither a token nor a hash of one, nor the ids in the refused paths, is kept.
    const text = JSON.stringify(all);
    for (const secret of [adminToken, auditorToken, wrongToken]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(createHash("sha256").update(secret).digest("hex"));
    }
    expect(text).not.toContain("alice");
    expect(text).not.toContain("bob");
    expect((await cliOn(trail, "audit", "verify")).exitCode).toBe(0);
  },
  20_000,
);
