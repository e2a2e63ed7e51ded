/** Reading a call: its context before any stage runs, and its JSON body (bounded in size and time). */
import { ProxyError } from "../errors.ts";
import { readBody } from "../proxy/body.ts";
import { emptyAttribution, type CallContext, type Endpoint } from "./context.ts";
import type { Runtime } from "./runtime.ts";

export function baseContext(request: Request, endpoint: Endpoint): CallContext {
  return {
    id: Bun.randomUUIDv7(),
    startedAt: Date.now(),
    startedPerf: performance.now(),
    request,
    endpoint,
    rawBody: null,
    body: null,
    model: null,
    stream: false,
    principal: null,
    attribution: emptyAttribution,
  };
}

const utf8 = new TextDecoder();

function parseObject(rawBody: Uint8Array): Record<string, unknown> | null {
  try {
    const body: unknown = JSON.parse(utf8.decode(rawBody));
    return typeof body === "object" && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The body as the endpoint reads it (see BodyMode): bytes and parsed object, or neither. */
async function readRequestBody(request: Request, endpoint: Endpoint, rt: Runtime) {
  if (endpoint.body !== "model" && endpoint.body !== "json") return { rawBody: null, body: null };
  const rawBody = await readBody(request, rt.limits.maxBodyBytes, rt.limits.bodyTimeoutMs);
  if (endpoint.body === "json") return { rawBody, body: rawBody.byteLength > 0 ? parseObject(rawBody) : null };
  let body: unknown;
  try {
    body = JSON.parse(utf8.decode(rawBody));
  } catch {
    throw new ProxyError("invalid_json", "The request body is not valid JSON.");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new ProxyError("invalid_body", "The request body must be a JSON object.");
  }
  return { rawBody, body: body as Record<string, unknown> };
}

/**
 * The call with its body read and checked: the method, and for a model call a JSON object with a
 * string `model` (unless its path names the model).
 */
export async function readCall(base: CallContext, rt: Runtime): Promise<CallContext> {
  const { request, endpoint } = base;
  if (request.method !== endpoint.method) {
    throw new ProxyError("method_not_allowed", `${endpoint.path} accepts ${endpoint.method}, not ${request.method}.`, {
      allow: endpoint.method,
    });
  }
  const { rawBody, body } = await readRequestBody(request, endpoint, rt);
  const model = endpoint.model ?? (typeof body?.model === "string" ? body.model : null);
  if (endpoint.body === "model" && model === null) {
    throw new ProxyError("missing_model", "The request body must have a string field `model`.");
  }
  return { ...base, rawBody, body, model, stream: endpoint.stream ?? body?.stream === true };
}
