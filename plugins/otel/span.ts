/**
 * One ended call as one span, following the OpenTelemetry GenAI semantic conventions for an
 * inference client span: named `{gen_ai.operation.name} {gen_ai.request.model}`, kind CLIENT, a
 * child of the inbound W3C `traceparent` when the call carried one, status ERROR when the call did
 * not complete. Beside the `gen_ai.*` attributes it carries who acted (`user.id`, `session.id`),
 * the call's cost and its audit record id (`agent_attr.*`), so a trace leads to the record.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, defaultTextMapGetter, type Attributes, type Tracer } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import type { AuditRecord, EndpointKind } from "agent-attr";

/** What the plugin keeps of an ended call until its span is built (small: no request body). */
export interface EndedCall {
  record: AuditRecord;
  kind: EndpointKind;
  traceparent: string | null;
  tracestate: string | null;
  finishReasons: readonly string[];
  tier: string | null;
}

/** `gen_ai.operation.name` per endpoint: the conventions' values, and plain names for the two that are not inference. */
const operations: Record<EndpointKind, string> = {
  "chat.completions": "chat",
  responses: "chat",
  messages: "chat",
  completions: "text_completion",
  embeddings: "embeddings",
  models: "list_models",
  "messages.count_tokens": "count_tokens",
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

const propagator = new W3CTraceContextPropagator();

export interface SpanOptions {
  /** Put `user.id` on spans (a user id leaves the erasable trail for the tracing backend). */
  user: boolean;
}

/** Builds and ends the span of one call (the tracer's processor takes it from there). */
export function endSpan(tracer: Tracer, call: EndedCall, options: SpanOptions): void {
  const { record } = call;
  const operation = operations[call.kind];
  const start = Date.parse(record.timestamp);
  const parent = call.traceparent
    ? propagator.extract(ROOT_CONTEXT, { traceparent: call.traceparent, tracestate: call.tracestate ?? undefined }, defaultTextMapGetter)
    : ROOT_CONTEXT;
  const span = tracer.startSpan(
    record.model ? `${operation} ${record.model}` : operation,
    { kind: SpanKind.CLIENT, startTime: start, attributes: attributesOf(call, operation, options) },
    parent,
  );
  if (record.outcome !== "completed") {
    span.setStatus({ code: SpanStatusCode.ERROR, message: record.error_type ?? record.outcome ?? "unknown" });
  }
  span.end(start + (record.duration_ms ?? 0));
}

function attributesOf({ record, finishReasons, tier }: EndedCall, operation: string, options: SpanOptions): Attributes {
  const attributes: Attributes = {
    "gen_ai.operation.name": operation,
    "gen_ai.provider.name": record.provider ? (providerNames[record.provider] ?? record.provider) : "none",
    "agent_attr.record.id": record.id,
    "agent_attr.endpoint": record.endpoint,
    "agent_attr.outcome": record.outcome ?? "unknown",
    "agent_attr.attribution": record.attribution,
    "agent_attr.stream": record.stream,
    "agent_attr.usage_source": record.usage_source,
  };
  const set = (key: string, value: string | number | null) => {
    if (value !== null) attributes[key] = value;
  };
  set("gen_ai.request.model", record.model);
  set("gen_ai.response.model", record.response_model);
  set("gen_ai.usage.input_tokens", record.input_tokens);
  set("gen_ai.usage.output_tokens", record.output_tokens);
  set("gen_ai.usage.cache_read.input_tokens", record.cache_read_tokens);
  set("gen_ai.usage.cache_creation.input_tokens", record.cache_write_tokens);
  if (finishReasons.length > 0) attributes["gen_ai.response.finish_reasons"] = [...finishReasons];
  set("gen_ai.agent.id", record.agent_id);
  set("gen_ai.conversation.id", record.session_id);
  set("session.id", record.session_id);
  if (options.user) set("user.id", record.user_id);
  set("http.response.status_code", record.status);
  if (record.outcome !== "completed") set("error.type", record.error_type ?? record.outcome);
  set("agent_attr.cost_usd", record.cost_usd);
  set("agent_attr.price_source", record.price_source);
  set("agent_attr.parent_agent.id", record.parent_agent_id);
  set("agent_attr.key.id", record.key_id);
  set("agent_attr.tier", tier);
  set("agent_attr.ttfb_ms", record.ttfb_ms);
  return attributes;
}
