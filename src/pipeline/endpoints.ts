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
  // AWS Bedrock runtime, as its SDKs send it: the model id (or ARN) URL-encoded in the path.
  { path: "/model/:modelId/converse", method: "POST", wire: "bedrock", kind: "bedrock.converse", modelParam: "modelId" },
  {
    path: "/model/:modelId/converse-stream",
    method: "POST",
    wire: "bedrock",
    kind: "bedrock.converse-stream",
    modelParam: "modelId",
    streams: true,
  },
  { path: "/model/:modelId/invoke", method: "POST", wire: "bedrock", kind: "bedrock.invoke", modelParam: "modelId" },
  {
    path: "/model/:modelId/invoke-with-response-stream",
    method: "POST",
    wire: "bedrock",
    kind: "bedrock.invoke-stream",
    modelParam: "modelId",
    streams: true,
  },
  { path: "/model/:modelId/count-tokens", method: "POST", wire: "bedrock", kind: "bedrock.count-tokens", modelParam: "modelId" },
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

/** The wire format whose error shape a proxied path (under /v1, or Bedrock's /model) should answer in. */
export function wireOfPath(path: string): Endpoint["wire"] {
  if (path.startsWith("/model/")) return "bedrock";
  return path.startsWith("/v1/messages") ? "anthropic" : "openai";
}

/**
 * The value of `endpoint.modelParam` in a request's path, URL-decoded; null when the endpoint names
 * no path parameter or the path does not fit its pattern.
 */
export function modelFromPath(endpoint: Endpoint, url: string): string | null {
  if (!endpoint.modelParam) return null;
  const path = new URL(url).pathname.split("/");
  const index = endpoint.path.split("/").indexOf(`:${endpoint.modelParam}`);
  const raw = index >= 0 ? path[index] : undefined;
  if (!raw) return null;
  try {
    return decodeURIComponent(raw);
  } catch {
    return null;
  }
}

/** The request-body fields that bound a call's output, across the OpenAI and Anthropic APIs. */
export const outputLimitFields = ["max_tokens", "max_completion_tokens", "max_output_tokens"] as const;
