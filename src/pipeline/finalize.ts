/**
 * Stages 7-9 for a call whose response ends: decide its outcome, price it, write its final record
 * and settle the limiters. Never throws: a failure here is logged, the client is unaffected.
 */
import type { AuditRecord, Outcome, Usage, UsageSource } from "../trail/record.ts";
import { ProxyError, errorMessage } from "../errors.ts";
import type { ProviderAdapter } from "../plugin.ts";
import type { StreamEnd } from "../proxy/tap.ts";
import type { CallContext, EndpointKind, MeterResult } from "./context.ts";
import { estimateUsage } from "./estimate.ts";
import { costFields, hasUsage, priceUsage } from "./price.ts";
import { elapsed, writeRecord } from "./record.ts";
import type { ReplyContext } from "./respond.ts";
import type { Runtime } from "./runtime.ts";
import { runSequential } from "./hooks.ts";

/**
 * Stages 7-8: price the call and write its final record. Resolves with the record once every sink
 * has it — the primary one durably (the SQLite store: in the intent log), which is why a call's
 * last bytes wait for this — or with null if that failed (logged). Stage 9 (`settle`) is the
 * caller's, after. Never throws.
 */
export async function recordFinal(
  reply: ReplyContext,
  how: StreamEnd,
  result: MeterResult,
  ttfb: number | null,
  hash: string,
): Promise<AuditRecord | null> {
  const { ctx, upstream, abort, rt } = reply;
  try {
    const final = await completeRecord(reply, upstream.status, how, result, abort.signal);
    final.ttfb_ms = ttfb;
    final.response_hash = hash;
    await writeRecord(final, rt);
    return final;
  } catch (error) {
    rt.log.error(`recording call ${ctx.id} failed: ${errorMessage(error)}`);
    return null;
  }
}

/**
 * Stages 7-9 for a call that ended before the upstream's response headers: written as it is,
 * except that a client who hung up on a generation is billed by estimate for the prompt the
 * upstream had already received (nothing was delivered, so output is 0). Never throws.
 */
export async function finalizeBeforeResponse(
  ctx: CallContext,
  final: AuditRecord,
  provider: { plugin: string; adapter: ProviderAdapter },
  rt: Runtime,
): Promise<void> {
  try {
    if (final.outcome === "client_aborted" && generating.has(ctx.endpoint.kind)) {
      const usage = await estimateUsage(ctx, null, "");
      if (usage) {
        Object.assign(final, usage, { usage_source: "estimated" }, costFields(await priceUsage(ctx, provider, usage, null, rt)));
      }
    }
    await writeRecord(final, rt);
    await settle(ctx, final, rt);
  } catch (error) {
    rt.log.error(`recording call ${ctx.id} failed: ${errorMessage(error)}`);
  }
}

async function completeRecord(
  { ctx, record, provider, rt }: ReplyContext,
  status: number,
  how: StreamEnd,
  result: MeterResult,
  signal: AbortSignal,
): Promise<AuditRecord> {
  let outcome: Outcome;
  let errorType = result.errorType;
  if (how.kind === "cancel") {
    // SDKs cancel the body right after the terminal event: that call completed (or failed, if
    // its terminal event was an error).
    outcome = !result.terminal ? "client_aborted" : result.errorType ? "upstream_error" : "completed";
  } else if (how.kind === "upstream_error" && ctx.request.signal.aborted) {
    outcome = "client_aborted";
  } else if (how.kind === "upstream_error") {
    outcome = "upstream_error";
    errorType = signal.reason instanceof ProxyError ? signal.reason.code : "upstream_stream_error";
  } else if (status >= 400) {
    outcome = "upstream_error";
    errorType ??= `http_${status}`;
  } else if (result.errorType) {
    // A 200 whose body reports a failure: an SSE `error` event (e.g. Anthropic's overloaded_error
    // mid-stream) or a Responses API `response.failed`.
    outcome = "upstream_error";
  } else if (ctx.stream && !result.terminal) {
    outcome = "upstream_error";
    errorType ??= "incomplete_stream";
  } else {
    outcome = "completed";
  }
  let usage = hasUsage(result.usage) ? result.usage : null;
  let source: UsageSource = usage ? "provider" : "none";
  if (needsEstimate(ctx, status, outcome, usage)) {
    const estimate = await estimateUsage(ctx, usage, result.outputText?.() ?? null);
    if (estimate) [usage, source] = [estimate, "estimated"];
  }
  const quote = usage ? await priceUsage(ctx, provider, usage, result.responseModel, rt) : null;
  return {
    ...record,
    ...(usage ?? {}),
    duration_ms: elapsed(ctx),
    status,
    outcome,
    response_model: result.responseModel,
    usage_source: source,
    ...costFields(quote),
    error_type: errorType ?? ctx.limitFlag ?? null,
  };
}

/** Endpoints whose tokens someone pays for (embeddings: input only). */
const generating = new Set<EndpointKind>(["chat.completions", "completions", "responses", "messages", "embeddings"]);

/**
 * A successful generation whose usage did not arrive in full — the client hung up, the stream broke
 * off, or the server reports no usage — is billed by estimate rather than left free.
 */
function needsEstimate(ctx: CallContext, status: number, outcome: Outcome, usage: Usage | null): boolean {
  if (status >= 400 || !generating.has(ctx.endpoint.kind)) return false;
  return outcome !== "completed" || usage === null || usage.output_tokens === null || usage.input_tokens === null;
}

/** Stage 9: every limiter reconciles with the final record. Never throws. */
export function settle(ctx: CallContext, record: AuditRecord, rt: Runtime): Promise<void> {
  return runSequential(rt.plugins, "limit.settle", (plugin) => plugin.limit?.settle && (() => plugin.limit!.settle!(ctx, record)), { log: rt.log });
}

