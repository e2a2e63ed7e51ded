// After an erasure — through the API of a running proxy, from the CLI while a proxy runs, or by
// retention — the erased users' ids and task text are in no byte of any file beside the database:
// not in any page of the database (used, free, or the unused space inside a page, where a b-tree
// rebuild leaves copies of cells behind), not in its WAL, not in an intent-log segment.
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { AuditRecord } from "../../src/trail/record.ts";
import { SqliteAuditStore } from "../../src/store/sqlite/store.ts";
import { startFakeUpstream } from "../helpers/fake-upstream.ts";
import { runCli } from "../helpers/process.ts";
import { startTestProxy, tempDir } from "../helpers/proxy.ts";
import { findInFiles } from "../helpers/scan.ts";

const user = "zoe-erasable-7731";
const task = "Zoe's confidential matter";

function filesContaining(dir: string, needle: string): string[] {
  return readdirSync(dir).filter((name) => readFileSync(join(dir, name)).includes(Buffer.from(needle)));
}

const chat = async (url: string, userId: string, taskContext: string, scenario = "") => {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-agent-id": "bot",
      "x-user-id": userId,
      "x-task-context": taskContext,
      "x-fake-scenario": scenario,
    },
    body: JSON.stringify({ model: "gpt-4o", messages: [], stream: scenario !== "" }),
  });
  await response.arrayBuffer();
};

/** A finished call's record, as the pipeline hands it to the store. */
function finished(userId: string, taskContext: string, timestamp = new Date().toISOString()): AuditRecord {
  return {
    id: Bun.randomUUIDv7(),
    seq: 0,
    timestamp,
    duration_ms: 812,
    ttfb_ms: 95,
    agent_id: "bot",
    user_id: userId,
    task_context: taskContext,
    session_id: `session of ${userId}`,
    parent_agent_id: null,
    trace_id: null,
    attribution: "asserted",
    key_id: null,
    provider: "openai",
    endpoint: "/v1/chat/completions",
    model: "gpt-4o",
    response_model: "gpt-4o-2024-08-06",
    stream: false,
    status: 200,
    outcome: "completed",
    input_tokens: 1200,
    output_tokens: 340,
    cache_read_tokens: 0,
    cache_write_tokens: null,
    cache_write_1h_tokens: null,
    reasoning_tokens: null,
    usage_source: "provider",
    cost_usd: 0.0123,
    cost_nano_usd: 12_300_000,
    price_source: "test",
    prompt_hash: "ab".repeat(32),
    response_hash: "cd".repeat(32),
    error_type: null,
    delegation: null,
    tags: null,
    personal_tags: null,
    consent_id: null,
    purpose: null,
    lawful_basis: null,
    consent_source: null,
  };
}

/**
 * 20 users, 8,000 records, task texts of a few hundred characters that name their user, in random
 * order: the task index takes inserts everywhere and splits its pages, as a fleet's does.
 */
const users = Array.from({ length: 20 }, (_, i) => `person-${i}-erasable`);
const taskOf = (userId: string) =>
  `Task ${Math.floor(Math.random() * 1e6)} for ${userId}: ${"details ".repeat(20 + Math.floor(Math.random() * 40))}`;
function writeFleet(write: (record: AuditRecord) => void, timestamp?: () => string) {
  for (let i = 0; i < 8000; i++) {
    const userId = users[Math.floor(Math.random() * users.length)]!;
    write(finished(userId, taskOf(userId), timestamp?.()));
  }
}

const describeHits = (dir: string, needles: string[]) =>
  findInFiles(dir, needles).map(
    (hit) =>
      `${hit.needle} in ${hit.file}${hit.page ? ` page ${hit.page.number} (type ${hit.page.type}, ${hit.page.btree})` : ` at ${hit.offset}`}`,
  );

test("DELETE /audit/user/:id leaves no byte of the user in the database, its WAL or the intent log", async () => {
  const upstream = await startFakeUpstream();
  const proxy = await startTestProxy(upstream.url);
  try {
    for (let i = 0; i < 20; i++) await chat(proxy.url, user, task);
    await chat(proxy.url, "someone-else", "other work");
    await proxy.settled(21);
    const dir = dirname(proxy.logDb);
    expect(filesContaining(dir, user).length).toBeGreaterThan(0);
    expect((await fetch(`${proxy.url}/audit/user/${user}`, { method: "DELETE" })).status).toBe(200);
    expect(filesContaining(dir, user)).toEqual([]);
    expect(filesContaining(dir, task)).toEqual([]);
    expect(filesContaining(dir, "someone-else").length).toBeGreaterThan(0);
  } finally {
    await proxy.stop();
    await upstream.stop();
  }
});

test("erasing 10 of 20 users of 8,000 records through the API: no page of any file holds them, before or after a clean stop", async () => {
  const upstream = await startFakeUpstream();
  const proxy = await startTestProxy(upstream.url);
  const dir = dirname(proxy.logDb);
  const erased = users.slice(0, 10);
  try {
    for (const userId of users) await chat(proxy.url, userId, taskOf(userId));
    const store = proxy.runtime.store;
    writeFleet((record) => store.commit(record));
    await store.flush();
    await Bun.sleep(2100); // the writer folds the records into the usage rollup (once idle for 1 s)
    await chat(proxy.url, users[19]!, "one more");
    await proxy.settled(1);
    const rolledUp = new Database(proxy.logDb, { readonly: true });
    const rollupUsers = rolledUp
      .query<{ key: string }, []>("SELECT DISTINCT key FROM usage_rollup WHERE dim = 'user'")
      .all()
      .map((row) => row.key);
    rolledUp.close();
    expect(rollupUsers).toEqual(expect.arrayContaining(erased)); // the rollup holds them too, until the erasure
    for (const userId of erased) {
      const response = await fetch(`${proxy.url}/audit/user/${userId}`, { method: "DELETE" });
      expect(response.status).toBe(200);
    }
    // The answer comes once the file is rewritten: nothing is left, even while the proxy runs.
    expect(describeHits(dir, erased)).toEqual([]);
  } finally {
    await proxy.stop();
    await upstream.stop();
  }
  expect(describeHits(dir, erased)).toEqual([]);
  expect(findInFiles(dir, users.slice(10)).length).toBeGreaterThan(0); // the others are still there
}, 90_000);

test("an erasure by the CLI while the proxy runs: the proxy drops the user's lines from its intent log within 2 s, and the file keeps nothing", async () => {
  const upstream = await startFakeUpstream();
  const proxy = await startTestProxy(upstream.url);
  const dir = dirname(proxy.logDb);
  const erased = "yannick-erased-by-cli";
  const streaming = new AbortController();
  try {
    // A long stream in flight keeps its intent segment, and the settled lines beside it, on disk.
    const stream = fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-user-id": "streamer", "x-fake-scenario": "gap:20000@1" },
      body: JSON.stringify({ model: "gpt-4o", messages: [], stream: true }),
      signal: streaming.signal,
    })
      .then((response) => response.text())
      .catch(() => "aborted");
    for (let i = 0; i < 10; i++) await chat(proxy.url, erased, `Yannick's task ${i}`);
    await proxy.runtime.store.flush(); // committed (not waiting for the stream, as settled() would)
    const intentFiles = () => filesContaining(dir, erased).filter((name) => name.includes(".intents-"));
    expect(intentFiles().length).toBeGreaterThan(0);

    const cli = await runCli(["audit", "delete", "--user", erased, "--log-db", proxy.logDb], { cwd: tempDir() });
    expect([cli.exitCode, cli.stderr]).toEqual([0, ""]);
    const erasedAt = performance.now();
    while (intentFiles().length > 0 && performance.now() - erasedAt < 2000) await Bun.sleep(20);
    expect(intentFiles()).toEqual([]);
    // The CLI rewrote the file; the proxy truncates the WAL if a reader kept the CLI from it.
    let hits = describeHits(dir, [erased]);
    while (hits.length > 0 && performance.now() - erasedAt < 10_000) {
      await Bun.sleep(100);
      hits = describeHits(dir, [erased]);
    }
    expect(hits).toEqual([]);
    streaming.abort();
    await stream;
  } finally {
    streaming.abort();
    await proxy.stop();
    await upstream.stop();
  }
  expect(describeHits(dir, [erased])).toEqual([]);
}, 60_000);

test("retention, run by the writer thread, leaves no byte of the records it erased", async () => {
  const dir = tempDir();
  const path = join(dir, "audit.db");
  const old = new SqliteAuditStore(path);
  const longAgo = new Date(Date.now() - 40 * 86_400_000).toISOString();
  const [expired, kept] = [users.slice(0, 10), users.slice(10)];
  for (let i = 0; i < 8000; i++) {
    const userId = users[Math.floor(Math.random() * users.length)]!;
    old.commit(finished(userId, taskOf(userId), expired.includes(userId) ? longAgo : undefined));
  }
  await old.close();
  expect(findInFiles(dir, expired).length).toBeGreaterThan(0);

  const errors: string[] = [];
  const store = new SqliteAuditStore(path, { retentionDays: 30, onError: (message) => errors.push(message) });
  let hits = describeHits(dir, expired);
  for (let waited = 0; hits.length > 0 && waited < 20_000; waited += 100) {
    await Bun.sleep(100);
    hits = describeHits(dir, expired);
  }
  await store.close();
  expect(errors).toEqual([]);
  expect(hits).toEqual([]);
  expect(describeHits(dir, expired)).toEqual([]);
  expect(findInFiles(dir, kept).length).toBeGreaterThan(0);
}, 60_000);
