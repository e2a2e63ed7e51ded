// A quiet LLM stream (a long "thinking" pause between chunks) must not be cut by any idle
// timeout: not Bun's server idle timeout, not fetch's, not the proxy's default stream idle limit.
import { expect, test } from "bun:test";
import { proxyBeforeAll } from "../helpers/proxy.ts";

const setup = proxyBeforeAll();

test("a 61 s gap between two chunks reaches the client intact", async () => {
  const response = await fetch(`${setup.proxy.url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-fake-scenario": "gap:61000" },
    body: JSON.stringify({ model: "claude-sonnet-4-6", max_tokens: 16, messages: [], stream: true }),
  });
  const text = await response.text();
  expect(text).toContain("event: message_stop");
  const record = (await setup.proxy.records()).at(-1)!;
  expect(record).toMatchObject({ outcome: "completed", stream: true, output_tokens: 9 });
  expect(record.duration_ms!).toBeGreaterThanOrEqual(61_000);
}, 90_000);
