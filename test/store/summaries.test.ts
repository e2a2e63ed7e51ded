/**
 * Summaries on both storage drivers where the planner takes shortcuts: a top-N (`limit`) keeps
 * every group tied with the last one so ties are broken by key, whatever order the engine found
 * them in; several summaries asked at once (`summaries`, the dashboard's Overview) read the
 * records they share once and answer exactly what each summary alone answers.
 */
import { afterAll, beforeAll, describe, expect, spyOn, test } from "bun:test";
import { join } from "node:path";
import { summaryFilterSchema, type SummaryFilter } from "../../src/store/filters.ts";
import { summariesQueries } from "../../src/store/summary-plan.ts";
import { ChainWriter } from "../../src/store/sqlite/chain-writer.ts";
import { openAuditLog } from "../../src/store/sqlite/database.ts";
import { summarize } from "../../src/store/sqlite/summary.ts";
import { toRow } from "../../src/trail/row.ts";
import { postgresDriver, sqliteDriver, type OpenedTrail, type TestDriver } from "../helpers/drivers.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { sampleRecord } from "../helpers/records.ts";
import { at, bruteForce, record } from "../helpers/summary-trail.ts";
import { tempDir } from "../helpers/proxy.ts";

let pg: PgSchema;
const keyDir = tempDir();
beforeAll(async () => {
  pg = await pgSchema("summaries");
});
afterAll(async () => {
  await pg.drop();
});

const summary = (filter: object) => summaryFilterSchema.parse(filter);

describe.each([sqliteDriver, postgresDriver(() => pg, keyDir)])("summaries on $name", (driver: TestDriver) => {
  let trail: OpenedTrail;
  beforeAll(async () => {
    trail = await driver.open("ties");
    // Tasks whose costs tie, written in an order unlike their keys', in mixed case: an engine meets
    // them in byte order (E, G, a, c), the tie-break is the API's key order (a, c, E, G).
    const tasks: [task: string, cost: number][] = [
      ["task E", 5],
      ["task c", 5],
      ["task F", 3],
      ["task a", 5],
      ["task D", 3],
      ["task b", 1],
      ["task G", 5],
    ];
    let i = 0;
    for (const [task, cost] of tasks) {
      const record = sampleRecord(++i, { task_context: task, cost_nano_usd: cost, cost_usd: cost / 1e9 });
      await trail.store.begin({ ...record, outcome: null, status: null });
      await trail.store.commit(record);
    }
    await trail.store.flush();
  });
  afterAll(async () => {
    await trail.store.close();
  });

  test("a top-N by task is the first N of the whole summary, ties at the limit broken by key; count and sums of all", async () => {
    const all = await trail.store.reader.summary(summary({ by: "task" }));
    expect(all.groups.map((g) => g.key)).toEqual(["task a", "task c", "task E", "task G", "task D", "task F", "task b"]);
    for (let limit = 1; limit <= 8; limit++) {
      for (const sort of ["cost", "calls"] as const) {
        const top = await trail.store.reader.summary(summary({ by: "task", limit, sort }));
        const whole = sort === "cost" ? all : await trail.store.reader.summary(summary({ by: "task", sort }));
        expect(top.groups).toEqual(whole.groups.slice(0, limit));
        expect(top.group_count).toBe(7);
        expect(top.total).toEqual(all.total);
      }
    }
  });
});

const dialect = { unindexed: (c: string) => c, statusText: "status", tagValue: (key: string) => key, tagRollup: true };

test("summaries over one range read each partial day and the records past the cursor once, with every summary's key", () => {
  const range = { since: at(7.3), until: at(2.6) };
  const filters = (["hour", "agent", "model", "status"] as const).map((by) => summary({ ...range, by }));
  const queries = summariesQueries([...filters, summary({ ...range, by: "task", limit: 5 })], 100, dialect);
  const perCall = queries.filter((q) => q.perCall);
  // Past the cursor, the partial first day, the partial last day: one query each, for all four and
  // for the top tasks' total.
  expect(perCall).toHaveLength(3);
  const total = { summary: 4, key: "key_4", total: true };
  for (const query of perCall) expect(query.for).toEqual([...[0, 1, 2, 3].map((summary) => ({ summary, key: `key_${summary}` })), total]);
  expect(queries.filter((q) => q.from === "rollup").map((q) => q.for)).toEqual([
    ...[0, 1, 2, 3].map((summary) => [{ summary, key: "key" }]),
    [{ summary: 4, key: "key", total: true }],
  ]);
  // Top tasks read their groups from the records of the whole range on their own (tasks are not
  // rolled up), their total as the others read theirs.
  expect(queries.filter((q) => q.ranked).map((q) => q.for)).toEqual([[{ summary: 4, key: "key" }]]);
  // One summary alone keeps its GROUP BY queries.
  expect(summariesQueries([filters[1]!], 100, dialect).some((q) => q.perCall)).toBe(false);
});

describe.each([sqliteDriver, postgresDriver(() => pg, keyDir)])("several summaries at once on $name", (driver: TestDriver) => {
  let trail: OpenedTrail;
  const written = Array.from({ length: 220 }, (_, i) => record(i + 1));
  beforeAll(async () => {
    trail = await driver.open("batch");
    for (const r of written) {
      await trail.store.begin({ ...r, outcome: null, status: null });
      await trail.store.commit(r);
    }
    await trail.store.flush();
  });
  afterAll(async () => {
    await trail.store.close();
  });

  test("each answer is the summary's alone, over ranges that cut through days and with the Overview's limits", async () => {
    const since = at(7.3);
    const until = at(2.6);
    for (const range of [{ since, until }, { since }, { until }, { since: at(5.9), until: at(5.6) }, {}]) {
      const filters: SummaryFilter[] = [
        { ...range, by: "hour" },
        { ...range, by: "day" },
        { ...range, by: "agent", limit: 2 },
        { ...range, by: "user", limit: 2 },
        { ...range, by: "task", limit: 2 },
        { ...range, by: "model" },
        { ...range, by: "provider" },
        { ...range, by: "key" },
        { ...range, by: "status", sort: "calls" },
        { ...range, by: "tag:team" },
        { ...range, by: "model", agent: "agent-1" },
      ];
      const parsed = filters.map((f) => summary(f));
      const together = await trail.store.reader.summaries!(parsed);
      expect(together).toEqual(await Promise.all(parsed.map((f) => trail.store.reader.summary(f))));
      const inRange = written.filter((r) => (!range.since || r.timestamp >= range.since) && (!range.until || r.timestamp <= range.until));
      const byHour = bruteForce(inRange, "hour");
      expect(together[0]!.groups.map((g) => [g.key, g.calls, g.cost_nano_usd])).toEqual(
        [...byHour].sort(([a], [b]) => String(a).localeCompare(String(b))).map(([key, g]) => [key, g.calls, g.cost_nano_usd]),
      );
      expect(together[2]!.total.calls).toBe(inRange.length);
    }
  });

  test("ranges that start or end early or late in a UTC day (the day read from the rollup minus the records outside, or the records inside)", async () => {
    const dayOf = (daysAgo: number) => at(daysAgo).slice(0, 10);
    const [early, late] = ["T03:00:00.000Z", "T21:00:00.000Z"];
    const ends = [`${dayOf(3)}${early}`, `${dayOf(3)}${late}`, undefined];
    for (const since of [`${dayOf(8)}${early}`, `${dayOf(8)}${late}`, `${dayOf(5)}${early}`]) {
      for (const until of ends) {
        const filters = (["agent", "hour", "day", "status", "tag:team"] as const).map((by) => summary({ since, until, by }));
        const inRange = written.filter((r) => r.timestamp >= since && (!until || r.timestamp <= until));
        const together = await trail.store.reader.summaries!(filters);
        for (const [i, filter] of filters.entries()) {
          const expected = bruteForce(inRange, filter.by);
          for (const answer of [together[i]!, await trail.store.reader.summary(filter)]) {
            expect(answer.groups.map((g) => [g.key, g.calls, g.input_tokens, g.cost_nano_usd, g.unpriced_calls]).sort()).toEqual(
              [...expected].map(([key, g]) => [key, g.calls, g.input_tokens, g.cost_nano_usd, g.unpriced_calls]).sort(),
            );
          }
        }
      }
    }
  });
});

test("a top-N over the last N days counts a call at the range's very start in its group and in its total alike (the start is read from the clock once)", async () => {
  const start = Date.parse("2026-03-10T12:00:00.000Z");
  const log = openAuditLog(join(tempDir(), "audit.db"));
  const record = sampleRecord(1, { timestamp: new Date(start - 86_400_000).toISOString(), task_context: "t" });
  new ChainWriter(log.db, new Uint8Array(32).fill(7)).append([toRow(record)]);
  let now = start;
  const clock = spyOn(Date, "now").mockImplementation(() => now++); // a millisecond per reading
  try {
    const [top] = summarize(log.db, [summary({ by: "task", days: 1, limit: 5 })]);
    expect(top!.groups.map((g) => [g.key, g.calls])).toEqual([["t", 1]]);
    expect(top!.total.calls).toBe(1);
  } finally {
    clock.mockRestore();
    log.close();
  }
});
