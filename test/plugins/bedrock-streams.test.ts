// Bedrock's binary event streams at the edges: frames split anywhere, a frame the codec refuses,
// a client that hangs up mid-stream, an upstream that dies mid-stream. Whatever happens to the
// metering, the client gets the upstream's bytes unchanged.
import { BedrockRuntimeClient, ConverseStreamCommand } from "@aws-sdk/client-bedrock-runtime";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { EventStreamReader } from "../../plugins/bedrock/event-stream.ts";
import { bedrockMeter } from "../../plugins/bedrock/meter.ts";
import { bedrock, headerAttribution, sqliteAudit } from "../../plugins/index.ts";
import { bedrockEndpoint } from "../../plugins/bedrock/endpoints.ts";
import type { Logger } from "../../src/plugin.ts";
import { eventFrame, startFakeBedrock, type FakeBedrock } from "../helpers/fake-bedrock.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

const region = "us-east-1";
const proxyKey = { accessKeyId: "AKIAPROXYSTREAMS0001", secretAccessKey: "streams-proxy-secret" };
const token = "ABSKstreams-client-token";
const model = "us.anthropic.claude-3-5-haiku-20241022-v1:0";
const converseStream = bedrockEndpoint({
  method: "POST",
  path: "/model/m/converse-stream",
  query: new URLSearchParams(),
  headers: new Headers(),
})!;
const ok = { status: 200, headers: new Headers({ "content-type": "application/vnd.amazon.eventstream" }) };

describe("the event-stream reader", () => {
  const frames = [
    eventFrame("messageStart", { role: "assistant" }),
    eventFrame("contentBlockDelta", { contentBlockIndex: 0, delta: { text: "héllo ✓" } }),
    eventFrame("metadata", { usage: { inputTokens: 3, outputTokens: 2, totalTokens: 5 } }),
  ];
  const all = Buffer.concat(frames);
  const typesOf = (chunks: Uint8Array[]) => {
    const reader = new EventStreamReader();
    return chunks.flatMap((chunk) => reader.push(chunk)).map((m) => m.headers[":event-type"]);
  };

  test("joins frames split at every byte, and splits frames that arrive together", () => {
    const bytes = [...all].map((byte) => new Uint8Array([byte]));
    expect(typesOf(bytes)).toEqual(["messageStart", "contentBlockDelta", "metadata"]);
    expect(typesOf([all])).toEqual(["messageStart", "contentBlockDelta", "metadata"]);
    expect(typesOf([all.subarray(0, 5), all.subarray(5, frames[0]!.length + 3), all.subarray(frames[0]!.length + 3)])).toEqual([
      "messageStart",
      "contentBlockDelta",
      "metadata",
    ]);
  });

  test("a frame that fails its CRC is refused once, and nothing after it is read", () => {
    const broken = Buffer.from(all);
    broken[frames[0]!.length + 20]! ^= 0xff;
    const reader = new EventStreamReader();
    expect(() => reader.push(broken)).toThrow(/checksum/);
    expect(reader.push(frames[2]!)).toEqual([]);
  });

  test("a frame declaring an impossible length is refused", () => {
    expect(() => new EventStreamReader().push(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0]))).toThrow(/declares/);
  });

  test("the meter reads usage, 1-hour cache writes and text from a stream fed in any pieces", () => {
    const meter = bedrockMeter(converseStream, ok);
    const usage = {
      inputTokens: 4,
      outputTokens: 6,
      totalTokens: 110,
      cacheWriteInputTokens: 100,
      cacheDetails: [
        { ttl: "1h", inputTokens: 60 },
        { ttl: "5m", inputTokens: 40 },
      ],
    };
    const stream = Buffer.concat([frames[0]!, frames[1]!, eventFrame("metadata", { usage })]);
    for (let i = 0; i < stream.length; i += 7) meter.chunk!(stream.subarray(i, i + 7));
    const result = meter.result();
    expect(result.terminal).toBe(true);
    expect(result.usage).toEqual({
      input_tokens: 104,
      output_tokens: 6,
      cache_read_tokens: null,
      cache_write_tokens: 100,
      cache_write_1h_tokens: 60,
      reasoning_tokens: null,
    });
    expect(result.outputText?.()).toBe("héllo ✓");
  });
});

test("an InvokeModel answer in another binary type (an image model's PNG) is not read as frames; its usage comes from the headers", () => {
  const invoke = bedrockEndpoint({
    method: "POST",
    path: "/model/stability.sd3-5-large-v1%3A0/invoke",
    query: new URLSearchParams(),
    headers: new Headers(),
  })!;
  const headers = new Headers({
    "content-type": "image/png",
    "x-amzn-bedrock-input-token-count": "9",
    "x-amzn-bedrock-output-token-count": "0",
  });
  const meter = bedrockMeter(invoke, { status: 200, headers });
  expect(() => meter.chunk!(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0xff, 0xff, 0xff, 0xff]))).not.toThrow();
  expect(meter.result().usage).toMatchObject({ input_tokens: 9, output_tokens: 0 });
});

describe("streams through the proxy", () => {
  let fake: FakeBedrock;
  let proxy: TestProxy;
  const errors: string[] = [];
  const log: Logger = { info() {}, warn() {}, error: (message: string) => void errors.push(message) } as unknown as Logger;
  beforeAll(async () => {
    fake = await startFakeBedrock({ region, keys: { [proxyKey.accessKeyId]: proxyKey.secretAccessKey }, bearerTokens: [token] });
    proxy = await startTestProxy(
      fake.url,
      { plugins: [bedrock({ region, baseURL: fake.url, credentials: proxyKey }), headerAttribution(), sqliteAudit()] },
      { log },
    );
  });
  afterAll(async () => {
    await proxy.stop();
    await fake.stop();
  });
  let calls = 0;
  // Estimates load the tokenizer on first use: seconds on a loaded machine.
  const nextRecord = async () => (await proxy.settled(++calls, 30_000)).at(-1)!;

  const sdk = (scenario: string) => {
    const client = new BedrockRuntimeClient({
      region,
      endpoint: proxy.url,
      maxAttempts: 1,
      requestHandler: new NodeHttpHandler(),
      credentials: proxyKey,
    });
    client.middlewareStack.add(
      (next) => async (args) => {
        (args.request as { headers: Record<string, string> }).headers["x-fake-scenario"] = scenario;
        return next(args);
      },
      { step: "build", name: "scenario" },
    );
    return client;
  };
  const request = { modelId: model, messages: [{ role: "user" as const, content: [{ text: "hi" }] }] };

  test("a frame the codec refuses: the client still gets every byte; the call is recorded as an incomplete stream, by estimate", async () => {
    const response = await fetch(`${proxy.url}/model/${encodeURIComponent(model)}/converse-stream`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "x-fake-scenario": "corrupt" },
      body: JSON.stringify({ messages: request.messages }),
    });
    const bytes = new Uint8Array(await response.arrayBuffer());
    expect(Buffer.compare(bytes, fake.lastStream!)).toBe(0);
    const record = await nextRecord();
    expect(record).toMatchObject({ outcome: "upstream_error", error_type: "incomplete_stream", usage_source: "estimated" });
    expect(errors.some((message) => message.includes("[plugin bedrock] meter.chunk") && message.includes("checksum"))).toBe(true);
  });

  test("a client that hangs up mid-stream: recorded as client_aborted, the delivered text billed by estimate, the upstream cancelled", async () => {
    const abort = new AbortController();
    const answer = await sdk("gap:3000").send(new ConverseStreamCommand(request), { abortSignal: abort.signal });
    const seen: string[] = [];
    const reading = (async () => {
      for await (const event of answer.stream!) {
        seen.push(Object.keys(event)[0]!);
        if (seen.length === 5) abort.abort();
      }
    })().catch(() => {});
    await reading;
    const record = await nextRecord();
    expect(record).toMatchObject({ outcome: "client_aborted", usage_source: "estimated", stream: true });
    expect(record.output_tokens).toBeGreaterThan(0);
    const deadline = Date.now() + 5000;
    while (fake.cancelled === 0 && Date.now() < deadline) await Bun.sleep(20);
    expect(fake.cancelled).toBe(1);
  });

  test("an upstream that dies mid-stream: the SDK fails, the call is recorded as an upstream error", async () => {
    const answer = await sdk("break").send(new ConverseStreamCommand(request));
    const failed = await (async () => {
      for await (const _ of answer.stream!);
      return false;
    })().catch(() => true);
    expect(failed).toBe(true);
    expect(await nextRecord()).toMatchObject({ outcome: "upstream_error", error_type: "upstream_stream_error" });
  });
});
