// A Responses API WebSocket's life at the proxy's bounds: the per-client connection cap (a socket
// counts until it closes), an upstream that goes silent mid-response, and a shutdown with a
// response in flight — each ends with a record saying what happened.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { startFakeResponsesSocket, type FakeResponsesSocket } from "../helpers/fake-responses-socket.ts";
import { runCli } from "../helpers/process.ts";
import { startTestProxy, tempDir, type TestProxy } from "../helpers/proxy.ts";
import type { AuditRecord } from "../../src/trail/record.ts";

let upstream: FakeResponsesSocket;
beforeAll(async () => {
  upstream = await startFakeResponsesSocket();
});
afterAll(async () => {
  await upstream.stop();
});

async function open(proxy: TestProxy) {
  const ws = new WebSocket(`${proxy.url.replace("http:", "ws:")}/v1/responses`, {
    headers: { authorization: "Bearer sk-x" },
  } as unknown as string[]);
  const events: { type: string }[] = [];
  ws.addEventListener("message", (event) => events.push(JSON.parse(event.data as string)));
  const closed = new Promise<CloseEvent>((resolve) => ws.addEventListener("close", resolve));
  const opened = await new Promise<boolean>((resolve) => {
    ws.addEventListener("open", () => resolve(true), { once: true });
    ws.addEventListener("error", () => resolve(false), { once: true });
  });
  return { ws, events, closed, opened };
}

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for a condition");
    await Bun.sleep(5);
  }
}

const hold = JSON.stringify({ type: "response.create", model: "gpt-5.5-hold", input: "hi" });

describe("server.maxConnectionsPerClient", () => {
  let proxy: TestProxy;
  beforeAll(async () => {
    proxy = await startTestProxy(upstream.url, { server: { maxConnectionsPerClient: 1 } });
  });
  afterAll(async () => {
    await proxy.stop();
  });

  test("an open socket counts: the next upgrade is refused with 429 (recorded); once it closes, one opens", async () => {
    const first = await open(proxy);
    expect(first.opened).toBe(true);
    const refused = await fetch(`${proxy.url}/v1/responses`, {
      headers: {
        upgrade: "websocket",
        connection: "Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
      },
    });
    expect(refused.status).toBe(429);
    const records = await proxy.settled(1, 30_000);
    expect(records.find((r) => r.id === refused.headers.get("x-audit-record-id"))).toMatchObject({
      outcome: "rejected",
      status: 429,
      error_type: "too_many_connections",
    });
    first.ws.close();
    await first.closed;
    let next = await open(proxy);
    for (let i = 0; !next.opened && i < 50; i++) {
      await Bun.sleep(20); // the proxy counts the socket closed when its close handler has run
      next = await open(proxy);
    }
    expect(next.opened).toBe(true);
    next.ws.close();
  });
});

test("a frame over server.maxBodyBytes closes the socket with 1009, nothing of it forwarded, a rejected record of it", async () => {
  const proxy = await startTestProxy(upstream.url, { server: { maxBodyBytes: 64 * 1024 } });
  try {
    const frames = upstream.frames.length;
    const client = await open(proxy);
    client.ws.send(JSON.stringify({ type: "response.create", model: "gpt-5.5", input: "x".repeat(100 * 1024) }));
    const closed = await client.closed;
    expect(closed.code).toBe(1009);
    expect(upstream.frames.length).toBe(frames);
    const [record] = await proxy.settled(1, 30_000);
    expect(record).toMatchObject({
      outcome: "rejected",
      status: 413,
      error_type: "body_too_large",
      endpoint: "/v1/responses",
      model: null,
      stream: true,
    });
  } finally {
    await proxy.stop();
  }
});

test("an upstream silent for server.streamIdleTimeoutMs mid-response: upstream_timeout, both sides closed with 1011", async () => {
  const proxy = await startTestProxy(upstream.url, { server: { streamIdleTimeoutMs: 300 } });
  try {
    const client = await open(proxy);
    client.ws.send(hold);
    // The client talking does not make the upstream any less silent.
    const chatter = setInterval(() => client.ws.readyState === WebSocket.OPEN && client.ws.send('{"type":"client.note"}'), 50);
    const closed = await client.closed;
    clearInterval(chatter);
    expect([closed.code, closed.reason]).toEqual([1011, "upstream timed out"]);
    // Its estimate loads the tokenizer, which can take seconds on a loaded machine.
    const [record] = await proxy.settled(1, 60_000);
    expect(record).toMatchObject({ outcome: "upstream_error", error_type: "upstream_timeout", model: "gpt-5.5-hold" });
  } finally {
    upstream.release();
    await proxy.stop();
  }
}, 90_000);

test("a client that stops reading for longer than server.streamIdleTimeoutMs: the upstream the proxy paused is not silent, the response completes", async () => {
  const proxy = await startTestProxy(upstream.url, { server: { streamIdleTimeoutMs: 300 } });
  try {
    const client = await open(proxy);
    client.ws.pause();
    const pushedBack = upstream.pushedBack;
    client.ws.send(
      JSON.stringify({
        type: "response.create",
        model: "gpt-5.5-big",
        input: [{ role: "user", content: [{ type: "input_text", text: "hi" }] }],
      }),
    );
    // The proxy's buffers fill and it stops reading the upstream; the client stays away five idle timeouts.
    await waitFor(() => upstream.pushedBack > pushedBack, 20_000);
    await Bun.sleep(1500);
    client.ws.resume();
    await waitFor(() => client.events.some((e) => e.type === "response.completed"), 20_000);
    expect(client.ws.readyState).toBe(WebSocket.OPEN);
    client.ws.close();
    const [record] = await proxy.settled(1, 30_000);
    expect(record).toMatchObject({ outcome: "completed", model: "gpt-5.5-big" });
  } finally {
    await proxy.stop();
  }
}, 60_000);

test("a shutdown with a response in flight closes the socket after the grace time and records the response", async () => {
  const logDb = join(tempDir(), "audit.db");
  const proxy = await startTestProxy(upstream.url, { server: { shutdownGraceMs: 200 } }, { logDb });
  const client = await open(proxy);
  client.ws.send(hold);
  await waitFor(() => client.events.some((e) => e.type === "response.output_text.delta"));
  await proxy.stop();
  await client.closed;
  upstream.release();
  const { stdout, exitCode } = await runCli(["audit", "query", "--log-db", logDb, "--format", "json"]);
  expect(exitCode).toBe(0);
  const { records } = JSON.parse(stdout) as { records: AuditRecord[] };
  expect(records.map((r) => [r.model, r.outcome, r.usage_source])).toEqual([["gpt-5.5-hold", "client_aborted", "estimated"]]);
}, 90_000);
