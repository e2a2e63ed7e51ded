// Audit of the audit, on both drivers: queries, exports, erasures and verifications through the API
// and the CLI are chain events naming the actor and the action, never the data subject.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { cliOn, postgresDriver, proxyOn, sqliteDriver, type OpenedTrail, type TestDriver } from "../helpers/drivers.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { tempDir, type TestProxy } from "../helpers/proxy.ts";

let pg: PgSchema;
let upstream: FakeUpstream;
beforeAll(async () => {
  pg = await pgSchema("audit_of_audit");
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
  await pg.drop();
});

describe.each([sqliteDriver, postgresDriver(() => pg)])("the audit of the audit on $name", (driver: TestDriver) => {
  let trail: OpenedTrail;
  let proxy: TestProxy;
  beforeAll(async () => {
    trail = await driver.open("actions");
    proxy = await proxyOn(trail, upstream.url);
  });
  afterAll(async () => {
    await proxy.stop();
  });

  const events = () =>
    trail.query<{ kind: string; actor: string; details: string }>("SELECT kind, actor, details FROM audit_events ORDER BY seq");

  test("every audit action through the API or the CLI appears in the chain, without personal data", async () => {
    const url = proxy.url;
    const call = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-agent-id": "bot", "x-user-id": "subject-alice", "x-task-context": "secret task" },
      body: JSON.stringify({ model: "gpt-4o", messages: [] }),
    });
    await call.arrayBuffer();
    await proxy.records();
    const id = call.headers.get("x-audit-record-id")!;
    await (await fetch(`${url}/audit/records?user=subject-alice&days=1`)).arrayBuffer();
    await (await fetch(`${url}/audit/user/subject-alice`)).arrayBuffer();
    await (await fetch(`${url}/audit/records/${id}`)).arrayBuffer();
    await (await fetch(`${url}/audit/summary?by=user&user=subject-alice`)).arrayBuffer();
    await (await fetch(`${url}/audit/export/csv?user=subject-alice`)).arrayBuffer();
    await (await fetch(`${url}/audit/verify`)).arrayBuffer();
    await (await fetch(`${url}/audit/user/subject-alice`, { method: "DELETE" })).arrayBuffer();
    await cliOn(trail, "audit", "query", "--task", "secret task");
    await cliOn(trail, "audit", "summary", "--by", "task", "--task", "secret task");
    await cliOn(trail, "audit", "export", "--format", "ndjson", "--user", "subject-alice", "--output", join(tempDir(), "x.ndjson"));
    await cliOn(trail, "audit", "delete", "--user", "subject-alice");
    await cliOn(trail, "audit", "verify");

    const seen = await events();
    expect(seen.map((e) => `${e.actor.split(":")[0]} ${e.kind}`)).toEqual([
      "api query",
      "api query",
      "api query",
      "api query",
      "api export",
      "api verify",
      "api erasure",
      "cli query",
      "cli query",
      "cli export",
      "cli erasure",
      "cli verify",
    ]);
    expect(JSON.parse(seen[0]!.details)).toEqual({ route: "/audit/records", filters: ["user", "days"], returned: 1 });
    expect(JSON.parse(seen[1]!.details)).toMatchObject({ route: "/audit/user/:id", filters: ["user"] });
    expect(JSON.parse(seen[3]!.details)).toEqual({ route: "/audit/summary?by=user", filters: ["user"], returned: 1 });
    expect(JSON.parse(seen[6]!.details)).toEqual({ records: 1, seqs: [[1, 1]], signature: expect.any(String) });
    expect(JSON.parse(seen[8]!.details)).toMatchObject({ route: "cli:audit summary --by task", filters: ["task"] });
    const all = JSON.stringify(seen);
    expect(all).not.toContain("subject-alice");
    expect(all).not.toContain("secret task");
    // And the chain, covering all of these, verifies.
    expect((await cliOn(trail, "audit", "verify")).exitCode).toBe(0);
  });
});
