// The intent log's segments: rotated by size, deleted once every intent in them is settled.
import { expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { IntentLog } from "../../src/audit/intent-log.ts";
import type { AuditRecord } from "../../src/audit/record.ts";
import { tempDir } from "../helpers/proxy.ts";

const record = (id: string) =>
  ({ id, timestamp: "2026-01-01T00:00:00.000Z", attribution: "default", endpoint: "/v1/x", stream: false, usage_source: "none" }) as AuditRecord;

test("full segments rotate, and a segment is deleted once all of its intents are settled", () => {
  const dir = tempDir();
  const logDb = join(dir, "audit.db");
  const log = new IntentLog(logDb, 300); // a few records per segment
  const segments = () => readdirSync(dir).filter((name) => name.includes(".intents-")).sort();
  for (let i = 0; i < 10; i++) log.append(record(`r${i}`));
  const written = segments();
  expect(written.length).toBeGreaterThan(2);

  log.settle(["r0", "r1", "r2", "r3", "r4"]);
  const after = segments();
  expect(after.length).toBeLessThan(written.length);
  expect(after[0]).not.toBe(written[0]); // the oldest segment held only settled intents

  log.settle(["r5", "r6", "r7", "r8", "r9"]);
  log.close();
  expect(segments()).toEqual([]);
});

test("a segment with unsettled intents survives close (they are in flight)", () => {
  const dir = tempDir();
  const log = new IntentLog(join(dir, "audit.db"));
  log.append(record("in-flight"));
  log.close();
  expect(readdirSync(dir).filter((name) => name.includes(".intents-"))).toHaveLength(1);
});
