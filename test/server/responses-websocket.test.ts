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
  ws.binaryType = "uint8array";
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
    const frame = create("gpt-5.5", { store: false, n: 9223372036854775807 });
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
    const [record] = (await proxy.settled(1)).slice(-1);
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
