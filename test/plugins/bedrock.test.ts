// AWS Bedrock end to end: the real `@aws-sdk/client-bedrock-runtime` pointed at the proxy (endpoint
// override), the proxy re-signing every call with its own AWS credentials, and a fake Bedrock that
// checks those signatures with the same signer and answers in Bedrock's wire format (binary event
// streams included). Costs are hand-computed from the published Bedrock prices the bundled data
// holds: claude-3-5-haiku (regional) $0.80 in / $0.08 cache read / $1 cache write / $4 out;
// claude-sonnet-4-5 global $3 / $0.30 / $3.75 / $15 (regional: 10% more); llama3-70b $2.65 / $3.50.
import {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
  CountTokensCommand,
  InvokeModelCommand,
  InvokeModelWithResponseStreamCommand,
  ModelStreamErrorException,
  ThrottlingException,
} from "@aws-sdk/client-bedrock-runtime";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { bedrock, headerAttribution, pricing, sqliteAudit } from "../../plugins/index.ts";
import type { AuditRecord } from "../../src/trail/record.ts";
import { anthropicUsage, converseUsage, startFakeBedrock, type FakeBedrock } from "../helpers/fake-bedrock.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

const region = "us-west-2";
const proxyKey = { accessKeyId: "AKIAPROXYOWNKEY00001", secretAccessKey: "proxy-secret-access-key/abcdefghijklmnop" };
const clientKey = {
  accessKeyId: "AKIACLIENTKEY0000001",
  secretAccessKey: "client-secret-never-upstream",
  sessionToken: "client-session-token",
};
const clientBedrockApiKey = "ABSKclient-bedrock-api-key";
const haiku = "us.anthropic.claude-3-5-haiku-20241022-v1:0";

let fake: FakeBedrock;
let proxy: TestProxy;

beforeAll(async () => {
  fake = await startFakeBedrock({
    region,
    keys: { [proxyKey.accessKeyId]: proxyKey.secretAccessKey, [clientKey.accessKeyId]: clientKey.secretAccessKey },
    bearerTokens: [clientBedrockApiKey],
  });
  proxy = await startTestProxy(fake.url, {
    plugins: [bedrock({ region, baseURL: fake.url, credentials: proxyKey }), headerAttribution(), pricing(), sqliteAudit()],
  });
});
afterAll(async () => {
  await proxy.stop();
  await fake.stop();
});

/** The SDK as an application configures it for the proxy: the endpoint, and HTTP/1.1 (Bun serves no h2c). */
function client(
  auth: { credentials?: typeof clientKey; token?: string } = { credentials: clientKey },
  headers: Record<string, string> = {},
) {
  const sdk = new BedrockRuntimeClient({
    region,
    endpoint: proxy.url,
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler(),
    ...(auth.token ? { token: { token: auth.token }, authSchemePreference: ["httpBearerAuth"] } : { credentials: auth.credentials }),
  });
  sdk.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { headers: Record<string, string> };
      Object.assign(request.headers, { "x-agent-id": "bedrock-agent", "x-user-id": "alice", ...headers });
      return next(args);
    },
    { step: "build", name: "attributionHeaders" },
  );
  return sdk;
}

const messages = [{ role: "user" as const, content: [{ text: "Say hello" }] }];

async function lastRecord(n: number): Promise<AuditRecord> {
  // Estimates load the tokenizer on first use: seconds on a loaded machine.
  const records = await proxy.settled(n, 30_000);
  return records[records.length - 1]!;
}

let calls = 0;
const nextRecord = () => lastRecord(++calls);
const lastUpstream = () => fake.requests[fake.requests.length - 1]!;

describe("Converse and ConverseStream through the proxy", () => {
  test("a presigned request's SigV4 query parameters (the client's credential) are not sent on; the proxy signs it", async () => {
    const presigned = new URLSearchParams({
      "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
      "X-Amz-Credential": `${clientKey.accessKeyId}/20260101/${region}/bedrock/aws4_request`,
      "X-Amz-Security-Token": "CLIENT-SESSION-TOKEN",
      "X-Amz-Signature": "abc",
    });
    const response = await fetch(`${proxy.url}/model/${encodeURIComponent(haiku)}/converse?${presigned}`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-agent-id": "bedrock-agent" },
      body: JSON.stringify({ messages }),
    });
    expect(response.status).toBe(200);
    const seen = lastUpstream();
    expect(seen.query).toBe("");
    expect(seen.credential).toBe(proxyKey.accessKeyId);
    expect(JSON.stringify(seen)).not.toContain("CLIENT-SESSION-TOKEN");
    await nextRecord();
  });

  test("a Converse call is re-signed with the proxy's key, answered unchanged, and recorded with its usage and price", async () => {
    const answer = await client().send(new ConverseCommand({ modelId: haiku, messages }));
    expect(answer.output?.message?.content?.[0]?.text).toBe("Hello world");
    expect(answer.usage).toEqual(converseUsage);

    const seen = lastUpstream();
    // The fake verified the signature as AWS does: it names the proxy's key, not the client's.
    expect(seen.credential).toBe(proxyKey.accessKeyId);
    expect(seen.headers.authorization).toContain(`Credential=${proxyKey.accessKeyId}/`);
    expect(JSON.stringify(seen.headers)).not.toContain(clientKey.accessKeyId);
    expect(JSON.stringify(seen.headers)).not.toContain(clientKey.sessionToken);
    expect(seen.headers["x-agent-id"]).toBeUndefined();
    expect(seen.path).toBe("/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse");

    const record = await nextRecord();
    expect(record).toMatchObject({
      provider: "bedrock",
      endpoint: "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
      model: haiku,
      agent_id: "bedrock-agent",
      user_id: "alice",
      stream: false,
      status: 200,
      outcome: "completed",
      input_tokens: 20, // 12 uncached + 5 read + 3 written
      output_tokens: 7,
      cache_read_tokens: 5,
      cache_write_tokens: 3,
      usage_source: "provider",
      // 12 × 0.80 + 5 × 0.08 + 3 × 1 + 7 × 4 = 41 µ$
      cost_nano_usd: 41_000,
      price_source: "genai-prices@0.1.8:aws/regional.anthropic.claude-3-5-haiku-20241022-v1:0",
    });
  });

  test("ConverseStream: the SDK decodes every event the proxy passed on byte for byte; usage comes from `metadata`", async () => {
    const answer = await client().send(new ConverseStreamCommand({ modelId: haiku, messages }));
    const events: string[] = [];
    let text = "";
    for await (const event of answer.stream!) {
      events.push(Object.keys(event)[0]!);
      text += event.contentBlockDelta?.delta?.text ?? "";
      if (event.metadata) expect(event.metadata.usage).toEqual(converseUsage);
    }
    expect(events).toEqual(["messageStart", "contentBlockDelta", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"]);
    expect(text).toBe("Hello world");
    expect(lastUpstream().credential).toBe(proxyKey.accessKeyId);
    const record = await nextRecord();
    expect(record).toMatchObject({
      endpoint: `/model/${encodeURIComponent(haiku)}/converse-stream`,
      stream: true,
      outcome: "completed",
      input_tokens: 20,
      output_tokens: 7,
      usage_source: "provider",
      cost_nano_usd: 41_000,
    });
  });

  test("the bytes of an event stream reach the client exactly as the upstream sent them", async () => {
    // A raw client (bearer auth, so no signing needed here) reads the body as bytes.
    const response = await fetch(`${proxy.url}/model/${encodeURIComponent(haiku)}/converse-stream`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${clientBedrockApiKey}` },
      body: JSON.stringify({ messages }),
    });
    expect(response.headers.get("content-type")).toBe("application/vnd.amazon.eventstream");
    const bytes = new Uint8Array(await response.arrayBuffer());
    expect(Buffer.compare(bytes, fake.lastStream!)).toBe(0);
    expect((await nextRecord()).output_tokens).toBe(7);
  });

  test("an inference-profile ARN travels URL-encoded, signed as sent, and is recorded decoded", async () => {
    const arn = "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0";
    const answer = await client().send(new ConverseCommand({ modelId: arn, messages }));
    expect(answer.stopReason).toBe("end_turn");
    expect(lastUpstream().path).toBe(`/model/${encodeURIComponent(arn)}/converse`);
    expect(lastUpstream().credential).toBe(proxyKey.accessKeyId);
    const record = await nextRecord();
    expect(record.model).toBe(arn);
    expect(record.cost_nano_usd).toBe(41_000);
  });

  test("a modelStreamErrorException frame mid-stream reaches the SDK as that exception and is recorded as failed", async () => {
    const answer = await client({ credentials: clientKey }, { "x-fake-scenario": "stream-exception" }).send(
      new ConverseStreamCommand({ modelId: haiku, messages }),
    );
    const error = await (async () => {
      try {
        for await (const _ of answer.stream!);
      } catch (thrown) {
        return thrown;
      }
      return null;
    })();
    expect(error).toBeInstanceOf(ModelStreamErrorException);
    const record = await nextRecord();
    expect(record).toMatchObject({ outcome: "upstream_error", error_type: "modelStreamErrorException", status: 200 });
    // The delivered text is billed by estimate.
    expect(record.usage_source).toBe("estimated");
    expect(record.output_tokens).toBeGreaterThan(0);
  });
});

describe("InvokeModel and InvokeModelWithResponseStream", () => {
  const sonnet = "global.anthropic.claude-sonnet-4-5-20250929-v1:0";
  const anthropicBody = JSON.stringify({
    anthropic_version: "bedrock-2023-05-31",
    max_tokens: 64,
    messages: [{ role: "user", content: "Say hello" }],
  });

  test("an Anthropic body is metered as the Messages API's and priced by the requested (global) model id", async () => {
    const answer = await client().send(new InvokeModelCommand({ modelId: sonnet, body: anthropicBody, contentType: "application/json" }));
    const body = JSON.parse(new TextDecoder().decode(answer.body));
    expect(body.content[0].text).toBe("Hello world");
    const record = await nextRecord();
    expect(record).toMatchObject({
      endpoint: `/model/${encodeURIComponent(sonnet)}/invoke`,
      model: sonnet,
      response_model: "claude-sonnet-4-5-20250929",
      input_tokens: anthropicUsage.input_tokens + anthropicUsage.cache_read_input_tokens + anthropicUsage.cache_creation_input_tokens,
      output_tokens: 9,
      cache_read_tokens: 5,
      cache_write_tokens: 3,
      // 10 × 3 + 5 × 0.30 + 3 × 3.75 + 9 × 15 = 177.75 µ$ (the regional price would be 10% more)
      cost_nano_usd: 177_750,
      price_source: `genai-prices@0.1.8:aws/${sonnet}`,
    });
  });

  test("InvokeModelWithResponseStream: the SDK gets each chunk; usage from the Anthropic events", async () => {
    const answer = await client().send(
      new InvokeModelWithResponseStreamCommand({ modelId: sonnet, body: anthropicBody, contentType: "application/json" }),
    );
    const types: string[] = [];
    for await (const event of answer.body!) {
      types.push(JSON.parse(new TextDecoder().decode(event.chunk!.bytes)).type);
    }
    expect(types).toEqual([
      "message_start",
      "content_block_start",
      "content_block_delta",
      "content_block_delta",
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    const record = await nextRecord();
    expect(record).toMatchObject({
      endpoint: `/model/${encodeURIComponent(sonnet)}/invoke-with-response-stream`,
      stream: true,
      outcome: "completed",
      response_model: "claude-sonnet-4-5-20250929",
      input_tokens: 18,
      output_tokens: 9,
      cost_nano_usd: 177_750,
    });
  });

  test("another model's InvokeModel usage comes from Bedrock's token-count headers", async () => {
    const llama = "meta.llama3-70b-instruct-v1:0";
    await client().send(new InvokeModelCommand({ modelId: llama, body: JSON.stringify({ prompt: "Say hello", max_gen_len: 32 }) }));
    const record = await nextRecord();
    // 8 × 2.65 + 4 × 3.50 = 35.2 µ$
    expect(record).toMatchObject({ model: llama, input_tokens: 8, output_tokens: 4, usage_source: "provider", cost_nano_usd: 35_200 });
  });

  test("CountTokens is forwarded and recorded, not billed", async () => {
    const answer = await client().send(
      new CountTokensCommand({ modelId: "anthropic.claude-3-5-haiku-20241022-v1:0", input: { converse: { messages } } }),
    );
    expect(answer.inputTokens).toBe(42);
    const record = await nextRecord();
    expect(record).toMatchObject({ outcome: "completed", usage_source: "none", cost_usd: null });
    expect(record.endpoint).toEndWith("/count-tokens");
  });
});

describe("credentials and errors", () => {
  test("a client's bearer token (a Bedrock API key) is forwarded unchanged, without a signature", async () => {
    const answer = await client({ token: clientBedrockApiKey }).send(new ConverseCommand({ modelId: haiku, messages }));
    expect(answer.usage?.outputTokens).toBe(7);
    expect(lastUpstream().credential).toBe(clientBedrockApiKey);
    expect(lastUpstream().headers["x-amz-date"]).toBeUndefined();
    await nextRecord();
  });

  test("an upstream ThrottlingException reaches the SDK as one and is recorded with its type", async () => {
    const error = await client({ credentials: clientKey }, { "x-fake-scenario": "throttle" })
      .send(new ConverseCommand({ modelId: haiku, messages }))
      .catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(ThrottlingException);
    expect((error as ThrottlingException).$metadata.httpStatusCode).toBe(429);
    const record = await nextRecord();
    expect(record).toMatchObject({ outcome: "upstream_error", status: 429, error_type: "ThrottlingException" });
  });

  test("another operation under /model/ is forwarded, signed, and recorded unbilled with the upstream's answer", async () => {
    const response = await fetch(`${proxy.url}/model/${encodeURIComponent(haiku)}/no-such-operation`, {
      method: "POST",
      headers: { authorization: `Bearer ${clientBedrockApiKey}` },
      body: "{}",
    });
    expect(response.status).toBe(404);
    expect(response.headers.get("x-amzn-errortype")).toStartWith("UnknownOperationException");
    expect(lastUpstream().path).toEndWith("/no-such-operation");
    expect(await nextRecord()).toMatchObject({
      outcome: "upstream_error",
      status: 404,
      usage_source: "none",
      error_type: "UnknownOperationException",
    });
  });

  test("a body that is not JSON is refused as a ValidationException the SDK recognises", async () => {
    const response = await fetch(`${proxy.url}/model/${encodeURIComponent(haiku)}/converse`, { method: "POST", body: "not json" });
    expect(response.status).toBe(400);
    expect(response.headers.get("x-amzn-errortype")).toBe("ValidationException");
    expect(await response.json()).toEqual({ message: "The request body is not valid JSON." });
    const record = await nextRecord();
    expect(record).toMatchObject({ outcome: "rejected", provider: null, model: null, error_type: "invalid_json" });
  });

  test("the fake's signature check is not vacuous: a request signed with a wrong secret is refused", async () => {
    const forged = new BedrockRuntimeClient({
      region,
      endpoint: fake.url,
      maxAttempts: 1,
      requestHandler: new NodeHttpHandler(),
      credentials: { accessKeyId: proxyKey.accessKeyId, secretAccessKey: "not-the-secret" },
    });
    const error = await forged.send(new ConverseCommand({ modelId: haiku, messages })).catch((thrown: unknown) => thrown);
    expect((error as Error).name).toBe("InvalidSignatureException");
    // And the client's own key, signed correctly for the fake itself, passes — the check can say yes.
    const direct = new BedrockRuntimeClient({
      region,
      endpoint: fake.url,
      maxAttempts: 1,
      requestHandler: new NodeHttpHandler(),
      credentials: clientKey,
    });
    expect((await direct.send(new ConverseCommand({ modelId: haiku, messages }))).usage?.outputTokens).toBe(7);
  });
});

describe("a proxy with no AWS credentials", () => {
  let bare: TestProxy;
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  beforeAll(async () => {
    delete process.env.AWS_ACCESS_KEY_ID;
    delete process.env.AWS_SECRET_ACCESS_KEY;
    bare = await startTestProxy(fake.url, {
      server: { unknownPaths: "refuse" },
      plugins: [bedrock({ region, baseURL: fake.url }), headerAttribution(), sqliteAudit()],
    });
  });
  afterAll(async () => {
    await bare.stop();
    if (saved.id !== undefined) process.env.AWS_ACCESS_KEY_ID = saved.id;
    if (saved.secret !== undefined) process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
  });

  test("answers a signed call with an error that says which variables to set, and forwards nothing", async () => {
    const before = fake.requests.length;
    const sdk = new BedrockRuntimeClient({
      region,
      endpoint: bare.url,
      maxAttempts: 1,
      requestHandler: new NodeHttpHandler(),
      credentials: clientKey,
    });
    const error = (await sdk.send(new ConverseCommand({ modelId: haiku, messages })).catch((thrown: unknown) => thrown)) as Error;
    expect(error.name).toBe("InternalServerException");
    expect(error.message).toContain("AWS_ACCESS_KEY_ID");
    expect(fake.requests.length).toBe(before);
  });

  test('with server.unknownPaths "refuse", another operation is refused in Bedrock\'s shape, unforwarded', async () => {
    const before = fake.requests.length;
    const response = await fetch(`${bare.url}/guardrail/g1/version/1/apply`, { method: "POST", body: "{}" });
    expect(response.status).toBe(404);
    expect(response.headers.get("x-amzn-errortype")).toBe("ResourceNotFoundException");
    expect(((await response.json()) as { message: string }).message).toContain("server.unknownPaths");
    expect(fake.requests.length).toBe(before);
  });

  test("reads the standard AWS_* variables on each call, session token included", async () => {
    process.env.AWS_ACCESS_KEY_ID = clientKey.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = clientKey.secretAccessKey;
    process.env.AWS_SESSION_TOKEN = "env-session-token";
    try {
      const sdk = new BedrockRuntimeClient({
        region,
        endpoint: bare.url,
        maxAttempts: 1,
        requestHandler: new NodeHttpHandler(),
        credentials: proxyKey,
      });
      expect((await sdk.send(new ConverseCommand({ modelId: haiku, messages }))).usage?.inputTokens).toBe(12);
      expect(lastUpstream().credential).toBe(clientKey.accessKeyId);
      expect(lastUpstream().headers["x-amz-security-token"]).toBe("env-session-token");
    } finally {
      delete process.env.AWS_ACCESS_KEY_ID;
      delete process.env.AWS_SECRET_ACCESS_KEY;
      delete process.env.AWS_SESSION_TOKEN;
    }
  });
});
