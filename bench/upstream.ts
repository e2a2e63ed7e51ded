/**
 * The bench upstream: a fast OpenAI + Anthropic stand-in with fixed, realistic answers — a JSON
 * body, or an SSE stream of ~20 deltas written as separate chunks without delays.
 * Unlike test/helpers/fake-upstream.ts it keeps no per-request history (memory stays flat under
 * load). It counts the distinct client sockets it sees (by remote port), to show whether a proxy
 * reuses its upstream connections: GET /__bench/stats, POST /__bench/reset.
 * Prints its URL on the first stdout line; serves until killed.
 */
import { streamDeltas } from "./scenarios.ts";

const encoder = new TextEncoder();
const sse = (data: unknown, event?: string) =>
  encoder.encode(`${event ? `event: ${event}\n` : ""}data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
const words = Array.from({ length: streamDeltas }, (_, i) => (i === 0 ? "Benchmarks" : ` word${i}`));
const text = words.join("");

function openaiPlain(model: string): string {
  return JSON.stringify({
    id: "chatcmpl-bench",
    object: "chat.completion",
    created: 1,
    model,
    choices: [{ index: 0, message: { role: "assistant", content: text }, logprobs: null, finish_reason: "stop" }],
    usage: { prompt_tokens: 260, completion_tokens: streamDeltas, total_tokens: 260 + streamDeltas },
  });
}

function openaiStream(model: string, includeUsage: boolean): Uint8Array[] {
  const base = { id: "chatcmpl-bench", object: "chat.completion.chunk", created: 1, model };
  const delta = (d: object, finish: string | null) => sse({ ...base, choices: [{ index: 0, delta: d, finish_reason: finish }] });
  return [
    delta({ role: "assistant", content: "" }, null),
    ...words.map((w) => delta({ content: w }, null)),
    delta({}, "stop"),
    ...(includeUsage
      ? [sse({ ...base, choices: [], usage: { prompt_tokens: 260, completion_tokens: streamDeltas, total_tokens: 260 + streamDeltas } })]
      : []),
    sse("[DONE]"),
  ];
}

function anthropicPlain(model: string): string {
  return JSON.stringify({
    id: "msg_bench",
    type: "message",
    role: "assistant",
    model,
    content: [{ type: "text", text }],
    stop_reason: "end_turn",
    stop_sequence: null,
    usage: { input_tokens: 260, cache_read_input_tokens: 0, cache_creation_input_tokens: 0, output_tokens: streamDeltas },
  });
}

function anthropicStream(model: string): Uint8Array[] {
  const message = { id: "msg_bench", type: "message", role: "assistant", model, content: [], stop_reason: null, stop_sequence: null };
  return [
    sse({ type: "message_start", message: { ...message, usage: { input_tokens: 260, output_tokens: 1 } } }, "message_start"),
    sse({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }, "content_block_start"),
    ...words.map((w) => sse({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: w } }, "content_block_delta")),
    sse({ type: "content_block_stop", index: 0 }, "content_block_stop"),
    sse(
      { type: "message_delta", delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: streamDeltas } },
      "message_delta",
    ),
    sse({ type: "message_stop" }, "message_stop"),
  ];
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * One chunk per event-loop turn (no timer delay): Bun writes them as separate socket writes, as a
 * real token stream arrives. Enqueued back to back, Bun would coalesce them into one write.
 */
function streamResponse(chunks: Uint8Array[]): Response {
  let i = 0;
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (i > 0) await nextTurn();
        const chunk = chunks[i++];
        if (chunk) controller.enqueue(chunk);
        else controller.close();
      },
    },
    { highWaterMark: 0 },
  );
  return new Response(body, { headers: { "content-type": "text/event-stream", "cache-control": "no-cache", "x-request-id": "req_bench" } });
}

const jsonHeaders = { "content-type": "application/json", "x-request-id": "req_bench" };
const sockets = new Set<number>();
let requests = 0;

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  idleTimeout: 0,
  async fetch(request, srv) {
    const { pathname } = new URL(request.url);
    if (pathname === "/__bench/stats") return Response.json({ requests, connections: sockets.size });
    if (pathname === "/__bench/reset") {
      requests = 0;
      sockets.clear();
      return new Response(null, { status: 204 });
    }
    requests++;
    const port = srv.requestIP(request)?.port;
    if (port !== undefined) sockets.add(port);
    let body: Record<string, unknown>;
    try {
      body = (await request.json()) as Record<string, unknown>;
    } catch {
      return Response.json({ error: { message: "invalid JSON", type: "invalid_request_error" } }, { status: 400 });
    }
    const model = typeof body.model === "string" ? body.model : "unknown";
    const stream = body.stream === true;
    if (pathname === "/v1/chat/completions") {
      if (!stream) return new Response(openaiPlain(model), { headers: jsonHeaders });
      const options = body.stream_options as { include_usage?: unknown } | undefined;
      return streamResponse(openaiStream(model, options?.include_usage === true));
    }
    if (pathname === "/v1/messages") {
      return stream ? streamResponse(anthropicStream(model)) : new Response(anthropicPlain(model), { headers: jsonHeaders });
    }
    return Response.json({ error: { message: `no route ${pathname}`, type: "not_found_error" } }, { status: 404 });
  },
});

console.log(`http://127.0.0.1:${server.port}`);
