// A quiet LLM stream (a long "thinking" pause between chunks) must not be cut by any idle
// timeout: not Bun's server idle timeout, not fetch's, not the proxy's default stream idle limit.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
let proxy: TestProxy;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  proxy = await startTestProxy(upstream.url);
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
});

test("a 61 s gap between two chunks reaches the client intact", async () => {
  const response = await fetch(`${proxy.url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-fake-scenario": "gap:61000" },
    body: JSON.stringify({ model: "claude-sonnet-4-6", max_tokens: 16, messages: [], stream: true }),
  });
  const text = await response.text();
  expect(text).toContain("event: message_stop");
  const record = (await proxy.records()).at(-1)!;
  expect(record).toMatchObject({ outcome: "completed", stream: true, output_tokens: 9 });
  expect(record.duration_ms!).toBeGreaterThanOrEqual(61_000);
}, 90_000);
