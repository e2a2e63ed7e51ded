/**
 * `gemini()`: Google's Gemini API (the native one, as `@google/genai` calls it) as a provider. It
 * serves its own paths under `/v1beta/` (and `/v1/models/{model}:…` of the v1 API):
 * `models/{model}:generateContent`, `:streamGenerateContent?alt=sse` (billed, metered from
 * `usageMetadata`), `:countTokens` (not billed), `:embedContent` / `:batchEmbedContents` (billed,
 * input only), `GET models` and `models/{model}`; any other path under `/v1beta/` (files, cached
 * contents…) is forwarded and recorded. Point the SDK at the proxy with
 * `httpOptions: { baseUrl: "http://HOST:8080" }`.
 *
 * The credential is `x-goog-api-key`; a key sent as `?key=` is moved into that header before the
 * call goes upstream, so it is in no URL the proxy sends or logs (records keep the path only).
 */
import { definePlugin, fetchUpstream, parseOptions, providerKeyFor, type Endpoint, type InboundRequest } from "agent-attr";
import { z } from "zod";
import { geminiMeter } from "./meter.ts";
import { geminiError } from "./errors.ts";

const optionsSchema = z
  .object({
    /** Default: AGENT_ATTR_GEMINI_BASE_URL or https://generativelanguage.googleapis.com. */
    baseURL: z.url().optional(),
    /** A key the proxy holds, sent as `x-goog-api-key` when a client sends none. Verified calls fall back to GEMINI_API_KEY. */
    apiKey: z.string().min(1).optional(),
  })
  .strict();

/** The methods of `models/{model}:{method}`: billed or not. */
const modelMethods: Record<string, { kind: string; billed: boolean; stream?: boolean }> = {
  generateContent: { kind: "gemini.generateContent", billed: true },
  streamGenerateContent: { kind: "gemini.streamGenerateContent", billed: true, stream: true },
  countTokens: { kind: "gemini.countTokens", billed: false },
  embedContent: { kind: "gemini.embedContent", billed: true },
  batchEmbedContents: { kind: "gemini.batchEmbedContents", billed: true },
};

const modelCall = /^\/(v1beta|v1)\/(models|tunedModels)\/([^/:]+):([A-Za-z]+)$/;
const modelGet = /^\/(v1beta|v1)\/models(?:\/([^/:]+))?$/;

/** The Gemini endpoint a request is, or null when it is not one of Gemini's paths. */
export function geminiEndpoint({ method, path }: InboundRequest): Endpoint | null {
  const decoded = path.includes("%") ? safeDecode(path) : path;
  const base = { wire: "gemini", path, errorResponse: geminiError } as const;
  const call = modelCall.exec(decoded);
  if (call) {
    const known = modelMethods[call[4]!];
    // Under /v1 only the model methods are Gemini's (the rest of /v1 is OpenAI's and Anthropic's).
    if (!known && call[1] === "v1") return null;
    if (method !== "POST") return { ...base, method: method as Endpoint["method"], kind: "gemini.other", billed: false };
    return known
      ? {
          ...base,
          method: "POST",
          kind: known.kind,
          billed: known.billed,
          body: "json",
          model: call[3]!,
          ...(known.stream ? { stream: true } : {}),
        }
      : { ...base, method: "POST", kind: "gemini.other", billed: false, body: "json", model: call[3]! };
  }
  if (!path.startsWith("/v1beta/")) return null;
  const get = modelGet.exec(decoded);
  if (get && method === "GET") return { ...base, method: "GET", kind: get[2] ? "gemini.models.get" : "gemini.models.list", billed: false };
  const hasBody = method !== "GET" && method !== "HEAD" && method !== "DELETE";
  return { ...base, method: method as Endpoint["method"], kind: "gemini.other", billed: false, ...(hasBody ? { body: "stream" } : {}) };
}

function safeDecode(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

export function gemini(options: z.input<typeof optionsSchema> = {}) {
  const opts = parseOptions("gemini", optionsSchema, options);
  const baseURL = (opts.baseURL ?? process.env.AGENT_ATTR_GEMINI_BASE_URL ?? "https://generativelanguage.googleapis.com").replace(
    /\/+$/,
    "",
  );
  return definePlugin({
    name: "gemini",
    provider: {
      // No OpenAI or Anthropic endpoint: only Gemini's own paths.
      match: () => false,
      endpoints: { prefixes: ["/v1beta/", "/v1/"], resolve: geminiEndpoint },
      // Gemini API keys, or an OAuth access token as `Authorization: Bearer`.
      credentialHeaders: ["x-goog-api-key", "authorization"],
      forward(call) {
        const url = new URL(call.ctx.request.url);
        const queryKey = url.searchParams.get("key");
        url.searchParams.delete("key");
        const key = opts.apiKey ?? providerKeyFor(call.ctx, "GEMINI_API_KEY");
        const auth: Record<string, string> = {};
        // With a principal the client's key was the proxy's: it never goes upstream.
        if (!call.headers.has("x-goog-api-key") && queryKey && !call.ctx.principal) auth["x-goog-api-key"] = queryKey;
        else if (!call.headers.has("x-goog-api-key") && key) auth["x-goog-api-key"] = key;
        return fetchUpstream(`${baseURL}${url.pathname}${url.search}`, call, auth);
      },
      meter: geminiMeter,
      pricing: { catalog: "google" },
      outputLimitField: () => null,
    },
  });
}
