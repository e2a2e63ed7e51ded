// An upstream that answers with a length and closes before the body is all there: nothing has
// reached the client yet, so it gets a 502 that says what happened (not "could not reach"), and the
// record says the same as the client saw.
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { TCPSocketListener } from "bun";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

const json = '{"id":"x","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}]}';
let upstream: TCPSocketListener;
let proxy: TestProxy;
beforeAll(async () => {
  upstream = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket, data) {
        if (!data.toString().includes("\r\n\r\n")) return;
        socket.write(
          `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${json.length + 50}\r\n\r\n${json.slice(0, 60)}`,
        );
        setTimeout(() => socket.end(), 30);
      },
    },
  });
  proxy = await startTestProxy(`http://127.0.0.1:${upstream.port}`);
});
afterAll(async () => {
  await proxy.stop();
  upstream.stop(true);
});

test("a body that breaks off before its declared length: a 502 saying so, recorded with the status the client got", async () => {
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
    body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] }),
  });
  expect(response.status).toBe(502);
  const { error } = (await response.json()) as { error: { message: string; code: string } };
  expect(error.code).toBe("upstream_unreachable");
  expect(error.message).toContain("answered 200, but its body broke off before its end");
  const [record] = await proxy.settled(1, 10_000);
  expect(record).toMatchObject({ id: response.headers.get("x-audit-record-id"), outcome: "upstream_error", status: 502 });
});
