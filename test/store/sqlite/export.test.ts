// Exports as streams: bounded chunks, and an export whose reader goes away is still a chain event.
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { join } from "node:path";
import { exportFilterSchema } from "../../../src/trail/export.ts";
import { SqliteAuditStore } from "../../../src/store/sqlite/store.ts";
import { tempDir } from "../../helpers/proxy.ts";
import { sampleRecord } from "../../helpers/records.ts";

test("a cancelled export stops reading and is recorded as cancelled; a complete one with its manifest", async () => {
  const logDb = join(tempDir(), "audit.db");
  const store = new SqliteAuditStore(logDb);
  for (let i = 1; i <= 1200; i++) store.commit(sampleRecord(i));
  await store.flush();
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
  await store.close();
  const db = new Database(logDb, { readonly: true });
  const details = db
    .query<{ details: string }, []>("SELECT details FROM audit_events WHERE kind = 'export' ORDER BY seq")
    .all()
    .map((e) => JSON.parse(e.details) as Record<string, unknown>);
  db.close();
  expect(details[0]).toEqual({ export_id: cancelled.id, format: "ndjson", cancelled: true, records_sent_at_most: cancelled.exported });
  expect(details[1]).toMatchObject({ manifest: { export_id: complete.id, record_count: 1200, first_seq: 1, last_seq: 1200 } });
});
