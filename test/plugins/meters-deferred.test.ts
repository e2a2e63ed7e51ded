// The stream meters read usage from the events that carry it at once, and leave text-only events
// unparsed until an estimate needs their text: the usage and the text must be what reading every
// event would give, in stream order, whatever the chunks look like.
import { expect, test } from "bun:test";
import type { Endpoint, SSEEvent } from "../../src/index.ts";
import { DeferredText } from "../../src/proxy/deferred-text.ts";
import { anthropicMeter } from "../../plugins/anthropic/meter.ts";
import { openaiMeter } from "../../plugins/openai/meter.ts";

const chat = { path: "/v1/chat/completions", method: "POST", wire: "openai", kind: "chat.completions" } as Endpoint;
const messages = { path: "/v1/messages", method: "POST", wire: "anthropic", kind: "messages" } as Endpoint;
const data = (value: unknown, event: string | null = null): SSEEvent => ({
  event,
  data: typeof value === "string" ? value : JSON.stringify(value),
});
const chunk = (delta: object, extra: object = {}) =>
  data({ id: "c", object: "chat.completion.chunk", model: "gpt-4o", choices: [{ index: 0, delta }], ...extra });

test("OpenAI: `usage: null` chunks add only text; a usage object, even spaced, is read at once", () => {
  const meter = openaiMeter(chat);
  meter.event(chunk({ role: "assistant", content: "One" }, { usage: null }));
  meter.event(chunk({ content: " two" }, { usage: null }));
  meter.event(data('{"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{"content":" \\"usage\\": {}"}}],"usage" : null}'));
  meter.event(chunk({ tool_calls: [{ index: 0, function: { arguments: '{"a":1}' } }] }));
  meter.event(data('{"id":"c","model":"gpt-4o","choices":[],"usage" :\n {"prompt_tokens": 7, "completion_tokens": 5}}'));
  meter.event(data("[DONE]"));
  const result = meter.result();
  expect(result.usage).toMatchObject({ input_tokens: 7, output_tokens: 5 });
  expect(result.terminal).toBe(true);
  expect(result.outputText?.()).toBe('One two "usage": {}{"a":1}');
});

test("OpenAI: an error object in a chunk is read at once", () => {
  const meter = openaiMeter(chat);
  meter.event(chunk({ content: "partial" }));
  meter.event(data({ id: "c", model: "gpt-4o", choices: [], error: { type: "server_error", message: "boom" } }));
  expect(meter.result().errorType).toBe("server_error");
  expect(meter.result().outputText?.()).toBe("partial");
});

test("Anthropic: text deltas are read only for the estimate, in order with block starts", () => {
  const meter = anthropicMeter(messages);
  meter.event(
    data({ type: "message_start", message: { model: "claude-x", usage: { input_tokens: 11, output_tokens: 1 } } }, "message_start"),
  );
  meter.event(data({ type: "content_block_start", index: 0, content_block: { type: "text", text: "A" } }, "content_block_start"));
  meter.event(data({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "b" } }, "content_block_delta"));
  meter.event(data({ type: "content_block_start", index: 1, content_block: { type: "thinking", thinking: "C" } }, "content_block_start"));
  meter.event(
    data({ type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: "{d" } }, "content_block_delta"),
  );
  // Not in Anthropic's key order: read at once, so its usage counts.
  meter.event(data('{"usage":{"output_tokens":9},"type":"message_delta","delta":{}}', "content_block_delta"));
  const result = meter.result();
  expect(result.usage).toMatchObject({ input_tokens: 11, output_tokens: 9 });
  expect(result.outputText?.()).toBe("AbC{d");
});

test("deferred events past the cap are read, so a long stream keeps its text, not its raw events", () => {
  let reads = 0;
  const text = new DeferredText((event, into) => {
    reads++;
    into.push(event.data.slice(0, 1));
  });
  const big = "x".repeat(64 * 1024);
  for (let i = 0; i < 3; i++) text.defer({ event: null, data: big });
  expect(reads).toBe(0);
  text.pieces.push("y");
  text.defer({ event: null, data: big });
  text.defer({ event: null, data: big }); // past 256 KiB: read now
  expect(reads).toBe(5);
  expect(text.resolve().join("")).toBe("xxxyxx");
});

test("OpenAI: a chunk naming another model is read (routers, Azure's empty first model)", () => {
  const meter = openaiMeter(chat);
  meter.event(data({ id: "", model: "", object: "", choices: [], prompt_filter_results: [] }));
  meter.event(chunk({ content: "Hi" }, { model: "gpt-4o-2024-08-06" }));
  meter.event(chunk({ content: " there" }, { model: "gpt-4o-2024-08-06" }));
  expect(meter.result().responseModel).toBe("gpt-4o-2024-08-06");
  const routed = openaiMeter(chat);
  routed.event(chunk({ content: "a" }, { model: "router/auto" }));
  routed.event(chunk({ content: "b" }, { model: "openai/gpt-4o" }));
  expect(routed.result().responseModel).toBe("openai/gpt-4o");
  expect(routed.result().outputText?.()).toBe("ab");
});

test("OpenAI: an `event: error` is read even when its data has no error member", () => {
  const meter = openaiMeter(chat);
  meter.event(chunk({ content: "Hi" }));
  meter.event(data({ message: "overloaded", code: "overloaded" }, "error"));
  expect(meter.result()).toMatchObject({ errorType: "overloaded", terminal: true });
});

test("OpenAI: finish reasons are read at once from the chunk that carries one (null ones are text-only), spaced or not, per choice", () => {
  const meter = openaiMeter(chat);
  meter.event(data('{"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"A"},"finish_reason":null}]}'));
  meter.event(
    data('{"id":"c","model":"gpt-4o","choices":[{"index":1,"delta":{"content":"\\"finish_reason\\":\\"x\\""},"finish_reason" : null}]}'),
  );
  meter.event(data('{"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'));
  meter.event(data('{"id":"c","model":"gpt-4o","choices":[{"index":1,"delta":{},"finish_reason" :\n "length"}]}'));
  meter.event(data("[DONE]"));
  expect(meter.result().finishReasons).toEqual(["stop", "length"]);
  expect(meter.result().outputText?.()).toBe('A"finish_reason":"x"');
});

test("finish reasons of whole answers: OpenAI choices, a Responses API end state, Anthropic's stop_reason", () => {
  const json = openaiMeter(chat);
  json.json({ model: "gpt-4o", choices: [{ finish_reason: "tool_calls" }, { finish_reason: "stop" }] });
  expect(json.result().finishReasons).toEqual(["tool_calls", "stop"]);
  const responses = openaiMeter({ ...chat, path: "/v1/responses", kind: "responses" });
  responses.json({ model: "gpt-4o", status: "incomplete", incomplete_details: { reason: "max_output_tokens" } });
  expect(responses.result().finishReasons).toEqual(["max_output_tokens"]);
  const anthropic = anthropicMeter(messages);
  anthropic.json({
    type: "message",
    model: "claude",
    content: [],
    stop_reason: "max_tokens",
    usage: { input_tokens: 1, output_tokens: 2 },
  });
  expect(anthropic.result().finishReasons).toEqual(["max_tokens"]);
  const unanswered = anthropicMeter(messages);
  expect(unanswered.result().finishReasons).toEqual([]);
});
