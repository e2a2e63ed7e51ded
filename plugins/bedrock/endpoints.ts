/**
 * The Bedrock runtime's paths, as its SDKs send them: `POST /model/{modelId}/{operation}`, the
 * model id (or an ARN, `/` and `:` included) percent-encoded in one path segment. The model calls
 * are billed; CountTokens and any other operation under `/model/` or `/guardrail/` (ApplyGuardrail)
 * are forwarded and recorded unbilled (kind `other`, so `server.unknownPaths: "refuse"` refuses them).
 * Every body is read whole: a SigV4 signature covers the body's hash.
 */
import type { Endpoint, InboundRequest } from "agent-attr";
import { bedrockError } from "./errors.ts";

const operations: Record<string, { kind: string; billed: boolean; body: "model" | "json"; stream?: true }> = {
  converse: { kind: "bedrock.converse", billed: true, body: "model" },
  "converse-stream": { kind: "bedrock.converse-stream", billed: true, body: "model", stream: true },
  // InvokeModel's body is the model's own (JSON for every text model): forwarded as received.
  invoke: { kind: "bedrock.invoke", billed: true, body: "json" },
  "invoke-with-response-stream": { kind: "bedrock.invoke-stream", billed: true, body: "json", stream: true },
  "count-tokens": { kind: "bedrock.count-tokens", billed: false, body: "model" },
};

const modelCall = /^\/model\/([^/]+)\/([a-z-]+)$/;

export const bedrockPrefixes = ["/model/", "/guardrail/"] as const;

export function bedrockEndpoint({ method, path }: InboundRequest): Endpoint | null {
  if (!bedrockPrefixes.some((prefix) => path.startsWith(prefix))) return null;
  const base = { wire: "bedrock", path, errorResponse: bedrockError } as const;
  const call = modelCall.exec(path);
  const operation = call && method === "POST" ? operations[call[2]!] : undefined;
  const model = call ? decoded(call[1]!) : null;
  if (operation && model) {
    const { stream, ...rest } = operation;
    return { ...base, method: "POST", model, ...rest, ...(stream ? { stream } : {}) };
  }
  const hasBody = method !== "GET" && method !== "HEAD" && method !== "DELETE";
  return { ...base, method: method as Endpoint["method"], kind: "other", billed: false, ...(hasBody ? { body: "json" } : {}) };
}

function decoded(segment: string): string | null {
  try {
    return decodeURIComponent(segment) || null;
  } catch {
    return null;
  }
}
