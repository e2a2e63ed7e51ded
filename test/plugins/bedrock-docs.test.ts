// docs/providers.md's Bedrock SDK snippet runs as written against a proxy (only its URL is this
// test's): the SDK's call goes through, and the record carries the attribution the snippet sends.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bedrock, headerAttribution, pricing, sqliteAudit } from "../../plugins/index.ts";
import { namedBlock, repoRoot } from "../helpers/doc-blocks.ts";
import { startFakeBedrock, type FakeBedrock } from "../helpers/fake-bedrock.ts";
import { startTestProxy, tempDir, type TestProxy } from "../helpers/proxy.ts";

const key = { accessKeyId: "AKIAPROXYDOCS0000001", secretAccessKey: "docs-proxy-secret" };
let fake: FakeBedrock;
let proxy: TestProxy;
const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };

beforeAll(async () => {
  fake = await startFakeBedrock({ region: "us-east-1", keys: { [key.accessKeyId]: key.secretAccessKey } });
  proxy = await startTestProxy(fake.url, {
    plugins: [bedrock({ region: "us-east-1", baseURL: fake.url, credentials: key }), headerAttribution(), pricing(), sqliteAudit()],
  });
  // The snippet's SDK finds credentials where an application's would: the environment.
  process.env.AWS_ACCESS_KEY_ID = "AKIAAPPLICATION00001";
  process.env.AWS_SECRET_ACCESS_KEY = "application-secret";
});
afterAll(async () => {
  for (const [name, value] of [
    ["AWS_ACCESS_KEY_ID", saved.id],
    ["AWS_SECRET_ACCESS_KEY", saved.secret],
  ] as const) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  await proxy.stop();
  await fake.stop();
});

test("the JavaScript SDK snippet: its Converse call is answered through the proxy and attributed", async () => {
  const code = namedBlock("docs/providers.md", "bedrock-client.ts");
  expect(code).toContain('"http://127.0.0.1:8080"');
  const dir = tempDir();
  symlinkSync(join(repoRoot, "node_modules"), join(dir, "node_modules"));
  writeFileSync(join(dir, "bedrock-client.ts"), code.replace('"http://127.0.0.1:8080"', JSON.stringify(proxy.url)));
  const log = console.log;
  const printed: unknown[][] = [];
  console.log = (...args: unknown[]) => void printed.push(args);
  try {
    await import(join(dir, "bedrock-client.ts"));
  } finally {
    console.log = log;
  }
  expect(printed[0]?.[0]).toBe("Hello world");
  expect(fake.requests.at(-1)!.credential).toBe(key.accessKeyId);
  const record = (await proxy.settled(1, 30_000)).at(-1)!;
  expect(record).toMatchObject({
    provider: "bedrock",
    agent_id: "report-writer",
    user_id: "alice",
    task_context: "Q3 summary",
    outcome: "completed",
    output_tokens: 7,
  });
});
