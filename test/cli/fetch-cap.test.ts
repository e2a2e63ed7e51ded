// Long calls are normal for agents: with 260 calls waiting on their upstream, `proxy start` must
// still serve a new one. Bun's fetch queues requests past BUN_CONFIG_MAX_HTTP_REQUESTS (default 256),
// read only at process start; the proxy sets it from server.maxUpstreamConnections (default 4096).
// The 260 calls go over raw sockets: the test process's own fetch has the same 256 limit.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { spawnProxy, type ProxyProcess } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
let proxy: ProxyProcess;
const sockets: { end(): void }[] = [];

beforeAll(async () => {
  upstream = await startFakeUpstream();
  proxy = await spawnProxy(["--log-db", join(tempDir(), "audit.db")], {
    env: { AGENT_ATTR_OPENAI_BASE_URL: `${upstream.url}/v1` },
  });
});
afterAll(async () => {
  for (const socket of sockets) socket.end();
  proxy?.child.kill(9);
  await proxy?.child.exited;
  await upstream?.stop();
});

/** A chat call whose upstream never answers, sent over a raw socket and left open. */
async function hangingCall(port: number): Promise<void> {
  const body = JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "think" }] });
  const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
  socket.write(
    `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\nx-fake-scenario: hang\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
  );
  sockets.push(socket);
}

test("with 260 calls waiting on the upstream, a new call is still served", async () => {
  const port = Number(new URL(proxy.url).port);
  for (let i = 0; i < 260; i++) await hangingCall(port);
  while (upstream.requests.length < 256) await Bun.sleep(20);
  await Bun.sleep(200);
  const response = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] }),
    signal: AbortSignal.timeout(15_000),
  });
  expect(response.status).toBe(200);
  expect(((await response.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe("Hello world");
}, 40_000);
