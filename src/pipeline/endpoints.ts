/**
 * The proxied endpoints: path → wire format and kind (DESIGN §2). A path both wire formats use
 * (`GET /v1/models`) is listed once per format; the request's own headers say which it is.
 */
import type { Endpoint, WireFormat } from "./context.ts";

export const endpoints: readonly Endpoint[] = [
  { path: "/v1/chat/completions", method: "POST", wire: "openai", kind: "chat.completions" },
  { path: "/v1/responses", method: "POST", wire: "openai", kind: "responses" },
  { path: "/v1/embeddings", method: "POST", wire: "openai", kind: "embeddings" },
  { path: "/v1/completions", method: "POST", wire: "openai", kind: "completions" },
  { path: "/v1/models", method: "GET", wire: "openai", kind: "models" },
  { path: "/v1/models", method: "GET", wire: "anthropic", kind: "models" },
  { path: "/v1/messages", method: "POST", wire: "anthropic", kind: "messages" },
  { path: "/v1/messages/count_tokens", method: "POST", wire: "anthropic", kind: "messages.count_tokens" },
];

/** The proxied paths, each with the endpoints it serves (one, or one per wire format). */
export function endpointsByPath(): Map<string, Endpoint[]> {
  const byPath = new Map<string, Endpoint[]>();
  for (const endpoint of endpoints) byPath.set(endpoint.path, [...(byPath.get(endpoint.path) ?? []), endpoint]);
  return byPath;
}

/**
 * The wire format a request shows: Anthropic's SDKs (and Claude Code) always send
 * `anthropic-version`, and `x-api-key` is Anthropic's credential header; OpenAI's send neither.
 */
export function wireOfRequest(headers: Headers): WireFormat {
  return headers.has("anthropic-version") || headers.has("x-api-key") ? "anthropic" : "openai";
}

/** Of a path's endpoints, the one in the request's wire format (the first, when none is). */
export function endpointFor(candidates: readonly Endpoint[], headers: Headers): Endpoint {
  if (candidates.length === 1) return candidates[0]!;
  const wire = wireOfRequest(headers);
  return candidates.find((endpoint) => endpoint.wire === wire) ?? candidates[0]!;
}

/** The wire format whose error shape a path under /v1 should answer in. */
export function wireOfPath(path: string): Endpoint["wire"] {
  return path.startsWith("/v1/messages") ? "anthropic" : "openai";
}

/** The request-body fields that bound a call's output, across the OpenAI and Anthropic APIs. */
export const outputLimitFields = ["max_tokens", "max_completion_tokens", "max_output_tokens"] as const;
