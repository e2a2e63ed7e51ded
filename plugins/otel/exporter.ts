/**
 * The OTLP/HTTP exporter: the official one's configuration (the `OTEL_EXPORTER_OTLP_*`
 * environment: endpoint, headers, timeout, compression, TLS), HTTP transport, retries of what the
 * collector asks to retry, and response decoding — given the spans already encoded as protobuf by
 * ./encode.ts instead of SDK span objects.
 */
import { OTLPExporterBase } from "@opentelemetry/otlp-exporter-base";
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from "@opentelemetry/otlp-exporter-base/node-http";
import { ProtobufTraceSerializer, type ISerializer, type IExportTraceServiceResponse } from "@opentelemetry/otlp-transformer";
import { encodeRequest, type SpanData } from "./encode.ts";

export type OtlpExporter = OTLPExporterBase<SpanData[]>;

export function otlpExporter(
  config: { url?: string; headers?: Record<string, string> },
  preamble: { resource: Uint8Array; scope: Uint8Array },
): OtlpExporter {
  const serializer: ISerializer<SpanData[], IExportTraceServiceResponse> = {
    serializeRequest: (spans) => encodeRequest(spans, preamble),
    deserializeResponse: (data) => ProtobufTraceSerializer.deserializeResponse(data),
  };
  const options = convertLegacyHttpOptions(config, "TRACES", "v1/traces", { "Content-Type": "application/x-protobuf" });
  return new OTLPExporterBase(
    createOtlpHttpExportDelegate(
      options,
      serializer,
      "otlp_http_span_exporter",
      { name: "span", countItems: (spans) => spans.length },
      undefined,
    ),
  );
}
