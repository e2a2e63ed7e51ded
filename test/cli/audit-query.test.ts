// `agent-attr audit query`, on both drivers: the same records as the REST API, as a table, JSON or CSV.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { AuditRecord } from "../../src/trail/record.ts";
import { cliOn, postgresDriver, sqliteDriver, trailOn, type OpenedTrail, type TestDriver } from "../helpers/drivers.ts";
import { pgSchema, pgServer, type PgSchema } from "../helpers/postgres.ts";
import { runCli } from "../helpers/process.ts";

function record(i: number, agent: string, user: string, task: string, daysAgo: number): AuditRecord {
  return {
    id: `rec-${i}`,
    seq: 0,
    timestamp: new Date(Date.now() - daysAgo * 86_400_000).toISOString(),
    duration_ms: 12.5,
    ttfb_ms: 3,
    agent_id: agent,
    user_id: user,
    task_context: task,
    session_id: null,
    parent_agent_id: null,
    trace_id: null,
    attribution: "asserted",
    key_id: null,
    provider: "openai",
    endpoint: "/v1/chat/completions",
    model: "gpt-4o",
    response_model: "gpt-4o-2024",
    stream: false,
    status: 200,
    outcome: "completed",
    input_tokens: 10 + i,
    output_tokens: 5,
    cache_read_tokens: 0,
    cache_write_tokens: null,
    cache_write_1h_tokens: null,
    reasoning_tokens: null,
    usage_source: "provider",
    cost_usd: null,
    cost_nano_usd: null,
    price_source: null,
    prompt_hash: "ab",
    response_hash: "cd",
    error_type: null,
    delegation: null,
    tags: null,
    personal_tags: null,
    consent_id: null,
    purpose: null,
    lawful_basis: null,
    consent_source: null,
  };
}

let pg: PgSchema;
beforeAll(async () => {
  pg = await pgSchema("cli_query");
});
afterAll(async () => {
  await pg.drop();
});

const seeded = [
  record(1, "reviewer", "alice", "PR review #456", 1),
  record(2, "reviewer", "bob", '=HYPERLINK("http://evil")', 2),
  record(3, "reviewer", "alice", 'old, "quoted" task', 20),
  record(4, "planner", "alice", "plan", 1),
];

describe.each([sqliteDriver, postgresDriver(() => pg)])("audit query on $name", (driver: TestDriver) => {
  let trail: OpenedTrail;
  beforeAll(async () => {
    trail = await trailOn(driver, "query", 4, { record: (i) => seeded[i - 1]! });
  });

  test("--agent --days N as a table", async () => {
    const { exitCode, stdout } = await cliOn(trail, "audit", "query", "--agent", "reviewer", "--days", "7");
    expect(exitCode).toBe(0);
    const lines = stdout.trim().split("\n");
    expect(lines[0]).toContain("timestamp");
    expect(lines[0]).toContain("agent_id");
    expect(lines).toHaveLength(4); // header, rule, two records within 7 days
    expect(stdout).toContain("PR review #456");
    expect(stdout).not.toContain("planner");
  });

  test("--format json prints the REST API's envelope", async () => {
    const { exitCode, stdout } = await cliOn(trail, "audit", "query", "--user", "alice", "--format", "json");
    expect(exitCode).toBe(0);
    const page = JSON.parse(stdout) as { records: AuditRecord[]; next_cursor: string | null };
    expect(page.records.map((r) => r.id)).toEqual(["rec-4", "rec-3", "rec-1"]);
    expect(page.next_cursor).toBeNull();
  });

  test("--task filters by task context", async () => {
    const { stdout } = await cliOn(trail, "audit", "query", "--task", "plan", "--format", "json");
    expect((JSON.parse(stdout) as { records: AuditRecord[] }).records.map((r) => r.id)).toEqual(["rec-4"]);
  });

  test("--format csv is RFC 4180 with the record field names, formula cells neutralised", async () => {
    const { exitCode, stdout } = await cliOn(trail, "audit", "query", "--agent", "reviewer", "--format", "csv");
    expect(exitCode).toBe(0);
    const lines = stdout.split("\r\n");
    expect(lines[0]!.startsWith("id,seq,timestamp,duration_ms,ttfb_ms,agent_id,user_id,task_context")).toBe(true);
    expect(stdout).toContain(`"'=HYPERLINK(""http://evil"")"`);
    expect(stdout).toContain(`"old, ""quoted"" task"`);
    expect(lines[1]).toContain(",12.5,3,reviewer,");
  });

  test("a bad option is one line on stderr, exit 2 (usage), no stack trace", async () => {
    const { exitCode, stderr } = await cliOn(trail, "audit", "query", "--days", "soon");
    expect(exitCode).toBe(2);
    expect(stderr).toContain("--days");
    expect(stderr).not.toContain("    at ");
  });

  test("CSV writes tiny costs as plain decimals, never in exponent notation", async () => {
    const tiny = await trailOn(driver, "tiny", 1, {
      record: () => ({ ...record(9, "a", "u", "t", 0), cost_usd: 3.15e-7, cost_nano_usd: 315 }),
    });
    const { stdout } = await cliOn(tiny, "audit", "query", "--format", "csv");
    expect(stdout).toContain(",0.000000315,315,");
    expect(stdout).not.toMatch(/\de-\d/);
  });
});

test("a missing database says where it looked and how to point elsewhere", async () => {
  const { exitCode, stderr } = await runCli(["audit", "query", "--log-db", "/nonexistent/audit.db"]);
  expect(exitCode).toBe(4); // I/O: no database
  expect(stderr).toContain("/nonexistent/audit.db");
  expect(stderr).toContain("--log-db");
});

test("a PostgreSQL database with no trail says where it looked (the password masked) and how to point elsewhere", async () => {
  const url = new URL(pgServer);
  url.password = "S3CRET-PG-PASSWORD"; // the local server trusts loopback: any password opens it
  url.searchParams.set("schema", `${pg.schema}_none`);
  const { exitCode, stderr } = await runCli(["audit", "query", "--log-db", url.toString()]);
  expect(exitCode).toBe(4); // I/O: no trail
  expect(stderr).toContain("No audit trail at postgres://");
  expect(stderr).toContain("--log-db");
  expect(stderr).not.toContain("S3CRET-PG-PASSWORD");
  const [created] = (await pg.sql`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = ${`${pg.schema}_none`}`) as { n: number }[];
  expect(created!.n).toBe(0); // reading never creates a trail
});
