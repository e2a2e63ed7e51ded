// Stage 8 for secondary sinks: a plugin's `audit` gets each committed record (seq and hash set),
// sync or async, wherever it is listed; its failures are logged and never reach a call; its
// `flush` is called at shutdown. Which store is primary is explicit: `auditStore`, else --log-db.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { checkStartup } from "../../src/server/startup-check.ts";
import { SinkFeed } from "../../src/pipeline/sinks.ts";
import { definePlugin, type Plugin } from "../../src/plugin.ts";
import type { CommittedRecord } from "../../src/store/contract.ts";
import type { AuditRecord } from "../../src/trail/record.ts";
import { headerAttribution, openai, sqliteAudit } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, tempDir } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
});

type Seen = AuditRecord & { hash?: string };

/** A sink that keeps what it is given; `delayMs` makes its write asynchronous. */
function collector(name: string, options: { delayMs?: number } = {}) {
  const seen: Seen[] = [];
  const events: string[] = [];
  const plugin = definePlugin({
    name,
    audit: {
      write(record: Seen) {
        if (options.delayMs === undefined) {
          seen.push(record);
          return;
        }
        return Bun.sleep(options.delayMs).then(() => void seen.push(record));
      },
      flush() {
        events.push(`flush after ${seen.length}`);
      },
    },
  });
  return { plugin, seen, events };
}

const chat = (url: string, agent = "sink-agent") =>
  fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-agent-id": agent },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });

function logCapture() {
  const lines: string[] = [];
  return { lines, log: { info: () => {}, warn: (m: string) => void lines.push(m), error: (m: string) => void lines.push(m) } };
}

test("a sink listed first, without begin and without a reader, is a secondary sink: calls pass, the default store is primary", async () => {
  const first = collector("first-sink");
  const proxy = await startTestProxy(upstream.url, {
    plugins: [first.plugin, openai({ baseURL: `${upstream.url}/v1` }), headerAttribution()],
  });
  try {
    const response = await chat(proxy.url);
    expect(response.status).toBe(200);
    const [stored] = await proxy.records();
    expect(stored).toMatchObject({ agent_id: "sink-agent", outcome: "completed" });
  } finally {
    await proxy.stop();
  }
});

test("sinks get every committed record with its seq and chain hash, sync and async, in seq order, wherever they are listed", async () => {
  const sync = collector("sync-sink");
  const slow = collector("async-sink", { delayMs: 5 });
  const plugins: Plugin[] = [sync.plugin, openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), sqliteAudit(), slow.plugin];
  const proxy = await startTestProxy(upstream.url, { plugins });
  let stored: AuditRecord[] = [];
  try {
    for (let i = 0; i < 5; i++) expect((await chat(proxy.url, `agent-${i}`)).status).toBe(200);
    const refused = await fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", body: "not json" });
    expect(refused.status).toBe(400);
    stored = await proxy.records();
  } finally {
    await proxy.stop();
  }
  expect(stored).toHaveLength(6);
  for (const sink of [sync, slow]) {
    expect(sink.seen.map((r) => r.seq)).toEqual(stored.map((r) => r.seq));
    expect(sink.seen.map((r) => r.id)).toEqual(stored.map((r) => r.id));
    for (const record of sink.seen) {
      expect(record.seq).toBeGreaterThan(0);
      expect(record.hash).toMatch(/^[0-9a-f]{64}$/);
    }
    expect(sink.seen.at(-1)).toMatchObject({ outcome: "rejected", error_type: "invalid_json" });
  }
  // The hashes are the chain's: consecutive records' hashes differ, and each is the one stored.
  expect(new Set(sync.seen.map((r) => r.hash)).size).toBe(6);
  expect(slow.seen.map((r) => r.hash)).toEqual(sync.seen.map((r) => r.hash));
});

test("shutdown delivers what was committed, then calls each sink's flush", async () => {
  const slow = collector("async-sink", { delayMs: 20 });
  const proxy = await startTestProxy(upstream.url, {
    plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), slow.plugin],
  });
  for (let i = 0; i < 3; i++) expect((await chat(proxy.url)).status).toBe(200);
  await proxy.stop();
  expect(slow.seen).toHaveLength(3);
  expect(slow.events).toEqual(["flush after 3"]);
});

test("a sink that throws or rejects is logged with its name; the call and the other sinks are unaffected", async () => {
  const { lines, log } = logCapture();
  const good = collector("good-sink");
  const throwing = definePlugin({
    name: "throwing-sink",
    audit: {
      write: () => {
        throw new Error("disk on fire");
      },
    },
  });
  const rejecting = definePlugin({ name: "rejecting-sink", audit: { write: () => Promise.reject(new Error("queue closed")) } });
  const proxy = await startTestProxy(
    upstream.url,
    { plugins: [throwing, rejecting, openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), good.plugin] },
    { log },
  );
  try {
    expect((await chat(proxy.url)).status).toBe(200);
    expect((await chat(proxy.url)).status).toBe(200);
    await proxy.records();
  } finally {
    await proxy.stop();
  }
  expect(good.seen).toHaveLength(2);
  expect(lines).toContain("[plugin throwing-sink] audit.write: disk on fire");
  expect(lines).toContain("[plugin rejecting-sink] audit.write: queue closed");
});

test("two plugins that provide the primary store are a config error naming both", async () => {
  const other = definePlugin({ name: "other-store", auditStore: sqliteAudit().auditStore });
  const starting = startTestProxy(upstream.url, { plugins: [openai({ baseURL: `${upstream.url}/v1` }), sqliteAudit(), other] });
  const error = await starting.then(
    async (proxy) => {
      await proxy.stop();
      return null;
    },
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ConfigError);
  expect(String((error as Error).message)).toContain("sqlite-audit, other-store");
});

test("a sink that falls behind is bounded: records past its queue are dropped for it and counted, and shutdown does not wait for ever", async () => {
  const { lines, log } = logCapture();
  const written: number[] = [];
  let release = () => {};
  const stuck = new Promise<void>((resolve) => (release = resolve));
  const feed = new SinkFeed(
    [{ plugin: "slow-sink", sink: { write: (record) => (written.push(record.seq), record.seq === 1 ? stuck : undefined) } }],
    log,
    {
      maxQueued: 3,
      closeTimeoutMs: 50,
    },
  );
  const record = (seq: number) => ({ seq, hash: "0".repeat(64) }) as CommittedRecord;
  feed.deliver([1, 2, 3, 4, 5, 6].map(record));
  // 1 (being written), 2 and 3 fill this sink's queue (the bound); 4, 5 and 6 are dropped for it.
  expect(lines).toEqual(["[plugin slow-sink] audit.write: 3 records wait for this sink; records are dropped for it until it catches up"]);
  release();
  await feed.drained();
  expect(written).toEqual([1, 2, 3]);
  expect(lines.at(-1)).toBe("[plugin slow-sink] audit.write: 3 committed record(s) were not given to this sink: it fell 3 records behind");
  feed.deliver([record(7)]);
  await feed.drained();
  expect(written.at(-1)).toBe(7);

  const hung = new SinkFeed([{ plugin: "hung-sink", sink: { write: () => new Promise<void>(() => {}) } }], log, { closeTimeoutMs: 50 });
  hung.deliver([record(1), record(2)]);
  await hung.close();
  expect(lines.at(-1)).toBe("[plugin hung-sink] audit.write: 1 record(s) were still waiting for this sink after 50 ms at shutdown");
});

test("a sink written for the old contract (begin, reader) is named at start: it is now a secondary sink", () => {
  const old = definePlugin({ name: "old-primary", audit: { begin: async () => {}, write: () => {}, reader: null } as never });
  const { problems, warnings } = checkStartup(parseConfig({}), { plugins: [old, openai()], logDb: join(tempDir(), "audit.db"), env: {} });
  expect(problems).toEqual([]);
  expect(warnings.some((w) => w.startsWith("Plugin 'old-primary' gives `audit` a begin or a reader: `audit` is a secondary sink"))).toBe(
    true,
  );
});
