/**
 * The one ending of every call. Whatever happened to it — refused before it was forwarded, the
 * upstream unreachable, its response done, broken off or cancelled by the client — a call ends
 * here: its final record is built from how it ended (outcome, usage or an estimate of it, price:
 * stage 7), handed to the primary store (stage 8; the secondary sinks get it once the store has
 * committed it), the limiters settle with it (stage 9), and observing plugins are told (stage 10). Each runs
 * exactly once per call, however many paths reach it. Never throws: a failure here is logged and
 * the client's answer is unaffected.
 */
import { noUsage, type AuditRecord, type Outcome, type Usage, type UsageSource } from "../trail/record.ts";
import { ProxyError, errorMessage } from "../errors.ts";
import type { StreamEnd } from "../proxy/tap.ts";
import type { CallContext, MeterResult } from "./context.ts";
import type { ObservedCall, PriceQuote } from "../plugin.ts";
import { estimateUsage } from "./estimate.ts";
import { isPromiseLike, runSequential, type MaybePromise } from "./hooks.ts";
import { costFields, hasUsage, priceUsage } from "./price.ts";
import { elapsed, writeRecord } from "./record.ts";
import type { RoutedProvider, Runtime } from "./runtime.ts";

/** How a call ended. */
export type CallEnd =
  /**
   * Refused by the proxy before it was forwarded (stages 1-4, or its intent could not be written);
   * `clientGone`: not refused, the client left first (hung up while sending its body).
   */
  | { kind: "refused"; error: ProxyError; clientGone?: boolean }
  /** Forwarded, but no response arrived: the upstream failed, timed out, or the client hung up. */
  | { kind: "failed"; error: ProxyError; clientGone: boolean }
  /** The upstream answered; its body ended as `how` says, metered as `meter` says. */
  | {
      kind: "answered";
      status: number;
      how: StreamEnd;
      meter: MeterResult;
      ttfb: number | null;
      responseHash: string;
      signal: AbortSignal;
    };

export interface CallEnding {
  /**
   * Stages 7-8: builds the final record of how the call ended and hands it to the primary store,
   * which holds it durably when this resolves (which is why a call's last bytes wait for this). The first call decides;
   * later ones return its record. Null when building it failed (logged).
   */
  record(end: CallEnd): Promise<AuditRecord | null>;
  /** The call is over: its record (if not yet written, from `end`), then stage 9, once. */
  finish(end: CallEnd): Promise<void>;
}

/**
 * The ending of one call. `inFlight` is its record as known before the upstream answered (the
 * intent, for a forwarded call); `provider` the adapter that served it, null if none was routed.
 */
export function callEnding(ctx: CallContext, inFlight: AuditRecord, provider: RoutedProvider | null, rt: Runtime): CallEnding {
  let recorded: Promise<AuditRecord | null> | null = null;
  let finished: Promise<void> | null = null;
  const failed = (error: unknown) => {
    rt.log.error(`recording call ${ctx.id} failed: ${errorMessage(error)}`);
    return null;
  };
  const hand = (final: AuditRecord): Promise<AuditRecord> => {
    rt.metrics.observe(final, tierOf(ctx));
    const written = writeRecord(final, rt);
    return written ? written.then(() => final) : Promise.resolve(final);
  };
  const record = (end: CallEnd) => {
    if (recorded) return recorded;
    // Built synchronously when its price (and estimate) need not wait: no promise chain per call then.
    try {
      const final = finalRecord(ctx, inFlight, end, provider, rt);
      recorded = isPromiseLike(final) ? Promise.resolve(final).then(hand, failed) : hand(final).catch(failed);
    } catch (error) {
      recorded = Promise.resolve(failed(error));
    }
    return recorded;
  };
  const finish = (end: CallEnd) =>
    (finished ??= record(end).then((final) => {
      if (!final) return;
      // A limiter that reserved before a later stage refused the call gives the reservation back.
      const settled = settle(ctx, final, rt);
      if (!isPromiseLike(settled)) return observe(ctx, final, end, rt);
      return settled.then(() => observe(ctx, final, end, rt));
    }));
  return { record, finish };
}

/** The final record; a promise only when an estimate or a price hook has to be waited for. */
function finalRecord(
  ctx: CallContext,
  inFlight: AuditRecord,
  end: CallEnd,
  provider: RoutedProvider | null,
  rt: Runtime,
): MaybePromise<AuditRecord> {
  if (end.kind === "answered") return answeredCall(ctx, inFlight, end, provider, rt);
  const base = { ...inFlight, duration_ms: elapsed(ctx) };
  if (end.kind === "refused") {
    return end.clientGone
      ? { ...base, outcome: "client_aborted", status: null, error_type: "client_aborted", ...noUsage, usage_source: "none" }
      : { ...base, outcome: "rejected", status: end.error.status, error_type: end.error.code, ...noUsage, usage_source: "none" };
  }
  const final: AuditRecord = end.clientGone
    ? { ...base, outcome: "client_aborted", status: null, error_type: "client_aborted" }
    : { ...base, outcome: "upstream_error", status: end.error.status, error_type: end.error.code };
  // A client who hung up on a generation is billed by estimate for the prompt the upstream had
  // already received (nothing was delivered, so output is 0).
  if (end.clientGone && provider && ctx.endpoint.billed) return withEstimate(ctx, final, provider, rt);
  return final;
}

function answeredCall(
  ctx: CallContext,
  inFlight: AuditRecord,
  end: Answered,
  provider: RoutedProvider | null,
  rt: Runtime,
): MaybePromise<AuditRecord> {
  const [outcome, errorType] = outcomeOf(ctx, end);
  const answer: Answer = { end, duration: elapsed(ctx), outcome, errorType };
  // Only model calls are metered: a retrieved response or batch reports usage already recorded (or to be).
  const usage = ctx.endpoint.billed && hasUsage(end.meter.usage) ? end.meter.usage : null;
  if (needsEstimate(ctx, end.status, outcome, usage)) return estimatedAnswer(ctx, inFlight, answer, usage, provider, rt);
  const quote = usage && provider ? priceUsage(ctx, provider, usage, end.meter.responseModel, rt) : null;
  if (isPromiseLike(quote)) return quote.then((q) => answeredRecord(ctx, inFlight, answer, usage, "provider", q));
  return answeredRecord(ctx, inFlight, answer, usage, usage ? "provider" : "none", quote);
}

async function withEstimate(ctx: CallContext, final: AuditRecord, provider: RoutedProvider, rt: Runtime): Promise<AuditRecord> {
  const usage = await estimateUsage(ctx, null, "");
  if (usage) Object.assign(final, usage, { usage_source: "estimated" }, costFields(await priceUsage(ctx, provider, usage, null, rt)));
  return final;
}

type Answered = Extract<CallEnd, { kind: "answered" }>;

/** How an answered call ended, as its record says it: its duration is taken when it ended, before any estimate. */
interface Answer {
  end: Answered;
  duration: number;
  outcome: Outcome;
  errorType: string | null;
}

/** An answered call whose usage did not arrive in full: billed by estimate (./estimate.ts). */
async function estimatedAnswer(
  ctx: CallContext,
  inFlight: AuditRecord,
  answer: Answer,
  reported: Usage | null,
  provider: RoutedProvider | null,
  rt: Runtime,
): Promise<AuditRecord> {
  const { meter } = answer.end;
  let usage = reported;
  let source: UsageSource = usage ? "provider" : "none";
  const estimate = await estimateUsage(ctx, usage, meter.outputText?.() ?? null);
  if (estimate) [usage, source] = [estimate, "estimated"];
  const quote = usage && provider ? await priceUsage(ctx, provider, usage, meter.responseModel, rt) : null;
  return answeredRecord(ctx, inFlight, answer, usage, source, quote);
}

/** The final record of an answered call: the in-flight record copied once, with how it ended. */
function answeredRecord(
  ctx: CallContext,
  inFlight: AuditRecord,
  { end, duration, outcome, errorType }: Answer,
  usage: Usage | null,
  source: UsageSource,
  quote: PriceQuote | null,
): AuditRecord {
  const { status, meter } = end;
  return {
    ...inFlight,
    duration_ms: duration,
    ...(usage ?? {}),
    status,
    outcome,
    ttfb_ms: end.ttfb,
    response_hash: end.responseHash,
    response_model: meter.responseModel,
    usage_source: source,
    ...costFields(quote),
    ...(quote === null && status < 400 ? unpriced(ctx) : {}),
    error_type: errorType ?? ctx.limitFlag ?? null,
  };
}

/** The outcome of an answered call, and its error type if it failed. */
function outcomeOf(ctx: CallContext, { how, status, meter, signal }: Answered): [Outcome, string | null] {
  if (how.kind === "cancel") {
    // SDKs cancel the body right after the terminal event: that call completed (or failed, if
    // its terminal event was an error).
    return [!meter.terminal ? "client_aborted" : meter.errorType ? "upstream_error" : "completed", meter.errorType];
  }
  if (how.kind === "upstream_error" && ctx.request.signal.aborted) return ["client_aborted", meter.errorType];
  if (how.kind === "upstream_error") {
    return ["upstream_error", signal.reason instanceof ProxyError ? signal.reason.code : "upstream_stream_error"];
  }
  if (status >= 400) return ["upstream_error", meter.errorType ?? `http_${status}`];
  // A 200 whose body reports a failure: an SSE `error` event (e.g. Anthropic's overloaded_error
  // mid-stream) or a Responses API `response.failed`.
  if (meter.errorType) return ["upstream_error", meter.errorType];
  if (ctx.stream && !meter.terminal) return ["upstream_error", "incomplete_stream"];
  return ["completed", null];
}

/**
 * A successful generation whose usage did not arrive in full — the client hung up, the stream broke
 * off, or the server reports no usage — is billed by estimate rather than left free.
 */
function needsEstimate(ctx: CallContext, status: number, outcome: Outcome, usage: Usage | null): boolean {
  if (status >= 400 || !ctx.endpoint.billed || background(ctx) || isWarmup(ctx)) return false;
  return outcome !== "completed" || usage === null || usage.output_tokens === null || usage.input_tokens === null;
}

/** A Responses API call run in the background: answered `queued`, its usage is on the response once it completes. */
const background = (ctx: CallContext) => ctx.endpoint.kind === "responses" && ctx.body?.background === true;

/** Why a call that causes model usage has no cost in its record (`price_source: unpriced:<reason>`). */
function unpriced(ctx: CallContext): { price_source: string } | Record<string, never> {
  if (background(ctx)) return { price_source: "unpriced:background" };
  return ctx.endpoint.unpriced ? { price_source: `unpriced:${ctx.endpoint.unpriced}` } : {};
}

/** The tier a call was limited under, as a limiter named it, else its principal's. */
function tierOf(ctx: CallContext): string | null {
  return ctx.tier ?? ctx.principal?.tier ?? null;
}

const noReasons: readonly string[] = Object.freeze([]);

/** Stage 10: every plugin that observes is told of the ended call, synchronously. Never throws. */
function observe(ctx: CallContext, record: AuditRecord, end: CallEnd, rt: Runtime): void {
  let call: ObservedCall | null = null;
  for (const plugin of rt.plugins) {
    if (!plugin.observe) continue;
    call ??= {
      ctx,
      record,
      finishReasons: (end.kind === "answered" && end.meter.finishReasons) || noReasons,
      tier: tierOf(ctx),
    };
    try {
      plugin.observe(call);
    } catch (error) {
      rt.log.error(`[plugin ${plugin.name}] observe: ${errorMessage(error)}`);
    }
  }
}

/**
 * A Responses API warmup (`generate: false`, WebSocket mode) prepares state and generates nothing:
 * it keeps the usage the provider reports, and is never billed by estimate.
 */
function isWarmup(ctx: CallContext): boolean {
  return ctx.endpoint.kind === "responses" && ctx.body?.generate === false;
}

/** Stage 9: every limiter reconciles with the final record. Never throws. */
function settle(ctx: CallContext, record: AuditRecord, rt: Runtime): MaybePromise<void> {
  return runSequential(rt.plugins, "limit.settle", (plugin) => plugin.limit?.settle && (() => plugin.limit!.settle!(ctx, record)), {
    log: rt.log,
  });
}
