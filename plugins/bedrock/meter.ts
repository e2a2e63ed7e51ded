/**
 * Reads usage from Bedrock runtime responses (DESIGN §6 normalised usage):
 * - Converse: the body's `usage`; ConverseStream: the `metadata` event, the stream's last, which is
 *   its terminal event. Bedrock's `inputTokens` excludes cache reads and writes (its `totalTokens`
 *   adds them), so the record's `input_tokens` adds them back; `cacheDetails` says which writes
 *   went to the 1-hour cache.
 * - InvokeModel: an Anthropic body is read as the Messages API's (../anthropic/meter.ts); any other
 *   model's usage comes from Bedrock's `x-amzn-bedrock-*-token-count` response headers.
 *   InvokeModelWithResponseStream: each `chunk` event carries a model event, base64 in `bytes`
 *   (Anthropic's `message_start` … `message_stop`); the last one also carries
 *   `amazon-bedrock-invocationMetrics`, the counts for any model.
 * - A stream's `exception` message (e.g. `modelStreamErrorException`) ends it as failed.
 */
import {
  TextSample,
  asCount,
  asObject,
  asString,
  parseJSON,
  type Endpoint,
  type Meter,
  type MeteredResponse,
  type MeterResult,
  type Usage,
} from "agent-attr";
import { anthropicMeter } from "../anthropic/meter.ts";
import { EventStreamReader, type StreamMessage } from "./event-stream.ts";

const utf8 = new TextDecoder();

/** Counts as Bedrock reports them: `input` excludes cache reads and writes. */
interface BedrockCounts {
  input: number | null;
  output: number | null;
  cacheRead: number | null;
  cacheWrite: number | null;
  cacheWrite1h: number | null;
}

function normalise(counts: BedrockCounts): Usage | null {
  if (counts.input === null && counts.output === null) return null;
  return {
    input_tokens: counts.input === null ? null : counts.input + (counts.cacheRead ?? 0) + (counts.cacheWrite ?? 0),
    output_tokens: counts.output,
    cache_read_tokens: counts.cacheRead,
    cache_write_tokens: counts.cacheWrite,
    cache_write_1h_tokens: counts.cacheWrite1h,
    reasoning_tokens: null,
  };
}

/** Converse's `TokenUsage`. */
function converseCounts(value: unknown): BedrockCounts | null {
  const usage = asObject(value);
  if (!usage) return null;
  let cacheWrite1h: number | null = null;
  if (Array.isArray(usage.cacheDetails)) {
    for (const detail of usage.cacheDetails) {
      const entry = asObject(detail);
      if (entry?.ttl === "1h") cacheWrite1h = (cacheWrite1h ?? 0) + (asCount(entry.inputTokens) ?? 0);
    }
  }
  return {
    input: asCount(usage.inputTokens),
    output: asCount(usage.outputTokens),
    cacheRead: asCount(usage.cacheReadInputTokens),
    cacheWrite: asCount(usage.cacheWriteInputTokens),
    cacheWrite1h,
  };
}

/** `amazon-bedrock-invocationMetrics` of InvokeModelWithResponseStream's last chunk. */
function invocationCounts(value: unknown): BedrockCounts | null {
  const metrics = asObject(value);
  if (!metrics) return null;
  return {
    input: asCount(metrics.inputTokenCount),
    output: asCount(metrics.outputTokenCount),
    cacheRead: asCount(metrics.cacheReadInputTokenCount),
    cacheWrite: asCount(metrics.cacheWriteInputTokenCount),
    cacheWrite1h: null,
  };
}

/** InvokeModel's token-count response headers (every model). */
function headerCounts(headers: Headers): BedrockCounts | null {
  const count = (name: string) => {
    const value = headers.get(`x-amzn-bedrock-${name}`);
    return value === null || !/^\d+$/.test(value) ? null : Number(value);
  };
  const counts = {
    input: count("input-token-count"),
    output: count("output-token-count"),
    cacheRead: count("cache-read-input-token-count"),
    cacheWrite: count("cache-write-input-token-count"),
    cacheWrite1h: null,
  };
  return counts.input === null && counts.output === null ? null : counts;
}

/** The exception an error answer names (`x-amzn-ErrorType: ThrottlingException:http://…`). */
function errorTypeOf(response: MeteredResponse): string | null {
  if (response.status < 400) return null;
  const named = response.headers.get("x-amzn-errortype")?.split(/[:#]/)[0]?.trim();
  return named || null;
}

/**
 * Reads the event-stream frames of a streamed answer; ignores any other binary body (InvokeModel
 * answers in the model's own content type, e.g. an image model's `image/png`).
 */
function frameReader(response: MeteredResponse, onMessage: (message: StreamMessage) => void): (bytes: Uint8Array) => void {
  if (!response.headers.get("content-type")?.startsWith("application/vnd.amazon.eventstream")) return () => {};
  const reader = new EventStreamReader();
  return (bytes) => {
    for (const message of reader.push(bytes)) onMessage(message);
  };
}

/** What a stream's non-event message says went wrong (`:message-type` exception or error). */
function streamFailure(message: StreamMessage): string | null {
  const kind = message.headers[":message-type"];
  if (kind === "exception") return message.headers[":exception-type"] ?? "exception";
  if (kind === "error") return message.headers[":error-code"] ?? "error";
  return null;
}

export function bedrockMeter(endpoint: Endpoint, response: MeteredResponse): Meter {
  switch (endpoint.kind) {
    case "bedrock.converse":
    case "bedrock.converse-stream":
      return converseMeter(response);
    case "bedrock.invoke":
    case "bedrock.invoke-stream":
      return invokeMeter(endpoint, response);
    default:
      return answerMeter(response);
  }
}

/** CountTokens (and anything else unbilled): only whether it failed. */
function answerMeter(response: MeteredResponse): Meter {
  return {
    event() {},
    json() {},
    result: () => ({ usage: null, responseModel: null, terminal: true, errorType: errorTypeOf(response) }),
  };
}

function converseMeter(response: MeteredResponse): Meter {
  let counts: BedrockCounts | null = null;
  let terminal = false;
  let errorType = errorTypeOf(response);
  let seen = false;
  const text = new TextSample();
  const collect = (block: Record<string, unknown> | null) => {
    if (!block) return;
    const piece =
      asString(block.text) ??
      asString(asObject(block.reasoningContent)?.text) ??
      asString(asObject(asObject(block.reasoningContent)?.reasoningText)?.text) ??
      asString(asObject(block.toolUse)?.input);
    if (piece) text.push(piece);
    else if (asObject(asObject(block.toolUse)?.input)) text.push(JSON.stringify(asObject(block.toolUse)!.input));
  };
  const onMessage = (message: StreamMessage) => {
    seen = true;
    const failure = streamFailure(message);
    if (failure) {
      errorType = failure;
      terminal = true;
      return;
    }
    const payload = asObject(parseJSON(utf8.decode(message.body)));
    switch (message.headers[":event-type"]) {
      case "contentBlockDelta":
        collect(asObject(payload?.delta));
        break;
      case "metadata":
        counts = converseCounts(payload?.usage) ?? counts;
        terminal = true;
        break;
    }
  };
  return {
    event() {},
    json(body) {
      const answer = asObject(body);
      terminal = true;
      if (!answer || errorType) return;
      seen = true;
      counts = converseCounts(answer.usage);
      const content = asObject(asObject(answer.output)?.message)?.content;
      if (Array.isArray(content)) for (const block of content) collect(asObject(block));
    },
    chunk: frameReader(response, onMessage),
    result: (): MeterResult => ({
      usage: counts ? normalise(counts) : null,
      responseModel: null,
      terminal,
      errorType,
      outputText: () => (seen ? text.result() : null),
    }),
  };
}

function invokeMeter(endpoint: Endpoint, response: MeteredResponse): Meter {
  // Anthropic's bodies and events are the Messages API's, with Bedrock's version field.
  const anthropic = anthropicMeter({ ...endpoint, kind: "messages" });
  let counts = headerCounts(response.headers);
  let terminal = false;
  let errorType = errorTypeOf(response);
  const onMessage = (message: StreamMessage) => {
    const failure = streamFailure(message);
    if (failure) {
      errorType = failure;
      terminal = true;
      return;
    }
    if (message.headers[":event-type"] !== "chunk") return;
    const encoded = asString(asObject(parseJSON(utf8.decode(message.body)))?.bytes);
    if (encoded === null) return;
    const data = Buffer.from(encoded, "base64").toString("utf8");
    const event = asObject(parseJSON(data));
    anthropic.event({ event: asString(event?.type), data });
    const metrics = invocationCounts(event?.["amazon-bedrock-invocationMetrics"]);
    if (metrics) {
      counts = metrics;
      terminal = true;
    }
  };
  return {
    event() {},
    json(body) {
      terminal = true;
      if (!errorType) anthropic.json(body);
    },
    chunk: frameReader(response, onMessage),
    result(): MeterResult {
      const read = anthropic.result();
      return {
        // The model's own counts (cache and thinking detail for Anthropic), else Bedrock's.
        usage: read.usage ?? (counts ? normalise(counts) : null),
        responseModel: read.responseModel,
        // Anthropic's `message_stop`, or the chunk with Bedrock's metrics (every model's last).
        terminal: terminal || read.terminal,
        errorType: errorType ?? read.errorType,
        outputText: read.outputText,
      };
    },
  };
}
