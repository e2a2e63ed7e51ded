// The intent log's segments: rotated by size, zeroed and reused once every call in them is
// settled, deleted on close, and recovered after a crash whichever version wrote them — final
// lines as the records they are, intents without one as interrupted.
import { expect, test } from "bun:test";
import { linkSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ChainWriter } from "../../../src/store/sqlite/chain-writer.ts";
import { openAuditLog } from "../../../src/store/sqlite/database.ts";
import { columns, toRow } from "../../../src/trail/row.ts";
import { IntentLog } from "../../../src/store/sqlite/intent-log.ts";
import { readSegment, recoverIntents } from "../../../src/store/sqlite/intent-recovery.ts";
import type { AuditRecord } from "../../../src/trail/record.ts";
import { tempDir } from "../../helpers/proxy.ts";

const record = (id: string) =>
  ({
    id,
    timestamp: "2026-01-01T00:00:00.000Z",
    attribution: "default",
    endpoint: "/v1/x",
    stream: false,
    usage_source: "none",
  }) as AuditRecord;

/** The intent files of `dir`, with their text. */
const segmentsOf = (dir: string) =>
  readdirSync(dir)
    .filter((name) => name.includes(".intents-"))
    .sort()
    .map((name) => ({ name, text: readFileSync(join(dir, name), "utf8") }));

test("full segments rotate, and a segment is deleted once every intent in it is settled", async () => {
  const dir = tempDir();
  const log = new IntentLog(join(dir, "audit.db"), 300); // a few records per segment
  for (let i = 0; i < 12; i++) log.append(record(`r${i}`));
  const written = segmentsOf(dir);
  expect(written.length).toBeGreaterThan(3);
  expect(written.map((s) => readSegment(s.text).length).reduce((a, b) => a + b)).toBe(12);

  log.settle(["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"]);
  const after = segmentsOf(dir);
  expect(after.length).toBeLessThan(written.length);
  const inFlight = ["r8", "r9", "r10", "r11"];
  const left = after.map((s) => readSegment(s.text).map((row) => String(row[0])));
  expect(left.flat()).toEqual(expect.arrayContaining(inFlight));
  // A settled line stays only beside a call still in flight (a segment is zeroed as a whole).
  for (const ids of left) if (ids.length > 0) expect(ids.some((id) => inFlight.includes(id))).toBe(true);
  expect(left.flat().length).toBeLessThan(12);

  log.settle(["r8", "r9", "r10", "r11"]);
  await log.close();
  expect(segmentsOf(dir)).toEqual([]);
});

test("a segment is created at full size (its disk space taken up front), its unused part zeros", async () => {
  const dir = tempDir();
  const log = new IntentLog(join(dir, "audit.db"), 64 * 1024);
  log.append(record("r1"));
  const [segment] = segmentsOf(dir);
  expect(segment!.text.length).toBe(64 * 1024);
  expect(segment!.text.endsWith("\0".repeat(1000))).toBe(true);
  expect(readSegment(segment!.text).map((row) => row[0])).toEqual(["r1"]);
  log.settle(["r1"]);
  await log.close();
});

test("prepare() makes the first segment ahead of the first call, which then writes into it", async () => {
  const dir = tempDir();
  const log = new IntentLog(join(dir, "audit.db"), 64 * 1024);
  log.prepare();
  const [prepared] = segmentsOf(dir);
  expect(prepared!.text).toBe("\0".repeat(64 * 1024));
  log.append(record("r1"));
  const written = segmentsOf(dir).filter((s) => readSegment(s.text).length > 0);
  expect(written.map((s) => s.name)).toEqual([prepared!.name]);
  expect(readSegment(written[0]!.text).map((row) => row[0])).toEqual(["r1"]);
  log.settle(["r1"]);
  await log.close();
  expect(segmentsOf(dir)).toEqual([]);
});

test("the next segment's zeros are written in the background, ready for the next rotation", async () => {
  const dir = tempDir();
  const log = new IntentLog(join(dir, "audit.db"), 64 * 1024);
  log.append(record("r1")); // no prepared segment: made now, and the next one in the background
  const spareReady = () => segmentsOf(dir).some((s) => s.text === "\0".repeat(64 * 1024));
  for (let waited = 0; !spareReady() && waited < 5000; waited += 10) await Bun.sleep(10);
  expect(spareReady()).toBe(true);
  log.settle(["r1"]);
  await log.close();
  expect(segmentsOf(dir)).toEqual([]);
});

test("a segment with unsettled intents survives close (they are in flight)", async () => {
  const dir = tempDir();
  const log = new IntentLog(join(dir, "audit.db"));
  log.append(record("in-flight"));
  await log.close();
  expect(readdirSync(dir).filter((name) => name.includes(".intents-"))).toHaveLength(1);
});

test("recovery reads segments of older versions: headerless 0.1.0 rows and headers naming other columns", async () => {
  const dir = tempDir();
  const logDb = join(dir, "audit.db");
  const log = openAuditLog(logDb);
  const dead = Bun.spawn(["true"]);
  await dead.exited;
  // agent-attr 0.1.0 wrote bare rows in its 30-column order.
  const legacy = [
    "legacy-1",
    "2026-01-01T00:00:00.000Z",
    null,
    null,
    "agent-a",
    "user-a",
    "task",
    null,
    null,
    null,
    "asserted",
    null,
    "openai",
    "/v1/chat/completions",
    "gpt-4o",
    null,
    1,
    null,
    null,
    null,
    null,
    null,
    null,
    null,
    "none",
    null,
    null,
    "ph",
    null,
    null,
  ];
  writeFileSync(`${logDb}.intents-${dead.pid}-0`, `${JSON.stringify(legacy)}\n["cut short`);
  // A version with its columns in another order, one column this version does not know, and
  // without some of today's.
  const columns = ["endpoint", "id", "future_field", "timestamp", "attribution", "stream", "usage_source", "agent_id"];
  const row = ["/v1/messages", "headed-1", "x", "2026-01-02T00:00:00.000Z", "default", 0, "none", "agent-b"];
  writeFileSync(`${logDb}.intents-${dead.pid}-1`, `${JSON.stringify({ columns })}\n${JSON.stringify(row)}\n`);
  try {
    const chain = new ChainWriter(log.db);
    expect(recoverIntents(chain, logDb)).toEqual({ interrupted: 2, finished: 0 });
    chain.finalize();
    const page = await log.reader.records({ limit: 10 });
    expect(page.records.find((r) => r.id === "legacy-1")).toMatchObject({
      agent_id: "agent-a",
      user_id: "user-a",
      model: "gpt-4o",
      stream: true,
      prompt_hash: "ph",
      outcome: "interrupted",
      cost_nano_usd: null,
      cache_write_1h_tokens: null,
    });
    expect(page.records.find((r) => r.id === "headed-1")).toMatchObject({
      endpoint: "/v1/messages",
      agent_id: "agent-b",
      stream: false,
      outcome: "interrupted",
      model: null,
    });
    expect(readdirSync(dir).filter((name) => name.includes(".intents-"))).toEqual([]);
  } finally {
    await log.close();
  }
});

test("a new segment names its columns, so a later version can read it", async () => {
  const dir = tempDir();
  const log = new IntentLog(join(dir, "audit.db"));
  log.append(record("r1"));
  const [segment] = segmentsOf(dir).filter((s) => s.text.startsWith('{"columns":'));
  const rows = readSegment(segment!.text);
  expect(rows).toHaveLength(1);
  expect(rows[0]![0]).toBe("r1");
  log.settle(["r1"]);
  await log.close();
});

test("settled lines are zeroed as soon as their segment has none in flight, and compact() keeps only the unsettled lines", async () => {
  const dir = tempDir();
  const log = new IntentLog(join(dir, "audit.db"));
  const texts = () =>
    segmentsOf(dir)
      .map((s) => s.text)
      .join("");
  log.append(record("quiet"));
  log.settle(["quiet"]);
  expect(texts()).not.toContain("quiet"); // the current segment too: no settled line lingers
  log.append(record("erased-user-call"));
  log.append(record("still-in-flight"));
  log.settle(["erased-user-call"]);
  expect(texts()).toContain("erased-user-call");
  log.compact();
  expect(texts()).not.toContain("erased-user-call");
  expect(readSegment(texts()).map((row) => row[0])).toEqual(["still-in-flight"]);
  log.append(record("next")); // written after the kept line
  expect(readSegment(texts()).map((row) => row[0])).toEqual(["still-in-flight", "next"]);
  log.settle(["still-in-flight", "next"]);
  await log.close();
  expect(segmentsOf(dir)).toEqual([]);
});

test("compact() never leaves a moment where an unsettled intent is on disk nowhere (a kill mid-compact)", async () => {
  const dir = tempDir();
  const log = new IntentLog(join(dir, "audit.db"), 64 * 1024);
  for (let i = 0; i < 50; i++) log.append(record(`in-flight-${i}`));
  log.append(record("erased-user-call"));
  log.settle(["erased-user-call"]);
  // Simulate the process dying right after compact() zeroes the first bytes it zeroes.
  const fill = Uint8Array.prototype.fill;
  Uint8Array.prototype.fill = function (this: Uint8Array, ...args: Parameters<Uint8Array["fill"]>) {
    fill.apply(this, args);
    throw new Error("killed");
  } as typeof fill;
  try {
    expect(() => log.compact()).toThrow("killed");
  } finally {
    Uint8Array.prototype.fill = fill;
  }
  const onDisk = new Set(segmentsOf(dir).flatMap((s) => readSegment(s.text).map((row) => String(row[0]))));
  for (let i = 0; i < 50; i++) expect(onDisk.has(`in-flight-${i}`)).toBe(true);
});

test("a deleted segment is truncated first, so its disk space is free before its mapping is collected", async () => {
  const dir = tempDir();
  const log = new IntentLog(join(dir, "audit.db"), 64 * 1024);
  log.append(record("long-stream"));
  const [segment] = segmentsOf(dir).filter((s) => readSegment(s.text).length > 0);
  const alias = join(dir, "alias"); // a second name for the same file keeps it visible after unlink
  linkSync(join(dir, segment!.name), alias);
  expect(statSync(alias).size).toBe(64 * 1024);
  for (let i = 0; i < 600; i++) log.append(record(`r${i}`)); // fills it: the next segments take over
  log.settle(["long-stream", ...Array.from({ length: 600 }, (_, i) => `r${i}`)]);
  expect(segmentsOf(dir).some((s) => s.name === segment!.name)).toBe(false);
  expect(statSync(alias).size).toBe(0);
  await log.close();
});

test("a final line stands for its call: recovery commits it as it is (usage and cost kept), wherever its intent is", async () => {
  const dir = tempDir();
  const logDb = join(dir, "audit.db");
  const store = openAuditLog(logDb);
  // Room for the header and seven and a half lines per segment (sized from the row, which grows as
  // fields are added): the intent and five others fill the first, the final line lands in a later one.
  const lineBytes = JSON.stringify(toRow(record("other-0"))).length + 1;
  const log = new IntentLog(logDb, JSON.stringify({ columns }).length + 1 + Math.round(7.5 * lineBytes));
  const started = record("finished");
  log.append(started);
  for (let i = 0; i < 6; i++) log.append(record(`other-${i}`));
  const final = {
    ...started,
    outcome: "completed",
    status: 200,
    input_tokens: 12,
    output_tokens: 7,
    usage_source: "provider",
    cost_nano_usd: 4242,
  } as AuditRecord;
  log.appendFinal("finished", JSON.stringify(toRow(final)));
  log.appendFinal("never-forwarded", "[]"); // a call without an intent (refused): nothing is written
  log.settle(Array.from({ length: 6 }, (_, i) => `other-${i}`));
  log.append(record("in-flight"));
  // The intent's segment is gone (every call in it settled or moved on); the final line is left.
  const onDisk = segmentsOf(dir).flatMap((s) => readSegment(s.text));
  expect(onDisk.map((row) => [row[0], row[columns.indexOf("outcome")]])).toEqual([
    ["finished", "completed"],
    ["in-flight", null],
  ]);
  try {
    const chain = new ChainWriter(store.db);
    expect(recoverIntents(chain, logDb)).toEqual({ interrupted: 1, finished: 1 });
    chain.finalize();
    const { records } = await store.reader.records({ limit: 10 });
    expect(records.find((r) => r.id === "finished")).toMatchObject({
      outcome: "completed",
      input_tokens: 12,
      output_tokens: 7,
      cost_nano_usd: 4242,
      error_type: null,
    });
    expect(records.find((r) => r.id === "in-flight")).toMatchObject({ outcome: "interrupted" });
    expect(records).toHaveLength(2);
  } finally {
    store.close();
  }
});

test("recovery prefers a call's final line to its intent, and a final line cut short by the crash leaves the intent standing", async () => {
  const dir = tempDir();
  const logDb = join(dir, "audit.db");
  const store = openAuditLog(logDb);
  const dead = Bun.spawn(["true"]);
  await dead.exited;
  const intent = (id: string) => toRow(record(id));
  const final = (id: string) => toRow({ ...record(id), outcome: "completed", input_tokens: 5, usage_source: "provider" } as AuditRecord);
  const header = JSON.stringify({ columns });
  const finalLine = (id: string) => JSON.stringify({ final: final(id) });
  writeFileSync(
    `${logDb}.intents-${dead.pid}-0`,
    [header, JSON.stringify(intent("done")), JSON.stringify(intent("torn")), finalLine("done"), finalLine("torn").slice(0, 60)].join("\n"),
  );
  // A compaction cut short leaves a copy of the intent in a later segment: still one record.
  writeFileSync(`${logDb}.intents-${dead.pid}-1`, `${header}\n${JSON.stringify(intent("done"))}\n`);
  try {
    const chain = new ChainWriter(store.db);
    expect(recoverIntents(chain, logDb)).toEqual({ interrupted: 1, finished: 1 });
    chain.finalize();
    const { records } = await store.reader.records({ limit: 10 });
    expect(Object.fromEntries(records.map((r) => [r.id, [r.outcome, r.input_tokens]]))).toEqual({
      done: ["completed", 5],
      torn: ["interrupted", null],
    });
  } finally {
    store.close();
  }
});

test("after compact(), the lines of calls that were in flight go too, once they are all settled", async () => {
  const dir = tempDir();
  const log = new IntentLog(join(dir, "audit.db"));
  const texts = () =>
    segmentsOf(dir)
      .map((s) => s.text)
      .join("");
  log.append(record("long-stream")); // keeps the segment, and every settled line in it, on disk
  log.append(record("erased-user-in-flight"));
  log.append(record("erased-user-done"));
  log.settle(["erased-user-done"]);
  log.compact(); // the erasure: settled lines go, calls in flight stay
  expect(texts()).not.toContain("erased-user-done");
  expect(texts()).toContain("erased-user-in-flight");
  log.appendFinal(
    "erased-user-in-flight",
    JSON.stringify(toRow({ ...record("erased-user-in-flight"), outcome: "completed" } as AuditRecord)),
  );
  log.append(record("started-after"));
  log.settle(["erased-user-in-flight"]);
  expect(texts()).toContain("erased-user-in-flight"); // one kept call is still in flight
  log.settle(["long-stream"]);
  expect(texts()).not.toContain("erased-user-in-flight");
  expect(readSegment(texts()).map((row) => row[0])).toEqual(["started-after"]);
  log.settle(["started-after"]);
  await log.close();
});
