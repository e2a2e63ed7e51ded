// Summaries on both drivers: rollup days, record edges and the records past the rollup cursor must
// always add up to exactly the sum of the records they cover, wherever the cursor stands; changes
// to rolled-up records (as erasure makes) move usage, never lose it; and the CLI prints the same.
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { AuditReader } from "../../src/store/contract.ts";
import { summaryFilterSchema, summaryGroupings, type SummaryFilter, type SummaryGrouping } from "../../src/store/filters.ts";
import { advanceRollup as advancePg, rollupCursor as pgCursor } from "../../src/store/postgres/rollup.ts";
import { openAuditLog } from "../../src/store/sqlite/database.ts";
import { advanceRollup as advanceSqlite, rollupCursor as sqliteCursor } from "../../src/store/sqlite/rollup.ts";
import type { AuditRecord } from "../../src/trail/record.ts";
import { postgresDriver, sqliteDriver, trailOn, type OpenedTrail } from "../helpers/drivers.ts";
import { pgSchema, pgServer, type PgSchema } from "../helpers/postgres.ts";
import { runCli } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";
import { at, bruteForce, day, record, tagOf } from "../helpers/summary-trail.ts";
import { SQL } from "bun";

let pg: PgSchema;
beforeAll(async () => {
  pg = await pgSchema("summary");
});
afterAll(async () => {
  await pg.drop();
});

const written: AuditRecord[] = Array.from({ length: 220 }, (_, i) => record(i + 1));
const cursors = [0, 110, 1000];

/** The 220 records on one driver, and the rollup's cursor moved where a test needs it. */
interface SummaryTrail {
  trail: OpenedTrail;
  /** Runs `body` with the rollup cursor at 0, in the middle (110) and past the end. */
  atEveryCursor(body: (reader: AuditReader) => Promise<void>): Promise<void>;
  /** A trail of its own with the cursor in the middle, whose records a test may change. */
  halfRolled(): Promise<{ reader: AuditReader; run(sql: string): Promise<void>; close(): Promise<void> }>;
  close(): Promise<void>;
}

/** SQLite: copies of the database, each with its cursor moved (the writer rolls everything up as it commits). */
async function sqliteSummaryTrail(): Promise<SummaryTrail> {
  const trail = await trailOn(sqliteDriver, "summary", 220, { record });
  const copyAt = (source: string, upTo: number): string => {
    const copy = join(tempDir(), `cursor-${upTo}.db`);
    const db = new Database(source);
    db.run(`VACUUM INTO '${copy}'`);
    db.close();
    const log = openAuditLog(copy);
    log.db.run("DELETE FROM usage_rollup");
    log.db.run("DELETE FROM usage_task_totals"); // folded with the rollup, up to its cursor
    log.db.run("UPDATE usage_rollup_state SET seq = 0");
    advanceSqlite(log.db, upTo);
    expect(sqliteCursor(log.db)).toBe(Math.min(upTo, 220));
    log.close();
    return copy;
  };
  const rolled = openAuditLog(trail.logDb);
  expect(sqliteCursor(rolled.db)).toBe(220); // the writer thread rolled everything up
  rolled.close();
  const states = cursors.map((upTo) => copyAt(trail.logDb, upTo));
  return {
    trail,
    async atEveryCursor(body) {
      for (const path of states) {
        const log = openAuditLog(path);
        try {
          await body(log.reader);
        } finally {
          log.close();
        }
      }
    },
    async halfRolled() {
      const log = openAuditLog(copyAt(trail.logDb, 110));
      return { reader: log.reader, run: async (sql) => void log.db.run(sql), close: async () => log.close() };
    },
    close: async () => undefined,
  };
}

/** PostgreSQL: the cursor moved in place (no heartbeat folds meanwhile). */
async function pgSummaryTrail(): Promise<SummaryTrail> {
  const driver = postgresDriver(() => pg);
  const open = async (label: string) => {
    const trail = await driver.open(label, { replica: { heartbeatMs: 3_600_000 } });
    await Promise.all(written.map((r) => trail.store.commit(r)));
    await trail.store.flush();
    const sql = new SQL(pgServer, { max: 1, connection: { search_path: new URL(trail.logDb).searchParams.get("schema")! } });
    const moveTo = async (upTo: number) => {
      await sql`DELETE FROM usage_rollup`;
      await sql`UPDATE usage_rollup_state SET seq = 0`;
      if (upTo > 0) await advancePg(sql, upTo);
      expect(await pgCursor(sql)).toBe(Math.min(upTo, 220));
    };
    return { trail, sql, moveTo };
  };
  const { trail, sql, moveTo } = await open("summary");
  return {
    trail,
    async atEveryCursor(body) {
      for (const upTo of cursors) {
        await moveTo(upTo);
        await body(trail.store.reader);
      }
    },
    async halfRolled() {
      const own = await open("changed");
      await own.moveTo(110);
      return {
        reader: own.trail.store.reader,
        run: own.trail.tamper,
        close: async () => {
          await own.sql.close();
          await own.trail.store.close();
        },
      };
    },
    async close() {
      await sql.close();
      await trail.store.close();
    },
  };
}

describe.each([
  ["sqlite", sqliteSummaryTrail],
  ["postgres", pgSummaryTrail],
] as const)("summaries on %s", (_name, make) => {
  let trail: SummaryTrail;
  beforeAll(async () => {
    trail = await make();
  });
  afterAll(async () => {
    await trail.close();
  });

  async function check(filter: SummaryFilter, select: (r: AuditRecord) => boolean) {
    const expected = bruteForce(written.filter(select), filter.by);
    await trail.atEveryCursor(async (reader) => {
      const summary = await reader.summary(summaryFilterSchema.parse(filter));
      expect(summary.groups.length).toBe(expected.size);
      for (const group of summary.groups) expect(group).toMatchObject(expected.get(group.key)!);
      expect(summary.total.cost_nano_usd).toBe([...expected.values()].reduce((sum, g) => sum + g.cost_nano_usd, 0));
      expect(summary.total.cost_usd).toBe(summary.total.cost_nano_usd / 1e9);
    });
    return expected;
  }

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

  test("sort and limit: the first N groups in that order (ties at the limit included); the total and group_count cover them all", async () => {
    await trail.atEveryCursor(async (reader) => {
      for (const [filter, limit] of [
        [{ by: "task" }, 2],
        [{ by: "task", sort: "calls" }, 4],
        [{ by: "model", agent: "agent-1" }, 1],
        [{ by: "user", outcome: "completed", sort: "input_tokens" }, 3],
      ] as const) {
        const all = await reader.summary(summaryFilterSchema.parse(filter));
        const top = await reader.summary(summaryFilterSchema.parse({ ...filter, limit }));
        expect(top.groups).toEqual(all.groups.slice(0, limit));
        expect(top.group_count).toBe(all.group_count);
        expect(top.total).toEqual(all.total);
      }
      expect((await reader.summary(summaryFilterSchema.parse({ by: "task", limit: 2 }))).group_count).toBe(6);
      const byCalls = await reader.summary(summaryFilterSchema.parse({ by: "agent", sort: "calls" }));
      expect(byCalls.groups.map((g) => g.calls)).toEqual([...byCalls.groups.map((g) => g.calls)].sort((a, b) => b - a));
      const hours = await reader.summary(summaryFilterSchema.parse({ by: "hour" }));
      expect(hours.groups.map((g) => g.key)).toEqual(hours.groups.map((g) => g.key).sort());
    });
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

  test("unpriced calls are counted, not hidden as $0", async () => {
    await trail.atEveryCursor(async (reader) => {
      const summary = await reader.summary(summaryFilterSchema.parse({ by: "provider" }));
      expect(summary.total.unpriced_calls).toBe(written.filter((r) => r.cost_nano_usd === null && r.usage_source !== "none").length);
      expect(summary.total.unpriced_calls).toBeGreaterThan(0);
    });
  });

  test("erasing personal tags (as erasure does) moves their usage to the null group of a summary by that tag", async () => {
    const half = await trail.halfRolled();
    try {
      const before = await half.reader.summary(summaryFilterSchema.parse({ by: "tag:email" }));
      await half.run(`UPDATE audit_records SET personal_tags = NULL WHERE personal_tags LIKE '%u1@%'`);
      const after = await half.reader.summary(summaryFilterSchema.parse({ by: "tag:email" }));
      const calls = (s: typeof before, key: string | null) => s.groups.find((g) => g.key === key)?.calls ?? 0;
      expect(calls(before, "u1@example.com")).toBeGreaterThan(0);
      expect(calls(after, "u1@example.com")).toBe(0);
      expect(calls(after, null)).toBe(calls(before, null) + calls(before, "u1@example.com"));
      expect(after.total).toEqual(before.total);
    } finally {
      await half.close();
    }
  });

  test("clearing a user from records (as erasure does) removes the user from summaries, totals unchanged", async () => {
    // Half rolled up: the rollup follows the change of rolled-up records, the tail is read as it is.
    const half = await trail.halfRolled();
    try {
      const before = await half.reader.summary(summaryFilterSchema.parse({ by: "user" }));
      await half.run("UPDATE audit_records SET user_id = NULL WHERE user_id = 'user-2'");
      const after = await half.reader.summary(summaryFilterSchema.parse({ by: "user" }));
      expect(before.groups.some((g) => g.key === "user-2")).toBe(true);
      expect(after.groups.some((g) => g.key === "user-2")).toBe(false);
      expect(after.total).toEqual(before.total);
      const moved = before.groups.find((g) => g.key === "user-2")!.calls;
      expect(after.groups.find((g) => g.key === null)!.calls).toBe(before.groups.find((g) => g.key === null)!.calls + moved);
    } finally {
      await half.close();
    }
  });

  test("CLI: a table with a TOTAL row, JSON equal to the API's, exact dollars", async () => {
    const cli = (...args: string[]) => runCli([...args, "--log-db", trail.trail.logDb], { env: trail.trail.env });
    const table = await cli("audit", "summary", "--by", "agent", "--days", "30");
    expect([table.exitCode, table.stderr]).toEqual([0, ""]);
    const lines = table.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^agent\s+calls\s+input_tokens/);
    expect(lines.at(-1)).toMatch(/^TOTAL\s+220\s/);
    const json = await cli("audit", "summary", "--by", "agent", "--format", "json");
    const summary = JSON.parse(json.stdout) as { total: { cost_nano_usd: number } };
    expect(summary.total.cost_nano_usd).toBe(written.reduce((sum, r) => sum + (r.cost_nano_usd ?? 0), 0));
    const whole = String(summary.total.cost_nano_usd);
    expect(lines.at(-1)).toContain(`${whole.slice(0, -9) || "0"}.${whole.slice(-9).replace(/0+$/, "").padEnd(2, "0")}`);
    const csv = await cli("audit", "summary", "--by", "model", "--format", "csv");
    expect(csv.stdout.split("\r\n")[0]).toBe(
      "key,calls,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,cache_write_1h_tokens,reasoning_tokens,cost_usd,unpriced_calls,cost_nano_usd",
    );
    const bad = await cli("audit", "summary", "--by", "planet");
    expect(bad.exitCode).toBe(2); // usage error
    expect(bad.stderr).toContain("--by");
  });
});
