// Exports as streams on both drivers: bounded chunks read as the consumer pulls, and an export
// whose reader goes away is still a chain event (cancelled, with the records produced).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eventFilterSchema } from "../../src/trail/events.ts";
import { exportFilterSchema } from "../../src/trail/export.ts";
import { postgresDriver, sqliteDriver, trailOn, type TestDriver } from "../helpers/drivers.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";

let pg: PgSchema;
beforeAll(async () => {
  pg = await pgSchema("export");
});
afterAll(async () => {
  await pg.drop();
});

describe.each([sqliteDriver, postgresDriver(() => pg)])("exports on $name", (driver: TestDriver) => {
  test("a cancelled export stops reading and is recorded as cancelled; a complete one with its manifest", async () => {
    const trail = await trailOn(driver, "cancel", 1200);
    const store = await trail.reopen();
    try {
      const cancelled = store.trail.export("ndjson", exportFilterSchema.parse({}), "api:auditor");
      const reader = cancelled.stream().getReader();
      const first = await reader.read();
      expect(first.value!.byteLength).toBeGreaterThan(0);
      await reader.cancel();
      expect(cancelled.exported).toBeLessThan(1200); // rows are read as the client pulls, not ahead
      const complete = store.trail.export("csv", exportFilterSchema.parse({}), "api:auditor");
      let chunks = 0;
      for await (const _ of complete.stream()) chunks++;
      expect(chunks).toBeGreaterThanOrEqual(3); // 512 rows per chunk
      const events = (await store.trail.events(eventFilterSchema.parse({ kind: "export" }))).events.reverse();
      expect(events.map((e) => e.actor)).toEqual(["api:auditor", "api:auditor"]);
      expect(events[0]!.details).toEqual({
        export_id: cancelled.id,
        format: "ndjson",
        cancelled: true,
        records_sent_at_most: cancelled.exported,
      });
      expect(events[1]!.details).toMatchObject({ manifest: { export_id: complete.id, record_count: 1200, first_seq: 1, last_seq: 1200 } });
      expect(await store.trail.manifest(complete.id)).toMatchObject({ record_count: 1200 });
      expect(await store.trail.manifest(cancelled.id)).toBeNull();
    } finally {
      await store.close();
    }
  });
});
