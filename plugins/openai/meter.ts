/**
 * Reads usage from OpenAI wire-format responses: chat completions, completions, embeddings (JSON)
 * and their streams, and the Responses API (JSON and `response.*` events). `prompt_tokens` already
 * includes cached tokens and `completion_tokens` includes reasoning, which is the record's shape.
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

export function openaiUsage(value: unknown, endpoint: Endpoint): Usage | null {
  const usage = asObject(value);
  if (!usage) return null;
  const input = asCount(usage.prompt_tokens) ?? asCount(usage.input_tokens);
  let output = asCount(usage.completion_tokens) ?? asCount(usage.output_tokens);
  if (endpoint.kind === "embeddings" && input !== null) output ??= 0;
  if (input === null && output === null) return null;
  const inputDetails = asObject(usage.prompt_tokens_details) ?? asObject(usage.input_tokens_details);
  const outputDetails = asObject(usage.completion_tokens_details) ?? asObject(usage.output_tokens_details);
  return {
    input_tokens: input,
    output_tokens: output,
    cache_read_tokens: asCount(inputDetails?.cached_tokens),
    cache_write_tokens: null,
    cache_write_1h_tokens: null,
    reasoning_tokens: asCount(outputDetails?.reasoning_tokens),
  };
}

const terminalResponseEvents = new Set(["response.completed", "response.incomplete", "response.failed"]);

export function openaiMeter(endpoint: Endpoint): Meter {
  let usage: Usage | null = null;
  let responseModel: string | null = null;
  // `"model":<the known model as JSON>`, remade only when the model changes.
  let memberModel: string | null = null;
  let modelMember = "";
  /** The chunk names no model, or exactly the known one (a router may change it: that is read). */
  const sameModel = (data: string, model: string) => {
    if (model !== memberModel) [memberModel, modelMember] = [model, `"model":${JSON.stringify(model)}`];
    const at = data.indexOf('"model"');
    return at === -1 || data.startsWith(modelMember, at);
  };
  let terminal = false;
  let errorType: string | null = null;
  let body: Record<string, unknown> | null = null;
  let sawEvents = false;

  /** Why each generation stopped (chat `finish_reason` per choice; a Responses API object's end state). */
  const finishReasons: string[] = [];
  const noteFinish = (choice: Record<string, unknown> | null) => {
    const reason = asString(choice?.finish_reason);
    if (reason) finishReasons.push(reason);
  };
  const noteError = (value: unknown) => {
    const error = asObject(value);
    if (error) errorType = asString(error.type) ?? asString(error.code) ?? "error";
  };
  // Responses API objects carry model and usage on `response` in events, at top level in JSON.
  const noteResponse = (response: Record<string, unknown>) => {
    responseModel = asString(response.model) ?? responseModel;
    usage = openaiUsage(response.usage, endpoint) ?? usage;
    noteError(response.error);
    const status = asString(response.status);
    if (status === "completed" || status === "incomplete" || status === "failed") {
      finishReasons[0] = asString(asObject(response.incomplete_details)?.reason) ?? status;
    }
  };
  // Generated text, kept only to estimate usage if none arrives: chunks that carry nothing else are
  // read only if it is needed (DeferredText); JSON bodies are read on demand.
  const text = new DeferredText((event, into) => read(event, into));
  const read = (event: SSEEvent, into: TextSink) => {
    const data = asObject(parseJSON(event.data));
    if (!data) return;
    const type = asString(data.type) ?? event.event;
    if (type?.startsWith("response.")) {
      const response = asObject(data.response);
      if (response) noteResponse(response);
      else if (type.endsWith(".delta") && typeof data.delta === "string") into.push(data.delta);
      if (terminalResponseEvents.has(type)) terminal = true;
      return;
    }
    if (type === "error") {
      noteError(data.error ?? data);
      terminal = true;
      return;
    }
    responseModel = asString(data.model) ?? responseModel;
    usage = openaiUsage(data.usage, endpoint) ?? usage;
    noteError(data.error);
    if (Array.isArray(data.choices)) {
      for (const item of data.choices) {
        const choice = asObject(item);
        noteFinish(choice);
        collectChoice(choice, "delta", into);
      }
    }
  };

  return {
    event(event: SSEEvent) {
      sawEvents = true;
      if (event.data === "[DONE]") {
        terminal = true;
        return;
      }
      // Once the model is known, a plain chunk or text delta with no usage, error, response object
      // or other model only adds text.
      if (responseModel !== null && textEvent(event) && onlyText(event.data) && sameModel(event.data, responseModel)) text.defer(event);
      else read(event, text.pieces);
    },
    json(value: unknown) {
      const data = asObject(value);
      if (!data) return;
      body = data;
      noteResponse(data);
      if (Array.isArray(data.choices)) for (const choice of data.choices) noteFinish(asObject(choice));
      terminal = true;
    },
    result: () => ({
      usage,
      responseModel,
      terminal,
      errorType,
      finishReasons,
      outputText() {
        text.resolve();
        if (body) collectBody(body, text.pieces);
        return body || sawEvents ? text.sample() : null;
      },
    }),
  };
}

/**
 * Whether a stream chunk can only add text: it has no usage (OpenAI sends `"usage":null` on every
 * chunk but the last when usage is asked for), no finish reason (`"finish_reason":null` on every
 * chunk but a choice's last), no error and no Responses API `response` object. A string value
 * inside a chunk cannot look like these keys: its quotes are escaped.
 */
function onlyText(data: string): boolean {
  if (data.includes('"error"') || data.includes('"response"')) return false;
  return nullOrAbsent(data, '"usage"') && nullOrAbsent(data, '"finish_reason"');
}

/** The member `key` (quoted) is absent from the JSON text, or its value is `null`; reads without copying. */
function nullOrAbsent(data: string, key: string): boolean {
  const at = data.indexOf(key);
  if (at === -1) return true;
  let i = at + key.length;
  let c = data.charCodeAt(i);
  while (c === 58 || c === 32 || c === 9 || c === 10 || c === 13) c = data.charCodeAt(++i);
  return data.startsWith("null", i);
}

/** A plain stream chunk (no event name) or a Responses API text delta; an `event: error` is always read. */
const textEvent = (event: SSEEvent) => event.event === null || event.event === "message" || event.event.endsWith(".delta");

/** Text of one chat/completions choice (`delta` in streams, `message` in JSON). */
function collectChoice(choice: Record<string, unknown> | null, key: "delta" | "message", into: TextSink): void {
  if (!choice) return;
  const piece = asString(choice.text);
  if (piece) into.push(piece);
  const message = asObject(choice[key]);
  if (!message) return;
  for (const field of ["content", "reasoning_content", "refusal"]) {
    const value = asString(message[field]);
    if (value) into.push(value);
  }
  if (Array.isArray(message.tool_calls)) {
    for (const call of message.tool_calls) {
      const args = asString(asObject(asObject(call)?.function)?.arguments);
      if (args) into.push(args);
    }
  }
}

/** Text of a whole JSON response: chat/completions choices or Responses API output items. */
function collectBody(body: Record<string, unknown>, into: TextSink): void {
  if (Array.isArray(body.choices)) for (const choice of body.choices) collectChoice(asObject(choice), "message", into);
  if (!Array.isArray(body.output)) return;
  for (const item of body.output) {
    const entry = asObject(item);
    if (!entry) continue;
    const args = asString(entry.arguments);
    if (args) into.push(args);
    const parts = Array.isArray(entry.content) ? entry.content : Array.isArray(entry.summary) ? entry.summary : [];
    for (const part of parts) {
      const piece = asString(asObject(part)?.text);
      if (piece) into.push(piece);
    }
  }
}
