// The intent log's segments: rotated by size, deleted once every intent in them is settled, and
// recovered after a crash whichever version wrote them.
import { expect, test } from "bun:test";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ChainWriter } from "../../src/audit/chain.ts";
import { openAuditLog } from "../../src/audit/database.ts";
import { IntentLog, readSegment, recoverIntents } from "../../src/audit/intent-log.ts";
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

test("recovery reads segments of older versions: headerless 0.1.0 rows and headers naming other columns", async () => {
  const dir = tempDir();
  const logDb = join(dir, "audit.db");
  const log = openAuditLog(logDb);
  const dead = Bun.spawn(["true"]);
  await dead.exited;
  // agent-attr 0.1.0 wrote bare rows in its 30-column order.
  const legacy = ["legacy-1", "2026-01-01T00:00:00.000Z", null, null, "agent-a", "user-a", "task", null, null, null,
    "asserted", null, "openai", "/v1/chat/completions", "gpt-4o", null, 1, null, null, null, null, null, null, null,
    "none", null, null, "ph", null, null];
  writeFileSync(`${logDb}.intents-${dead.pid}-0`, `${JSON.stringify(legacy)}\n["cut short`);
  // A version with its columns in another order, one column this version does not know, and
  // without some of today's.
  const columns = ["endpoint", "id", "future_field", "timestamp", "attribution", "stream", "usage_source", "agent_id"];
  const row = ["/v1/messages", "headed-1", "x", "2026-01-02T00:00:00.000Z", "default", 0, "none", "agent-b"];
  writeFileSync(`${logDb}.intents-${dead.pid}-1`, `${JSON.stringify({ columns })}\n${JSON.stringify(row)}\n`);
  try {
    const chain = new ChainWriter(log.db);
    expect(recoverIntents(chain, logDb)).toBe(2);
    chain.finalize();
    const page = await log.reader.records({ limit: 10 });
    expect(page.records.find((r) => r.id === "legacy-1")).toMatchObject({
      agent_id: "agent-a", user_id: "user-a", model: "gpt-4o", stream: true, prompt_hash: "ph",
      outcome: "interrupted", cost_nano_usd: null, cache_write_1h_tokens: null,
    });
    expect(page.records.find((r) => r.id === "headed-1")).toMatchObject({
      endpoint: "/v1/messages", agent_id: "agent-b", stream: false, outcome: "interrupted", model: null,
    });
    expect(readdirSync(dir).filter((name) => name.includes(".intents-"))).toEqual([]);
  } finally {
    log.close();
  }
});

test("a new segment names its columns, so a later version can read it", () => {
  const dir = tempDir();
  const log = new IntentLog(join(dir, "audit.db"));
  log.append(record("r1"));
  const [name] = readdirSync(dir).filter((file) => file.includes(".intents-"));
  const rows = readSegment(readFileSync(join(dir, name!), "utf8"));
  expect(rows).toHaveLength(1);
  expect(rows[0]![0]).toBe("r1");
  log.settle(["r1"]);
  log.close();
});
