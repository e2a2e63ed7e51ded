/**
 * Stages 7-9 for a call whose response has ended: decide its outcome, price it, write its final
 * record and settle the limiters. Never throws: a failure here is logged, the client is unaffected.
 */
import type { AuditRecord, Outcome, Usage } from "../audit/record.ts";
import { ProxyError, errorMessage } from "../errors.ts";
import type { PriceQuote } from "../plugin.ts";
import type { StreamEnd } from "../proxy/tap.ts";
import type { CallContext, MeterResult } from "./context.ts";
import { elapsed, writeRecord } from "./record.ts";
import type { ReplyContext } from "./respond.ts";
import type { Runtime } from "./runtime.ts";

/** Stages 7-9: price the call, write its final record, settle the limiters. Never throws. */
export async function finalize(reply: ReplyContext, how: StreamEnd, result: MeterResult, ttfb: number | null, hash: string) {
  const { ctx, record, upstream, abort, rt } = reply;
  try {
    const final = await completeRecord(ctx, record, upstream.status, how, result, abort.signal, rt);
    final.ttfb_ms = ttfb;
    final.response_hash = hash;
    writeRecord(final, rt);
    await settle(ctx, final, rt);
  } catch (error) {
    rt.log.error(`recording call ${ctx.id} failed: ${errorMessage(error)}`);
  }
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
  } else if (how.kind === "upstream_error" && ctx.request.signal.aborted) {
    outcome = "client_aborted";
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
    error_type: errorType ?? ctx.shadowDenial ?? null,
  };
}

/** Stage 7: the first pricing plugin's quote, null when none prices the call. Never throws. */
export async function price(ctx: CallContext, usage: Usage, responseModel: string | null, rt: Runtime): Promise<PriceQuote | null> {
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

/** Stage 9: every limiter reconciles with the final record. Never throws. */
export async function settle(ctx: CallContext, record: AuditRecord, rt: Runtime): Promise<void> {
  for (const plugin of rt.plugins) {
    if (!plugin.limit?.settle) continue;
    try {
      await plugin.limit.settle(ctx, record);
    } catch (error) {
      rt.log.error(`[plugin ${plugin.name}] limit.settle: ${errorMessage(error)}`);
    }
  }
}

