// The Responses API over WebSocket through the proxy, against a fake upstream speaking the real
// event shapes: frames both ways unchanged, each response its own record, refusals before the
// upgrade, disconnects on either side recorded like broken streams.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startFakeResponsesSocket, socketUsage, type FakeResponsesSocket } from "../helpers/fake-responses-socket.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeResponsesSocket;
let proxy: TestProxy;

beforeAll(async () => {
  upstream = await startFakeResponsesSocket();
  proxy = await startTestProxy(upstream.url);
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
});

const socketURL = () => `${proxy.url.replace("http:", "ws:")}/v1/responses`;

interface Client {
  ws: WebSocket;
  events: unknown[];
  raw: (string | Uint8Array)[];
  /** Resolves with the events up to and including the next terminal one. */
  next(): Promise<Record<string, unknown>[]>;
  closed: Promise<CloseEvent>;
}

const terminal = new Set(["response.completed", "response.failed", "response.incomplete", "error"]);

async function connect(headers: Record<string, string> = {}): Promise<Client> {
  const ws = new WebSocket(socketURL(), {
    headers: { authorization: "Bearer sk-client", "x-agent-id": "ws-agent", ...headers },
  } as unknown as string[]);
  ws.binaryType = "nodebuffer";
  const raw: (string | Uint8Array)[] = [];
  const events: Record<string, unknown>[] = [];
  let waiting: { from: number; resolve: (events: Record<string, unknown>[]) => void } | null = null;
  let consumed = 0;
  const check = () => {
    if (!waiting) return;
    const end = events.findIndex((e, i) => i >= waiting!.from && terminal.has(e.type as string));
    if (end === -1) return;
    const batch = events.slice(waiting.from, end + 1);
    consumed = end + 1;
    const { resolve } = waiting;
    waiting = null;
    resolve(batch);
  };
  ws.addEventListener("message", (event) => {
    raw.push(event.data as string | Uint8Array);
    if (typeof event.data === "string") events.push(JSON.parse(event.data));
    check();
  });
  const closed = new Promise<CloseEvent>((resolve) => ws.addEventListener("close", resolve));
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve(), { once: true });
    ws.addEventListener("error", (e) => reject(new Error((e as ErrorEvent).message)), { once: true });
  });
  return {
    ws,
    events,
    raw,
    closed,
    next: () =>
      new Promise((resolve) => {
        waiting = { from: consumed, resolve };
        check();
      }),
  };
}

const create = (model: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    type: "response.create",
    model,
    input: [{ role: "user", content: [{ type: "input_text", text: "Say hi" }] }],
    ...extra,
  });

describe("a response over the socket", () => {
  test("is forwarded unchanged both ways and recorded with its usage", async () => {
    const client = await connect();
    // Bytes a re-serialisation would change: a 64-bit integer and spacing.
    const frame = create("gpt-5.5", { store: false }).replace('"store":false', '"store" : false, "metadata": {"n": 9223372036854775807}');
    client.ws.send(frame);
    const events = await client.next();
    expect(events.map((e) => e.type)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(upstream.frames.at(-1)).toBe(frame);
    client.ws.close(1000, "done");
    await client.closed;
    const [record] = (await proxy.settled(1, 30_000)).slice(-1);
    expect(record).toMatchObject({
      endpoint: "/v1/responses",
      model: "gpt-5.5",
      response_model: "gpt-5.5-2026-01-01",
      stream: true,
      outcome: "completed",
      status: 200,
      agent_id: "ws-agent",
      input_tokens: socketUsage.input_tokens,
      output_tokens: socketUsage.output_tokens,
      cache_read_tokens: 5,
      reasoning_tokens: 3,
      usage_source: "provider",
    });
    expect(record!.prompt_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(record!.response_hash).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe("the connection", () => {
  test("carries the client's credential upstream, not its attribution headers, and one record per response", async () => {
    const before = (await proxy.records()).length;
    const client = await connect({ "x-user-id": "alice", "x-task-context": "PR review #456" });
    const handshake = upstream.handshakes.at(-1)!;
    expect(handshake.url).toEndWith("/v1/responses");
    expect(handshake.headers.authorization).toBe("Bearer sk-client");
    expect(handshake.headers["x-agent-id"]).toBeUndefined();
    expect(handshake.headers["x-user-id"]).toBeUndefined();
    for (const model of ["gpt-5.5", "gpt-5.5-failed", "gpt-5.5-error", "gpt-5.5"]) {
      client.ws.send(create(model));
      await client.next();
    }
    client.ws.close();
    await client.closed;
    const records = (await proxy.settled(before + 4, 30_000)).slice(before);
    expect(records.map((r) => [r.model, r.outcome, r.status, r.error_type])).toEqual([
      ["gpt-5.5", "completed", 200, null],
      ["gpt-5.5-failed", "upstream_error", 200, "server_error"],
      ["gpt-5.5-error", "upstream_error", 400, "invalid_request_error"],
      ["gpt-5.5", "completed", 200, null],
    ]);
    expect(new Set(records.map((r) => r.id)).size).toBe(4);
    for (const record of records) expect(record).toMatchObject({ agent_id: "ws-agent", user_id: "alice", task_context: "PR review #456" });
  });

  test("passes binary frames, pings, pongs and the close code and reason through", async () => {
    const client = await connect();
    const bytes = new Uint8Array([0, 1, 2, 253, 254, 255]);
    client.ws.send(bytes);
    await waitFor(() => client.raw.some((frame) => frame instanceof Uint8Array));
    expect(upstream.frames.at(-1)).toEqual(bytes);
    expect(client.raw.at(-1)).toEqual(bytes);
    const pongs: string[] = [];
    client.ws.addEventListener("pong", (event) => pongs.push(String((event as MessageEvent).data)));
    client.ws.ping("are you there");
    await waitFor(() => upstream.pings.includes("are you there"));
    await waitFor(() => pongs.includes("are you there"));
    client.ws.close(4321, "client says bye");
    await waitFor(() => upstream.closes.some((c) => c.code === 4321));
    expect(upstream.closes.find((c) => c.code === 4321)!.reason).toBe("client says bye");
  });

  test("an upstream that drops mid-response: the client sees its close code, the record upstream_error", async () => {
    const before = (await proxy.records()).length;
    const client = await connect();
    client.ws.send(create("gpt-5.5-drop"));
    const closed = await client.closed;
    expect([closed.code, closed.reason]).toEqual([1011, "server going down"]);
    const [record] = (await proxy.settled(before + 1, 30_000)).slice(before);
    expect(record).toMatchObject({
      model: "gpt-5.5-drop",
      outcome: "upstream_error",
      error_type: "incomplete_stream",
      usage_source: "estimated",
    });
    expect(record!.output_tokens).toBeGreaterThan(0);
  });

  test("a client that leaves mid-response: client_aborted, billed by estimate, and the upstream socket closed", async () => {
    const before = (await proxy.records()).length;
    const client = await connect();
    const open = upstream.sockets.size;
    client.ws.send(create("gpt-5.5-hold"));
    await waitFor(() => client.events.some((e) => (e as { type: string }).type === "response.output_text.delta"));
    client.ws.close(1001, "going away");
    await waitFor(() => upstream.sockets.size < open);
    upstream.release();
    const [record] = (await proxy.settled(before + 1, 30_000)).slice(before);
    expect(record).toMatchObject({ model: "gpt-5.5-hold", outcome: "client_aborted", usage_source: "estimated" });
    expect(upstream.closes.at(-1)).toEqual({ code: 1001, reason: "going away" });
  });

  test("a response.create without a model is refused on the socket, not forwarded, and recorded as rejected", async () => {
    const before = (await proxy.records()).length;
    const frames = upstream.frames.length;
    const client = await connect();
    client.ws.send(JSON.stringify({ type: "response.create", input: "hi" }));
    const [event] = await client.next();
    expect(event).toMatchObject({ type: "error", status: 400, error: { code: "missing_model", type: "invalid_request_error" } });
    client.ws.send(create("gpt-5.5"));
    expect((await client.next()).at(-1)!.type).toBe("response.completed");
    client.ws.close();
    expect(upstream.frames.length).toBe(frames + 1);
    const records = (await proxy.settled(before + 2, 30_000)).slice(before);
    expect(records.map((r) => [r.outcome, r.status])).toEqual([
      ["rejected", 400],
      ["completed", 200],
    ]);
    expect((event as { headers: Record<string, string> }).headers["x-audit-record-id"]).toBe(records[0]!.id);
  });

  test("an upstream that refuses the handshake: its status before any upgrade, and an upstream_error record", async () => {
    const before = (await proxy.records()).length;
    upstream.refuseNext(401);
    const response = await fetch(`${proxy.url}/v1/responses`, {
      headers: {
        upgrade: "websocket",
        connection: "Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
        authorization: "Bearer sk-wrong",
      },
    });
    expect(response.status).toBe(401);
    expect(((await response.json()) as { error: { type: string } }).error.type).toBe("authentication_error");
    const [record] = (await proxy.settled(before + 1, 30_000)).slice(before);
    expect(record).toMatchObject({
      endpoint: "/v1/responses",
      outcome: "upstream_error",
      status: 401,
      error_type: "http_401",
      model: null,
    });
    expect(response.headers.get("x-audit-record-id")).toBe(record!.id);
  });

  test("a client that stops reading pushes back on the upstream instead of filling the proxy; then gets every byte", async () => {
    const before = (await proxy.records()).length;
    const client = await connect();
    const pushedBack = upstream.pushedBack;
    client.ws.pause();
    client.ws.send(create("gpt-5.5-big"));
    await waitFor(() => upstream.pushedBack > pushedBack, 20_000);
    client.ws.resume();
    const events = await client.next();
    const deltas = events.filter((e) => e.type === "response.output_text.delta");
    expect(deltas.length).toBe(1000);
    expect(deltas.every((e) => (e.delta as string).length === 16 * 1024)).toBe(true);
    expect(events.at(-1)!.type).toBe("response.completed");
    client.ws.close();
    const [record] = (await proxy.settled(before + 1, 30_000)).slice(before);
    expect(record).toMatchObject({ model: "gpt-5.5-big", outcome: "completed", usage_source: "provider" });
  });

  test("a client that reads in fits and starts gets a response whose last frames each outgrow the proxy's buffer: nothing dropped, the socket kept", async () => {
    // The last four events of a -big response carry its whole 16 MiB output. Each is written to a
    // client socket that may still hold megabytes of the one before; a proxy bounding its memory
    // by dropping frames (Bun's backpressure limit) had to close the connection here.
    const before = (await proxy.records()).length;
    const client = await connect();
    client.ws.pause();
    client.ws.send(create("gpt-5.5-big"));
    let over = false;
    const events = client.next().finally(() => (over = true));
    void client.closed.finally(() => (over = true));
    while (!over) {
      client.ws.resume();
      await Bun.sleep(3);
      client.ws.pause();
      await Bun.sleep(30);
    }
    client.ws.resume();
    expect(client.ws.readyState).toBe(WebSocket.OPEN);
    const received = await events;
    expect(received.filter((e) => e.type === "response.output_text.delta").length).toBe(1000);
    expect(received.at(-1)).toMatchObject({ type: "response.completed" });
    expect((received.at(-1)!.response as { output: { content: { text: string }[] }[] }).output[0]!.content[0]!.text.length).toBe(
      16 * 1024 * 1000,
    );
    client.ws.close();
    const [record] = (await proxy.settled(before + 1, 30_000)).slice(before);
    expect(record).toMatchObject({ model: "gpt-5.5-big", outcome: "completed", usage_source: "provider" });
  });

  test("an upstream that stops reading pushes back on the client instead of filling the proxy; then gets every frame", async () => {
    const client = await connect();
    const frames = upstream.frames.length;
    upstream.pauseReading();
    const chunk = (i: number) => new Uint8Array(1024 * 1024).fill(i);
    for (let i = 0; i < 24; i++) client.ws.send(chunk(i));
    // The proxy stops reading the client, so the client's own send buffer stays full (a proxy
    // that kept reading would take all 24 MiB in, and the client's buffer would empty).
    await waitFor(() => client.ws.bufferedAmount > 4 * 1024 * 1024, 20_000);
    let settled = client.ws.bufferedAmount;
    for (let stable = 0; stable < 20; stable++) {
      await Bun.sleep(50);
      if (client.ws.bufferedAmount !== settled) [settled, stable] = [client.ws.bufferedAmount, 0];
    }
    expect(client.ws.bufferedAmount).toBeGreaterThan(4 * 1024 * 1024);
    upstream.resumeReading();
    await waitFor(() => upstream.frames.length === frames + 24, 20_000);
    const got = upstream.frames.slice(frames) as Uint8Array[];
    expect(got.every((frame, i) => frame.byteLength === 1024 * 1024 && frame[0] === i && frame[frame.byteLength - 1] === i)).toBe(true);
    client.ws.close();
  });

  test("an error the upstream sends at once for a second response does not end the one under way", async () => {
    const before = (await proxy.records()).length;
    const client = await connect();
    client.ws.send(create("gpt-5.5-hold"));
    await waitFor(() => client.events.some((e) => (e as { type: string }).type === "response.output_text.delta"));
    client.ws.send(create("gpt-5.5-busy"));
    const refusal = (await client.next()).at(-1);
    expect(refusal).toMatchObject({ type: "error", error: { code: "response_already_in_flight" } });
    upstream.release();
    expect((await client.next()).at(-1)!.type).toBe("response.completed");
    client.ws.close();
    const records = (await proxy.settled(before + 2, 30_000)).slice(before).sort((a, b) => a.id.localeCompare(b.id));
    expect(records.map((r) => [r.model, r.outcome, r.status, r.error_type, r.usage_source])).toEqual([
      ["gpt-5.5-hold", "completed", 200, null, "provider"],
      ["gpt-5.5-busy", "upstream_error", 400, "invalid_request_error", "none"],
    ]);
  });

  test("a GET without an upgrade is a plain HTTP call: forwarded as a GET (the upstream's answer), recorded, no socket", async () => {
    const before = (await proxy.records()).length;
    const handshakes = upstream.handshakes.length;
    const sockets = upstream.sockets.size;
    const response = await fetch(`${proxy.url}/v1/responses`, {
      headers: { authorization: "Bearer sk-client", "x-agent-id": "plain-get" },
    });
    // The fake answers a GET that does not upgrade with 426, as a WebSocket-only path would.
    expect(response.status).toBe(426);
    expect(await response.text()).toBe("upgrade required");
    expect(upstream.handshakes.length).toBe(handshakes + 1);
    expect(upstream.handshakes.at(-1)!.headers.upgrade).toBeUndefined();
    expect(upstream.sockets.size).toBe(sockets);
    const [record] = (await proxy.settled(before + 1, 30_000)).slice(before);
    expect(record).toMatchObject({ agent_id: "plain-get", endpoint: "/v1/responses", status: 426, usage_source: "none" });
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for a condition");
    await Bun.sleep(5);
  }
}
