/**
 * `openai()`: the OpenAI API as a provider. Serves every OpenAI wire-format call (chat completions,
 * responses, embeddings, completions, models) whose model matches `models` (default: all), so list
 * more specific providers (e.g. `openaiCompatible`) before it.
 */
import { definePlugin, parseOptions } from "agent-attr";
import { z } from "zod";
import { openaiAdapter } from "./adapter.ts";

const optionsSchema = z
  .object({
    /** Upstream base URL including `/v1`. Default: AGENT_ATTR_OPENAI_BASE_URL or https://api.openai.com/v1. */
    baseURL: z.url().optional(),
    /** Model-name globs this provider serves. Default: all. */
    models: z.array(z.string().min(1)).optional(),
    /** A provider key the proxy holds, used when a client sends none. Verified calls (keys, jwt) fall back to OPENAI_API_KEY. */
    apiKey: z.string().min(1).optional(),
  })
  .strict();

export function openai(options: z.input<typeof optionsSchema> = {}) {
  const opts = parseOptions("openai", optionsSchema, options);
  return definePlugin({
    name: "openai",
    provider: openaiAdapter({
      baseURL: opts.baseURL ?? process.env.AGENT_ATTR_OPENAI_BASE_URL ?? "https://api.openai.com/v1",
      models: opts.models,
      servesModelList: true,
      apiKey: opts.apiKey,
      keyEnv: "OPENAI_API_KEY",
      pricing: { catalog: "openai" },
      chatOutputLimit: "max_completion_tokens",
    }),
  });
}
