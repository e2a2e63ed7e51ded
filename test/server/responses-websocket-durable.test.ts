// Over a WebSocket, as over HTTP, no response reaches the upstream before its intent is durable:
// the `response.create` frame waits for the store's `begin`, and when the store cannot write,
// the response is refused on the socket (`audit_unavailable`) and never forwarded.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { definePlugin } from "../../src/plugin.ts";
import type { AuditStore } from "../../src/store/contract.ts";
import { sqliteStore } from "../../src/store/sqlite/index.ts";
import { headerAttribution, openai } from "../../plugins/index.ts";
import { startFakeResponsesSocket, type FakeResponsesSocket } from "../helpers/fake-responses-socket.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeResponsesSocket;
let proxy: TestProxy;
const state = { failing: false, framesAtIntent: [] as number[] };

/** The SQLite store, slow to make an intent durable, and with a switch that makes it fail like a full disk. */
function watchedSqlite() {
  const inner = sqliteStore();
  return definePlugin({
    name: "watched-sqlite",
    auditStore: {
      async open(ctx): Promise<AuditStore> {
        const store = await inner.open(ctx);
        return {
          async begin(record) {
            if (state.failing) throw new Error("SQLITE_FULL: database or disk is full");
            await Bun.sleep(50);
            await store.begin(record);
            state.framesAtIntent.push(upstream.frames.length);
          },
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
}

beforeAll(async () => {
  upstream = await startFakeResponsesSocket();
  proxy = await startTestProxy(upstream.url, {
    plugins: [openai({ baseURL: `${upstream.url}/v1` }), headerAttribution(), watchedSqlite()],
  });
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
});

async function open() {
  const ws = new WebSocket(`${proxy.url.replace("http:", "ws:")}/v1/responses`, {
    headers: { authorization: "Bearer sk-x" },
  } as unknown as string[]);
  const events: { type: string; status?: number; error?: { code: string } }[] = [];
  ws.addEventListener("message", (event) => {
    if (typeof event.data === "string") events.push(JSON.parse(event.data));
  });
  await new Promise((resolve) => ws.addEventListener("open", resolve, { once: true }));
  const ended = async (n: number) => {
    const deadline = Date.now() + 5000;
    while (events.filter((e) => e.type === "response.completed" || e.type === "error").length < n && Date.now() < deadline)
      await Bun.sleep(5);
    return events.filter((e) => e.type === "response.completed" || e.type === "error");
  };
  return { ws, ended };
}

test("a response.create goes upstream only once its intent is durable; frames behind it keep their order", async () => {
  const { ws, ended } = await open();
  const frames = upstream.frames.length;
  const create = JSON.stringify({ type: "response.create", model: "gpt-5.5", input: "hi" });
  ws.send(create);
  ws.send(new Uint8Array([7, 7, 7])); // sent while the intent is being written: it must follow the create
  expect((await ended(1)).map((e) => e.type)).toEqual(["response.completed"]);
  expect(state.framesAtIntent.at(-1)).toBe(frames);
  expect(upstream.frames.slice(frames)).toEqual([create, new Uint8Array([7, 7, 7])]);
  ws.close();
});

test("when the audit store cannot write, the response is refused with audit_unavailable and never forwarded", async () => {
  const { ws, ended } = await open();
  const frames = upstream.frames.length;
  state.failing = true;
  try {
    ws.send(JSON.stringify({ type: "response.create", model: "gpt-5.5", input: "hi" }));
    const [event] = await ended(1);
    expect(event).toMatchObject({ type: "error", status: 503, error: { code: "audit_unavailable" } });
    expect(upstream.frames.length).toBe(frames);
  } finally {
    state.failing = false;
    ws.close();
  }
});
