/** Reading a call: its context before any stage runs, and its JSON body (bounded in size and time). */
import { ProxyError } from "../errors.ts";
import { readBody } from "../proxy/body.ts";
import { emptyAttribution, type CallContext, type Endpoint } from "./context.ts";
import { modelFromPath } from "./endpoints.ts";
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

async function readJSONBody(request: Request, endpoint: Endpoint, rt: Runtime) {
  if (endpoint.method === "GET") return { rawBody: null, body: null };
  const rawBody = await readBody(request, rt.limits.maxBodyBytes, rt.limits.bodyTimeoutMs);
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
 * The call with its body read and checked: the method, JSON, a model on POST — the body's string
 * `model`, or the path's (Bedrock: `/model/{modelId}/…`).
 */
export async function readCall(base: CallContext, rt: Runtime): Promise<CallContext> {
  const { request, endpoint } = base;
  if (request.method !== endpoint.method) {
    throw new ProxyError("method_not_allowed", `${endpoint.path} accepts ${endpoint.method}, not ${request.method}.`, {
      allow: endpoint.method,
    });
  }
  if (endpoint.modelParam) {
    const model = modelFromPath(endpoint, request.url);
    if (!model) throw new ProxyError("missing_model", `The path must name a model: ${endpoint.path}.`);
    const { rawBody, body } = await readJSONBody(request, endpoint, rt);
    return { ...base, rawBody, body, model, stream: endpoint.streams === true };
  }
  const { rawBody, body } = await readJSONBody(request, endpoint, rt);
  const model = typeof body?.model === "string" ? body.model : null;
  if (endpoint.method === "POST" && model === null) {
    throw new ProxyError("missing_model", "The request body must have a string field `model`.");
  }
  return { ...base, rawBody, body, model, stream: body?.stream === true };
}
