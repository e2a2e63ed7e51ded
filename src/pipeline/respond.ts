/**
 * Stages 6-9 for one upstream response: the body streams to the client untouched while the
 * provider's meter reads usage from it; when it ends (done, upstream failure or client cancel) the
 * call is priced, its final record written and the limiters settled. Accounting code is guarded:
 * nothing here can throw into the client's stream.
 */
import type { AuditRecord, Outcome, Usage } from "../audit/record.ts";
import { ProxyError, errorMessage } from "../errors.ts";
import type { PriceQuote, ProviderAdapter } from "../plugin.ts";
import { SSEParser, parseJSON } from "../proxy/sse.ts";
import { tapStream, type StreamEnd } from "../proxy/tap.ts";
import type { CallContext, Meter, MeterResult } from "./context.ts";
import { elapsed, writeRecord } from "./record.ts";
import type { Runtime } from "./runtime.ts";

/** Non-streamed bodies larger than this are forwarded but not parsed for usage. */
const maxMeteredJSONBytes = 16 * 1024 * 1024;

export function finishResponse(
  ctx: CallContext,
  provider: { plugin: string; adapter: ProviderAdapter },
  upstream: Response,
  record: AuditRecord,
  abort: AbortController,
  rt: Runtime,
  cleanup: () => void,
): ReadableStream<Uint8Array> | null {
  const meter = guardedMeter(provider, ctx, rt);
  const sse = upstream.headers.get("content-type")?.includes("text/event-stream") ?? false;
  const parser = sse ? new SSEParser() : null;
  const jsonChunks: Uint8Array[] = [];
  let jsonBytes = 0;
  const hasher = new Bun.CryptoHasher("sha256", rt.hashKey);
  let ttfb: number | null = null;
  let idleTimer: Timer | undefined;
  const armIdleTimer = () => {
    if (rt.limits.streamIdleTimeoutMs <= 0) return;
    clearTimeout(idleTimer);
    idleTimer = setTimeout(
      () =>
        abort.abort(
          new ProxyError("upstream_timeout", `The upstream sent nothing for ${rt.limits.streamIdleTimeoutMs} ms.`),
        ),
      rt.limits.streamIdleTimeoutMs,
    );
  };

  let settled!: () => void;
  const done = new Promise<void>((resolve) => (settled = resolve));
  rt.inflight.add(done);
  done.then(() => rt.inflight.delete(done));

  const end = async (how: StreamEnd) => {
    clearTimeout(idleTimer);
    cleanup();
    try {
      if (parser) for (const event of parser.end()) meter.event(event);
      else if (jsonChunks.length > 0) meter.json(parseJSON(new TextDecoder().decode(Buffer.concat(jsonChunks))));
      const result = meter.result();
      const final = await completeRecord(ctx, record, upstream.status, how, result, abort.signal, rt);
      final.ttfb_ms = ttfb;
      final.response_hash = hasher.digest("hex");
      writeRecord(final, rt);
      await settle(ctx, final, rt);
    } catch (error) {
      rt.log.error(`recording call ${ctx.id} failed: ${errorMessage(error)}`);
    } finally {
      settled();
    }
  };

  if (!upstream.body) {
    void end({ kind: "done" });
    return null;
  }
  armIdleTimer();
  return tapStream(upstream.body, {
    chunk(bytes) {
      ttfb ??= elapsed(ctx);
      armIdleTimer();
      hasher.update(bytes);
      if (parser) {
        for (const event of parser.push(bytes)) meter.event(event);
      } else if (jsonBytes + bytes.byteLength <= maxMeteredJSONBytes) {
        jsonChunks.push(bytes);
        jsonBytes += bytes.byteLength;
      }
    },
    end: (how) => void end(how),
  });
}

async function completeRecord(
  ctx: CallContext,
  record: AuditRecord,
  status: number,
  how: StreamEnd,
  result: MeterResult,
  signal: AbortSignal,
  rt: Runtime,
): Promise<AuditRecord> {
  let outcome: Outcome;
  let errorType = result.errorType;
  if (how.kind === "cancel") {
    // SDKs cancel the body right after the terminal event: that call completed.
    outcome = result.terminal ? "completed" : "client_aborted";
  } else if (how.kind === "upstream_error") {
    outcome = "upstream_error";
    errorType = signal.reason instanceof ProxyError ? signal.reason.code : "upstream_stream_error";
  } else if (status >= 400) {
    outcome = "upstream_error";
    errorType ??= `http_${status}`;
  } else if (ctx.stream && !result.terminal) {
    outcome = "upstream_error";
    errorType ??= "incomplete_stream";
  } else {
    outcome = "completed";
  }
  const usage = result.usage;
  const quote = usage ? await price(ctx, usage, result.responseModel, rt) : null;
  return {
    ...record,
    ...(usage ?? {}),
    duration_ms: elapsed(ctx),
    status,
    outcome,
    response_model: result.responseModel,
    usage_source: usage ? "provider" : "none",
    cost_usd: quote?.cost_usd ?? null,
    price_source: quote?.price_source ?? null,
    error_type: errorType,
  };
}

async function price(ctx: CallContext, usage: Usage, responseModel: string | null, rt: Runtime) {
  for (const plugin of rt.plugins) {
    if (!plugin.price) continue;
    try {
      const quote: PriceQuote | null = await plugin.price(ctx, usage, responseModel);
      if (quote) return quote;
    } catch (error) {
      rt.log.error(`[plugin ${plugin.name}] price: ${errorMessage(error)}`);
    }
  }
  return null;
}

async function settle(ctx: CallContext, record: AuditRecord, rt: Runtime) {
  for (const plugin of rt.plugins) {
    if (!plugin.limit?.settle) continue;
    try {
      await plugin.limit.settle(ctx, record);
    } catch (error) {
      rt.log.error(`[plugin ${plugin.name}] limit.settle: ${errorMessage(error)}`);
    }
  }
}

/** A meter whose failures are logged once and never reach the stream. */
function guardedMeter(provider: { plugin: string; adapter: ProviderAdapter }, ctx: CallContext, rt: Runtime): Meter {
  let failed = false;
  const fail = (hook: string, error: unknown) => {
    if (!failed) rt.log.error(`[plugin ${provider.plugin}] ${hook}: ${errorMessage(error)} (call ${ctx.id})`);
    failed = true;
  };
  let inner: Meter | null = null;
  try {
    inner = provider.adapter.meter(ctx.endpoint);
  } catch (error) {
    fail("provider.meter", error);
  }
  return {
    event(event) {
      if (inner && !failed) {
        try {
          inner.event(event);
        } catch (error) {
          fail("meter.event", error);
        }
      }
    },
    json(body) {
      if (inner && !failed) {
        try {
          inner.json(body);
        } catch (error) {
          fail("meter.json", error);
        }
      }
    },
    result() {
      try {
        if (inner) return inner.result();
      } catch (error) {
        fail("meter.result", error);
      }
      return { usage: null, responseModel: null, terminal: false, errorType: null };
    },
  };
}
