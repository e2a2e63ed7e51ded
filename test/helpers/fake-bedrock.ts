/**
 * A fake AWS Bedrock runtime on port 0, speaking its wire format: Converse and InvokeModel JSON
 * answers (with InvokeModel's `x-amzn-bedrock-*-token-count` headers), ConverseStream and
 * InvokeModelWithResponseStream as binary event streams (frames encoded with the codec the AWS
 * SDKs use, payloads padded with `p` as AWS does), errors as `x-amzn-ErrorType` + `{ message }`.
 *
 * Like AWS it checks every request's credentials: a SigV4 signature is recomputed with
 * `@smithy/signature-v4` from the secret of the access key it names (over the headers it says it
 * signed, the raw path and the body) and a mismatch is refused with 403 InvalidSignatureException;
 * a bearer token must be one of `bearerTokens`. Tests steer it with `x-fake-scenario`:
 *   throttle (429 ThrottlingException) | stream-exception (a modelStreamErrorException frame after
 *   the first text delta) | break (the socket dies mid-stream) | gap:<ms> (pause before the end)
 *   | corrupt (a frame whose payload fails its CRC, as no AWS stream would send).
 */
import { Sha256 } from "@aws-crypto/sha256-js";
import { EventStreamCodec } from "@smithy/core/event-streams";
import { SignatureV4 } from "@smithy/signature-v4";
import type { Server } from "bun";

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();
export const codec = new EventStreamCodec(
  (bytes) => utf8Decoder.decode(bytes),
  (text) => utf8Encoder.encode(text),
);

export interface SeenBedrockRequest {
  method: string;
  /** The raw path, percent-encoding as sent. */
  path: string;
  /** The query string as sent (`?…`, or ''). */
  query: string;
  headers: Record<string, string>;
  body: string;
  /** The access key id of a verified SigV4 signature, or the bearer token; null if refused. */
  credential: string | null;
}

export interface FakeBedrock {
  url: string;
  server: Server<undefined>;
  requests: SeenBedrockRequest[];
  /** Every byte of the last event stream it sent, to compare with what the client got. */
  lastStream: Uint8Array | null;
  cancelled: number;
  stop(): Promise<void>;
}

export interface FakeBedrockOptions {
  region: string;
  /** Access key id → secret access key, of the keys it accepts. */
  keys: Record<string, string>;
  bearerTokens?: string[];
}

export const converseUsage = { inputTokens: 12, outputTokens: 7, totalTokens: 27, cacheReadInputTokens: 5, cacheWriteInputTokens: 3 };
export const anthropicUsage = { input_tokens: 10, cache_creation_input_tokens: 3, cache_read_input_tokens: 5, output_tokens: 9 };

const padding = (n: number) => "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123".slice(0, n);

export function eventFrame(eventType: string, payload: Record<string, unknown>): Uint8Array {
  return codec.encode({
    headers: {
      ":event-type": { type: "string", value: eventType },
      ":content-type": { type: "string", value: "application/json" },
      ":message-type": { type: "string", value: "event" },
    },
    body: utf8Encoder.encode(JSON.stringify({ ...payload, p: padding(7 + (eventType.length % 11)) })),
  });
}

export function exceptionFrame(exceptionType: string, message: string): Uint8Array {
  return codec.encode({
    headers: {
      ":exception-type": { type: "string", value: exceptionType },
      ":content-type": { type: "string", value: "application/json" },
      ":message-type": { type: "string", value: "exception" },
    },
    body: utf8Encoder.encode(JSON.stringify({ message, originalStatusCode: 500 })),
  });
}

function awsError(status: number, type: string, message: string): Response {
  return Response.json(
    { message },
    {
      status,
      headers: {
        "x-amzn-errortype": `${type}:http://internal.amazon.com/coral/com.amazon.bedrock/`,
        "x-amzn-requestid": crypto.randomUUID(),
      },
    },
  );
}

function converseFrames(): Uint8Array[] {
  return [
    eventFrame("messageStart", { role: "assistant" }),
    eventFrame("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "Hello" } }),
    eventFrame("contentBlockDelta", { contentBlockIndex: 0, delta: { text: " world" } }),
    eventFrame("contentBlockStop", { contentBlockIndex: 0 }),
    eventFrame("messageStop", { stopReason: "end_turn" }),
    eventFrame("metadata", { usage: converseUsage, metrics: { latencyMs: 321 } }),
  ];
}

function anthropicEvents(model: string): Record<string, unknown>[] {
  return [
    {
      type: "message_start",
      message: {
        id: "msg_bdrk_01",
        type: "message",
        role: "assistant",
        model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { ...anthropicUsage, output_tokens: 1 },
      },
    },
    { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
    { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Hello" } },
    { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: " world" } },
    { type: "content_block_stop", index: 0 },
    {
      type: "message_delta",
      delta: { stop_reason: "end_turn", stop_sequence: null },
      usage: { output_tokens: anthropicUsage.output_tokens },
    },
    {
      type: "message_stop",
      "amazon-bedrock-invocationMetrics": {
        inputTokenCount: anthropicUsage.input_tokens,
        outputTokenCount: anthropicUsage.output_tokens,
        invocationLatency: 512,
        firstByteLatency: 200,
        cacheReadInputTokenCount: anthropicUsage.cache_read_input_tokens,
        cacheWriteInputTokenCount: anthropicUsage.cache_creation_input_tokens,
      },
    },
  ];
}

const chunkFrame = (event: Record<string, unknown>) =>
  eventFrame("chunk", { bytes: Buffer.from(JSON.stringify(event)).toString("base64") });

/** Checks a request's credentials as AWS does; the access key id or token, or the refusal. */
async function verify(request: Request, body: Uint8Array, options: FakeBedrockOptions): Promise<string | Response> {
  const authorization = request.headers.get("authorization") ?? "";
  const bearer = /^Bearer (.+)$/.exec(authorization);
  if (bearer) {
    if (options.bearerTokens?.includes(bearer[1]!)) return bearer[1]!;
    return awsError(403, "UnrecognizedClientException", "The security token included in the request is invalid.");
  }
  const match =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/bedrock\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/.exec(
      authorization,
    );
  if (!match) return awsError(403, "MissingAuthenticationTokenException", "Missing Authentication Token");
  const [, accessKeyId, , region, signedHeaders, signature] = match;
  const secretAccessKey = options.keys[accessKeyId!];
  if (!secretAccessKey || region !== options.region) {
    return awsError(403, "UnrecognizedClientException", "The security token included in the request is invalid.");
  }
  const amzDate = request.headers.get("x-amz-date") ?? "";
  const date = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (!date) return awsError(400, "IncompleteSignatureException", "x-amz-date is missing or malformed");
  const signingDate = new Date(Date.UTC(+date[1]!, +date[2]! - 1, +date[3]!, +date[4]!, +date[5]!, +date[6]!));
  const headers: Record<string, string> = {};
  for (const name of signedHeaders!.split(";")) headers[name] = request.headers.get(name) ?? "";
  const url = new URL(request.url);
  const sessionToken = request.headers.get("x-amz-security-token") ?? undefined;
  const claimedHash = request.headers.get("x-amz-content-sha256");
  if (claimedHash !== null && claimedHash !== new Bun.CryptoHasher("sha256").update(body).digest("hex")) {
    return awsError(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.");
  }
  // Over exactly the headers the request says it signed: the signer adds none of its own.
  const signer = new SignatureV4({
    service: "bedrock",
    region: options.region,
    credentials: { accessKeyId: accessKeyId!, secretAccessKey, sessionToken },
    sha256: Sha256,
    applyChecksum: false,
  });
  const expected = await signer.sign(
    {
      method: request.method,
      protocol: url.protocol,
      hostname: url.hostname,
      port: Number(url.port),
      path: url.pathname,
      query: {},
      headers,
      body,
    },
    { signingDate },
  );
  const expectedSignature = /Signature=([0-9a-f]{64})/.exec(String(expected.headers.authorization))?.[1];
  if (expectedSignature !== signature) {
    return awsError(
      403,
      "InvalidSignatureException",
      "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
    );
  }
  return accessKeyId!;
}

export async function startFakeBedrock(options: FakeBedrockOptions): Promise<FakeBedrock> {
  const fake: FakeBedrock = {
    url: "",
    server: undefined as unknown as Server<undefined>,
    requests: [],
    lastStream: null,
    cancelled: 0,
    stop: async () => fake.server.stop(true),
  };
  const stream = (frames: Uint8Array[], scenario: string) => {
    if (scenario === "corrupt") frames[2]![frames[2]!.length - 6]! ^= 0xff;
    const all = Buffer.concat(frames);
    fake.lastStream = all;
    const gap = /^gap:(\d+)$/.exec(scenario);
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (i >= frames.length) return controller.close();
        if (gap && i === frames.length - 1) await Bun.sleep(Number(gap[1]));
        if (scenario === "break" && i === 3) {
          await Bun.sleep(50);
          return controller.error(new Error("upstream died"));
        }
        controller.enqueue(frames[i++]!);
      },
      cancel() {
        fake.cancelled++;
      },
    });
    return new Response(body, {
      headers: { "content-type": "application/vnd.amazon.eventstream", "x-amzn-requestid": crypto.randomUUID() },
    });
  };
  fake.server = Bun.serve({
    port: 0,
    async fetch(request) {
      const body = new Uint8Array(await request.arrayBuffer());
      const url = new URL(request.url);
      const seen: SeenBedrockRequest = {
        method: request.method,
        path: url.pathname,
        query: url.search,
        headers: Object.fromEntries(request.headers),
        body: utf8Decoder.decode(body),
        credential: null,
      };
      fake.requests.push(seen);
      const verified = await verify(request, body, options);
      if (verified instanceof Response) return verified;
      seen.credential = verified;
      const scenario = request.headers.get("x-fake-scenario") ?? "";
      if (scenario === "throttle") return awsError(429, "ThrottlingException", "Too many requests, please wait before trying again.");
      const route = /^\/model\/([^/]+)\/(converse|converse-stream|invoke|invoke-with-response-stream|count-tokens)$/.exec(url.pathname);
      if (!route) return awsError(404, "UnknownOperationException", "");
      const modelId = decodeURIComponent(route[1]!);
      // What Anthropic's bodies on Bedrock name: `claude-sonnet-4-5-20250929` for `…anthropic.claude-sonnet-4-5-20250929-v1:0`.
      const anthropicModel = /anthropic\.(claude-[a-z0-9-]+?)-v\d+(?::\d+)?$/.exec(modelId)?.[1] ?? null;
      const requestId = { "x-amzn-requestid": crypto.randomUUID() };
      switch (route[2]) {
        case "converse":
          return Response.json(
            {
              metrics: { latencyMs: 321 },
              output: { message: { role: "assistant", content: [{ text: "Hello world" }] } },
              stopReason: "end_turn",
              usage: converseUsage,
            },
            { headers: requestId },
          );
        case "converse-stream": {
          const frames = converseFrames();
          if (scenario === "stream-exception")
            return stream([...frames.slice(0, 2), exceptionFrame("modelStreamErrorException", "The model failed")], scenario);
          return stream(frames, scenario);
        }
        case "invoke":
          if (!anthropicModel) {
            return Response.json(
              { generation: "Hello world", prompt_token_count: 8, generation_token_count: 4, stop_reason: "stop" },
              { headers: { ...requestId, "x-amzn-bedrock-input-token-count": "8", "x-amzn-bedrock-output-token-count": "4" } },
            );
          }
          return Response.json(
            {
              id: "msg_bdrk_01",
              type: "message",
              role: "assistant",
              model: anthropicModel,
              content: [{ type: "text", text: "Hello world" }],
              stop_reason: "end_turn",
              stop_sequence: null,
              usage: anthropicUsage,
            },
            {
              headers: {
                ...requestId,
                "x-amzn-bedrock-input-token-count": String(anthropicUsage.input_tokens),
                "x-amzn-bedrock-output-token-count": String(anthropicUsage.output_tokens),
                "x-amzn-bedrock-invocation-latency": "512",
              },
            },
          );
        case "invoke-with-response-stream":
          return stream(anthropicEvents(anthropicModel ?? modelId).map(chunkFrame), scenario);
        case "count-tokens":
          return Response.json({ inputTokens: 42 }, { headers: requestId });
      }
      return awsError(404, "UnknownOperationException", "");
    },
  });
  fake.url = `http://127.0.0.1:${fake.server.port}`;
  return fake;
}
