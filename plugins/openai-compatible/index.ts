/**
 * `openaiCompatible({ name, baseURL, models })`: every server that speaks the OpenAI wire format
 * (Ollama, vLLM, LM Studio, llama.cpp…). Calls whose model matches one of `models` go to `baseURL`;
 * put it before `openai()` in `plugins`, since the first matching provider wins.
 */
import { definePlugin, parseOptions } from "agent-attr";
import { z } from "zod";
import { openaiAdapter } from "../openai/adapter.ts";

const optionsSchema = z
  .object({
    /** Provider name in audit records, e.g. "ollama". */
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_-]*$/, "lowercase letters, digits, '-' and '_'")
      .default("openai-compatible"),
    /** Base URL including `/v1`, e.g. http://127.0.0.1:11434/v1. */
    baseURL: z.url(),
    /** Model-name globs served by this server, e.g. ["llama*", "qwen*"]. */
    models: z.array(z.string().min(1)).min(1),
    /** Answer GET /v1/models from this server instead of the next provider. */
    modelList: z.boolean().default(false),
    apiKey: z.string().min(1).optional(),
    /**
     * The genai-prices provider whose prices apply (e.g. "groq", "mistral", "together") for a hosted
     * service. Default: none — self-hosted models cost 0 unless pricing({...}) prices them.
     */
    catalog: z.string().min(1).optional(),
  })
  .strict();

export function openaiCompatible(options: z.input<typeof optionsSchema>) {
  const opts = parseOptions("openai-compatible", optionsSchema, options);
  return definePlugin({
    name: opts.name,
    provider: openaiAdapter({
      baseURL: opts.baseURL,
      models: opts.models,
      servesModelList: opts.modelList,
      apiKey: opts.apiKey,
      pricing: opts.catalog ? { catalog: opts.catalog } : "free",
      chatOutputLimit: "max_tokens",
    }),
  });
}
