// The otel plugin's protobuf encoding, decoded with the protocol's message definitions
// (test/fixtures/otlp/trace.proto): many spans (buffer growth, multi-byte lengths), non-ASCII text,
// every attribute type.
import { expect, test } from "bun:test";
import protobuf from "protobufjs";
import { resolve } from "node:path";
import { SpanStatusCode } from "@opentelemetry/api";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { encodeRequest, encodedPreamble, type SpanData } from "../../plugins/otel/encode.ts";

const root = protobuf.loadSync(resolve(import.meta.dir, "../fixtures/otlp/trace.proto"));
const Request = root.lookupType("opentelemetry.proto.ExportTraceServiceRequest");

test("a request of 2,000 spans decodes to what was encoded", () => {
  const preamble = encodedPreamble(
    resourceFromAttributes({ "service.name": "gw", "deployment.environment": "prod", replicas: 3 }),
    "agent-attr",
  );
  const spans: SpanData[] = Array.from({ length: 2000 }, (_, i) => ({
    traceId: i.toString(16).padStart(32, "0"),
    spanId: (i + 1).toString(16).padStart(16, "f"),
    parentSpanId: i % 2 ? "00f067aa0ba902b7" : null,
    traceState: i % 2 ? "vendor=x" : null,
    name: `chat model-${i}`,
    startMs: 1_764_633_600_000 + i + 0.25,
    endMs: 1_764_633_600_000 + i + 12.5,
    status: i % 3 ? { code: SpanStatusCode.UNSET } : { code: SpanStatusCode.ERROR, message: "http_500" },
    attributes: [
      ["user.id", `josé ☃ ${"x".repeat(i % 300)}`],
      ["gen_ai.usage.input_tokens", i * 1000],
      ["agent_attr.cost_usd", 0.000095, "double"],
      ["agent_attr.stream", i % 2 === 0],
      ["gen_ai.response.finish_reasons", ["stop", "length"]],
    ],
  }));
  const bytes = encodeRequest(spans, preamble);
  expect(bytes.length).toBeGreaterThan(300_000);
  const decoded = Request.toObject(Request.decode(bytes), { longs: String, enums: String, bytes: String }) as {
    resourceSpans: {
      resource: { attributes: { key: string; value: Record<string, unknown> }[] };
      scopeSpans: { scope: { name: string }; spans: Record<string, unknown>[] }[];
    }[];
  };
  const [rs] = decoded.resourceSpans;
  expect(rs!.resource.attributes).toEqual([
    { key: "service.name", value: { stringValue: "gw" } },
    { key: "deployment.environment", value: { stringValue: "prod" } },
    { key: "replicas", value: { intValue: "3" } },
  ]);
  const [ss] = rs!.scopeSpans;
  expect(ss!.scope.name).toBe("agent-attr");
  expect(ss!.spans).toHaveLength(2000);
  for (const [i, s] of ss!.spans.entries()) {
    expect(Buffer.from(s.traceId as string, "base64").toString("hex")).toBe(spans[i]!.traceId);
    expect(Buffer.from(s.spanId as string, "base64").toString("hex")).toBe(spans[i]!.spanId);
    expect(s.parentSpanId ? Buffer.from(s.parentSpanId as string, "base64").toString("hex") : null).toBe(spans[i]!.parentSpanId);
    expect(s.traceState ?? null).toBe(spans[i]!.traceState);
    expect(s.name).toBe(`chat model-${i}`);
    expect(s.kind).toBe("SPAN_KIND_CLIENT");
    expect(s.startTimeUnixNano).toBe(`${1_764_633_600_000 + i}250000`);
    expect(s.endTimeUnixNano).toBe(`${1_764_633_600_000 + i + 12}500000`);
    expect(s.status ?? {}).toEqual(i % 3 ? {} : { code: "STATUS_CODE_ERROR", message: "http_500" });
    expect(s.attributes).toEqual([
      { key: "user.id", value: { stringValue: `josé ☃ ${"x".repeat(i % 300)}` } },
      { key: "gen_ai.usage.input_tokens", value: { intValue: String(i * 1000) } },
      { key: "agent_attr.cost_usd", value: { doubleValue: 0.000095 } },
      { key: "agent_attr.stream", value: { boolValue: i % 2 === 0 } },
      { key: "gen_ai.response.finish_reasons", value: { arrayValue: { values: [{ stringValue: "stop" }, { stringValue: "length" }] } } },
    ]);
  }
});
