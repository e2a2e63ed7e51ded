/**
 * The proxied endpoints of the OpenAI and Anthropic APIs (DESIGN §2). The model calls are fixed
 * paths, served as static routes (the hot path); the rest of both APIs — retrieving, listing,
 * cancelling and deleting responses, files, batches, message batches, moderations, token counts —
 * is recognised by `v1Endpoint` below, and any other path under /v1 is forwarded as `other`
 * (unless `server.unknownPaths` is "refuse"). A path both wire formats use (`GET /v1/models`,
 * `/v1/files`) is told apart by the request's own headers (`wireOfRequest`).
 */
import type { Endpoint, EndpointKind, HttpMethod, WireFormat } from "./context.ts";

const modelCall = (path: string, wire: WireFormat, kind: EndpointKind): Endpoint => ({
  path,
  method: "POST",
  wire,
  kind,
  body: "model",
  billed: true,
});

export const endpoints: readonly Endpoint[] = [
  modelCall("/v1/chat/completions", "openai", "chat.completions"),
  modelCall("/v1/responses", "openai", "responses"),
  modelCall("/v1/embeddings", "openai", "embeddings"),
  modelCall("/v1/completions", "openai", "completions"),
  { path: "/v1/models", method: "GET", wire: "openai", kind: "models", billed: false },
  { path: "/v1/models", method: "GET", wire: "anthropic", kind: "models", billed: false },
  modelCall("/v1/messages", "anthropic", "messages"),
  { ...modelCall("/v1/messages/count_tokens", "anthropic", "messages.count_tokens"), billed: false },
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

/**
 * The rest of the two APIs: method, path pattern (`{id}` is one path segment), kind, body. Only
 * the wire format decides between OpenAI's and Anthropic's meaning of a shared path (`/v1/files`).
 */
type SurfaceEntry = readonly [HttpMethod, string, EndpointKind, Endpoint["body"]?, billed?: boolean];

const surface: readonly SurfaceEntry[] = [
  // OpenAI: Responses API beyond create (background polling, streaming resume, token counts).
  ["POST", "/v1/responses/input_tokens", "responses.input_tokens", "json"],
  ["POST", "/v1/responses/compact", "responses.compact", "model", true],
  ["GET", "/v1/responses/{id}", "responses.retrieve"],
  ["DELETE", "/v1/responses/{id}", "responses.delete"],
  ["POST", "/v1/responses/{id}/cancel", "responses.cancel", "json"],
  ["GET", "/v1/responses/{id}/input_items", "responses.input_items"],
  ["GET", "/v1/models/{id}", "models.retrieve"],
  ["DELETE", "/v1/models/{id}", "models.delete"],
  ["POST", "/v1/moderations", "moderations", "json"],
  // Stored chat completions.
  ["GET", "/v1/chat/completions", "chat.completions.list"],
  ["GET", "/v1/chat/completions/{id}", "chat.completions.retrieve"],
  ["POST", "/v1/chat/completions/{id}", "chat.completions.update", "json"],
  ["DELETE", "/v1/chat/completions/{id}", "chat.completions.delete"],
  ["GET", "/v1/chat/completions/{id}/messages", "chat.completions.messages"],
  // Files (both APIs; uploads are multipart and stream through) and batches.
  ["POST", "/v1/files", "files.create", "stream"],
  ["GET", "/v1/files", "files.list"],
  ["GET", "/v1/files/{id}", "files.retrieve"],
  ["DELETE", "/v1/files/{id}", "files.delete"],
  ["GET", "/v1/files/{id}/content", "files.content"],
  ["POST", "/v1/uploads", "uploads.create", "json"],
  ["POST", "/v1/uploads/{id}/parts", "uploads.parts", "stream"],
  ["POST", "/v1/uploads/{id}/complete", "uploads.complete", "json"],
  ["POST", "/v1/uploads/{id}/cancel", "uploads.cancel", "json"],
  ["POST", "/v1/batches", "batches.create", "json"],
  ["GET", "/v1/batches", "batches.list"],
  ["GET", "/v1/batches/{id}", "batches.retrieve"],
  ["POST", "/v1/batches/{id}/cancel", "batches.cancel", "json"],
  // Anthropic: message batches.
  ["POST", "/v1/messages/batches", "messages.batches.create", "json"],
  ["GET", "/v1/messages/batches", "messages.batches.list"],
  ["GET", "/v1/messages/batches/{id}", "messages.batches.retrieve"],
  ["DELETE", "/v1/messages/batches/{id}", "messages.batches.delete"],
  ["POST", "/v1/messages/batches/{id}/cancel", "messages.batches.cancel", "json"],
  ["GET", "/v1/messages/batches/{id}/results", "messages.batches.results"],
];

/** Creating a batch causes the model calls it holds, run later and billed by the provider at its batch price. */
const batchCreation = new Set<EndpointKind>(["batches.create", "messages.batches.create"]);

type Compiled = { method: string; segments: readonly string[]; kind: EndpointKind; body: Endpoint["body"]; billed: boolean };

const compiled: readonly Compiled[] = surface.map(([method, pattern, kind, body, billed = false]) => ({
  method,
  segments: pattern.split("/"),
  kind,
  body,
  billed,
}));

const matchesPattern = (segments: readonly string[], parts: readonly string[]) =>
  segments.length === parts.length && segments.every((segment, i) => segment === parts[i] || (segment === "{id}" && parts[i] !== ""));

/**
 * A request under /v1 that is no model call: the surface entry it matches, or `other` (an
 * endpoint the proxy does not know, forwarded with its body streamed). `path` excludes the query.
 */
export function v1Endpoint(method: string, path: string, headers: Headers): Endpoint {
  const parts = path.split("/");
  const entry = compiled.find((candidate) => candidate.method === method && matchesPattern(candidate.segments, parts));
  const wire = entry?.kind.startsWith("messages.") ? "anthropic" : wireOfRequest(headers);
  const body = entry ? entry.body : method === "GET" || method === "HEAD" ? undefined : "stream";
  const kind = entry?.kind ?? "other";
  return {
    path,
    method: method as HttpMethod,
    wire,
    kind,
    billed: entry?.billed ?? false,
    ...(body ? { body } : {}),
    ...(batchCreation.has(kind) ? { unpriced: "batch" } : {}),
  };
}
