// otel(): one span per call, over real OTLP/HTTP protobuf, decoded by a local receiver with the
// protocol's message definitions — GenAI attributes, the inbound traceparent as parent, error
// status, the bounded queue's drops and failed exports in /metrics, and the environment switch.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { anthropic, headerAttribution, openai, otel, pricing, type OtelOptions } from "../../plugins/index.ts";
import { withTracing } from "../../src/server/runtime.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "../helpers/otlp-receiver.ts";
import { startTestProxy, type TestProxy } from "../helpers/proxy.ts";

let upstream: FakeUpstream;
let receiver: OtlpReceiver;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  receiver = await startOtlpReceiver();
});
afterAll(async () => {
  await upstream.stop();
  await receiver.stop();
});

function proxyWith(options: OtelOptions = {}): Promise<TestProxy> {
  return startTestProxy(upstream.url, {
    plugins: [
      openai({ baseURL: `${upstream.url}/v1` }),
      anthropic({ baseURL: upstream.url }),
      headerAttribution(),
      pricing(),
      otel({ endpoint: `${receiver.url}/v1/traces`, scheduledDelayMillis: 20, ...options }),
    ],
  });
}

const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
const parentId = "00f067aa0ba902b7";

async function post(proxy: TestProxy, path: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${proxy.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  await response.arrayBuffer();
  return response;
}

const spanOf = (id: string | null) => receiver.spans.find((s) => s.attributes["agent_attr.record.id"] === id);

async function waitForSpan(id: string | null): Promise<ReceivedSpan> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const span = spanOf(id);
    if (span) return span;
    if (Date.now() > deadline) throw new Error(`no span for record ${id}; got ${receiver.spans.length} span(s)`);
    await Bun.sleep(10);
  }
}

describe("spans of calls", () => {
  let proxy: TestProxy;
  beforeAll(async () => {
    proxy = await proxyWith();
  });
  afterAll(() => proxy.stop());

  test("a chat call: a CLIENT span, child of the inbound traceparent, with the GenAI attributes and the record's", async () => {
    const response = await post(
      proxy,
      "/v1/chat/completions",
      { model: "gpt-4o", messages: [{ role: "user", content: "hi" }] },
      {
        traceparent: `00-${traceId}-${parentId}-01`,
        tracestate: "vendor=abc",
        "x-agent-id": "pr-reviewer",
        "x-user-id": "alice",
        "x-session-id": "sess-9",
      },
    );
    const id = response.headers.get("x-audit-record-id");
    const span = await waitForSpan(id);
    const [record] = (await proxy.records()).filter((r) => r.id === id);
    expect(span.traceId).toBe(traceId);
    expect(span.parentSpanId).toBe(parentId);
    expect(span.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(span.spanId).not.toBe(parentId);
    expect(span.traceState).toBe("vendor=abc");
    expect(span.name).toBe("chat gpt-4o");
    expect(span.kind).toBe("SPAN_KIND_CLIENT");
    expect(span.status.code).toBe("STATUS_CODE_UNSET");
    expect(span.attributes).toMatchObject({
      "gen_ai.operation.name": "chat",
      "gen_ai.provider.name": "openai",
      "gen_ai.request.model": "gpt-4o",
      "gen_ai.response.model": "gpt-4o-2025",
      "gen_ai.usage.input_tokens": 12,
      "gen_ai.usage.output_tokens": 7,
      "gen_ai.usage.cache_read.input_tokens": 4,
      "gen_ai.response.finish_reasons": ["stop"],
      "gen_ai.agent.id": "pr-reviewer",
      "gen_ai.conversation.id": "sess-9",
      "session.id": "sess-9",
      "user.id": "alice",
      "http.response.status_code": 200,
      "agent_attr.record.id": id,
      "agent_attr.cost_usd": record!.cost_usd,
      "agent_attr.outcome": "completed",
    });
    expect(record!.cost_usd).toBeGreaterThan(0);
    expect(span.attributes["error.type"]).toBeUndefined();
    // The span covers the call as the record timed it.
    expect(span.startNs).toBe(BigInt(Date.parse(record!.timestamp)) * 1_000_000n);
    expect(Number(span.endNs - span.startNs) / 1e6).toBeCloseTo(record!.duration_ms!, 0);
    expect(span.resource["service.name"]).toBe("agent-attr");
    expect(span.scope).toBe("agent-attr");
    const request = receiver.requests.at(-1)!;
    expect(request.contentType).toBe("application/x-protobuf");
  });

  test("streams: the finish reason is read from the stream (OpenAI's last choice chunk, Anthropic's message_delta)", async () => {
    const chat = await post(proxy, "/v1/chat/completions", { model: "gpt-4o-mini", messages: [], stream: true });
    const messages = await post(proxy, "/v1/messages", { model: "claude-sonnet-4-5", max_tokens: 10, messages: [], stream: true });
    const responses = await post(proxy, "/v1/responses", { model: "gpt-4o", input: "hi", stream: true });
    const chatSpan = await waitForSpan(chat.headers.get("x-audit-record-id"));
    const messagesSpan = await waitForSpan(messages.headers.get("x-audit-record-id"));
    const responsesSpan = await waitForSpan(responses.headers.get("x-audit-record-id"));
    expect(chatSpan.attributes["gen_ai.response.finish_reasons"]).toEqual(["stop"]);
    expect(chatSpan.attributes["agent_attr.stream"]).toBe(true);
    expect(messagesSpan.attributes).toMatchObject({
      "gen_ai.provider.name": "anthropic",
      "gen_ai.operation.name": "chat",
      "gen_ai.response.finish_reasons": ["end_turn"],
      "gen_ai.usage.input_tokens": 18,
      "gen_ai.usage.output_tokens": 9,
      "gen_ai.usage.cache_creation.input_tokens": 3,
    });
    expect(responsesSpan.attributes["gen_ai.response.finish_reasons"]).toEqual(["completed"]);
    // No traceparent: each is the root of a trace of its own.
    expect(chatSpan.parentSpanId).toBe("");
    expect(chatSpan.traceId).not.toBe(messagesSpan.traceId);
  });

  test("an upstream failure and a refused call: status ERROR with error.type", async () => {
    const failed = await post(proxy, "/v1/chat/completions", { model: "gpt-4o", messages: [] }, { "x-fake-scenario": "error-500" });
    const refused = await post(proxy, "/v1/chat/completions", { messages: [] }, { traceparent: `00-${traceId}-${parentId}-01` });
    expect(refused.status).toBe(400);
    const failedSpan = await waitForSpan(failed.headers.get("x-audit-record-id"));
    const refusedSpan = await waitForSpan(refused.headers.get("x-audit-record-id"));
    expect(failedSpan.status).toEqual({ code: "STATUS_CODE_ERROR", message: "server_error" });
    expect(failedSpan.attributes).toMatchObject({
      "error.type": "server_error",
      "http.response.status_code": 500,
      "agent_attr.outcome": "upstream_error",
    });
    expect(refusedSpan.status.code).toBe("STATUS_CODE_ERROR");
    expect(refusedSpan.attributes["agent_attr.outcome"]).toBe("rejected");
    expect(refusedSpan.attributes["error.type"]).toBeString();
    expect(refusedSpan.name).toBe("chat");
    expect(refusedSpan.parentSpanId).toBe(parentId);
  });

  test("a parent that was not sampled (flags 00) is respected: no span", async () => {
    const quiet = await post(
      proxy,
      "/v1/chat/completions",
      { model: "gpt-4o", messages: [] },
      { traceparent: `00-${"a".repeat(32)}-${parentId}-00` },
    );
    const loud = await post(proxy, "/v1/chat/completions", { model: "gpt-4o", messages: [] });
    await waitForSpan(loud.headers.get("x-audit-record-id"));
    expect(spanOf(quiet.headers.get("x-audit-record-id"))).toBeUndefined();
  });

  test("/metrics counts exported spans", async () => {
    await proxy.records();
    const text = await (await fetch(`${proxy.url}/metrics`)).text();
    expect(text).toContain("# TYPE agent_attr_otel_spans_exported_total counter");
    const exported = Number(/^agent_attr_otel_spans_exported_total (\d+)$/m.exec(text)?.[1]);
    expect(exported).toBeGreaterThanOrEqual(7);
    expect(text).toContain("agent_attr_otel_spans_dropped_total 0");
  });
});

test("past maxQueueSize calls are dropped and counted; shutdown sends what was queued", async () => {
  const proxy = await proxyWith({ maxQueueSize: 2, scheduledDelayMillis: 60_000, user: false });
  const ids: (string | null)[] = [];
  for (let i = 0; i < 5; i++) {
    const response = await post(proxy, "/v1/chat/completions", { model: "gpt-4o", messages: [] }, { "x-user-id": "bob" });
    ids.push(response.headers.get("x-audit-record-id"));
  }
  await proxy.records();
  const text = await (await fetch(`${proxy.url}/metrics`)).text();
  expect(text).toContain("agent_attr_otel_spans_dropped_total 3");
  expect(text).toContain("agent_attr_otel_queue_calls 2");
  await proxy.stop();
  const first = await waitForSpan(ids[0]!);
  await waitForSpan(ids[1]!);
  for (const id of ids.slice(2)) expect(spanOf(id)).toBeUndefined();
  expect(first.attributes["user.id"]).toBeUndefined();
});

test("an export the endpoint refuses is counted as failed, and logged once", async () => {
  const errors: string[] = [];
  receiver.status = 400;
  try {
    const proxy = await startTestProxy(
      upstream.url,
      {
        plugins: [
          openai({ baseURL: `${upstream.url}/v1` }),
          headerAttribution(),
          otel({ endpoint: `${receiver.url}/v1/traces?token=s3cret`, scheduledDelayMillis: 10, maxExportBatchSize: 1 }),
        ],
      },
      { log: { info() {}, warn() {}, error: (m) => errors.push(m) } },
    );
    await post(proxy, "/v1/chat/completions", { model: "gpt-4o", messages: [] });
    await post(proxy, "/v1/chat/completions", { model: "gpt-4o", messages: [] });
    const deadline = Date.now() + 10_000;
    let text = "";
    while (!text.includes("agent_attr_otel_spans_failed_total 2") && Date.now() < deadline) {
      await Bun.sleep(20);
      text = await (await fetch(`${proxy.url}/metrics`)).text();
    }
    expect(text).toContain("agent_attr_otel_spans_failed_total 2");
    await proxy.stop();
    const otelErrors = errors.filter((e) => e.startsWith("[plugin otel]"));
    expect(otelErrors.length).toBe(1);
    expect(otelErrors[0]).toContain("could not export");
    expect(otelErrors[0]).not.toContain("s3cret");
  } finally {
    receiver.status = 200;
  }
});

describe("the environment", () => {
  const saved = { ...process.env };
  afterAll(() => {
    for (const key of Object.keys(process.env)) if (key.startsWith("OTEL_")) delete process.env[key];
    Object.assign(process.env, saved);
  });

  test("OTEL_EXPORTER_OTLP_ENDPOINT switches otel() on for a config without it; OTEL_SERVICE_NAME and headers apply", async () => {
    expect(withTracing([headerAttribution()], {}).map((p) => p.name)).toEqual(["header-attribution"]);
    expect(withTracing([headerAttribution()], { OTEL_EXPORTER_OTLP_ENDPOINT: "http://x:4318", OTEL_SDK_DISABLED: "true" })).toHaveLength(1);
    expect(withTracing([otel({ endpoint: "http://x:4318/v1/traces" })], { OTEL_EXPORTER_OTLP_ENDPOINT: "http://x:4318" })).toHaveLength(1);
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    process.env.OTEL_EXPORTER_OTLP_HEADERS = "x-backend-key=k-123";
    process.env.OTEL_SERVICE_NAME = "gateway-eu";
    process.env.OTEL_RESOURCE_ATTRIBUTES = "deployment.environment=staging";
    process.env.OTEL_BSP_SCHEDULE_DELAY = "20";
    const proxy = await startTestProxy(upstream.url, {});
    try {
      const response = await post(proxy, "/v1/chat/completions", { model: "gpt-4o", messages: [] });
      const span = await waitForSpan(response.headers.get("x-audit-record-id"));
      expect(span.resource["service.name"]).toBe("gateway-eu");
      expect(span.resource["deployment.environment"]).toBe("staging");
      expect(span.attributes["gen_ai.operation.name"]).toBe("chat");
      expect(receiver.requests.at(-1)!.headers["x-backend-key"]).toBe("k-123");
    } finally {
      await proxy.stop();
    }
  });

  test("OTEL_TRACES_SAMPLER=always_on overrides a caller's 'not sampled'; always_off exports nothing; a typo stops the start", async () => {
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    process.env.OTEL_BSP_SCHEDULE_DELAY = "20";
    process.env.OTEL_TRACES_SAMPLER = "always_on";
    const quiet = { traceparent: `00-${"b".repeat(32)}-${parentId}-00` };
    let proxy = await startTestProxy(upstream.url, {});
    try {
      const response = await post(proxy, "/v1/chat/completions", { model: "gpt-4o", messages: [] }, quiet);
      const span = await waitForSpan(response.headers.get("x-audit-record-id"));
      expect(span.traceId).toBe("b".repeat(32));
    } finally {
      await proxy.stop();
    }
    process.env.OTEL_TRACES_SAMPLER = "always_off";
    const logged: string[] = [];
    proxy = await startTestProxy(upstream.url, {}, { log: { info: (m) => logged.push(m), warn() {}, error() {} } });
    try {
      const response = await post(proxy, "/v1/chat/completions", { model: "gpt-4o", messages: [] });
      await proxy.records();
      await Bun.sleep(100);
      expect(spanOf(response.headers.get("x-audit-record-id"))).toBeUndefined();
      expect(logged.some((m) => m.includes("[plugin otel] the sampler samples nothing"))).toBe(true);
    } finally {
      await proxy.stop();
    }
    process.env.OTEL_TRACES_SAMPLER = "tracidratio";
    try {
      await expect(startTestProxy(upstream.url, {})).rejects.toThrow(/\[plugin otel\] setup: OTEL_TRACES_SAMPLER is 'tracidratio'/);
    } finally {
      delete process.env.OTEL_TRACES_SAMPLER;
    }
  });

  test("a protocol other than http/protobuf is a clear start-up error", async () => {
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    process.env.OTEL_EXPORTER_OTLP_PROTOCOL = "grpc";
    try {
      await expect(startTestProxy(upstream.url, {})).rejects.toThrow(/\[plugin otel\] setup: .*http\/protobuf/);
    } finally {
      delete process.env.OTEL_EXPORTER_OTLP_PROTOCOL;
    }
  });
});
