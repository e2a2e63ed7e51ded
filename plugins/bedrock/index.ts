/**
 * `bedrock()`: the AWS Bedrock runtime as a provider, on the paths its SDKs send —
 * `POST /model/{modelId}/converse`, `/converse-stream`, `/invoke`, `/invoke-with-response-stream`
 * and `/count-tokens`, the model id (or an inference-profile ARN) URL-encoded in the path. So
 * `new BedrockRuntimeClient({ endpoint: "http://HOST:8080" })` works unchanged.
 *
 * Upstream calls are signed with SigV4 by the proxy, from its own AWS credentials (`credentials`,
 * else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN): a client's own signature is
 * made for the proxy's host and is never sent on. A client that sends a bearer token instead
 * (a Bedrock API key: the SDK's `token`) has it forwarded unchanged, unless the token was a proxy
 * key (`apiKeys()`), which makes the call verified and signed by the proxy. Streams pass through
 * byte for byte; their binary event-stream framing is decoded beside them for usage (./meter.ts).
 */
import { ProxyError, definePlugin, modelMatcher, parseOptions, upstreamURL, type UpstreamCall } from "agent-attr";
import { z } from "zod";
import { bedrockEndpoint, bedrockPrefixes } from "./endpoints.ts";
import { bedrockMeter } from "./meter.ts";
import { bedrockSigner, clientSignatureHeaders, isSigV4, type AwsCredentialProvider, type AwsCredentials } from "./sign.ts";

export type { AwsCredentialProvider, AwsCredentials } from "./sign.ts";

const staticCredentials = z
  .object({
    accessKeyId: z.string().min(1),
    secretAccessKey: z.string().min(1),
    sessionToken: z.string().min(1).optional(),
  })
  .strict();

const optionsSchema = z
  .object({
    /** The provider's name in records (default "bedrock"): name each one when you list one per region. */
    name: z.string().min(1).default("bedrock"),
    /** The AWS region of the upstream and of the signature. Default: AWS_REGION, else AWS_DEFAULT_REGION. */
    region: z
      .string()
      .regex(/^[a-z0-9-]+$/, "an AWS region such as us-east-1")
      .optional(),
    /** Default: AGENT_ATTR_BEDROCK_BASE_URL, else https://bedrock-runtime.{region}.amazonaws.com. */
    baseURL: z.url().optional(),
    /**
     * Model-id globs this provider serves (`anthropic.*`, `eu.*`, `arn:aws:bedrock:eu-*`). Default:
     * all. A call for another model is offered to the next Bedrock provider listed (e.g. another region's).
     */
    models: z.array(z.string().min(1)).optional(),
    /**
     * The proxy's AWS credentials: keys, or a provider function (e.g. `fromNodeProviderChain()` of
     * `@aws-sdk/credential-providers`, asked on every call). Default: the AWS_* environment variables.
     */
    credentials: z
      .union([staticCredentials, z.custom<AwsCredentialProvider>((value) => typeof value === "function", "a function")])
      .optional(),
  })
  .strict();

export type BedrockOptions = z.input<typeof optionsSchema>;

/** The standard AWS environment variables, read on every call. */
async function environmentCredentials(): Promise<AwsCredentials> {
  const accessKeyId = process.env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = process.env.AWS_SECRET_ACCESS_KEY;
  if (!accessKeyId || !secretAccessKey) {
    throw new ProxyError(
      "provider_key_missing",
      "The proxy holds no AWS credentials to sign this Bedrock call with: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones) in the proxy's environment, or give bedrock() `credentials` in the config.",
    );
  }
  const sessionToken = process.env.AWS_SESSION_TOKEN || undefined;
  return { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
}

/** The query parameters of a presigned SigV4 request (the client's credential and signature). */
const presignedParams = [
  "X-Amz-Algorithm",
  "X-Amz-Credential",
  "X-Amz-Date",
  "X-Amz-Expires",
  "X-Amz-SignedHeaders",
  "X-Amz-Signature",
  "X-Amz-Security-Token",
];

export function bedrock(options: BedrockOptions = {}) {
  const opts = parseOptions("bedrock", optionsSchema, options);
  const region = opts.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  if (!region) {
    throw new Error(
      "Invalid options for plugin 'bedrock': no AWS region; set AWS_REGION in the proxy's environment or give bedrock({ region }).",
    );
  }
  const baseURL = opts.baseURL ?? process.env.AGENT_ATTR_BEDROCK_BASE_URL ?? `https://bedrock-runtime.${region}.amazonaws.com`;
  const matches = opts.models ? modelMatcher(opts.models) : () => true;
  const sign = bedrockSigner(region, opts.credentials ?? environmentCredentials);

  async function forward(call: UpstreamCall): Promise<Response> {
    const url = new URL(upstreamURL(baseURL, call));
    // A presigned client request carries its SigV4 credential in the query: never sent on.
    for (const name of presignedParams) if (url.searchParams.has(name)) url.searchParams.delete(name);
    const headers = call.headers;
    const presented = headers.get("authorization");
    for (const name of clientSignatureHeaders) headers.delete(name);
    const principalHeaders = call.ctx.principal?.upstreamHeaders;
    if (principalHeaders) for (const name in principalHeaders) headers.set(name, principalHeaders[name]!);
    // The core removed the client's credential already when a proxy key verified the call.
    const bearer = !call.ctx.principal && presented !== null && !isSigV4(presented);
    if (bearer) headers.set("authorization", presented);
    if (call.body instanceof ReadableStream)
      throw new Error("a streamed request body cannot be signed (every Bedrock endpoint reads its body whole)");
    const sent = bearer ? headers : await sign({ url, method: call.ctx.endpoint.method, headers, body: call.body });
    return fetch(url, {
      method: call.ctx.endpoint.method,
      headers: sent,
      body: call.body,
      signal: call.signal,
      redirect: "manual",
      timeout: false,
    });
  }

  return definePlugin({
    name: opts.name,
    provider: {
      // No OpenAI or Anthropic endpoint: only Bedrock's own paths, for the models it serves.
      match: () => false,
      endpoints: {
        prefixes: bedrockPrefixes,
        resolve(request) {
          const endpoint = bedrockEndpoint(request);
          return endpoint && (endpoint.model === undefined || matches(endpoint.model)) ? endpoint : null;
        },
      },
      credentialHeaders: ["authorization"],
      forward,
      meter: bedrockMeter,
      pricing: { catalog: "aws", by: "requested" },
      // No cap: Converse bounds output in a nested `inferenceConfig.maxTokens`, and InvokeModel's
      // field is each model's own (Anthropic's `max_tokens` is required anyway).
      outputLimitField: () => null,
    },
  });
}
