/**
 * A local OTLP/HTTP trace receiver: it takes `POST /v1/traces` as a collector does, decodes the
 * protobuf body with the protocol's message definitions (test/fixtures/otlp/trace.proto, through
 * protobufjs — not the exporter's own code), and answers an empty ExportTraceServiceResponse.
 * `status` makes it fail (e.g. 503) to test export failures; `requests` keeps what arrived.
 */
import type { Server } from "bun";
import protobuf from "protobufjs";
import { resolve } from "node:path";

export type AttributeValue = string | number | boolean | AttributeValue[] | null;

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  traceState: string;
  name: string;
  kind: string;
  startNs: bigint;
  endNs: bigint;
  attributes: Record<string, AttributeValue>;
  status: { code: string; message: string };
  resource: Record<string, AttributeValue>;
  scope: string;
}

export interface OtlpReceiver {
  url: string;
  spans: ReceivedSpan[];
  requests: { contentType: string | null; headers: Record<string, string>; bytes: number }[];
  /** The HTTP status it answers with (200 unless a test changes it). */
  status: number;
  /** Resolves once `n` spans have arrived (or rejects after `timeoutMs`). */
  waitFor(n: number, timeoutMs?: number): Promise<ReceivedSpan[]>;
  stop(): Promise<void>;
}

const root = protobuf.loadSync(resolve(import.meta.dir, "../fixtures/otlp/trace.proto"));
const Request = root.lookupType("opentelemetry.proto.ExportTraceServiceRequest");
const Response = root.lookupType("opentelemetry.proto.ExportTraceServiceResponse");

interface DecodedValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string;
  doubleValue?: number;
  arrayValue?: { values?: DecodedValue[] };
}
interface DecodedKeyValue {
  key: string;
  value?: DecodedValue;
}

function decodeValue(value: DecodedValue | undefined): AttributeValue {
  if (!value) return null;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  if (value.arrayValue) return (value.arrayValue.values ?? []).map(decodeValue);
  return null;
}

const attributesOf = (list: DecodedKeyValue[] | undefined) => Object.fromEntries((list ?? []).map((kv) => [kv.key, decodeValue(kv.value)]));
const hex = (b64: string | undefined) => Buffer.from(b64 ?? "", "base64").toString("hex");

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: OtlpReceiver["requests"] = [];
  const receiver = { status: 200 } as OtlpReceiver;
  const server: Server<undefined> = Bun.serve({
    port: 0,
    async fetch(request) {
      if (request.method !== "POST" || new URL(request.url).pathname !== "/v1/traces")
        return new globalThis.Response("not found", { status: 404 });
      const bytes = new Uint8Array(await request.arrayBuffer());
      requests.push({
        contentType: request.headers.get("content-type"),
        headers: Object.fromEntries(request.headers),
        bytes: bytes.length,
      });
      if (receiver.status !== 200) return new globalThis.Response("unavailable", { status: receiver.status });
      const decoded = Request.toObject(Request.decode(bytes), { longs: String, enums: String, bytes: String, defaults: true }) as {
        resourceSpans: {
          resource?: { attributes?: DecodedKeyValue[] };
          scopeSpans: { scope?: { name: string }; spans: Record<string, unknown>[] }[];
        }[];
      };
      for (const rs of decoded.resourceSpans) {
        const resource = attributesOf(rs.resource?.attributes);
        for (const ss of rs.scopeSpans) {
          for (const s of ss.spans) {
            const status = (s.status ?? {}) as { code?: string; message?: string };
            spans.push({
              traceId: hex(s.traceId as string),
              spanId: hex(s.spanId as string),
              parentSpanId: hex(s.parentSpanId as string),
              traceState: s.traceState as string,
              name: s.name as string,
              kind: s.kind as string,
              startNs: BigInt(s.startTimeUnixNano as string),
              endNs: BigInt(s.endTimeUnixNano as string),
              attributes: attributesOf(s.attributes as DecodedKeyValue[]),
              status: { code: status.code ?? "STATUS_CODE_UNSET", message: status.message ?? "" },
              resource,
              scope: ss.scope?.name ?? "",
            });
          }
        }
      }
      const answer = Response.encode(Response.create({})).finish();
      return new globalThis.Response(answer, { headers: { "content-type": "application/x-protobuf" } });
    },
  });
  return Object.assign(receiver, {
    url: `http://127.0.0.1:${server.port}`,
    spans,
    requests,
    async waitFor(n: number, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (spans.length < n) {
        if (Date.now() > deadline) throw new Error(`the OTLP receiver got ${spans.length} span(s), not ${n}, within ${timeoutMs} ms`);
        await Bun.sleep(10);
      }
      return spans;
    },
    stop: () => server.stop(true),
  });
}
