// server.streamIdleTimeoutMs counts the upstream's silence, not the client's: a client that stops
// reading a fast stream for longer than the limit (the proxy stops reading the upstream then, by
// design) gets the whole stream afterwards, and the call is recorded completed, not upstream_timeout.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

const encoder = new TextEncoder();
const chunk = encoder.encode(
  `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 1, model: "gpt-4o", choices: [{ index: 0, delta: { content: "x".repeat(16 * 1024) }, finish_reason: null }] })}\n\n`,
);
const chunks = 512; // 8 MiB: more than the sockets between the proxy and the client hold
let upstream: ReturnType<typeof Bun.serve>;
let proxy: TestProxy;

beforeAll(async () => {
  upstream = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(request) {
      await request.text();
      let i = 0;
      const body = new ReadableStream<Uint8Array>(
        {
          pull(controller) {
            if (i++ < chunks) return controller.enqueue(chunk);
            controller.enqueue(encoder.encode("data: [DONE]\n\n"));
            controller.close();
          },
        },
        { highWaterMark: 0 },
      );
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    },
  });
  proxy = await startTestProxy(`http://127.0.0.1:${upstream.port}`, { server: { streamIdleTimeoutMs: 300 } });
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop(true);
});

test("a client that stops reading for five idle limits still gets every byte; the call is completed", async () => {
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer sk-test", "x-agent-id": "slow-reader" },
    body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "go" }], stream: true }),
  });
  const reader = response.body!.getReader();
  let bytes = (await reader.read()).value!.byteLength;
  await Bun.sleep(1500); // not reading: the proxy's writes wait, and it stops reading the upstream
  let text = "";
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    text = (text + decoder.decode(value, { stream: true })).slice(-64);
  }
  expect(bytes).toBe(chunks * chunk.byteLength + "data: [DONE]\n\n".length);
  expect(text).toEndWith("data: [DONE]\n\n");
  const [record] = await proxy.settled(1, 30_000);
  expect(record).toMatchObject({ agent_id: "slow-reader", outcome: "completed", stream: true });
});
