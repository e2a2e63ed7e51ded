/**
 * One ended call as one span, following the OpenTelemetry GenAI semantic conventions for an
 * inference client span: named `{gen_ai.operation.name} {gen_ai.request.model}`, kind CLIENT, a
 * child of the inbound W3C `traceparent` when the call carried one, status ERROR when the call did
 * not complete. Beside the `gen_ai.*` attributes it carries who acted (`user.id`, `session.id`),
 * the call's cost and its audit record id (`agent_attr.*`), so a trace leads to the record.
 */
import { SpanStatusCode } from "@opentelemetry/api";
import { TraceState, parseTraceParent } from "@opentelemetry/core";
import { RandomIdGenerator } from "@opentelemetry/sdk-trace";
import type { AuditRecord, EndpointKind } from "agent-attr";
import type { Attribute, SpanData } from "./encode.ts";
import type { CallSampler } from "./sampler.ts";

/** What the plugin keeps of an ended call until its span is built (small: no request body). */
export interface EndedCall {
  record: AuditRecord;
  kind: EndpointKind;
  traceparent: string | null;
  tracestate: string | null;
  finishReasons: readonly string[];
  tier: string | null;
}

/**
 * `gen_ai.operation.name` per endpoint: the conventions' values for model calls, plain names for
 * the two that are not inference; any other endpoint (the rest of the /v1 surface, a provider's
 * own paths) is named by its kind.
 */
const operations: Partial<Record<EndpointKind, string>> = {
  "chat.completions": "chat",
  responses: "chat",
  messages: "chat",
  completions: "text_completion",
  embeddings: "embeddings",
  models: "list_models",
  "messages.count_tokens": "count_tokens",
  "gemini.generateContent": "generate_content",
  "gemini.streamGenerateContent": "generate_content",
  "gemini.embedContent": "embeddings",
  "gemini.batchEmbedContents": "embeddings",
  "gemini.countTokens": "count_tokens",
  "bedrock.converse": "chat",
  "bedrock.converse-stream": "chat",
  "bedrock.count-tokens": "count_tokens",
};

/** `gen_ai.provider.name` for provider plugins the conventions name differently; any other keeps its plugin name. */
const providerNames: Record<string, string> = {
  azure: "azure.ai.openai",
  "azure-openai": "azure.ai.openai",
  bedrock: "aws.bedrock",
  gemini: "gcp.gemini",
  "vertex-ai": "gcp.vertex_ai",
  mistral: "mistral_ai",
  xai: "x_ai",
};

export interface SpanOptions {
  /** Put `user.id` on spans (a user id leaves the erasable trail for the tracing backend). */
  user: boolean;
  /** Which calls get a span (OTEL_TRACES_SAMPLER). */
  sampler: CallSampler;
}

const ids = new RandomIdGenerator();
const unset = { code: SpanStatusCode.UNSET };

/**
 * The span of one ended call, or null when the sampler says no: by default (parentbased_always_on)
 * when the inbound trace was not sampled (its traceparent's flags say so), as the SDK decides.
 */
export function spanOf(call: EndedCall, options: SpanOptions): SpanData | null {
  const { record } = call;
  const parent = call.traceparent ? parseTraceParent(call.traceparent.trim()) : null;
  const traceId = parent?.traceId ?? ids.generateTraceId();
  if (!options.sampler.sampled(traceId, parent)) return null;
  const operation = operations[call.kind] ?? call.kind;
  const startMs = Date.parse(record.timestamp);
  return {
    traceId,
    spanId: ids.generateSpanId(),
    parentSpanId: parent?.spanId ?? null,
    // The official parser keeps the valid entries (at most 32) of what the caller sent.
    traceState: parent && call.tracestate ? new TraceState(call.tracestate).serialize() || null : null,
    name: record.model ? `${operation} ${record.model}` : operation,
    startMs,
    endMs: startMs + (record.duration_ms ?? 0),
    status:
      record.outcome === "completed" ? unset : { code: SpanStatusCode.ERROR, message: record.error_type ?? record.outcome ?? "unknown" },
    attributes: attributesOf(call, operation, options),
  };
}

function attributesOf({ record, finishReasons, tier }: EndedCall, operation: string, options: SpanOptions): Attribute[] {
  const attributes: Attribute[] = [
    ["gen_ai.operation.name", operation],
    ["gen_ai.provider.name", record.provider ? (providerNames[record.provider] ?? record.provider) : "none"],
  ];
  const set = (key: string, value: string | number | null, type?: "int" | "double") => {
    if (value !== null) attributes.push([key, value, type]);
  };
  set("gen_ai.request.model", record.model);
  set("gen_ai.response.model", record.response_model);
  set("gen_ai.usage.input_tokens", record.input_tokens);
  set("gen_ai.usage.output_tokens", record.output_tokens);
  set("gen_ai.usage.cache_read.input_tokens", record.cache_read_tokens);
  set("gen_ai.usage.cache_creation.input_tokens", record.cache_write_tokens);
  if (finishReasons.length > 0) attributes.push(["gen_ai.response.finish_reasons", finishReasons]);
  set("gen_ai.agent.id", record.agent_id);
  set("gen_ai.conversation.id", record.session_id);
  set("session.id", record.session_id);
  if (options.user) set("user.id", record.user_id);
  set("http.response.status_code", record.status);
  if (record.outcome !== "completed") set("error.type", record.error_type ?? record.outcome);
  set("agent_attr.record.id", record.id);
  set("agent_attr.cost_usd", record.cost_usd, "double");
  set("agent_attr.outcome", record.outcome ?? "unknown");
  attributes.push(["agent_attr.stream", record.stream]);
  set("agent_attr.parent_agent.id", record.parent_agent_id);
  set("agent_attr.key.id", record.key_id);
  set("agent_attr.tier", tier);
  return attributes;
}
