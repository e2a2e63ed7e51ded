/** The proxied endpoints: path → wire format and kind (DESIGN §2). */
import type { Endpoint } from "./context.ts";

export const endpoints: readonly Endpoint[] = [
  { path: "/v1/chat/completions", method: "POST", wire: "openai", kind: "chat.completions" },
  { path: "/v1/responses", method: "POST", wire: "openai", kind: "responses" },
  { path: "/v1/embeddings", method: "POST", wire: "openai", kind: "embeddings" },
  { path: "/v1/completions", method: "POST", wire: "openai", kind: "completions" },
  { path: "/v1/models", method: "GET", wire: "openai", kind: "models" },
  { path: "/v1/messages", method: "POST", wire: "anthropic", kind: "messages" },
  { path: "/v1/messages/count_tokens", method: "POST", wire: "anthropic", kind: "messages.count_tokens" },
];

/** The wire format whose error shape a path under /v1 should answer in. */
export function wireOfPath(path: string): Endpoint["wire"] {
  return path.startsWith("/v1/messages") ? "anthropic" : "openai";
}

/** The request-body fields that bound a call's output, across the OpenAI and Anthropic APIs. */
export const outputLimitFields = ["max_tokens", "max_completion_tokens", "max_output_tokens"] as const;
