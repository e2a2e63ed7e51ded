/**
 * A fake OpenAI Responses API in WebSocket mode (`wss://api.openai.com/v1/responses`): a
 * `response.create` event is answered with the event sequence a real streamed response has
 * (`response.created`, `response.in_progress`, output item / content part / text deltas, then
 * `response.completed` with usage), one response at a time. It also serves `POST /v1/responses`
 * as SSE, to see whether a client fell back to HTTP. The request's model steers it:
 * - `*-failed`: the response ends with `response.failed`;
 * - `*-error`: an `error` event (`status` 400, `previous_response_not_found`) instead of a response;
 * - `*-drop`: after the first delta the socket closes with 1011 "server going down";
 * - `*-hold`: after the first delta it waits until `release()`;
 * - `*-busy`: if a response is in flight, an `error` event (`response_already_in_flight`) at once;
 * - `*-big`: 1,000 deltas of 16 KiB each, sent as a well-behaved server does: when its socket
 *   pushes back (`send` returns -1) it waits for it to drain, and counts it in `pushedBack`.
 * A warmup (`generate: false`) is answered with `response.created` and `response.completed`, no output.
 * A binary frame is echoed back, byte for byte; a client ping is answered by Bun.
 */
import type { ServerWebSocket } from "bun";

export const socketUsage = {
  input_tokens: 21,
  input_tokens_details: { cached_tokens: 5 },
  output_tokens: 9,
  output_tokens_details: { reasoning_tokens: 3 },
  total_tokens: 30,
};

export interface Handshake {
  url: string;
  headers: Record<string, string>;
}

export interface FakeResponsesSocket {
  url: string;
  /** Every handshake the fake accepted or refused, in order. */
  handshakes: Handshake[];
  /** Every client frame, exactly as received. */
  frames: (string | Uint8Array)[];
  /** `POST /v1/responses` calls (an HTTP fallback). */
  httpCalls: number;
  /** Close codes and reasons the fake saw from its clients. */
  closes: { code: number; reason: string }[];
  pings: string[];
  /** How often a send of the fake met backpressure (the proxy stopped reading). */
  pushedBack: number;
  /** Open sockets. */
  sockets: Set<ServerWebSocket<unknown>>;
  /** Lets `*-hold` responses go on. */
  release(): void;
  /** Stops (and starts again) reading every open socket: the client's frames back up. */
  pauseReading(): void;
  resumeReading(): void;
  /** The next handshake is refused with this status. */
  refuseNext(status: number): void;
  stop(): Promise<void>;
}

export function responseObject(id: string, model: string, status: string, usage: unknown = null, output: unknown[] = []) {
  return {
    id,
    object: "response",
    created_at: Math.floor(Date.now() / 1000),
    status,
    error: null,
    incomplete_details: null,
    instructions: null,
    max_output_tokens: null,
    model: `${model}-2026-01-01`,
    output,
    parallel_tool_calls: true,
    previous_response_id: null,
    reasoning: { effort: null, summary: null },
    store: false,
    temperature: 1,
    text: { format: { type: "text" } },
    tool_choice: "auto",
    tools: [],
    top_p: 1,
    truncation: "disabled",
    usage,
    metadata: {},
  };
}

function message(itemId: string, content: string, status = "completed") {
  return {
    id: itemId,
    type: "message",
    status,
    role: "assistant",
    content: [{ type: "output_text", text: content, annotations: [], logprobs: [] }],
  };
}

/** The events of one response, steered by its model (see the file comment). */
function* responseEvents(n: number, model: string, generate: boolean): Generator<Record<string, unknown> | "hold" | "drop"> {
  const id = `resp_fake_${n}`;
  const itemId = `msg_fake_${n}`;
  let seq = 0;
  const base = responseObject(id, model, "in_progress");
  yield { type: "response.created", sequence_number: seq++, response: base };
  if (!generate) {
    // A warmup (`generate: false`): no model output, only a response id to chain from.
    yield { type: "response.completed", sequence_number: seq++, response: responseObject(id, model, "completed") };
    return;
  }
  yield { type: "response.in_progress", sequence_number: seq++, response: base };
  yield {
    type: "response.output_item.added",
    sequence_number: seq++,
    output_index: 0,
    item: { ...message(itemId, "", "in_progress"), content: [] },
  };
  yield {
    type: "response.content_part.added",
    sequence_number: seq++,
    item_id: itemId,
    output_index: 0,
    content_index: 0,
    part: { type: "output_text", text: "", annotations: [], logprobs: [] },
  };
  const pieces = model.endsWith("-big")
    ? Array.from({ length: 1000 }, () => "x".repeat(16 * 1024))
    : ["Hello ", "from the ", "fake socket."];
  for (const [i, delta] of pieces.entries()) {
    yield {
      type: "response.output_text.delta",
      sequence_number: seq++,
      item_id: itemId,
      output_index: 0,
      content_index: 0,
      delta,
      logprobs: [],
    };
    if (i === 0 && model.endsWith("-drop")) yield "drop";
    if (i === 0 && model.endsWith("-hold")) yield "hold";
  }
  const full = pieces.join("");
  yield {
    type: "response.output_text.done",
    sequence_number: seq++,
    item_id: itemId,
    output_index: 0,
    content_index: 0,
    text: full,
    logprobs: [],
  };
  yield {
    type: "response.content_part.done",
    sequence_number: seq++,
    item_id: itemId,
    output_index: 0,
    content_index: 0,
    part: { type: "output_text", text: full, annotations: [], logprobs: [] },
  };
  yield { type: "response.output_item.done", sequence_number: seq++, output_index: 0, item: message(itemId, full) };
  if (model.endsWith("-failed")) {
    yield {
      type: "response.failed",
      sequence_number: seq++,
      response: { ...responseObject(id, model, "failed", socketUsage), error: { code: "server_error", message: "The model failed." } },
    };
    return;
  }
  yield {
    type: "response.completed",
    sequence_number: seq++,
    response: responseObject(id, model, "completed", socketUsage, [message(itemId, full)]),
  };
}

export async function startFakeResponsesSocket(): Promise<FakeResponsesSocket> {
  let released = Promise.withResolvers<void>();
  let refuse: number | null = null;
  let count = 0;
  const fake: FakeResponsesSocket = {
    url: "",
    handshakes: [],
    frames: [],
    httpCalls: 0,
    closes: [],
    pings: [],
    pushedBack: 0,
    sockets: new Set(),
    release() {
      released.resolve();
      released = Promise.withResolvers<void>();
    },
    pauseReading() {
      for (const ws of fake.sockets) ws.pause();
    },
    resumeReading() {
      for (const ws of fake.sockets) ws.resume();
    },
    refuseNext(status) {
      refuse = status;
    },
    async stop() {
      for (const ws of fake.sockets) ws.terminate();
      await server.stop(true);
    },
  };
  // One response at a time per socket, as the real API does.
  const queues = new WeakMap<ServerWebSocket<unknown>, Promise<void>>();
  const inFlight = new WeakSet<ServerWebSocket<unknown>>();
  const answer = async (ws: ServerWebSocket<unknown>, model: string, generate: boolean) => {
    const n = ++count;
    for (const event of responseEvents(n, model, generate)) {
      if (event === "drop") {
        ws.close(1011, "server going down");
        return;
      }
      if (event === "hold") {
        await released.promise;
        continue;
      }
      if (ws.readyState !== 1) return;
      if (ws.send(JSON.stringify(event)) === -1) {
        fake.pushedBack++;
        while (ws.readyState === 1 && ws.getBufferedAmount() > 0) await Bun.sleep(2);
      }
      await Bun.sleep(0);
    }
  };
  const server = Bun.serve({
    port: 0,
    maxRequestBodySize: 64 * 1024 * 1024,
    fetch(request, srv) {
      const url = new URL(request.url);
      if (url.pathname !== "/v1/responses") return new Response("not found", { status: 404 });
      if (request.method === "POST") {
        fake.httpCalls++;
        return Response.json({ error: { message: "HTTP is not what this test expects", type: "invalid_request_error" } }, { status: 400 });
      }
      fake.handshakes.push({ url: request.url, headers: Object.fromEntries(request.headers) });
      if (refuse !== null) {
        const status = refuse;
        refuse = null;
        return Response.json(
          { error: { message: "Incorrect API key provided.", type: "invalid_request_error", code: "invalid_api_key" } },
          { status },
        );
      }
      if (!request.headers.get("authorization")?.startsWith("Bearer ")) {
        return Response.json(
          { error: { message: "Missing bearer authentication in header", type: "invalid_request_error" } },
          { status: 401 },
        );
      }
      if (srv.upgrade(request, { data: undefined })) return undefined;
      return new Response("upgrade required", { status: 426 });
    },
    websocket: {
      open(ws) {
        fake.sockets.add(ws);
      },
      message(ws, data) {
        fake.frames.push(typeof data === "string" ? data : new Uint8Array(data));
        if (typeof data !== "string") {
          ws.sendBinary(data);
          return;
        }
        const event = JSON.parse(data) as { type?: string; model?: string; generate?: boolean };
        if (event.type !== "response.create") return;
        const model = event.model ?? "gpt-fake";
        if (model.endsWith("-busy") && inFlight.has(ws)) {
          ws.send(
            JSON.stringify({
              type: "error",
              status: 400,
              error: {
                type: "invalid_request_error",
                code: "response_already_in_flight",
                message: "A response is already in flight.",
                param: null,
              },
            }),
          );
          return;
        }
        const previous = queues.get(ws) ?? Promise.resolve();
        const next = previous.then(() => {
          if (model.endsWith("-error")) {
            ws.send(
              JSON.stringify({
                type: "error",
                status: 400,
                error: {
                  type: "invalid_request_error",
                  code: "previous_response_not_found",
                  message: "Previous response not found.",
                  param: "previous_response_id",
                },
              }),
            );
            return;
          }
          inFlight.add(ws);
          return answer(ws, model, event.generate !== false).finally(() => inFlight.delete(ws));
        });
        queues.set(ws, next);
      },
      ping(_ws, data) {
        fake.pings.push(String(data));
      },
      close(ws, code, reason) {
        fake.sockets.delete(ws);
        fake.closes.push({ code, reason });
      },
    },
  });
  fake.url = `http://127.0.0.1:${server.port}`;
  return fake;
}
