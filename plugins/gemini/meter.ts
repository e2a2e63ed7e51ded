/**
 * Reads usage from Gemini API responses (`GenerateContentResponse`, JSON or one per SSE event).
 * `usageMetadata` is cumulative over a stream: each one overwrites the last. Normalised as DESIGN §6
 * says: `promptTokenCount` already includes `cachedContentTokenCount` (input incl. cached, cache
 * reads = cached content), tool-use prompt tokens are input too; `candidatesTokenCount` excludes
 * `thoughtsTokenCount`, which Google bills as output: output = candidates + thoughts, reasoning =
 * thoughts. A stream has no terminal event: it is complete once a candidate names its
 * `finishReason` (or the prompt was blocked).
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

export function geminiUsage(value: unknown): Usage | null {
  const usage = asObject(value);
  if (!usage) return null;
  const prompt = asCount(usage.promptTokenCount);
  const candidates = asCount(usage.candidatesTokenCount);
  const thoughts = asCount(usage.thoughtsTokenCount);
  const toolPrompt = asCount(usage.toolUsePromptTokenCount);
  if (prompt === null && candidates === null && thoughts === null) return null;
  return {
    input_tokens: prompt === null ? null : prompt + (toolPrompt ?? 0),
    // A response that generated nothing (blocked, or only thoughts) still has a known output.
    output_tokens: (candidates ?? 0) + (thoughts ?? 0),
    cache_read_tokens: asCount(usage.cachedContentTokenCount),
    cache_write_tokens: null,
    cache_write_1h_tokens: null,
    reasoning_tokens: thoughts,
  };
}

export function geminiMeter(endpoint: Endpoint): Meter {
  const billed = endpoint.billed;
  let usage: Usage | null = null;
  let responseModel: string | null = null;
  let terminal = false;
  let errorType: string | null = null;
  let body: Record<string, unknown> | null = null;
  let sawEvents = false;

  const readResponse = (data: Record<string, unknown>, into: TextSink) => {
    responseModel = asString(data.modelVersion) ?? responseModel;
    if (billed) usage = geminiUsage(data.usageMetadata) ?? usage;
    const error = asObject(data.error);
    if (error) {
      errorType = asString(error.status) ?? "error";
      terminal = true;
    }
    if (asString(asObject(data.promptFeedback)?.blockReason)) terminal = true;
    if (!Array.isArray(data.candidates)) return;
    for (const candidate of data.candidates) {
      const entry = asObject(candidate);
      if (!entry) continue;
      if (asString(entry.finishReason)) terminal = true;
      collectParts(asObject(entry.content), into);
    }
  };
  const text = new DeferredText((event, into) => {
    const data = asObject(parseJSON(event.data));
    if (data) readResponse(data, into);
  });

  return {
    event(event: SSEEvent) {
      sawEvents = true;
      // A chunk without usage, an error or a finish reason only adds text.
      const plain = !event.data.includes('"usageMetadata"') && !event.data.includes('"finishReason"') && !event.data.includes('"error"');
      if (plain && responseModel !== null) text.defer(event);
      else {
        const data = asObject(parseJSON(event.data));
        if (data) readResponse(data, text.pieces);
      }
    },
    json(value: unknown) {
      // streamGenerateContent without `alt=sse` answers one JSON array of the chunks.
      if (Array.isArray(value)) {
        for (const chunk of value) {
          const data = asObject(chunk);
          if (data) readResponse(data, text.pieces);
        }
        sawEvents = true;
        return;
      }
      const data = asObject(value);
      if (!data) return;
      body = data;
      terminal = true;
      const error = asObject(data.error);
      if (error) errorType = asString(error.status) ?? "error";
      responseModel = asString(data.modelVersion) ?? responseModel;
      if (billed) usage = geminiUsage(data.usageMetadata) ?? usage;
    },
    result: () => ({
      usage,
      responseModel,
      terminal,
      errorType,
      outputText() {
        text.resolve();
        if (body && Array.isArray(body.candidates))
          for (const c of body.candidates) collectParts(asObject(asObject(c)?.content), text.pieces);
        return body || sawEvents ? text.sample() : null;
      },
    }),
  };
}

/** The text of a candidate's parts: text (thoughts included) and function-call arguments. */
function collectParts(content: Record<string, unknown> | null, into: TextSink): void {
  if (!content || !Array.isArray(content.parts)) return;
  for (const part of content.parts) {
    const entry = asObject(part);
    const piece = asString(entry?.text);
    if (piece) into.push(piece);
    const call = asObject(entry?.functionCall);
    if (call?.args !== undefined) into.push(JSON.stringify(call.args));
  }
}
