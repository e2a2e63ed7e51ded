// Audit of the audit: queries, exports, erasures and verifications through the API and the CLI
// are chain events naming the actor and the action, never the data subject.
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { join } from "node:path";
import { runCli } from "../helpers/process.ts";
import { proxyBeforeAll, tempDir } from "../helpers/proxy.ts";

const setup = proxyBeforeAll();

const events = () => {
  const db = new Database(setup.proxy.logDb, { readonly: true });
  try {
    return db
      .query<{ kind: string; actor: string; details: string }, []>("SELECT kind, actor, details FROM audit_events ORDER BY seq")
      .all();
  } finally {
    db.close();
  }
};

test("every audit action through the API or the CLI appears in the chain, without personal data", async () => {
  const url = setup.proxy.url;
  const call = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-agent-id": "bot", "x-user-id": "subject-alice", "x-task-context": "secret task" },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });
  await call.arrayBuffer();
  await setup.proxy.records();
  const id = call.headers.get("x-audit-record-id")!;
  await (await fetch(`${url}/audit/records?user=subject-alice&days=1`)).arrayBuffer();
  await (await fetch(`${url}/audit/user/subject-alice`)).arrayBuffer();
  await (await fetch(`${url}/audit/records/${id}`)).arrayBuffer();
  await (await fetch(`${url}/audit/summary?by=user&user=subject-alice`)).arrayBuffer();
  await (await fetch(`${url}/audit/export/csv?user=subject-alice`)).arrayBuffer();
  await (await fetch(`${url}/audit/verify`)).arrayBuffer();
  await (await fetch(`${url}/audit/user/subject-alice`, { method: "DELETE" })).arrayBuffer();
  const logDb = setup.proxy.logDb;
  await runCli(["audit", "query", "--task", "secret task", "--log-db", logDb]);
  await runCli(["audit", "summary", "--by", "task", "--task", "secret task", "--log-db", logDb]);
  await runCli([
    "audit",
    "export",
    "--format",
    "ndjson",
    "--user",
    "subject-alice",
    "--output",
    join(tempDir(), "x.ndjson"),
    "--log-db",
    logDb,
  ]);
  await runCli(["audit", "delete", "--user", "subject-alice", "--log-db", logDb]);
  await runCli(["audit", "verify", "--log-db", logDb]);

  const seen = events();
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
  expect(JSON.parse(seen[6]!.details)).toEqual({ records: 1, seqs: [[1, 1]] });
  expect(JSON.parse(seen[8]!.details)).toMatchObject({ route: "cli:audit summary --by task", filters: ["task"] });
  const all = JSON.stringify(seen);
  expect(all).not.toContain("subject-alice");
  expect(all).not.toContain("secret task");
  // And the chain, covering all of these, verifies.
  expect((await runCli(["audit", "verify", "--log-db", logDb])).exitCode).toBe(0);
});
