// Stage 8 (record): no call reaches an upstream unless its record is durable (fail closed).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { definePlugin } from "../../src/plugin.ts";
import type { AuditStore } from "../../src/store/contract.ts";
import { sqliteStore } from "../../src/store/sqlite/index.ts";
import { headerAttribution, openai } from "../../plugins/index.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
});

/** The SQLite store, with a switch that makes its durable write fail like a full disk. */
function switchableSqlite() {
  const inner = sqliteStore();
  const state = { failing: false };
  const plugin = definePlugin({
    name: "switchable-sqlite",
    auditStore: {
      async open(ctx): Promise<AuditStore> {
        const store = await inner.open(ctx);
        return {
          begin: (record) => (state.failing ? Promise.reject(new Error("SQLITE_FULL: database or disk is full")) : store.begin(record)),
          commit: (record) => store.commit(record),
          onCommitted: (listener) => store.onCommitted(listener),
          reader: store.reader,
          trail: store.trail,
          keys: store.keys,
          consents: store.consents,
          hashKey: store.hashKey,
          recover: () => store.recover(),
          flush: () => store.flush(),
          close: () => store.close(),
        };
      },
      openAdmin: (ctx) => inner.openAdmin(ctx),
    },
  });
  return { plugin, state };
}

const chat = (url: string) =>
  fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-agent-id": "a" },
    body: JSON.stringify({ model: "gpt-4o", messages: [] }),
  });

test("when the audit log cannot be written the call is refused with 503 and never forwarded", async () => {
  const sink = switchableSqlite();
  const proxy = await startTestProxy(upstream.url, {
    plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), sink.plugin],
  });
  try {
    sink.state.failing = true;
    const before = upstream.requests.length;
    const refused = await chat(proxy.url);
    expect(refused.status).toBe(503);
    const body = (await refused.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("audit_unavailable");
    expect(body.error.message).toContain("not forwarded");
    expect(upstream.requests.length).toBe(before);

    sink.state.failing = false;
    expect((await chat(proxy.url)).status).toBe(200);
    expect(upstream.requests.length).toBe(before + 1);
  } finally {
    await proxy.stop();
  }
});

test("audit.failOpen forwards calls even when the audit log cannot be written", async () => {
  const sink = switchableSqlite();
  const proxy = await startTestProxy(upstream.url, {
    plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), sink.plugin],
    audit: { failOpen: true },
  });
  try {
    sink.state.failing = true;
    expect((await chat(proxy.url)).status).toBe(200);
  } finally {
    await proxy.stop();
  }
});

test("the in-flight record is on disk before the upstream sees the call", async () => {
  let intentsSeenByUpstream = "";
  const proxyRef: { current?: Awaited<ReturnType<typeof startTestProxy>> } = {};
  const probe = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch() {
      const db = proxyRef.current!.logDb;
      intentsSeenByUpstream = readdirSync(dirname(db))
        .filter((name) => name.startsWith(`${basename(db)}.intents-`))
        .map((name) => readFileSync(join(dirname(db), name), "utf8"))
        .join("");
      return Response.json({ id: "x", object: "chat.completion", model: "gpt-4o", choices: [] });
    },
  });
  proxyRef.current = await startTestProxy(`http://127.0.0.1:${probe.port}`);
  try {
    const response = await chat(proxyRef.current.url);
    expect(response.status).toBe(200);
    expect(intentsSeenByUpstream).toContain(response.headers.get("x-audit-record-id")!);
  } finally {
    await proxyRef.current.stop();
    await probe.stop(true);
  }
});
