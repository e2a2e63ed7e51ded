// Stage 5 (forward): the client gets exactly what the upstream sent, as it arrives; upstream
// failures become clear errors, and every one of them is recorded.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { AuditRecord } from "../../src/trail/record.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
let proxy: TestProxy;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  proxy = await startTestProxy(upstream.url, {
    server: { upstreamTimeoutMs: 300, streamIdleTimeoutMs: 2_000, maxBodyBytes: 1024 },
  });
});
afterAll(async () => {
  await proxy.stop();
  await upstream.stop();
});

const chat = { model: "gpt-4o", messages: [{ role: "user", content: "hi" }] };
const send = (base: string, body: unknown, headers: Record<string, string> = {}, path = "/v1/chat/completions") =>
  fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer sk-test", ...headers },
    body: JSON.stringify(body),
  });
const recordOf = async (response: Response) => (await proxy.records()).find((r) => r.id === response.headers.get("x-audit-record-id"));

describe("passthrough", () => {
  test("body bytes, status and upstream headers are those of a direct call", async () => {
    const direct = await send(upstream.url, chat);
    const proxied = await send(proxy.url, chat);
    expect(proxied.status).toBe(direct.status);
    expect(new Uint8Array(await proxied.arrayBuffer())).toEqual(new Uint8Array(await direct.arrayBuffer()));
    for (const name of ["content-type", "x-request-id", "x-ratelimit-remaining-requests"]) {
      expect(proxied.headers.get(name)).toBe(direct.headers.get(name));
    }
    expect(proxied.headers.get("x-audit-record-id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(upstream.requests.at(-1)!.headers.authorization).toBe("Bearer sk-test");
  });

  test("a plain answer of unknown length passes through intact and is metered", async () => {
    const direct = await send(upstream.url, chat, { "x-fake-scenario": "chunked-json" });
    expect(direct.headers.get("content-length")).toBeNull();
    const proxied = await send(proxy.url, chat, { "x-fake-scenario": "chunked-json" });
    expect(await proxied.text()).toBe(await direct.text());
    expect(await recordOf(proxied)).toMatchObject({ outcome: "completed", input_tokens: 12, output_tokens: 7 });
  });

  test("a streamed body is byte-identical to the upstream's", async () => {
    const body = { ...chat, stream: true, stream_options: { include_usage: true } };
    const direct = await (await send(upstream.url, body)).text();
    const proxied = await send(proxy.url, body);
    expect(proxied.headers.get("content-type")).toBe("text/event-stream");
    expect(await proxied.text()).toBe(direct);
  });

  test("the usage chunk the proxy asked for is metered but not shown to a client that did not ask", async () => {
    const body = { ...chat, stream: true };
    const direct = await (await send(upstream.url, body)).text();
    expect(direct).not.toContain('"usage"');
    const proxied = await send(proxy.url, body);
    expect(await proxied.text()).toBe(direct);
    expect(JSON.parse(upstream.requests.at(-1)!.body).stream_options).toEqual({ include_usage: true });
    expect(await recordOf(proxied)).toMatchObject({ input_tokens: 12, output_tokens: 7, usage_source: "provider" });
  });

  test("an event stream labelled Text/Event-Stream is one too: metered, the usage chunk the client did not ask for hidden", async () => {
    const body = { ...chat, stream: true };
    const direct = await (await send(upstream.url, body, { "x-fake-scenario": "mixed-case-type" })).text();
    const proxied = await send(proxy.url, body, { "x-fake-scenario": "mixed-case-type" });
    expect(await proxied.text()).toBe(direct);
    expect(await recordOf(proxied)).toMatchObject({ outcome: "completed", input_tokens: 12, output_tokens: 7, usage_source: "provider" });
  });

  test("asking for usage edits the body's own bytes: big integers, 1.0 and spacing reach the upstream as sent", async () => {
    const raw =
      '{ "model": "gpt-4o", "seed": 9223372036854775807, "temperature": 1.0, "stream": true,\n  "messages": [{"role": "user", "content": "caf\u00e9 \\u00e9"}] }';
    await (
      await fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: raw })
    ).text();
    expect(upstream.requests.at(-1)!.body).toBe(`{"stream_options":{"include_usage":true},${raw.slice(1)}`);
  });

  test("an existing stream_options object gets include_usage inside it, every other byte unchanged", async () => {
    const raw = '{"model":"gpt-4o","stream":true,"stream_options":{ "include_usage": false, "x": 1.50 },"messages":[],"n":1e2}';
    await (
      await fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: raw })
    ).text();
    expect(upstream.requests.at(-1)!.body).toBe(raw.replace('"include_usage": false', '"include_usage": true'));
  });

  test("upstream error statuses, bodies and rate-limit headers reach the client unchanged", async () => {
    for (const scenario of ["error-429", "error-500"]) {
      const direct = await send(upstream.url, chat, { "x-fake-scenario": scenario });
      const proxied = await send(proxy.url, chat, { "x-fake-scenario": scenario });
      expect(proxied.status).toBe(direct.status);
      expect(await proxied.text()).toBe(await direct.text());
      expect(proxied.headers.get("retry-after")).toBe(direct.headers.get("retry-after"));
      const record = await recordOf(proxied);
      expect(record).toMatchObject({ outcome: "upstream_error", status: direct.status });
    }
  });

  test("a body of unknown length that is no event stream reaches the client as it arrives; only its end waits for the record", async () => {
    const response = await send(proxy.url, chat, { "x-fake-scenario": "held-chunks" });
    const reader = response.body!.getReader();
    // The upstream sends its second line only once the first has reached the client.
    const first = await Promise.race([reader.read(), Bun.sleep(5000).then(() => null)]);
    expect(first && new TextDecoder().decode(first.value)).toBe('{"n":1}\n');
    upstream.releaseChunks();
    let rest = "";
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
    expect(rest).toBe('{"n":2}\n');
    expect(await recordOf(response)).toMatchObject({ outcome: "completed", status: 200 });
  });

  test("stream chunks reach the client as they arrive, not when the stream ends", async () => {
    const started = performance.now();
    const response = await send(proxy.url, { ...chat, stream: true }, { "x-fake-scenario": "gap:800" });
    const reader = response.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain("chat.completion.chunk");
    expect(performance.now() - started).toBeLessThan(600);
    while (!(await reader.read()).done) {}
    expect(performance.now() - started).toBeGreaterThanOrEqual(800);
    expect((await recordOf(response))?.outcome).toBe("completed");
  });
});

describe("faults", () => {
  test("an unreachable upstream is a 502 naming the provider, recorded as upstream_error", async () => {
    const dead = await startFakeUpstream();
    await dead.stop();
    const other = await startTestProxy(dead.url);
    try {
      const response = await send(other.url, chat);
      expect(response.status).toBe(502);
      const body = (await response.json()) as { error: { message: string; code: string } };
      expect(body.error.code).toBe("upstream_unreachable");
      expect(body.error.message).toContain("openai");
      const record = (await other.records()).find((r) => r.id === response.headers.get("x-audit-record-id"));
      expect(record).toMatchObject({ outcome: "upstream_error", status: 502, error_type: "upstream_unreachable" });
    } finally {
      await other.stop();
    }
  });

  test("an upstream that does not answer in time is a 504 in the caller's wire format", async () => {
    const response = await send(
      proxy.url,
      { model: "claude-x", max_tokens: 5, messages: [] },
      { "x-fake-scenario": "hang" },
      "/v1/messages",
    );
    expect(response.status).toBe(504);
    expect(((await response.json()) as { type: string }).type).toBe("error");
    expect(await recordOf(response)).toMatchObject({ outcome: "upstream_error", error_type: "upstream_timeout" });
  });

  test("an upstream that dies mid-stream ends the client's stream with an error and is recorded", async () => {
    const response = await send(proxy.url, { ...chat, stream: true }, { "x-fake-scenario": "break" });
    expect(response.status).toBe(200);
    const received = await response.text().catch((error: unknown) => `error: ${String(error)}`);
    expect(received).not.toContain("[DONE]");
    expect(await recordOf(response)).toMatchObject({ outcome: "upstream_error", error_type: "upstream_stream_error" });
  });

  test("a stream that ends without its terminal event is recorded as incomplete", async () => {
    const response = await send(proxy.url, { ...chat, stream: true }, { "x-fake-scenario": "no-done" });
    expect(await response.text()).not.toContain("[DONE]");
    expect(await recordOf(response)).toMatchObject({ outcome: "upstream_error", error_type: "incomplete_stream" });
  });

  test("a client that disconnects mid-stream stops the upstream call and is recorded as client_aborted", async () => {
    const cancelledBefore = upstream.cancelled;
    const abort = new AbortController();
    const response = await send(proxy.url, { ...chat, stream: true }, { "x-fake-scenario": "gap:1500" }).then((r) => r);
    const reader = response.body!.getReader();
    await reader.read();
    abort.abort();
    await reader.cancel();
    const id = response.headers.get("x-audit-record-id");
    let record: AuditRecord | undefined;
    for (let i = 0; i < 100 && record?.outcome !== "client_aborted"; i++) {
      await Bun.sleep(20);
      record = (await proxy.records()).find((r) => r.id === id);
    }
    expect(record).toMatchObject({ outcome: "client_aborted", stream: true });
    for (let i = 0; i < 100 && upstream.cancelled === cancelledBefore; i++) await Bun.sleep(20);
    expect(upstream.cancelled).toBeGreaterThan(cancelledBefore);
  });
});

test("a client that gives up before the upstream answers is recorded as client_aborted", async () => {
  const abort = new AbortController();
  const pending = fetch(`${proxy.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-fake-scenario": "hang", "x-agent-id": "impatient" },
    body: JSON.stringify(chat),
    signal: abort.signal,
  }).catch(() => "aborted");
  await Bun.sleep(100);
  abort.abort();
  expect(await pending).toBe("aborted");
  let record: AuditRecord | undefined;
  for (let i = 0; i < 50 && !record?.outcome; i++) {
    await Bun.sleep(20);
    record = (await proxy.records()).find((r) => r.agent_id === "impatient");
  }
  expect(record).toMatchObject({ outcome: "client_aborted", status: null });
});

describe("bad input", () => {
  test("malformed JSON is a 400 invalid_json, recorded as rejected, not forwarded", async () => {
    const before = upstream.requests.length;
    const response = await fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", body: "{not json" });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("invalid_json");
    expect(await recordOf(response)).toMatchObject({ outcome: "rejected", status: 400, error_type: "invalid_json" });
    expect(upstream.requests.length).toBe(before);
  });

  test("a body without a model is a 400 missing_model in the Anthropic shape on /v1/messages", async () => {
    const response = await send(proxy.url, { max_tokens: 5, messages: [] }, {}, "/v1/messages");
    expect(response.status).toBe(400);
    const body = (await response.json()) as { type: string; error: { type: string; message: string } };
    expect(body).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
    expect(body.error.message).toContain("model");
    expect(await recordOf(response)).toMatchObject({ outcome: "rejected", error_type: "missing_model" });
  });

  test("a JSON body that is not an object is a 400", async () => {
    const response = await fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", body: "[1,2]" });
    expect(response.status).toBe(400);
  });

  test("a body over the limit is a 413 by its declared length, recorded as rejected", async () => {
    const response = await fetch(`${proxy.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o", messages: [{ role: "user", content: "x".repeat(2000) }] }),
    });
    expect(response.status).toBe(413);
    expect(((await response.json()) as { error: { message: string } }).error.message).toContain("1024 bytes");
    expect(await recordOf(response)).toMatchObject({ outcome: "rejected", status: 413, error_type: "body_too_large" });
  });

  test("a chunked body is refused as soon as it passes the limit, without reading the rest", async () => {
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent > 1_000_000) return controller.close();
        sent += 512;
        controller.enqueue(new Uint8Array(512).fill(32));
        await Bun.sleep(1);
      },
    });
    const response = await fetch(`${proxy.url}/v1/chat/completions`, { method: "POST", body });
    expect(response.status).toBe(413);
    expect(sent).toBeLessThan(1_000_000);
  });

  test("secrets sent by the client never appear in the record", async () => {
    const secret = "sk-live-SECRET-0123456789";
    const response = await send(proxy.url, chat, { authorization: `Bearer ${secret}`, "x-api-key": secret });
    expect(JSON.stringify(await recordOf(response))).not.toContain(secret);
    const failed = await send(proxy.url, { bad: true }, { authorization: `Bearer ${secret}` });
    expect(await failed.text()).not.toContain(secret);
  });
});
