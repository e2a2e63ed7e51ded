// `agent-attr audit query`: the same records as the REST API, as a table, JSON or CSV.
import { beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { AuditRecord } from "../../src/trail/record.ts";
import { SqliteAuditStore } from "../../src/store/sqlite/store.ts";
import { runCli } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";

let logDb: string;

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

beforeAll(async () => {
  logDb = join(tempDir(), "audit.db");
  const store = new SqliteAuditStore(logDb);
  store.commit(record(1, "reviewer", "alice", "PR review #456", 1));
  store.commit(record(2, "reviewer", "bob", '=HYPERLINK("http://evil")', 2));
  store.commit(record(3, "reviewer", "alice", 'old, "quoted" task', 20));
  store.commit(record(4, "planner", "alice", "plan", 1));
  await store.close();
});

test("--agent --days N as a table", async () => {
  const { exitCode, stdout } = await runCli(["audit", "query", "--agent", "reviewer", "--days", "7", "--log-db", logDb]);
  expect(exitCode).toBe(0);
  const lines = stdout.trim().split("\n");
  expect(lines[0]).toContain("timestamp");
  expect(lines[0]).toContain("agent_id");
  expect(lines).toHaveLength(4); // header, rule, two records within 7 days
  expect(stdout).toContain("PR review #456");
  expect(stdout).not.toContain("planner");
});

test("--format json prints the REST API's envelope", async () => {
  const { exitCode, stdout } = await runCli(["audit", "query", "--user", "alice", "--format", "json", "--log-db", logDb]);
  expect(exitCode).toBe(0);
  const page = JSON.parse(stdout) as { records: AuditRecord[]; next_cursor: string | null };
  expect(page.records.map((r) => r.id)).toEqual(["rec-4", "rec-3", "rec-1"]);
  expect(page.next_cursor).toBeNull();
});

test("--task filters by task context", async () => {
  const { stdout } = await runCli(["audit", "query", "--task", "plan", "--format", "json", "--log-db", logDb]);
  expect((JSON.parse(stdout) as { records: AuditRecord[] }).records.map((r) => r.id)).toEqual(["rec-4"]);
});

test("--format csv is RFC 4180 with the record field names, formula cells neutralised", async () => {
  const { exitCode, stdout } = await runCli(["audit", "query", "--agent", "reviewer", "--format", "csv", "--log-db", logDb]);
  expect(exitCode).toBe(0);
  const lines = stdout.split("\r\n");
  expect(lines[0]!.startsWith("id,seq,timestamp,duration_ms,ttfb_ms,agent_id,user_id,task_context")).toBe(true);
  expect(stdout).toContain(`"'=HYPERLINK(""http://evil"")"`);
  expect(stdout).toContain(`"old, ""quoted"" task"`);
  expect(lines[1]).toContain(",12.5,3,reviewer,");
});

test("a bad option is one line on stderr, exit 2 (usage), no stack trace", async () => {
  const { exitCode, stderr } = await runCli(["audit", "query", "--days", "soon", "--log-db", logDb]);
  expect(exitCode).toBe(2);
  expect(stderr).toContain("--days");
  expect(stderr).not.toContain("    at ");
});

test("a missing database says where it looked and how to point elsewhere", async () => {
  const { exitCode, stderr } = await runCli(["audit", "query", "--log-db", "/nonexistent/audit.db"]);
  expect(exitCode).toBe(4); // I/O: no database
  expect(stderr).toContain("/nonexistent/audit.db");
  expect(stderr).toContain("--log-db");
});

test("CSV writes tiny costs as plain decimals, never in exponent notation", async () => {
  const path = join(tempDir(), "tiny.db");
  const store = new SqliteAuditStore(path);
  store.commit({ ...record(9, "a", "u", "t", 0), cost_usd: 3.15e-7, cost_nano_usd: 315 });
  await store.close();
  const { stdout } = await runCli(["audit", "query", "--format", "csv", "--log-db", path]);
  expect(stdout).toContain(",0.000000315,315,");
  expect(stdout).not.toMatch(/\de-\d/);
});
