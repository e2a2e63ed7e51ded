// A `Connection` header naming something that is not a header name must not break a call, from
// either side: the call is answered, and it has exactly one record.
import { afterAll, expect, test } from "bun:test";
import { connect } from "node:net";
import { startTestProxy } from "../helpers/proxy.ts";

const answer = JSON.stringify({
  id: "x",
  object: "chat.completion",
  model: "gpt-4o",
  choices: [],
  usage: { prompt_tokens: 1, completion_tokens: 1 },
});
const upstream = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  fetch: (request) =>
    new Response(answer, {
      headers: { "content-type": "application/json", ...(request.url.includes("bad=1") ? { connection: "keep-alive, x y" } : {}) },
    }),
});
const proxy = await startTestProxy(`http://127.0.0.1:${upstream.port}/v1`);
afterAll(async () => {
  await proxy.stop();
  upstream.stop(true);
});

/** A raw HTTP/1.1 request (fetch will not send a Connection header); resolves with the status line. */
function rawCall(path: string, extraHeader: string): Promise<string> {
  const body = JSON.stringify({ model: "gpt-4o", messages: [] });
  const { port } = new URL(proxy.url);
  return new Promise((resolve, reject) => {
    let received = "";
    const socket = connect(Number(port), "127.0.0.1", () =>
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n${extraHeader}\r\n${body}`,
      ),
    );
    socket.on("data", (data) => {
      received += data;
      if (received.includes("\r\n\r\n")) {
        socket.destroy();
        resolve(received.split("\r\n")[0]!);
      }
    });
    socket.on("error", reject);
  });
}

test("from the client: the call is forwarded and recorded once", async () => {
  expect(await rawCall("/v1/chat/completions", "Connection: keep-alive, x y\r\n")).toBe("HTTP/1.1 200 OK");
  const [record] = await proxy.settled(1);
  expect(record).toMatchObject({ outcome: "completed", status: 200 });
});

test("from the upstream: the answer is passed on and the call recorded once; later calls still land", async () => {
  expect(await rawCall("/v1/chat/completions?bad=1", "")).toBe("HTTP/1.1 200 OK");
  expect(await rawCall("/v1/chat/completions", "")).toBe("HTTP/1.1 200 OK");
  const records = await proxy.settled(3);
  expect(records.map((r) => r.outcome)).toEqual(["completed", "completed", "completed"]);
  expect(new Set(records.map((r) => r.id)).size).toBe(3);
});
