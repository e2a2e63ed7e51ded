// Summaries: rollup days, record edges and the records past the rollup cursor must always add up
// to exactly the sum of the records they cover, wherever the cursor stands.
import { Database } from "bun:sqlite";
import { beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { AuditRecord } from "../../../src/trail/record.ts";
import { openAuditLog } from "../../../src/store/sqlite/database.ts";
import { advanceRollup, rollupCursor } from "../../../src/store/sqlite/rollup.ts";
import { SqliteAuditStore } from "../../../src/store/sqlite/store.ts";
import { summaryFilterSchema, summaryGroupings, type SummaryFilter, type SummaryGrouping } from "../../../src/store/filters.ts";
import { runCli } from "../../helpers/process.ts";
import { tempDir } from "../../helpers/proxy.ts";

const day = 86_400_000;
const now = Date.now();
let logDb: string;
/** Copies of the log with the rollup cursor at 0, in the middle and at the end. */
const cursorStates: string[] = [];
const written: AuditRecord[] = [];

function record(i: number): AuditRecord {
  const priced = i % 7 !== 0;
  const usage = i % 11 !== 0;
  return {
    id: `rec-${i}`,
    seq: 0,
    // Spread over 10 days at uneven times, so ranges cut through days.
    timestamp: new Date(now - 10 * day + i * 3_917_000).toISOString(),
    duration_ms: 10,
    ttfb_ms: 2,
    agent_id: `agent-${i % 3}`,
    user_id: i % 5 === 0 ? null : `user-${i % 4}`,
    task_context: `task ${i % 6}`,
    session_id: null,
    parent_agent_id: null,
    trace_id: null,
    attribution: "asserted",
    key_id: i % 3 === 0 ? null : `key_${i % 2}`,
    provider: i % 2 ? "openai" : "anthropic",
    endpoint: "/v1/chat/completions",
    model: i % 2 ? "gpt-4o" : "claude-sonnet-4-6",
    response_model: null,
    stream: false,
    status: usage ? 200 : i % 2 ? 429 : 402,
    outcome: usage ? "completed" : "rejected",
    input_tokens: usage ? 100 + i : null,
    output_tokens: usage ? 10 + (i % 13) : null,
    cache_read_tokens: usage ? i % 4 : null,
    cache_write_tokens: usage && i % 2 === 0 ? 3 : null,
    cache_write_1h_tokens: usage && i % 4 === 0 ? 1 : null,
    reasoning_tokens: usage && i % 3 === 0 ? 2 : null,
    usage_source: usage ? "provider" : "none",
    cost_usd: usage && priced ? (123_457 * i) / 1e9 : null,
    cost_nano_usd: usage && priced ? 123_457 * i : null,
    price_source: usage && priced ? "test" : null,
    prompt_hash: null,
    response_hash: null,
    error_type: null,
    delegation: null,
    // Some calls untagged, some with a team only, some with team and project; one personal tag.
    tags: i % 4 === 0 ? null : JSON.stringify(i % 4 === 1 ? { team: `team-${i % 3}` } : { project: `p${i % 2}`, team: `team-${i % 3}` }),
    personal_tags: i % 9 === 0 ? JSON.stringify({ email: `u${i % 2}@example.com` }) : null,
    consent_id: i % 4 === 0 ? null : `cns_${String(i % 4).padStart(16, "0")}`,
    purpose: i % 4 === 0 ? null : ["PR review", "triage", "support"][i % 3]!,
    lawful_basis: i % 4 === 0 ? null : i % 2 ? "consent" : "contract",
    consent_source: i % 4 === 0 ? "none" : "lookup",
  };
}

beforeAll(async () => {
  logDb = join(tempDir(), "audit.db");
  const store = new SqliteAuditStore(logDb);
  for (let i = 1; i <= 220; i++) {
    written.push(record(i));
    store.commit(record(i));
  }
  await store.close();
  const rolled = openAuditLog(logDb);
  expect(rollupCursor(rolled.db)).toBe(220); // the writer thread rolled everything up
  rolled.close();
  for (const upTo of [0, 110, 1000]) {
    const copy = join(tempDir(), `cursor-${upTo}.db`);
    const source = new Database(logDb);
    source.run(`VACUUM INTO '${copy}'`);
    source.close();
    const log = openAuditLog(copy);
    log.db.run("DELETE FROM usage_rollup");
    log.db.run("UPDATE usage_rollup_state SET seq = 0");
    advanceRollup(log.db, upTo);
    expect(rollupCursor(log.db)).toBe(Math.min(upTo, 220));
    log.close();
    cursorStates.push(copy);
  }
});

const tagOf = (r: AuditRecord, key: string): string | null =>
  (JSON.parse(r.tags ?? "{}") as Record<string, string>)[key] ??
  (JSON.parse(r.personal_tags ?? "{}") as Record<string, string>)[key] ??
  null;
const keyOf: Record<string, (r: AuditRecord) => string | null> = {
  "tag:team": (r) => tagOf(r, "team"),
  "tag:project": (r) => tagOf(r, "project"),
  "tag:email": (r) => tagOf(r, "email"),
  agent: (r) => r.agent_id,
  user: (r) => r.user_id,
  task: (r) => r.task_context,
  model: (r) => r.model,
  provider: (r) => r.provider,
  key: (r) => r.key_id,
  day: (r) => r.timestamp.slice(0, 10),
  hour: (r) => r.timestamp.slice(0, 13),
  status: (r) => `${r.outcome ?? ""}:${r.status ?? ""}`,
  purpose: (r) => r.purpose,
  basis: (r) => r.lawful_basis,
  error: (r) => r.error_type,
};

/** The summary computed the slow, obvious way from the records themselves. */
function bruteForce(records: AuditRecord[], by: string) {
  const groups = new Map<
    string | null,
    { calls: number; input_tokens: number; cost_nano_usd: number; unpriced_calls: number; cache_write_1h_tokens: number }
  >();
  for (const r of records) {
    const g = groups.get(keyOf[by.toLowerCase()]!(r)) ?? {
      calls: 0,
      input_tokens: 0,
      cost_nano_usd: 0,
      unpriced_calls: 0,
      cache_write_1h_tokens: 0,
    };
    g.calls++;
    g.input_tokens += r.input_tokens ?? 0;
    g.cache_write_1h_tokens += r.cache_write_1h_tokens ?? 0;
    g.cost_nano_usd += r.cost_nano_usd ?? 0;
    if (r.cost_nano_usd === null && r.usage_source !== "none") g.unpriced_calls++;
    groups.set(keyOf[by.toLowerCase()]!(r), g);
  }
  return groups;
}

async function check(filter: SummaryFilter, select: (r: AuditRecord) => boolean) {
  const expected = bruteForce(written.filter(select), filter.by);
  for (const path of cursorStates) {
    const log = openAuditLog(path);
    try {
      const summary = await log.reader.summary(summaryFilterSchema.parse(filter));
      expect(summary.groups.length).toBe(expected.size);
      for (const group of summary.groups) expect(group).toMatchObject(expected.get(group.key)!);
      expect(summary.total.cost_nano_usd).toBe([...expected.values()].reduce((sum, g) => sum + g.cost_nano_usd, 0));
      expect(summary.total.cost_usd).toBe(summary.total.cost_nano_usd / 1e9);
    } finally {
      log.close();
    }
  }
  return expected;
}

const at = (offsetDays: number) => new Date(now - offsetDays * day + 12_345).toISOString();

test("every grouping, whole trail: equal to the sum of the records", async () => {
  for (const by of summaryGroupings) await check({ by }, () => true);
});

test("hours, proxy keys and outcome:status over ranges that cut through days", async () => {
  const since = at(6.2);
  const until = at(1.7);
  const inRange = (r: AuditRecord) => r.timestamp >= since && r.timestamp <= until;
  const hours = await check({ by: "hour", since, until }, inRange);
  expect(hours.size).toBeGreaterThan(24);
  await check({ by: "key", since }, (r) => r.timestamp >= since);
  const statuses = await check({ by: "status", until }, (r) => r.timestamp <= until);
  expect([...statuses.keys()].sort()).toEqual(["completed:200", "rejected:402", "rejected:429"]);
});

test("sort and limit: the first N groups in that order; the total and group_count cover them all", async () => {
  const log = openAuditLog(cursorStates[1]!);
  try {
    const all = await log.reader.summary(summaryFilterSchema.parse({ by: "task" }));
    const top = await log.reader.summary(summaryFilterSchema.parse({ by: "task", limit: 2 }));
    expect(top.groups).toEqual(all.groups.slice(0, 2));
    expect(top.group_count).toBe(6);
    expect(top.total).toEqual(all.total);
    const byCalls = await log.reader.summary(summaryFilterSchema.parse({ by: "agent", sort: "calls" }));
    expect(byCalls.groups.map((g) => g.calls)).toEqual([...byCalls.groups.map((g) => g.calls)].sort((a, b) => b - a));
    const hours = await log.reader.summary(summaryFilterSchema.parse({ by: "hour" }));
    expect(hours.groups.map((g) => g.key)).toEqual(hours.groups.map((g) => g.key).sort());
  } finally {
    log.close();
  }
});

test("time ranges that cut through days (rollup days + record edges)", async () => {
  const since = at(7.3);
  const until = at(2.6);
  await check({ by: "agent", since, until }, (r) => r.timestamp >= since && r.timestamp <= until);
  await check({ by: "day", since }, (r) => r.timestamp >= since);
  await check({ by: "user", until }, (r) => r.timestamp <= until);
  // Both ends inside one day.
  const from = at(5.9);
  const to = at(5.6);
  await check({ by: "model", since: from, until: to }, (r) => r.timestamp >= from && r.timestamp <= to);
  // Day-aligned start.
  const midnight = `${at(4).slice(0, 10)}T00:00:00.000Z`;
  await check({ by: "task", since: midnight }, (r) => r.timestamp >= midnight);
});

test("--days and extra filters (read from the records)", async () => {
  const expected = await check(
    { by: "model", agent: "agent-1", days: 6 },
    (r) => r.agent_id === "agent-1" && Date.parse(r.timestamp) >= Date.now() - 6 * day - 1000,
  );
  expect(expected.size).toBeGreaterThan(0);
  await check({ by: "provider", outcome: "rejected" }, (r) => r.outcome === "rejected");
});

test("by tag (clear or personal) and filtered by tags, over any range: equal to the sum of the records", async () => {
  const teams = await check({ by: "tag:team" }, () => true);
  expect([...teams.keys()].sort()).toEqual(["team-0", "team-1", "team-2", null].sort());
  await check({ by: "tag:project", since: at(6.5) }, (r) => r.timestamp >= at(6.5));
  // Keys are read as tags are: upper case finds the same tag.
  await check({ by: "TAG:Team" as SummaryGrouping }, () => true);
  await check({ by: "tag:email" }, () => true);
  await check({ by: "model", tag: "team=team-1" }, (r) => tagOf(r, "team") === "team-1");
  await check({ by: "agent", tag: ["team=team-2", "project=p1"] }, (r) => tagOf(r, "team") === "team-2" && tagOf(r, "project") === "p1");
  await check({ by: "day", tag: "email=u1@example.com" }, (r) => tagOf(r, "email") === "u1@example.com");
});

test("erasing personal tags (as erasure does) moves their usage to the null group of a summary by that tag", async () => {
  const log = openAuditLog(cursorStates[1]!);
  try {
    const before = await log.reader.summary(summaryFilterSchema.parse({ by: "tag:email" }));
    log.db.run(`UPDATE audit_records SET personal_tags = NULL WHERE personal_tags LIKE '%u1@%'`);
    const after = await log.reader.summary(summaryFilterSchema.parse({ by: "tag:email" }));
    const calls = (s: typeof before, key: string | null) => s.groups.find((g) => g.key === key)?.calls ?? 0;
    expect(calls(before, "u1@example.com")).toBeGreaterThan(0);
    expect(calls(after, "u1@example.com")).toBe(0);
    expect(calls(after, null)).toBe(calls(before, null) + calls(before, "u1@example.com"));
    expect(after.total).toEqual(before.total);
  } finally {
    log.close();
  }
});

test("unpriced calls are counted, not hidden as $0", async () => {
  const log = openAuditLog(logDb);
  const summary = await log.reader.summary(summaryFilterSchema.parse({ by: "provider" }));
  log.close();
  expect(summary.total.unpriced_calls).toBe(written.filter((r) => r.cost_nano_usd === null && r.usage_source !== "none").length);
  expect(summary.total.unpriced_calls).toBeGreaterThan(0);
});

test("clearing a user from records (as erasure does) removes the user from summaries, totals unchanged", async () => {
  // Half rolled up: the triggers move rolled-up usage, the tail is read as it is.
  const log = openAuditLog(cursorStates[1]!);
  try {
    const before = await log.reader.summary(summaryFilterSchema.parse({ by: "user" }));
    log.db.run("UPDATE audit_records SET user_id = NULL WHERE user_id = 'user-2'");
    const after = await log.reader.summary(summaryFilterSchema.parse({ by: "user" }));
    expect(before.groups.some((g) => g.key === "user-2")).toBe(true);
    expect(after.groups.some((g) => g.key === "user-2")).toBe(false);
    expect(after.total).toEqual(before.total);
    const moved = before.groups.find((g) => g.key === "user-2")!.calls;
    expect(after.groups.find((g) => g.key === null)!.calls).toBe(before.groups.find((g) => g.key === null)!.calls + moved);
  } finally {
    log.close();
  }
});

test("CLI: a table with a TOTAL row, JSON equal to the API's, exact dollars", async () => {
  const table = await runCli(["audit", "summary", "--by", "agent", "--days", "30", "--log-db", logDb]);
  expect(table.exitCode).toBe(0);
  const lines = table.stdout.trim().split("\n");
  expect(lines[0]).toMatch(/^agent\s+calls\s+input_tokens/);
  expect(lines.at(-1)).toMatch(/^TOTAL\s+220\s/);
  const json = await runCli(["audit", "summary", "--by", "agent", "--format", "json", "--log-db", logDb]);
  const summary = JSON.parse(json.stdout) as { total: { cost_nano_usd: number } };
  expect(summary.total.cost_nano_usd).toBe(written.reduce((sum, r) => sum + (r.cost_nano_usd ?? 0), 0));
  const whole = String(summary.total.cost_nano_usd);
  expect(lines.at(-1)).toContain(`${whole.slice(0, -9) || "0"}.${whole.slice(-9).replace(/0+$/, "").padEnd(2, "0")}`);
  const csv = await runCli(["audit", "summary", "--by", "model", "--format", "csv", "--log-db", logDb]);
  expect(csv.stdout.split("\r\n")[0]).toBe(
    "key,calls,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,cache_write_1h_tokens,reasoning_tokens,cost_usd,unpriced_calls,cost_nano_usd",
  );
  const bad = await runCli(["audit", "summary", "--by", "planet", "--log-db", logDb]);
  expect(bad.exitCode).toBe(2); // usage error
  expect(bad.stderr).toContain("--by");
});
