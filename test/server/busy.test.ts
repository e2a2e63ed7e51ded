// A proxy at its limit of upstream calls (server.maxUpstreamConnections) answers at once and
// clearly — 503 proxy_busy with Retry-After, recorded, not forwarded — instead of queueing the call
// behind streams that may run for minutes; a slot that frees lets the next call through.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
let proxy: TestProxy;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  proxy = await startTestProxy(upstream.url, { server: { maxUpstreamConnections: 3 } });
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
});

const chat = (headers: Record<string, string> = {}, signal?: AbortSignal) =>
  fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-agent-id": "busy-test", ...headers },
    body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }], stream: true }),
    signal,
  });

test("past the limit a call is refused at once with 503 proxy_busy, recorded; a freed slot serves the next", async () => {
  const abort = new AbortController();
  // Three long calls: the upstream sends one chunk, then keeps them open.
  const held = await Promise.all([0, 1, 2].map(() => chat({ "x-fake-scenario": "gap:60000@1" }, abort.signal)));
  for (const response of held) await response.body!.getReader().read();
  const forwarded = upstream.requests.length;

  const refused = await chat();
  expect(refused.status).toBe(503);
  expect(refused.headers.get("retry-after")).toBe("1");
  const body = (await refused.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toBe("proxy_busy");
  expect(body.error.message).toContain("server.maxUpstreamConnections");
  expect(upstream.requests.length).toBe(forwarded);
  // (proxy.records() would wait for the held calls to end.)
  await proxy.runtime.store.flush();
  const record = (await proxy.runtime.reader.records({ limit: 1000 })).records.find(
    (r) => r.id === refused.headers.get("x-audit-record-id"),
  );
  expect(record).toMatchObject({ outcome: "rejected", status: 503, error_type: "proxy_busy", agent_id: "busy-test" });

  // Anthropic's SDKs see their own error shape.
  const anthropic = await fetch(`${proxy.url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "claude-sonnet-4-6", max_tokens: 5, messages: [] }),
  });
  expect(anthropic.status).toBe(503);
  expect(((await anthropic.json()) as { type: string }).type).toBe("error");

  abort.abort();
  let next: Response | null = null;
  for (let i = 0; i < 100 && next?.status !== 200; i++) {
    await Bun.sleep(20);
    next = await chat();
    await next.text();
  }
  expect(next!.status).toBe(200);
});
