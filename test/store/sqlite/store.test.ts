// The SQLite audit store: in-flight records durable in the intent log before forwarding, final
// records group-committed on a writer thread, nothing dropped, crash recovery.
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { AuditRecord } from "../../../src/trail/record.ts";
import { SqliteAuditStore } from "../../../src/store/sqlite/store.ts";
import { tempDir } from "../../helpers/proxy.ts";

function record(id: string, overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    id,
    seq: 0,
    timestamp: new Date().toISOString(),
    duration_ms: null,
    ttfb_ms: null,
    agent_id: "agent",
    user_id: "user",
    task_context: null,
    session_id: null,
    parent_agent_id: null,
    trace_id: null,
    attribution: "asserted",
    key_id: null,
    provider: "openai",
    endpoint: "/v1/chat/completions",
    model: "gpt-4o",
    response_model: null,
    stream: false,
    status: null,
    outcome: null,
    input_tokens: null,
    output_tokens: null,
    cache_read_tokens: null,
    cache_write_tokens: null,
    cache_write_1h_tokens: null,
    reasoning_tokens: null,
    usage_source: "none",
    cost_usd: null,
    cost_nano_usd: null,
    price_source: null,
    prompt_hash: null,
    response_hash: null,
    error_type: null,
    delegation: null,
    tags: null,
    personal_tags: null,
    consent_id: null,
    purpose: null,
    lawful_basis: null,
    consent_source: null,
    ...overrides,
  };
}

const countOnDisk = (path: string) => {
  const db = new Database(path, { readonly: true });
  try {
    return db.query<{ n: number }, []>("SELECT count(*) AS n FROM audit_records").get()!.n;
  } finally {
    db.close();
  }
};

/** Every intent line on disk for this database, as raw text. */
const intentsOnDisk = (path: string) =>
  readdirSync(dirname(path))
    .filter((name) => name.startsWith(`${basename(path)}.intents-`))
    .map((name) => readFileSync(join(dirname(path), name), "utf8"))
    .join("");

test("begin returns only once the in-flight record is written to the intent log", async () => {
  const path = join(tempDir(), "a.db");
  const store = new SqliteAuditStore(path);
  await store.begin(record("r-in-flight"));
  expect(intentsOnDisk(path)).toContain('"r-in-flight"');
  expect(countOnDisk(path)).toBe(0);
  await store.close();
});

test("a committed final record settles its intent; a clean close leaves no intent file", async () => {
  const path = join(tempDir(), "b.db");
  const store = new SqliteAuditStore(path);
  await store.begin(record("r1"));
  store.commit(record("r1", { outcome: "completed", status: 200, input_tokens: 3 }));
  await store.flush();
  expect(countOnDisk(path)).toBe(1);
  await store.close();
  expect(intentsOnDisk(path)).toBe("");
});

test("final records written together are committed together, with consecutive seqs", async () => {
  const store = new SqliteAuditStore(join(tempDir(), "c.db"));
  for (let i = 0; i < 200; i++) store.commit(record(`r${i}`, { outcome: "completed" }));
  await store.flush();
  const page = await store.reader.records({ limit: 1000 });
  expect(page.records.map((r) => r.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
  await store.close();
});

test("when the intent log cannot be written, begin rejects (the call must not be forwarded)", async () => {
  const path = join(tempDir(), "d.db");
  mkdirSync(`${path}.intents-${process.pid}-0`); // a directory where the segment file should go
  const store = new SqliteAuditStore(path);
  const refused = await store.begin(record("r1")).then(
    () => "written",
    (error: Error) => error.message,
  );
  expect(refused).toContain("EISDIR");
  rmSync(`${path}.intents-${process.pid}-0`, { recursive: true });
  await store.close();
});

test("a second final record for a call that has one is dropped and reported; later records still land", async () => {
  const path = join(tempDir(), "dup.db");
  const errors: string[] = [];
  const store = new SqliteAuditStore(path, { onError: (m) => errors.push(m), retryMs: 20 });
  store.commit(record("r1", { outcome: "completed" }));
  await store.flush();
  store.commit(record("r1", { outcome: "rejected" })); // a bug elsewhere must not stop the trail
  store.commit(record("r2", { outcome: "completed" }));
  store.commit(record("r2", { outcome: "completed" }));
  await store.flush();
  store.commit(record("r3", { outcome: "completed" }));
  await store.flush();
  const page = await store.reader.records({ limit: 10 });
  expect(page.records.map((r) => [r.id, r.outcome]).sort()).toEqual([
    ["r1", "completed"],
    ["r2", "completed"],
    ["r3", "completed"],
  ]);
  expect(errors.join("\n")).toContain("dropped 2 final audit record(s) for calls that already have one: r1, r2");
  expect(await store.trail.verify("api")).toMatchObject({ ok: true });
  await store.close();
});

test("while another process holds the database locked, final records wait, then land", async () => {
  const path = join(tempDir(), "e.db");
  const errors: string[] = [];
  const store = new SqliteAuditStore(path, { onError: (m) => errors.push(m), retryMs: 20, busyTimeoutMs: 50 });
  const blocker = new Database(path);
  blocker.run("BEGIN EXCLUSIVE");
  await store.begin(record("r1"));
  store.commit(record("r1", { outcome: "completed" }));
  // However slow the machine, the commit must fail while the lock is held, and be reported.
  for (let waited = 0; errors.length === 0 && waited < 10_000; waited += 20) await Bun.sleep(20);
  expect(errors.join("\n")).toMatch(/locked|busy/i);
  blocker.run("ROLLBACK");
  blocker.close();
  // A batch sent while the lock was held may still fail once; the retry must land it.
  let records: AuditRecord[] = [];
  for (let waited = 0; records.length === 0 && waited < 10_000; waited += 20) {
    await store.flush();
    records = (await store.reader.records({ limit: 10 })).records;
    if (records.length === 0) await Bun.sleep(20);
  }
  expect(records.map((r) => [r.id, r.outcome])).toEqual([["r1", "completed"]]);
  await store.close();
});

test("after a crash, intents without a final record become interrupted records; finished ones stay", async () => {
  const path = join(tempDir(), "f.db");
  const crashed = new SqliteAuditStore(path);
  await crashed.begin(record("in-flight"));
  await crashed.begin(record("done"));
  crashed.commit(record("done", { outcome: "completed" }));
  await crashed.flush();
  // No close(): the process "died" with one call in flight.
  const restarted = new SqliteAuditStore(path);
  expect(restarted.recoverInterrupted()).toBe(1);
  const { records } = await restarted.reader.records({ limit: 10 });
  expect(Object.fromEntries(records.map((r) => [r.id, r.outcome]))).toEqual({ "in-flight": "interrupted", done: "completed" });
  expect(records.find((r) => r.id === "in-flight")).toMatchObject({ agent_id: "agent", error_type: "interrupted" });
  expect(restarted.recoverInterrupted()).toBe(0);
  await restarted.close();
});

test("close commits everything still queued", async () => {
  const path = join(tempDir(), "g.db");
  const store = new SqliteAuditStore(path);
  for (let i = 0; i < 50; i++) store.commit(record(`late-${i}`, { outcome: "rejected" }));
  await store.close();
  expect(countOnDisk(path)).toBe(50);
});

test("the database is opened in WAL mode with synchronous=NORMAL", async () => {
  const store = new SqliteAuditStore(join(tempDir(), "h.db"));
  expect(store.db.query<{ journal_mode: string }, []>("PRAGMA journal_mode").get()!.journal_mode).toBe("wal");
  expect(store.db.query<{ synchronous: number }, []>("PRAGMA synchronous").get()!.synchronous).toBe(1);
  await store.close();
});

test("the database, its WAL and its shared-memory file are created readable by their owner only (0600)", async () => {
  const path = join(tempDir(), "modes.db");
  const store = new SqliteAuditStore(path);
  await store.begin(record("r1"));
  store.commit(record("r1", { outcome: "completed" }));
  await store.flush();
  for (const file of [path, `${path}-wal`, `${path}-shm`]) expect([file, statSync(file).mode & 0o777]).toEqual([file, 0o600]);
  await store.close();
});

test("a database left readable by other users (by an older version) is named at start, with the fix", async () => {
  const path = join(tempDir(), "old-modes.db");
  await new SqliteAuditStore(path).close();
  chmodSync(path, 0o644);
  const warnings: string[] = [];
  const store = new SqliteAuditStore(path, { onWarning: (message) => warnings.push(message) });
  expect(warnings.join("\n")).toContain(`${path} is readable by other users (mode 644)`);
  expect(warnings.join("\n")).toContain(`chmod 600 ${path}`);
  await store.close();
});
