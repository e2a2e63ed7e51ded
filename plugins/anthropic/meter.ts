/**
 * Reads usage from Anthropic Messages responses. Anthropic's `input_tokens` excludes cache reads
 * and writes, so the record's `input_tokens` adds them back; `message_delta` usage is cumulative,
 * so each one overwrites what came before (never add). Thinking (extended or adaptive) is reported
 * as `output_tokens_details.thinking_tokens`, a part of `output_tokens` (which the API documents as
 * the inclusive total it bills): the record's `reasoning_tokens`, with `output_tokens` unchanged.
 */
import {
  DeferredText,
  asCount,
  asObject,
  asString,
  parseJSON,
  type Endpoint,
  type Meter,
  type SSEEvent,
  type TextSink,
  type Usage,
} from "agent-attr";

type AnthropicUsage = {
  input: number | null;
  output: number | null;
  cacheRead: number | null;
  cacheWrite: number | null;
  /** Of cacheWrite, the tokens written to the 1-hour cache (`cache_creation.ephemeral_1h_input_tokens`). */
  cacheWrite1h: number | null;
  /** Of output, the tokens spent thinking (`output_tokens_details.thinking_tokens`). */
  thinking: number | null;
};

function readUsage(value: unknown, into: AnthropicUsage): void {
  const usage = asObject(value);
  if (!usage) return;
  into.input = asCount(usage.input_tokens) ?? into.input;
  into.output = asCount(usage.output_tokens) ?? into.output;
  into.cacheRead = asCount(usage.cache_read_input_tokens) ?? into.cacheRead;
  into.cacheWrite = asCount(usage.cache_creation_input_tokens) ?? into.cacheWrite;
  into.cacheWrite1h = asCount(asObject(usage.cache_creation)?.ephemeral_1h_input_tokens) ?? into.cacheWrite1h;
  into.thinking = asCount(asObject(usage.output_tokens_details)?.thinking_tokens) ?? into.thinking;
}

export function normaliseAnthropicUsage(u: AnthropicUsage): Usage | null {
  if (u.input === null && u.output === null) return null;
  return {
    input_tokens: u.input === null ? null : u.input + (u.cacheRead ?? 0) + (u.cacheWrite ?? 0),
    output_tokens: u.output,
    cache_read_tokens: u.cacheRead,
    cache_write_tokens: u.cacheWrite,
    cache_write_1h_tokens: u.cacheWrite1h,
    reasoning_tokens: u.thinking,
  };
}

export function anthropicMeter(endpoint: Endpoint): Meter {
  const raw: AnthropicUsage = { input: null, output: null, cacheRead: null, cacheWrite: null, cacheWrite1h: null, thinking: null };
  let message: Record<string, unknown> | null = null;
  let sawEvents = false;
  let responseModel: string | null = null;
  let terminal = false;
  let errorType: string | null = null;
  /** The message's `stop_reason` (one message, so at most one), kept in one array for `result`. */
  const finishReasons: string[] = [];
  const noteStop = (reason: string | null) => {
    if (reason !== null) finishReasons[0] = reason;
  };
  // count_tokens answers a question; it is not a billed generation.
  const billed = endpoint.kind === "messages";
  // Generated text, kept only to estimate usage if none arrives: text deltas are read only if it
  // is needed (DeferredText).
  const text = new DeferredText((event, into) => read(event, into));
  const read = (event: SSEEvent, into: TextSink) => {
    const data = asObject(parseJSON(event.data));
    if (!data) return;
    switch (asString(data.type) ?? event.event) {
      case "message_start": {
        const message = asObject(data.message);
        responseModel = asString(message?.model) ?? responseModel;
        readUsage(message?.usage, raw);
        break;
      }
      case "message_delta":
        readUsage(data.usage, raw);
        noteStop(asString(asObject(data.delta)?.stop_reason));
        break;
      case "content_block_start":
        collectBlock(asObject(data.content_block), into);
        break;
      case "content_block_delta": {
        const delta = asObject(data.delta);
        const piece = asString(delta?.text) ?? asString(delta?.partial_json) ?? asString(delta?.thinking);
        if (piece) into.push(piece);
        break;
      }
      case "message_stop":
        terminal = true;
        break;
      case "error":
        errorType = asString(asObject(data.error)?.type) ?? "error";
        terminal = true;
        break;
    }
  };

  return {
    event(event: SSEEvent) {
      sawEvents = true;
      // A delta only adds text (its type comes first in what Anthropic sends).
      if (event.data.startsWith('{"type":"content_block_delta"')) text.defer(event);
      else read(event, text.pieces);
    },
    json(body: unknown) {
      const data = asObject(body);
      if (!data) return;
      terminal = true;
      if (data.type === "error") {
        errorType = asString(asObject(data.error)?.type) ?? "error";
        return;
      }
      message = data;
      responseModel = asString(data.model) ?? responseModel;
      noteStop(asString(data.stop_reason));
      if (billed) readUsage(data.usage, raw);
    },
    result: () => ({
      usage: billed ? normaliseAnthropicUsage(raw) : null,
      responseModel,
      terminal,
      errorType,
      finishReasons,
      outputText() {
        text.resolve();
        if (message && Array.isArray(message.content)) for (const block of message.content) collectBlock(asObject(block), text.pieces);
        return message || sawEvents ? text.sample() : null;
      },
    }),
  };
}

/** The text a content block carries: text, thinking, or a tool call's input. */
function collectBlock(block: Record<string, unknown> | null, into: TextSink): void {
  if (!block) return;
  const piece = asString(block.text) ?? asString(block.thinking);
  if (piece) into.push(piece);
  else if (block.type === "tool_use" && asObject(block.input) && Object.keys(asObject(block.input)!).length > 0) {
    into.push(JSON.stringify(block.input));
  }
}
