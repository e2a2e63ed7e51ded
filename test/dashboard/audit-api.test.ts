// The audit API routes the dashboard reads: the Overview equals the summaries; chain events with
// keyset pagination; the trail's status and one entry's place in the chain; proxy keys (admin
// creates and revokes, each a chain event without the secret) — on both drivers; the limits in force now.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { headerAttribution, openai, sqliteAudit, tiers } from "../../plugins/index.ts";
import { startFakeUpstream } from "../helpers/fake-upstream.ts";
import { postgresDriver, proxyOn, sqliteDriver, trailOn, type TestDriver } from "../helpers/drivers.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";
import { seededRecord } from "../helpers/seeded-trail.ts";

const admin = "admin-token-".padEnd(32, "a");
const auditor = "auditor-token-".padEnd(32, "b");
const as = (token: string) => ({ authorization: `Bearer ${token}` });

const json = async <T>(response: Response | Promise<Response>) => (await (await response).json()) as T;

let pg: PgSchema;
beforeAll(async () => {
  pg = await pgSchema("dashboard_api");
});
afterAll(async () => {
  await pg.drop();
});

describe.each([sqliteDriver, postgresDriver(() => pg)])("the dashboard's routes on $name", (driver: TestDriver) => {
  /** A proxy with both tokens on a trail of `seeded` records (../helpers/seeded-trail.ts). */
  async function withProxy<T>(label: string, seeded: number, run: (proxy: TestProxy) => Promise<T>): Promise<T> {
    const now = Date.now();
    const trail = await trailOn(driver, label, seeded, { record: (i) => seededRecord(i, now) });
    const upstream = await startFakeUpstream();
    const proxy = await proxyOn(trail, upstream.url, {}, { adminToken: admin, auditorToken: auditor });
    try {
      return await run(proxy);
    } finally {
      await proxy.stop();
      await upstream.stop();
    }
  }

  test("the Overview's numbers are the summaries' for the same range; statuses split refusals and upstream errors", async () => {
    await withProxy("overview", 300, async ({ url }) => {
      type Row = { key: string | null; calls: number; cost_nano_usd: number };
      const overview = await json<{
        bucket: string;
        total: Row;
        series: Row[];
        top: Record<string, Row[]>;
        statuses: Row[];
        inflight: number;
      }>(fetch(`${url}/audit/overview?days=3&top=3`, { headers: as(auditor) }));
      const summary = (by: string) =>
        json<{ groups: Row[]; total: Row }>(fetch(`${url}/audit/summary?by=${by}&days=3`, { headers: as(auditor) }));
      expect(overview.bucket).toBe("hour");
      expect(overview.total.calls).toBe(300);
      expect(overview.series).toEqual((await summary("hour")).groups);
      expect(overview.top.agent).toEqual((await summary("agent")).groups.slice(0, 3));
      expect(overview.top.task).toEqual((await summary("task")).groups.slice(0, 3));
      expect(overview.total).toEqual((await summary("model")).total);
      expect(Object.fromEntries(overview.statuses.map((s) => [s.key, s.calls]))).toEqual({
        "completed:200": 150,
        "rejected:429": 30,
        "rejected:402": 30,
        "rejected:401": 30,
        "rejected:403": 30,
        "upstream_error:502": 30,
      });
      expect(overview.inflight).toBe(0);
      expect((await fetch(`${url}/audit/overview?bucket=week`, { headers: as(auditor) })).status).toBe(400);
    });
  });

  test("chain events, newest first, by kind, with cursor pagination; the trail's status; one entry's hashes", async () => {
    await withProxy("events", 300, async ({ url }) => {
      for (let i = 0; i < 5; i++) await fetch(`${url}/audit/records?limit=1`, { headers: as(auditor) });
      const verified = await json<{ ok: boolean; last_seq: number }>(fetch(`${url}/audit/verify`, { headers: as(auditor) }));
      expect(verified.ok).toBe(true);
      type Page = { events: { seq: number; kind: string; actor: string; details: Record<string, unknown> }[]; next_cursor: string | null };
      const first = await json<Page>(fetch(`${url}/audit/events?kind=query&limit=3`, { headers: as(auditor) }));
      expect(first.events).toHaveLength(3);
      expect(first.events.every((e) => e.kind === "query" && e.actor === "api:auditor")).toBe(true);
      const second = await json<Page>(
        fetch(`${url}/audit/events?kind=query&limit=3&cursor=${first.next_cursor}`, { headers: as(auditor) }),
      );
      const seqs = [...first.events, ...second.events].map((e) => e.seq);
      expect(seqs).toEqual([...seqs].sort((a, b) => b - a));
      expect(new Set(seqs).size).toBe(seqs.length);
      const status = await json<{
        last_seq: number;
        last_verification: { details: { ok: boolean; last_seq: number } };
        last_checkpoint: unknown;
      }>(fetch(`${url}/audit/trail/status`, { headers: as(auditor) }));
      expect(status.last_verification.details).toMatchObject({ ok: true, last_seq: verified.last_seq });
      expect(status.last_seq).toBeGreaterThan(300);
      const entry = await json<{ seq: number; kind: string; prev_hash: string; hash: string; commitment: string; redacted: boolean }>(
        fetch(`${url}/audit/chain/7`, { headers: as(auditor) }),
      );
      expect(entry).toMatchObject({ seq: 7, kind: "record", redacted: false });
      expect(entry.hash).toMatch(/^[0-9a-f]{64}$/);
      expect((await json<{ prev_hash: string }>(fetch(`${url}/audit/chain/8`, { headers: as(auditor) }))).prev_hash).toBe(entry.hash);
      expect((await fetch(`${url}/audit/chain/999999`, { headers: as(auditor) })).status).toBe(404);
      expect((await fetch(`${url}/audit/events`)).status).toBe(401);
    });
  });

  test("keys: auditors list, admins create (the secret once) and revoke; both are chain events without the secret", async () => {
    await withProxy("keys", 0, async ({ url }) => {
      const body = JSON.stringify({ agents: ["dash-bot"], users: ["team-*"], tier: "pro" });
      const post = (token: string) =>
        fetch(`${url}/audit/keys`, { method: "POST", headers: { ...as(token), "content-type": "application/json" }, body });
      expect((await post(auditor)).status).toBe(403);
      const created = await post(admin);
      expect(created.status).toBe(201);
      const { key, record } = (await created.json()) as { key: string; record: { id: string; agents: string[] } };
      expect(key).toStartWith("aa-");
      expect(record.agents).toEqual(["dash-bot"]);
      const listed = await json<{ keys: { id: string; revoked_at: string | null }[] }>(
        fetch(`${url}/audit/keys`, { headers: as(auditor) }),
      );
      expect(listed.keys.map((k) => k.id)).toEqual([record.id]);
      expect(JSON.stringify(listed)).not.toContain(key);
      const bad = await fetch(`${url}/audit/keys`, {
        method: "POST",
        headers: { ...as(admin), "content-type": "application/json" },
        body: '{"agents": []}',
      });
      expect(bad.status).toBe(400);
      expect((await fetch(`${url}/audit/keys/${record.id}`, { method: "DELETE", headers: as(auditor) })).status).toBe(403);
      const revoked = await json<{ revoked_at: string }>(fetch(`${url}/audit/keys/${record.id}`, { method: "DELETE", headers: as(admin) }));
      expect(revoked.revoked_at).toBeTruthy();
      expect((await fetch(`${url}/audit/keys/key_nothere`, { method: "DELETE", headers: as(admin) })).status).toBe(404);
      const events = await json<{ events: { kind: string; actor: string; details: Record<string, unknown> }[] }>(
        fetch(`${url}/audit/events?limit=100`, { headers: as(admin) }),
      );
      const changes = events.events.filter((e) => e.kind.startsWith("key_"));
      expect(changes.map((e) => [e.kind, e.actor, e.details.key_id])).toEqual([
        ["key_revoked", "api:admin", record.id],
        ["key_created", "api:admin", record.id],
      ]);
      expect(changes[1]!.details).toMatchObject({ agents: ["dash-bot"], user_globs: 1, tier: "pro" });
      expect(JSON.stringify(events)).not.toContain(key);
      const verified = await json<{ ok: boolean }>(fetch(`${url}/audit/verify`, { headers: as(auditor) }));
      expect(verified.ok).toBe(true);
    });
  });
});

test("limits: what is used of each limit now, for recent callers, without charging; an erased user is no longer listed", async () => {
  const upstream = await startFakeUpstream();
  process.env.AGENT_ATTR_OPENAI_BASE_URL = `${upstream.url}/v1`; // read when openai() is made
  const proxy = await startTestProxy(
    upstream.url,
    {
      plugins: [
        openai(),
        headerAttribution(),
        tiers({ tiers: { free: { requestsPerMinute: 10, tokensPerDay: 100_000, per: ["user", "agent"] } }, default: "free" }),
        sqliteAudit(),
      ],
    },
    { adminToken: admin },
  );
  try {
    const call = (user: string) =>
      fetch(`${proxy.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-user-id": user, "x-agent-id": "bot" },
        body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }], max_tokens: 10 }),
      });
    for (const user of ["alice", "alice", "bob"]) expect((await call(user)).status).toBe(200);
    type Usage = {
      limits: { tier: string; scope: string; who: string; limit: string; used: number; max: number; remaining: number; plugin: string }[];
    };
    const read = () => json<Usage>(fetch(`${proxy.url}/audit/limits`, { headers: as(admin) }));
    const usage = await read();
    const rpm = (who: string) => usage.limits.find((l) => l.who === who && l.limit === "requests_per_minute")!;
    expect(rpm("alice")).toMatchObject({ plugin: "tiers", tier: "free", scope: "user", used: 2, max: 10, remaining: 8 });
    expect(rpm("bob")).toMatchObject({ used: 1 });
    expect(rpm("bot")).toMatchObject({ scope: "agent", used: 3 });
    expect((await read()).limits.find((l) => l.who === "alice" && l.limit === "requests_per_minute")!.used).toBe(2); // reading charged nothing
    expect((await fetch(`${proxy.url}/audit/user/alice`, { method: "DELETE", headers: as(admin) })).status).toBe(200);
    expect(JSON.stringify(await read())).not.toContain("alice");
  } finally {
    await proxy.stop();
    await upstream.stop();
  }
});
