/**
 * A fake OpenAI + Anthropic upstream on port 0, with the wire shapes of the real APIs (plain and
 * SSE). Tests steer it with the `x-fake-scenario` request header:
 *   error-500 | error-429 | gap:<ms> (pause before the last chunks) | break (socket dies mid-stream)
 *   | hang (never answers) | no-done (stream ends without its terminal event)
 *   | chunked-json (a plain answer sent in pieces, without Content-Length); `gap:<ms>@<i>` pauses
 *   before chunk i instead | sse-error (after the first text delta the stream reports a failure
 *   in the wire's own way — Anthropic `event: error`, Responses `response.failed`, chat `error` —
 *   and ends) | huge (a plain chat answer of 17 MiB, over what the proxy buffers for metering)
 *   | mixed-case-type (a stream labelled `Text/Event-Stream; charset=utf-8`) | held-chunks (an NDJSON
 *   answer of unknown length: its first line at once, the second once `releaseChunks()` is called).
 * `x-fake-usage: <json>` replaces the usage object the answer reports (in the provider's own shape),
 * `x-fake-usage: none` leaves it out (as some local servers do, even when asked);
 * `x-fake-text: <text>` replaces the generated text of chat and messages streams.
 * GET /v1/models answers in Anthropic's shape to a request with `anthropic-version`.
 * It remembers every request it received (`requests`), so tests can check what crossed the proxy.
 */
import type { Server } from "bun";

export interface SeenRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

export interface FakeUpstream {
  url: string;
  server: Server<undefined>;
  requests: SeenRequest[];
  /** Streams whose client went away before the end (the proxy cancelled the upstream call). */
  cancelled: number;
  /** Lets a `held-chunks` answer send the rest of its body. */
  releaseChunks(): void;
  stop(): Promise<void>;
}

const encoder = new TextEncoder();
const sse = (data: unknown, event?: string) =>
  `${event ? `event: ${event}\n` : ""}data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`;

export const chatUsage = {
  prompt_tokens: 12,
  completion_tokens: 7,
  total_tokens: 19,
  prompt_tokens_details: { cached_tokens: 4 },
  completion_tokens_details: { reasoning_tokens: 2 },
};
export const anthropicUsage = {
  input_tokens: 10,
  cache_read_input_tokens: 5,
  cache_creation_input_tokens: 3,
  output_tokens: 9,
};

interface Steering {
  omitUsage: boolean;
  usage: Record<string, unknown> | null;
  /** The generated text, in two pieces. */
  text: [string, string];
}

function steering(request: Request): Steering {
  const usage = request.headers.get("x-fake-usage");
  const text = request.headers.get("x-fake-text");
  const half = text ? Math.ceil(text.length / 2) : 0;
  return {
    omitUsage: usage === "none",
    usage: usage && usage !== "none" ? (JSON.parse(usage) as Record<string, unknown>) : null,
    text: text ? [text.slice(0, half), text.slice(half)] : ["Hello", " world"],
  };
}

function chatChunks(model: string, includeUsage: boolean, steer: Steering): string[] {
  const base = { id: "chatcmpl-1", object: "chat.completion.chunk", created: 1, model };
  const chunks = [
    sse({ ...base, choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }] }),
    sse({ ...base, choices: [{ index: 0, delta: { content: steer.text[0] }, finish_reason: null }] }),
    sse({ ...base, choices: [{ index: 0, delta: { content: steer.text[1] }, finish_reason: null }] }),
    sse({ ...base, choices: [{ index: 0, delta: {}, finish_reason: "stop" }] }),
  ];
  if (includeUsage && !steer.omitUsage) chunks.push(sse({ ...base, choices: [], usage: steer.usage ?? chatUsage }));
  chunks.push(sse("[DONE]"));
  return chunks;
}

const responsesUsage = {
  input_tokens: 20,
  input_tokens_details: { cached_tokens: 8 },
  output_tokens: 11,
  output_tokens_details: { reasoning_tokens: 3 },
  total_tokens: 31,
};

function responsesChunks(model: string, steer: Steering): string[] {
  const response = { id: "resp_1", object: "response", model, status: "in_progress", output: [] };
  const usage = steer.usage ?? responsesUsage;
  return [
    sse({ type: "response.created", sequence_number: 0, response }, "response.created"),
    sse(
      { type: "response.output_text.delta", sequence_number: 1, item_id: "m1", output_index: 0, content_index: 0, delta: "Hi" },
      "response.output_text.delta",
    ),
    sse({ type: "response.completed", sequence_number: 2, response: { ...response, status: "completed", usage } }, "response.completed"),
  ];
}

function anthropicChunks(model: string, steer: Steering): string[] {
  // Thinking tokens, like the output count, arrive with message_delta.
  const { output_tokens_details: thinking, ...usage }: Record<string, unknown> = steer.usage ?? anthropicUsage;
  return [
    sse(
      {
        type: "message_start",
        message: {
          id: "msg_1",
          type: "message",
          role: "assistant",
          model,
          content: [],
          stop_reason: null,
          usage: { ...usage, output_tokens: 1 },
        },
      },
      "message_start",
    ),
    sse({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } }, "content_block_start"),
    sse({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: steer.text[0] } }, "content_block_delta"),
    sse({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: steer.text[1] } }, "content_block_delta"),
    sse({ type: "content_block_stop", index: 0 }, "content_block_stop"),
    sse(
      {
        type: "message_delta",
        delta: { stop_reason: "end_turn" },
        usage: { output_tokens: usage.output_tokens, ...(thinking ? { output_tokens_details: thinking } : {}) },
      },
      "message_delta",
    ),
    sse({ type: "message_stop" }, "message_stop"),
  ];
}

const errorEvents = {
  chat: sse({ error: { message: "The server had an error while processing your request.", type: "server_error", code: null } }),
  responses: sse(
    {
      type: "response.failed",
      sequence_number: 2,
      response: { id: "resp_1", object: "response", status: "failed", error: { code: "server_error", message: "failed" }, usage: null },
    },
    "response.failed",
  ),
  anthropic: sse({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } }, "error"),
};

/** After which chunk each wire's stream has delivered its first text delta. */
const firstDeltaAt = { chat: 2, responses: 2, anthropic: 3 };

function streamOf(chunks: string[], scenario: string, fake: FakeUpstream, wire: keyof typeof errorEvents = "chat"): Response {
  if (scenario === "sse-error") chunks = [...chunks.slice(0, firstDeltaAt[wire]), errorEvents[wire]];
  const gap = /^gap:(\d+)(?:@(\d+))?$/.exec(scenario);
  const gapAt = gap?.[2] === undefined ? 2 : Number(gap[2]);
  let i = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (scenario === "no-done" && i === chunks.length - 1) return controller.close();
      if (i >= chunks.length) return controller.close();
      if (gap && i === gapAt) await Bun.sleep(Number(gap[1]));
      if (scenario === "break" && i === 2) {
        await Bun.sleep(50); // let the first chunks reach the client
        return controller.error(new Error("upstream died"));
      }
      controller.enqueue(encoder.encode(chunks[i++]!));
    },
    cancel() {
      fake.cancelled++;
    },
  });
  // "mixed-case-type": the same stream labelled as media types may be written (case-insensitive).
  const type = scenario === "mixed-case-type" ? "Text/Event-Stream; charset=utf-8" : "text/event-stream";
  return new Response(body, { headers: { "content-type": type, "x-request-id": "req_fake" } });
}

/** On 127.0.0.1 and a free port unless told otherwise (the compose test's container listens on 0.0.0.0:9000). */
export async function startFakeUpstream(listen: { hostname?: string; port?: number } = {}): Promise<FakeUpstream> {
  let chunksReleased = Promise.withResolvers<void>();
  const fake: FakeUpstream = {
    url: "",
    server: undefined as unknown as Server<undefined>,
    requests: [],
    cancelled: 0,
    releaseChunks() {
      chunksReleased.resolve();
      chunksReleased = Promise.withResolvers<void>();
    },
    async stop() {
      await fake.server.stop(true);
    },
  };
  fake.server = Bun.serve({
    port: listen.port ?? 0,
    hostname: listen.hostname ?? "127.0.0.1",
    idleTimeout: 0,
    async fetch(request) {
      const url = new URL(request.url);
      const text = await request.text();
      fake.requests.push({
        method: request.method,
        path: url.pathname + url.search,
        headers: Object.fromEntries(request.headers),
        body: text,
      });
      const scenario = request.headers.get("x-fake-scenario") ?? "";
      if (scenario === "hang") return new Promise<Response>(() => {});
      const rateHeaders = { "x-ratelimit-remaining-requests": "99", "retry-after": "7" };
      if (scenario === "error-500") return Response.json({ error: { message: "boom", type: "server_error", code: null } }, { status: 500 });
      if (scenario === "error-429")
        return Response.json(
          { error: { message: "slow down", type: "rate_limit_error", code: "rate_limit" } },
          { status: 429, headers: rateHeaders },
        );
      const body = (text ? JSON.parse(text) : {}) as Record<string, unknown>;
      const model = String(body.model ?? "");
      const stream = body.stream === true;
      const steer = steering(request);
      const headers = { "x-request-id": "req_fake", ...rateHeaders };
      switch (url.pathname) {
        case "/v1/chat/completions": {
          if (stream) {
            const includeUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
            return streamOf(chatChunks(model, includeUsage, steer), scenario, fake);
          }
          // `huge`: an answer larger than the proxy buffers for metering (17 MiB of content).
          const content = scenario === "huge" ? "x".repeat(17 * 1024 * 1024) : "Hello world";
          const answer = {
            id: "chatcmpl-1",
            object: "chat.completion",
            created: 1,
            model: `${model}-2025`,
            choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
            usage: steer.omitUsage ? undefined : (steer.usage ?? chatUsage),
          };
          if (scenario === "held-chunks") {
            // An answer of unknown length that is no JSON (NDJSON here; audio streams the same way):
            // its first line at once, the rest once the test releases it.
            const released = chunksReleased.promise;
            const pieces = ['{"n":1}\n', '{"n":2}\n'];
            const body = new ReadableStream<Uint8Array>({
              async pull(controller) {
                const piece = pieces.shift();
                if (piece === undefined) return controller.close();
                if (pieces.length === 0) await released;
                controller.enqueue(encoder.encode(piece));
              },
            });
            return new Response(body, { headers: { ...headers, "content-type": "application/x-ndjson" } });
          }
          if (scenario === "chunked-json") {
            const text = JSON.stringify(answer);
            const pieces = [text.slice(0, 40), text.slice(40, 120), text.slice(120)];
            const body = new ReadableStream<Uint8Array>({
              async pull(controller) {
                const piece = pieces.shift();
                if (piece === undefined) return controller.close();
                await Bun.sleep(5);
                controller.enqueue(encoder.encode(piece));
              },
            });
            return new Response(body, { headers: { ...headers, "content-type": "application/json" } });
          }
          return Response.json(answer, { headers });
        }
        case "/v1/completions":
          return Response.json(
            {
              id: "cmpl-1",
              object: "text_completion",
              created: 1,
              model,
              choices: [{ index: 0, text: "Hi", finish_reason: "stop" }],
              usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
            },
            { headers },
          );
        case "/v1/responses":
          if (stream) return streamOf(responsesChunks(model, steer), scenario, fake, "responses");
          return Response.json(
            {
              id: "resp_1",
              object: "response",
              model,
              status: "completed",
              output: [
                {
                  type: "message",
                  id: "m1",
                  role: "assistant",
                  status: "completed",
                  content: [{ type: "output_text", text: "Hi", annotations: [] }],
                },
              ],
              usage: steer.usage ?? responsesUsage,
            },
            { headers },
          );
        case "/v1/embeddings":
          return Response.json(
            {
              object: "list",
              model,
              data: [{ object: "embedding", index: 0, embedding: [0.1, 0.2, 0.3] }],
              usage: steer.omitUsage ? undefined : (steer.usage ?? { prompt_tokens: 5, total_tokens: 5 }),
            },
            { headers },
          );
        case "/v1/models":
          if (request.headers.has("anthropic-version")) {
            const model = { type: "model", id: "claude-sonnet-4-6", display_name: "Claude Sonnet 4.6", created_at: "2026-01-01T00:00:00Z" };
            return Response.json({ data: [model], has_more: false, first_id: model.id, last_id: model.id }, { headers });
          }
          return Response.json({ object: "list", data: [{ id: "gpt-4o", object: "model", created: 1, owned_by: "openai" }] }, { headers });
        case "/v1/messages":
          if (stream) return streamOf(anthropicChunks(model, steer), scenario, fake, "anthropic");
          return Response.json(
            {
              id: "msg_1",
              type: "message",
              role: "assistant",
              model,
              content: [{ type: "text", text: "Hello" }],
              stop_reason: "end_turn",
              stop_sequence: null,
              usage: steer.usage ?? anthropicUsage,
            },
            { headers },
          );
        case "/v1/messages/count_tokens":
          return Response.json({ input_tokens: 42 }, { headers });
      }
      return Response.json({ error: { message: "not found", type: "invalid_request_error" } }, { status: 404 });
    },
  });
  fake.url = `http://127.0.0.1:${fake.server.port}`;
  return fake;
}
