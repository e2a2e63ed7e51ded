/**
 * `azureOpenAI({ endpoint, deployments })`: Azure OpenAI as a provider, in both path styles —
 * `/openai/deployments/{deployment}/chat/completions?api-version=…` (the model is the deployment's,
 * mapped by `deployments` for pricing) and the v1 API `/openai/v1/chat/completions` (the model, a
 * deployment name, is in the body) — plus `/openai/responses` as `AzureOpenAI` calls it. Chat,
 * completions, embeddings and responses are billed (metered as OpenAI's wire format, priced from
 * genai-prices' `azure` data, by the model the response names first); any other path under
 * `/openai/` is forwarded and recorded. Credentials: the client's `api-key` or an Entra ID token
 * (`Authorization: Bearer`) pass through; a key the proxy holds is sent as `api-key`.
 */
import { definePlugin, fetchUpstream, parseOptions, providerKeyFor, type Endpoint, type InboundRequest } from "agent-attr";
import { z } from "zod";
import { openaiAdapter } from "../openai/adapter.ts";

const optionsSchema = z
  .object({
    /** Provider name in audit records. */
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_-]*$/, "lowercase letters, digits, '-' and '_'")
      .default("azure-openai"),
    /** The resource's endpoint, e.g. https://my-resource.openai.azure.com (without /openai). Default: AGENT_ATTR_AZURE_OPENAI_ENDPOINT. */
    endpoint: z.url().optional(),
    /** Deployment name → the model it runs (e.g. { "prod-chat": "gpt-4o" }), for records and pricing. Unlisted deployments are recorded under their own name. */
    deployments: z.record(z.string().min(1), z.string().min(1)).default({}),
    /** A key the proxy holds, sent as `api-key` when a client sends no credentials. Verified calls fall back to AZURE_OPENAI_API_KEY. */
    apiKey: z.string().min(1).optional(),
  })
  .strict();

/** The model calls, by the path after the deployment (or after /openai/v1/). */
const billedKinds: Record<string, Endpoint["kind"]> = {
  "chat/completions": "chat.completions",
  completions: "completions",
  embeddings: "embeddings",
  responses: "responses",
};

const deploymentPath = /^\/openai\/deployments\/([^/]+)\/(.+)$/;

/** The Azure endpoint a request under /openai/ is; `deployments` maps a deployment to its model. */
export function azureEndpoint({ method, path }: InboundRequest, deployments: Readonly<Record<string, string>>): Endpoint {
  const base = { wire: "openai", path, method: method as Endpoint["method"] } as const;
  const deployment = deploymentPath.exec(path);
  const rest = deployment ? deployment[2]! : path.replace(/^\/openai\/(v1\/)?/, "");
  const kind = method === "POST" ? billedKinds[rest] : undefined;
  if (kind) {
    if (!deployment) return { ...base, kind, billed: true, body: "model" };
    const name = safeDecode(deployment[1]!);
    return { ...base, kind, billed: true, body: "json", model: deployments[name] ?? name };
  }
  const hasBody = method !== "GET" && method !== "HEAD" && method !== "DELETE";
  return { ...base, kind: "azure.other", billed: false, ...(hasBody ? { body: "stream" } : {}) };
}

export function azureOpenAI(options: z.input<typeof optionsSchema> = {}) {
  const opts = parseOptions("azure-openai", optionsSchema, options);
  const endpoint = opts.endpoint ?? process.env.AGENT_ATTR_AZURE_OPENAI_ENDPOINT;
  if (!endpoint) {
    throw new Error(
      "Invalid options for plugin 'azure-openai': endpoint is required (e.g. https://my-resource.openai.azure.com), or set AGENT_ATTR_AZURE_OPENAI_ENDPOINT.",
    );
  }
  const base = endpoint.replace(/\/+$/, "").replace(/\/openai$/, "");
  // OpenAI's wire format: its body edits (stream usage), meter and output-limit fields.
  const openaiWire = openaiAdapter({
    baseURL: base,
    servesModelList: false,
    pricing: { catalog: "azure" },
    chatOutputLimit: "max_completion_tokens",
  });
  return definePlugin({
    name: opts.name,
    provider: {
      ...openaiWire,
      // Only Azure's own paths: the OpenAI ones under /v1 stay with openai().
      match: () => false,
      endpoints: { prefixes: ["/openai/"], resolve: (request) => azureEndpoint(request, opts.deployments) },
      credentialHeaders: ["api-key", "authorization"],
      forward(call) {
        const key = opts.apiKey ?? providerKeyFor(call.ctx, "AZURE_OPENAI_API_KEY");
        const hasCredentials = call.headers.has("api-key") || call.headers.has("authorization");
        const url = call.ctx.request.url;
        const pathAndQuery = url.slice(url.indexOf("/", url.indexOf("//") + 2));
        return fetchUpstream(`${base}${pathAndQuery}`, call, key && !hasCredentials ? { "api-key": key } : {});
      },
    },
  });
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
