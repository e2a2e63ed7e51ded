// The SQLite audit store: durable before forwarding, group-committed on a writer thread, nothing
// dropped, crash recovery.
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { join } from "node:path";
import type { AuditRecord } from "../../src/audit/record.ts";
import { SqliteAuditStore } from "../../src/audit/store.ts";
import { tempDir } from "../helpers/proxy.ts";

function record(id: string, overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    id, seq: 0, timestamp: new Date().toISOString(), duration_ms: null, ttfb_ms: null,
    agent_id: "agent", user_id: "user", task_context: null, session_id: null, parent_agent_id: null,
    trace_id: null, attribution: "asserted", key_id: null, provider: "openai", endpoint: "/v1/chat/completions",
    model: "gpt-4o", response_model: null, stream: false, status: null, outcome: null,
    input_tokens: null, output_tokens: null, cache_read_tokens: null, cache_write_tokens: null,
    reasoning_tokens: null, usage_source: "none", cost_usd: null, price_source: null,
    prompt_hash: null, response_hash: null, error_type: null, ...overrides,
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

test("begin resolves only once the record is readable from another connection", async () => {
  const path = join(tempDir(), "a.db");
  const store = new SqliteAuditStore(path);
  const pending = store.begin(record("r1"));
  expect(countOnDisk(path)).toBe(0);
  await pending;
  expect(countOnDisk(path)).toBe(1);
  await store.close();
});

test("concurrent begins are committed together and get consecutive seqs", async () => {
  const path = join(tempDir(), "b.db");
  const store = new SqliteAuditStore(path);
  await Promise.all(Array.from({ length: 200 }, (_, i) => store.begin(record(`r${i}`))));
  const page = await store.reader.records({ limit: 1000 });
  expect(page.records.map((r) => r.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
  await store.close();
});

test("a final record replaces the in-flight one in place (same seq)", async () => {
  const store = new SqliteAuditStore(join(tempDir(), "c.db"));
  await store.begin(record("r1"));
  store.write(record("r1", { outcome: "completed", status: 200, input_tokens: 3 }));
  store.write(record("r2", { outcome: "rejected", status: 400 }));
  await store.flush();
  const { records } = await store.reader.records({ limit: 10 });
  expect(records.map((r) => [r.seq, r.id, r.outcome, r.input_tokens])).toEqual([
    [2, "r2", "rejected", null],
    [1, "r1", "completed", 3],
  ]);
  await store.close();
});

test("while another process holds the database locked, begin fails and final records wait, then land", async () => {
  const path = join(tempDir(), "d.db");
  const errors: string[] = [];
  const store = new SqliteAuditStore(path, { onError: (m) => errors.push(m), retryMs: 20, busyTimeoutMs: 50 });
  await store.begin(record("before"));
  const blocker = new Database(path);
  blocker.run("BEGIN EXCLUSIVE");
  const refused = await store.begin(record("r1")).then(() => "committed", (error: Error) => error.message);
  expect(refused).toMatch(/locked|busy/i);
  store.write(record("before", { outcome: "completed" }));
  await Bun.sleep(150);
  expect(errors.length).toBeGreaterThan(0);
  blocker.run("ROLLBACK");
  blocker.close();
  await Bun.sleep(100);
  await store.flush();
  const { records } = await store.reader.records({ limit: 10 });
  expect(records.map((r) => [r.id, r.outcome])).toEqual([["before", "completed"]]);
  await store.close();
});

test("records left in flight become interrupted on recovery; finished ones are untouched", async () => {
  const path = join(tempDir(), "e.db");
  const first = new SqliteAuditStore(path);
  await first.begin(record("in-flight"));
  await first.begin(record("done"));
  first.write(record("done", { outcome: "completed" }));
  await first.close();
  const second = new SqliteAuditStore(path);
  expect(second.recoverInterrupted()).toBe(1);
  const { records } = await second.reader.records({ limit: 10 });
  expect(Object.fromEntries(records.map((r) => [r.id, r.outcome]))).toEqual({ "in-flight": "interrupted", done: "completed" });
  await second.close();
});

test("close commits everything still queued", async () => {
  const path = join(tempDir(), "g.db");
  const store = new SqliteAuditStore(path);
  for (let i = 0; i < 50; i++) store.write(record(`late-${i}`, { outcome: "rejected" }));
  await store.close();
  expect(countOnDisk(path)).toBe(50);
});

test("the database is opened in WAL mode with synchronous=NORMAL", async () => {
  const store = new SqliteAuditStore(join(tempDir(), "f.db"));
  expect(store.db.query<{ journal_mode: string }, []>("PRAGMA journal_mode").get()!.journal_mode).toBe("wal");
  expect(store.db.query<{ synchronous: number }, []>("PRAGMA synchronous").get()!.synchronous).toBe(1);
  await store.close();
});
