/**
 * `anthropic()`: the Anthropic Messages API as a provider (`/v1/messages`,
 * `/v1/messages/count_tokens`, and `GET /v1/models` asked in Anthropic's wire format). baseURL
 * excludes `/v1`, as in the Anthropic SDK. The client's `x-api-key` or `Authorization` (an OAuth
 * token) is forwarded; both are Anthropic's credential headers.
 */
import { definePlugin, fetchUpstream, modelMatcher, upstreamURL, parseOptions, providerKeyFor } from "agent-attr";
import { z } from "zod";
import { anthropicMeter } from "./meter.ts";

const optionsSchema = z
  .object({
    /** Default: AGENT_ATTR_ANTHROPIC_BASE_URL or https://api.anthropic.com. */
    baseURL: z.url().optional(),
    /** Model-name globs this provider serves. Default: all. */
    models: z.array(z.string().min(1)).optional(),
    /** A provider key the proxy holds, sent as `x-api-key` when a client sends no credentials. Verified calls fall back to ANTHROPIC_API_KEY. */
    apiKey: z.string().min(1).optional(),
  })
  .strict();

export function anthropic(options: z.input<typeof optionsSchema> = {}) {
  const opts = parseOptions("anthropic", optionsSchema, options);
  const baseURL = opts.baseURL ?? process.env.AGENT_ATTR_ANTHROPIC_BASE_URL ?? "https://api.anthropic.com";
  const matches = opts.models ? modelMatcher(opts.models) : () => true;
  return definePlugin({
    name: "anthropic",
    provider: {
      match: (endpoint, model) => endpoint.wire === "anthropic" && (model === null || matches(model)),
      credentialHeaders: ["x-api-key", "authorization"],
      forward(call) {
        const hasCredentials = call.headers.has("x-api-key") || call.headers.has("authorization");
        const key = opts.apiKey ?? providerKeyFor(call.ctx, "ANTHROPIC_API_KEY");
        const auth: Record<string, string> = key && !hasCredentials ? { "x-api-key": key } : {};
        return fetchUpstream(upstreamURL(baseURL, call), call, auth);
      },
      meter: anthropicMeter,
      pricing: { catalog: "anthropic" },
      outputLimitField: (endpoint) => (endpoint.kind === "messages" ? "max_tokens" : null),
    },
  });
}
