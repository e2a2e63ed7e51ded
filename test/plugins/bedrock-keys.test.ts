// AWS Bedrock in keys mode: the Bedrock SDK sends a proxy key as its bearer `token`; the proxy
// verifies it, pins the identity, and signs the upstream call with its own AWS credentials. A SigV4
// signature cannot carry a proxy key, so a signed call to a keys-mode proxy is refused (401), in
// Bedrock's error shape, and nothing goes upstream.
import { AccessDeniedException, BedrockRuntimeClient, ConverseStreamCommand } from "@aws-sdk/client-bedrock-runtime";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { signedKeyTable } from "../helpers/keys.ts";
import { apiKeys, bedrock, headerAttribution, sqliteAudit } from "../../plugins/index.ts";
import { startFakeBedrock, type FakeBedrock } from "../helpers/fake-bedrock.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

const region = "eu-central-1";
const proxyKey = { accessKeyId: "AKIAPROXYKEYSMODE001", secretAccessKey: "keys-mode-proxy-secret", sessionToken: "proxy-session" };
let fake: FakeBedrock;
let proxy: TestProxy;
let keys: ReturnType<typeof signedKeyTable>;
let botKey: string;
let botKeyId: string;

beforeAll(async () => {
  fake = await startFakeBedrock({ region, keys: { [proxyKey.accessKeyId]: proxyKey.secretAccessKey } });
  proxy = await startTestProxy(fake.url, {
    plugins: [bedrock({ region, baseURL: fake.url, credentials: proxyKey }), headerAttribution(), apiKeys(), sqliteAudit()],
  });
  keys = signedKeyTable(proxy.logDb);
  ({
    key: botKey,
    record: { id: botKeyId },
  } = keys.create({ agents: ["bedrock-bot"], users: ["*"] }));
});
afterAll(async () => {
  keys.close();
  await proxy.stop();
  await fake.stop();
});

const sdk = (auth: { token: string } | { credentials: { accessKeyId: string; secretAccessKey: string } }) =>
  new BedrockRuntimeClient({
    region,
    endpoint: proxy.url,
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler(),
    ...("token" in auth ? { token: { token: auth.token }, authSchemePreference: ["httpBearerAuth"] } : auth),
  });

const request = { modelId: "anthropic.claude-3-5-haiku-20241022-v1:0", messages: [{ role: "user" as const, content: [{ text: "hi" }] }] };

test("a proxy key as the SDK's bearer token: verified, and the upstream call is signed by the proxy", async () => {
  const answer = await sdk({ token: botKey }).send(new ConverseStreamCommand(request));
  let text = "";
  for await (const event of answer.stream!) text += event.contentBlockDelta?.delta?.text ?? "";
  expect(text).toBe("Hello world");
  const seen = fake.requests.at(-1)!;
  expect(seen.credential).toBe(proxyKey.accessKeyId);
  expect(seen.headers["x-amz-security-token"]).toBe(proxyKey.sessionToken);
  expect(fake.requests.some((r) => JSON.stringify(r).includes(botKey))).toBe(false);
  const record = (await proxy.settled(1)).at(-1)!;
  expect(record).toMatchObject({
    agent_id: "bedrock-bot",
    attribution: "verified",
    key_id: botKeyId,
    outcome: "completed",
    output_tokens: 7,
  });
});

test("a SigV4-signed call carries no proxy key: 401 as the SDK's AccessDeniedException, saying how to send one", async () => {
  const before = fake.requests.length;
  const error = await sdk({ credentials: { accessKeyId: "AKIAANYCLIENT0000001", secretAccessKey: "whatever" } })
    .send(new ConverseStreamCommand(request))
    .catch((thrown: unknown) => thrown);
  expect(error).toBeInstanceOf(AccessDeniedException);
  expect((error as AccessDeniedException).$metadata.httpStatusCode).toBe(401);
  expect((error as Error).message).toContain("bearer `token`");
  expect(fake.requests.length).toBe(before);
  expect((await proxy.settled(2)).at(-1)).toMatchObject({ outcome: "rejected", status: 401, error_type: "unauthorized" });
});
