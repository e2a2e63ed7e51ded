/**
 * Helpers for plugins (the built-in ones use them, and import nothing else of the core): option
 * validation, the credential a call presents, the proxy-held provider key.
 */
import { ProxyError } from "./errors.ts";
import type { CallContext } from "./pipeline/context.ts";
import { z } from "zod";

/** Validates a plugin factory's options with zod, failing with a message that names the option. */
export function parseOptions<S extends z.ZodType>(plugin: string, schema: S, options: unknown): z.output<S> {
  const result = schema.safeParse(options ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${issue.path.length ? `${issue.path.join(".")}: ` : ""}${issue.message}`);
  throw new Error(`Invalid options for plugin '${plugin}': ${problems.join("; ")}`);
}

/** The proxy-held provider key for a verified call; a verified call without one cannot be served. */
export function providerKeyFor(ctx: CallContext, keyEnv: string | undefined): string | undefined {
  if (!ctx.principal || !keyEnv) return undefined;
  const key = process.env[keyEnv];
  if (!key) {
    throw new ProxyError(
      "provider_key_missing",
      `The proxy holds no provider key for this call: set ${keyEnv} in the proxy's environment, or give the provider an apiKey in the config.`,
    );
  }
  return key;
}

/** One non-empty string or a non-empty list of them, as a list (globs, audiences). */
export const oneOrMany = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).transform((v) => (Array.isArray(v) ? v : [v]));

const apiKeyHeaders = ["x-api-key", "x-goog-api-key", "api-key"];

/**
 * The credential a call presents where SDKs put their API key: `x-api-key` (Anthropic),
 * `x-goog-api-key` (Gemini), `api-key` (Azure OpenAI), else `Authorization: Bearer`.
 */
export function presentedCredential(headers: Headers): string | null {
  for (const name of apiKeyHeaders) {
    const apiKey = headers.get(name)?.trim();
    if (apiKey) return apiKey;
  }
  const bearer = /^Bearer\s+(.+)$/i.exec(headers.get("authorization")?.trim() ?? "");
  return bearer?.[1]?.trim() || null;
}
