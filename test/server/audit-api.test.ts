// The audit REST API, on both drivers: per user / agent / task, filtered lists with cursor
// pagination, one record by id; and the admin token.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { RecordPage } from "../../src/store/results.ts";
import { postgresDriver, proxyOn, sqliteDriver, type TestDriver } from "../helpers/drivers.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let pg: PgSchema;
let upstream: FakeUpstream;
beforeAll(async () => {
  pg = await pgSchema("audit_api");
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
  await pg.drop();
});

describe.each([sqliteDriver, postgresDriver(() => pg)])("the audit API on $name", (driver: TestDriver) => {
  let proxy: TestProxy;

  async function call(agent: string, user: string, task: string, model = "gpt-4o") {
    const response = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-agent-id": agent, "x-user-id": user, "x-task-context": task },
      body: JSON.stringify({ model, messages: [] }),
    });
    await response.arrayBuffer();
  }

  beforeAll(async () => {
    proxy = await proxyOn(await driver.open("api"), upstream.url);
    await call("reviewer", "alice", "PR review #456");
    await call("reviewer", "bob", "PR review #456");
    await call("planner", "alice", "sprint plan", "gpt-4o-mini");
    for (let i = 0; i < 5; i++) await call("bulk", "carol", `job ${i}`);
    await proxy.records();
  });
  afterAll(async () => {
    await proxy.stop();
  });

  const get = async (path: string, init?: RequestInit) => {
    const response = await fetch(`${proxy.url}${path}`, init);
    return { status: response.status, body: (await response.json()) as RecordPage & { error?: { message: string } } };
  };

  describe("GET /audit/user|agent|task/:id", () => {
    test("a user's records, newest first", async () => {
      const { status, body } = await get("/audit/user/alice?days=30");
      expect(status).toBe(200);
      expect(body.records.map((r) => r.agent_id)).toEqual(["planner", "reviewer"]);
      expect(body.next_cursor).toBeNull();
    });

    test("an agent's records", async () => {
      const { body } = await get("/audit/agent/reviewer?days=7");
      expect(body.records.map((r) => r.user_id)).toEqual(["bob", "alice"]);
    });

    test("a task's records, with the task context URL-encoded", async () => {
      const { body } = await get(`/audit/task/${encodeURIComponent("PR review #456")}`);
      expect(body.records).toHaveLength(2);
      expect(body.records.every((r) => r.task_context === "PR review #456")).toBe(true);
    });
  });

  describe("GET /audit/records", () => {
    test("filters combine", async () => {
      const { body } = await get("/audit/records?user=alice&model=gpt-4o-mini&provider=openai&outcome=completed");
      expect(body.records.map((r) => r.agent_id)).toEqual(["planner"]);
    });

    test("since/until bound the time range", async () => {
      const future = new Date(Date.now() + 60_000).toISOString();
      expect((await get(`/audit/records?since=${future}`)).body.records).toHaveLength(0);
      expect((await get(`/audit/records?until=${future}&agent=bulk`)).body.records).toHaveLength(5);
    });

    test("cursor pagination walks every record exactly once", async () => {
      const seen: number[] = [];
      let cursor: string | null = "";
      let pages = 0;
      while (cursor !== null) {
        const { body } = await get(`/audit/records?limit=3${cursor ? `&cursor=${cursor}` : ""}`);
        seen.push(...body.records.map((r) => r.seq));
        cursor = body.next_cursor;
        pages++;
      }
      expect(pages).toBe(3);
      expect(seen).toEqual([8, 7, 6, 5, 4, 3, 2, 1]);
    });

    test("a bad filter is a 400 that names it", async () => {
      const { status, body } = await get("/audit/records?outcome=exploded&limit=0");
      expect(status).toBe(400);
      expect(body.error?.message).toContain("outcome");
      expect(body.error?.message).toContain("limit");
    });

    test("days past what a date can hold is a 400 naming it, on records, summaries and the overview (it was a 500)", async () => {
      for (const path of ["/audit/records?days=1e9", "/audit/summary?by=agent&days=1e9", "/audit/overview?days=1e9"]) {
        const { status, body } = await get(path);
        expect(status).toBe(400);
        expect(body.error?.message).toContain("days");
      }
    });
  });

  describe("GET /audit/records/:id", () => {
    test("the id a response carried in X-Audit-Record-ID finds its record", async () => {
      const response = await fetch(`${proxy.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-agent-id": "citer" },
        body: JSON.stringify({ model: "gpt-4o", messages: [] }),
      });
      await response.arrayBuffer();
      await proxy.records();
      const id = response.headers.get("x-audit-record-id")!;
      const found = await fetch(`${proxy.url}/audit/records/${id}`);
      expect(found.status).toBe(200);
      expect(await found.json()).toMatchObject({ id, agent_id: "citer", outcome: "completed" });
    });

    test("an unknown id is a 404 that names it", async () => {
      const missing = await fetch(`${proxy.url}/audit/records/nope`);
      expect(missing.status).toBe(404);
      expect(((await missing.json()) as { error: { message: string } }).error.message).toContain("'nope'");
    });
  });
});

describe("admin token", () => {
  test("with AGENT_ATTR_ADMIN_TOKEN set, the audit API needs it", async () => {
    const guarded = await startTestProxy(upstream.url, {}, { adminToken: "s3cret-token-0123456789" });
    try {
      expect((await fetch(`${guarded.url}/audit/records`)).status).toBe(401);
      const wrong = await fetch(`${guarded.url}/audit/records`, { headers: { authorization: "Bearer nope" } });
      expect(wrong.status).toBe(401);
      const right = await fetch(`${guarded.url}/audit/records`, { headers: { authorization: "Bearer s3cret-token-0123456789" } });
      expect(right.status).toBe(200);
    } finally {
      await guarded.stop();
    }
  });
});
