/**
 * `otel({...})`: one OpenTelemetry span per proxied call, exported over OTLP/HTTP (protobuf), with
 * the GenAI semantic conventions (./span.ts), as a child of the call's inbound `traceparent` so it
 * joins the agent's own trace. It observes calls once they are over (the `observe` stage) and
 * queues them; spans are built and sent in batches off the calls' path (./batch.ts).
 *
 * Configured like any OpenTelemetry SDK, by the standard environment (options given here win):
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL) or `OTEL_EXPORTER_OTLP_ENDPOINT` (+ `/v1/traces`),
 * `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`, `_TIMEOUT`, `_COMPRESSION` and TLS files (read by the
 * official OTLP exporter's configuration, ./exporter.ts), `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_MAX_QUEUE_SIZE`,
 * `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_TRACES_SAMPLER` and
 * `OTEL_TRACES_SAMPLER_ARG` (./sampler.ts). `OTEL_SDK_DISABLED=true` or
 * `OTEL_TRACES_EXPORTER=none` turns it off. Only `http/protobuf` is spoken: another
 * `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` is a start-up error.
 */
import { getNumberFromEnv, getStringFromEnv } from "@opentelemetry/core";
import { detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import { definePlugin, parseOptions, type Logger } from "agent-attr";
import { z } from "zod";
import { SpanBatcher } from "./batch.ts";
import { encodedPreamble } from "./encode.ts";
import { otlpExporter, type OtlpExporter } from "./exporter.ts";
import { callSampler, samplerNameSchema } from "./sampler.ts";

const positive = z.number().int().positive();

const optionsSchema = z
  .object({
    /** Where spans go: an OTLP/HTTP traces URL (e.g. `http://collector:4318/v1/traces`). Default: the environment's. */
    endpoint: z.url().optional(),
    /** Headers on each export (e.g. an API key of the tracing backend), beside the environment's. */
    headers: z.record(z.string(), z.string()).optional(),
    /** `service.name` of the spans (default `OTEL_SERVICE_NAME`, else `agent-attr`). */
    serviceName: z.string().min(1).optional(),
    /** Calls that may wait for export; past it they are dropped and counted (default 2048). */
    maxQueueSize: positive.optional(),
    /**
     * Spans per export (default 128, below the SDK's 512: a batch is encoded in one piece on the
     * event loop, and a smaller one keeps that pause under a millisecond or so).
     */
    maxExportBatchSize: positive.optional(),
    /** How long a call waits for its batch to fill before the batch is sent (ms, default 5000). */
    scheduledDelayMillis: positive.optional(),
    /** Put the call's `user.id` on its span (default true). The tracing backend is outside the erasable trail. */
    user: z.boolean().default(true),
    /** Which calls get a span (default `OTEL_TRACES_SAMPLER`, else `parentbased_always_on`, the SDK's). */
    sampler: samplerNameSchema.optional(),
    /** The ratio of the `traceidratio` samplers, 0–1 (default `OTEL_TRACES_SAMPLER_ARG`, else 1). */
    samplerRatio: z.number().min(0).max(1).optional(),
    /** How long shutdown waits for the last spans to be sent (ms, default 5000). */
    shutdownTimeoutMillis: positive.default(5000),
  })
  .strict();

export type OtelOptions = z.input<typeof optionsSchema>;

/** True when the environment asks for trace export (the proxy then adds `otel()` if the config lacks it). */
export function otelWantedByEnvironment(env: Record<string, string | undefined> = process.env): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true") return false;
  if (env.OTEL_TRACES_EXPORTER?.trim().toLowerCase() === "none") return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim());
}

export function otel(options: OtelOptions = {}) {
  const opts = parseOptions("otel", optionsSchema, options);
  let batcher: SpanBatcher | null = null;
  let exporter: OtlpExporter | null = null;

  return definePlugin({
    name: "otel",
    setup({ log, metrics }) {
      if (getStringFromEnv("OTEL_SDK_DISABLED")?.toLowerCase() === "true") {
        log.info("[plugin otel] OTEL_SDK_DISABLED=true: no spans are exported");
        return;
      }
      const protocol = getStringFromEnv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") ?? getStringFromEnv("OTEL_EXPORTER_OTLP_PROTOCOL");
      if (protocol && protocol !== "http/protobuf") {
        throw new Error(
          `OTEL_EXPORTER_OTLP_PROTOCOL is '${protocol}', but agent-attr exports spans over OTLP/HTTP with protobuf only: set it to http/protobuf (collectors accept it on port 4318) or unset it.`,
        );
      }
      const sampler = callSampler(
        opts.sampler ?? getStringFromEnv("OTEL_TRACES_SAMPLER") ?? "parentbased_always_on",
        opts.samplerRatio !== undefined ? String(opts.samplerRatio) : getStringFromEnv("OTEL_TRACES_SAMPLER_ARG"),
      );
      if (sampler.never) {
        log.info("[plugin otel] the sampler samples nothing (always_off, or a ratio of 0): no spans are exported");
        return;
      }
      const url = opts.endpoint ?? defaultEndpoint();
      if (!url) {
        throw new Error(
          "no OTLP endpoint: give otel({ endpoint }) or set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://localhost:4318) or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.",
        );
      }
      const counters = {
        exported: metrics.counter("agent_attr_otel_spans_exported_total", "Spans the OTLP endpoint accepted."),
        dropped: metrics.counter(
          "agent_attr_otel_spans_dropped_total",
          "Spans dropped because the export queue was full (otel maxQueueSize / OTEL_BSP_MAX_QUEUE_SIZE).",
        ),
        failed: metrics.counter(
          "agent_attr_otel_spans_failed_total",
          "Spans lost because their export failed (after the exporter's retries).",
        ),
      };
      const resource = resourceFromAttributes({
        "service.name": opts.serviceName ?? getStringFromEnv("OTEL_SERVICE_NAME") ?? "agent-attr",
      });
      // OTEL_RESOURCE_ATTRIBUTES adds to it; the option or OTEL_SERVICE_NAME names the service.
      const preamble = encodedPreamble(detectResources({ detectors: [envDetector] }).merge(resource), "agent-attr");
      exporter = otlpExporter({ url: opts.endpoint, headers: opts.headers }, preamble);
      const failures = failureLog(log, url);
      batcher = new SpanBatcher(
        exporter,
        {
          maxQueueSize: opts.maxQueueSize ?? getNumberFromEnv("OTEL_BSP_MAX_QUEUE_SIZE") ?? 2048,
          maxExportBatchSize: opts.maxExportBatchSize ?? getNumberFromEnv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") ?? 128,
          scheduledDelayMillis: opts.scheduledDelayMillis ?? getNumberFromEnv("OTEL_BSP_SCHEDULE_DELAY") ?? 5000,
          user: opts.user,
          sampler,
        },
        {
          exported: (n) => (counters.exported.add(n), failures.recovered()),
          dropped: (n) => counters.dropped.add(n),
          failed: (n, error) => (counters.failed.add(n), failures.failed(n, error)),
        },
      );
      const queue = batcher;
      metrics.gauge("agent_attr_otel_queue_calls", "Ended calls waiting for their span to be exported.", () => queue.queued);
      log.info(`[plugin otel] exporting one span per call to ${redactedURL(url)}`);
    },
    observe({ ctx, record, finishReasons, tier }) {
      batcher?.push({
        record,
        kind: ctx.endpoint.kind,
        traceparent: ctx.request.headers.get("traceparent"),
        tracestate: ctx.request.headers.get("tracestate"),
        finishReasons,
        tier,
      });
    },
    async teardown() {
      await batcher?.close(opts.shutdownTimeoutMillis);
      await exporter?.shutdown();
    },
  });
}

/** The traces URL the environment names, as the official exporter derives it. */
function defaultEndpoint(): string | undefined {
  const traces = getStringFromEnv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  if (traces) return traces;
  const base = getStringFromEnv("OTEL_EXPORTER_OTLP_ENDPOINT");
  return base ? `${base.replace(/\/$/, "")}/v1/traces` : undefined;
}

/** A URL for the log: its credentials and query left out. */
function redactedURL(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return "(an unparsable URL)";
  }
}

/** Logs the first failed export of an outage and the recovery, not every batch. */
function failureLog(log: Logger, url: string) {
  let failing = 0;
  return {
    failed(n: number, error: Error | undefined) {
      if (failing === 0) {
        log.error(
          `[plugin otel] could not export ${n} span(s) to ${redactedURL(url)}: ${error?.message ?? "unknown error"}; spans are counted in agent_attr_otel_spans_failed_total until it answers`,
        );
      }
      failing += n;
    },
    recovered() {
      if (failing > 0) log.warn(`[plugin otel] exporting again; ${failing} span(s) were lost while it failed`);
      failing = 0;
    },
  };
}
