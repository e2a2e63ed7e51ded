/**
 * Summaries on both storage drivers where the planner takes shortcuts: a top-N (`limit`) keeps
 * every group tied with the last one so ties are broken by key, whatever order the engine found
 * them in.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { summaryFilterSchema } from "../../src/store/filters.ts";
import { postgresDriver, sqliteDriver, type OpenedTrail, type TestDriver } from "../helpers/drivers.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { sampleRecord } from "../helpers/records.ts";
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
