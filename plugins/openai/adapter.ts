/**
 * The OpenAI wire-format provider adapter, shared by `openai()` and `openaiCompatible()`: forwards
 * `/v1/<rest>` to `<baseURL>/<rest>` (baseURL includes `/v1`, as in the OpenAI SDK) and asks
 * streamed chat calls for their usage.
 */
import {
  asObject,
  fetchUpstream,
  modelMatcher,
  parseJSON,
  upstreamSocket,
  upstreamURL,
  type Endpoint,
  type ProviderAdapter,
  type SSEEvent,
  providerKeyFor,
} from "agent-attr";
import { openaiMeter } from "./meter.ts";

export interface OpenAIAdapterOptions {
  baseURL: string;
  /** Glob patterns of model names this provider serves; undefined serves every model. */
  models?: readonly string[];
  /** Serve calls without a model (GET /v1/models). */
  servesModelList: boolean;
  /** Sent as `Authorization: Bearer` when the client sends no credentials of its own. */
  apiKey?: string;
  /**
   * Environment variable holding the provider key for calls an `authenticate` plugin verified
   * (their client credential was the proxy's own, so the proxy must supply the provider's).
   */
  keyEnv?: string;
  pricing: ProviderAdapter["pricing"];
  /**
   * The field that bounds a chat completion's output: OpenAI's `max_completion_tokens` (the only
   * one its reasoning models accept), or `max_tokens`, which OpenAI-compatible servers know.
   */
  chatOutputLimit: "max_completion_tokens" | "max_tokens";
}

export function openaiAdapter(options: OpenAIAdapterOptions): ProviderAdapter {
  const matches = options.models ? modelMatcher(options.models) : () => true;
  return {
    match(endpoint: Endpoint, model: string | null) {
      if (endpoint.wire !== "openai") return false;
      if (model !== null) return matches(model);
      // `modelList` answers GET /v1/models only; the other calls that name no model (files,
      // batches, retrieving a response, the Responses WebSocket…) carry the client's OpenAI
      // credential, so only a provider serving every model takes them.
      return endpoint.kind === "models" ? options.servesModelList : options.models === undefined;
    },
    prepareBody(endpoint, body) {
      // Streamed chat and completions report usage only when asked: ask, and keep the extra final
      // usage chunk (`choices: []`) from a client that did not ask for it.
      if (body.stream !== true || (endpoint.kind !== "chat.completions" && endpoint.kind !== "completions")) return null;
      if (asObject(body.stream_options)?.include_usage === true) return null;
      return { edits: [{ path: ["stream_options", "include_usage"], value: true }], hideEvent: isUsageOnlyChunk };
    },
    forward(call) {
      const key = options.apiKey ?? providerKeyFor(call.ctx, options.keyEnv);
      const auth: Record<string, string> = key && !call.headers.has("authorization") ? { authorization: `Bearer ${key}` } : {};
      return fetchUpstream(upstreamURL(options.baseURL, call, "/v1"), call, auth);
    },
    // The Responses API's WebSocket mode: the same path on the base URL, over ws(s), same credential.
    upgrade(endpoint, call) {
      if (endpoint.kind !== "responses") return null;
      const key = options.apiKey ?? providerKeyFor(call.ctx, options.keyEnv);
      const auth: Record<string, string> = key && !call.headers.has("authorization") ? { authorization: `Bearer ${key}` } : {};
      return upstreamSocket(options.baseURL, call, "/v1", auth);
    },
    // OpenAI's credential is `Authorization: Bearer`; an `x-api-key` is Anthropic's and stays here.
    credentialHeaders: ["authorization"],
    meter: openaiMeter,
    pricing: options.pricing,
    outputLimitField(endpoint) {
      if (endpoint.kind === "chat.completions") return options.chatOutputLimit;
      if (endpoint.kind === "completions") return "max_tokens";
      return endpoint.kind === "responses" ? "max_output_tokens" : null;
    },
  };
}

/** The chunk `include_usage` adds: no choices, only usage. */
function isUsageOnlyChunk(event: SSEEvent): boolean {
  if (!event.data.includes('"usage"')) return false;
  const chunk = asObject(parseJSON(event.data));
  return Array.isArray(chunk?.choices) && chunk.choices.length === 0 && asObject(chunk.usage) !== null;
}
