// One bedrock() per region: each claims the model ids its `models` globs match, signs for its own
// region (the fake refuses a signature scoped to another), and names itself in the record.
import { BedrockRuntimeClient, ConverseCommand } from "@aws-sdk/client-bedrock-runtime";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { bedrock, headerAttribution, sqliteAudit } from "../../plugins/index.ts";
import { startFakeBedrock, type FakeBedrock } from "../helpers/fake-bedrock.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

const key = { accessKeyId: "AKIAPROXYREGIONS0001", secretAccessKey: "regions-proxy-secret" };
let eu: FakeBedrock;
let us: FakeBedrock;
let proxy: TestProxy;

beforeAll(async () => {
  eu = await startFakeBedrock({ region: "eu-west-1", keys: { [key.accessKeyId]: key.secretAccessKey } });
  us = await startFakeBedrock({ region: "us-east-1", keys: { [key.accessKeyId]: key.secretAccessKey } });
  proxy = await startTestProxy(us.url, {
    plugins: [
      bedrock({ name: "bedrock-eu", region: "eu-west-1", models: ["eu.*"], baseURL: eu.url, credentials: key }),
      bedrock({ region: "us-east-1", baseURL: us.url, credentials: key }),
      headerAttribution(),
      sqliteAudit(),
    ],
  });
});
afterAll(async () => {
  await proxy.stop();
  await eu.stop();
  await us.stop();
});

const converse = (modelId: string) =>
  new BedrockRuntimeClient({
    region: "us-east-1",
    endpoint: proxy.url,
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler(),
    credentials: key,
  }).send(new ConverseCommand({ modelId, messages: [{ role: "user", content: [{ text: "hi" }] }] }));

test("an eu. model goes to the EU provider, signed for eu-west-1; any other to the next one listed", async () => {
  await converse("eu.anthropic.claude-3-5-haiku-20241022-v1:0");
  await converse("us.anthropic.claude-3-5-haiku-20241022-v1:0");
  expect(eu.requests.map((r) => [r.path, r.credential])).toEqual([
    ["/model/eu.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse", key.accessKeyId],
  ]);
  expect(eu.requests[0]!.headers.authorization).toContain("/eu-west-1/bedrock/aws4_request");
  expect(us.requests.map((r) => r.credential)).toEqual([key.accessKeyId]);
  const records = await proxy.settled(2, 30_000);
  expect(records.map((r) => [r.provider, r.model])).toEqual([
    ["bedrock-eu", "eu.anthropic.claude-3-5-haiku-20241022-v1:0"],
    ["bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0"],
  ]);
});
