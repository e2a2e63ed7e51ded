/**
 * The answer to a refused call: 429 with Retry-After and IETF RateLimit headers, 402 naming the
 * budget, or — when the call alone is larger than a daily limit or budget, so no wait would help —
 * an error saying so and what to change.
 */
import { ProxyError } from "agent-attr";
import type { NamedMeter } from "./meters.ts";
import type { MeterState } from "./store.ts";

const what: Record<NamedMeter["limit"], string> = {
  requestsPerMinute: "requests per minute",
  tokensPerMinute: "tokens per minute",
  tokensPerDay: "tokens per day",
  costPerDay: "cost budget per day",
  costPerMonth: "cost budget per month",
};

const dollars = (nano: number) => `$${(nano / 1e9).toFixed(nano % 1e7 === 0 ? 2 : 6)}`;
const isBudget = (limit: NamedMeter["limit"]) => limit === "costPerDay" || limit === "costPerMonth";
const day = 86_400;

export interface RefusalContext {
  tier: string;
  now: number;
  /** The output ceiling came from the request (false: from `maxOutputTokens`). */
  outputFromRequest: boolean;
}

/**
 * The refusal for a charge some meters refused. A meter the call can never fit wins; otherwise
 * the meter with the longest wait, so a retry after `Retry-After` is not refused by another. A
 * window meter (tokens per day, a budget) that refuses only because of what calls in flight hold
 * (`MeterState.held`: every replica's, on a shared store) is busy, not exhausted: its wait is a
 * short retry, since those calls settle to their real, usually smaller, amounts.
 */
export function refusalOf(meters: readonly NamedMeter[], states: readonly MeterState[], context: RefusalContext): ProxyError {
  const refusing = meters.map((_, i) => i).filter((i) => states[i]!.retryAfterMs > 0);
  const never = refusing.find((i) => meters[i]!.meter.kind === "window" && meters[i]!.meter.amount > meters[i]!.meter.limit);
  if (never !== undefined) return neverFits(meters[never]!, context);
  const held = (i: number) => Math.min(states[i]!.held, states[i]!.used);
  const busy = (i: number) => {
    const { meter } = meters[i]!;
    return meter.kind === "window" && held(i) > 0 && states[i]!.used - held(i) + meter.amount <= meter.limit;
  };
  const wait = (i: number) => (busy(i) ? busyRetryMs : states[i]!.retryAfterMs);
  const longest = refusing.reduce((a, b) => (wait(b) > wait(a) ? b : a));
  const state = { ...states[longest]!, retryAfterMs: wait(longest) };
  return refusal(meters[longest]!, state, held(longest), busy(longest), context);
}

/** Retry-After for a call refused only because of reservations of calls in flight. */
const busyRetryMs = 1_000;

function neverFits(named: NamedMeter, context: RefusalContext): ProxyError {
  const { meter, limit, scope, who } = named;
  const whose = `${scope} '${who}' (tier ${context.tier})`;
  const change = context.outputFromRequest
    ? "Lower the call's max_tokens or shorten its prompt, or raise the limit in the tiers config."
    : "Set a smaller max_tokens on the call (without one, the tiers option maxOutputTokens is assumed), shorten its prompt, or raise the limit.";
  if (isBudget(limit)) {
    return new ProxyError(
      "budget_exceeded",
      `This call may cost up to ${dollars(meter.amount)}, more than the whole ${what[limit]} of ${whose} (${dollars(meter.limit)}): it can never pass, and waiting will not help. ${change}`,
    );
  }
  return new ProxyError(
    "exceeds_limit",
    `This call needs up to ${meter.amount} tokens, more than the whole ${what[limit]} of ${whose} (${meter.limit}): it can never pass, and waiting will not help. ${change}`,
  );
}

function refusal(named: NamedMeter, state: MeterState, reserved: number, busy: boolean, context: RefusalContext): ProxyError {
  const { meter, limit, scope, who } = named;
  const retryAfter = Math.max(1, Math.ceil(state.retryAfterMs / 1000));
  const whose = `${scope} '${who}' (tier ${context.tier})`;
  const inFlight = (amount: string) => (reserved > 0 ? ` and ${amount} reserved by calls in flight` : "");
  if (isBudget(limit) && !busy) {
    const resets = new Date(context.now + state.resetMs).toISOString();
    return new ProxyError(
      "budget_exceeded",
      `Budget exhausted: ${what[limit]} of ${whose}: spent ${dollars(state.used - reserved)}${inFlight(dollars(reserved))} of ${dollars(meter.limit)}, and this call may cost up to ${dollars(meter.amount)}. It resets at ${resets}.`,
    );
  }
  if (busy) {
    // Waiting for the window to end would be wrong: the call fits once calls in flight settle.
    const [used, held, need, of] = isBudget(limit)
      ? [dollars(state.used - reserved), dollars(reserved), `may cost up to ${dollars(meter.amount)}`, dollars(meter.limit)]
      : [String(state.used - reserved), String(reserved), `needs about ${meter.amount} tokens`, String(meter.limit)];
    const message = `Limit busy: ${what[limit]} of ${whose} is ${of}, with ${used} spent${inFlight(held)}; this call ${need} and fits once those calls settle (if they use less than they reserved). Retry in ${retryAfter} s.`;
    if (isBudget(limit)) return new ProxyError("rate_limited", message, { "retry-after": String(retryAfter) });
    return new ProxyError("rate_limited", message, rateLimitHeaders(named, state, retryAfter));
  }
  return new ProxyError(
    "rate_limited",
    `Rate limit reached: ${what[limit]} of ${whose} is ${meter.limit}; ${limit === "requestsPerMinute" ? "" : `this call needs about ${meter.amount} tokens; `}retry in ${retryAfter} s.`,
    rateLimitHeaders(named, state, retryAfter),
  );
}

function rateLimitHeaders(named: NamedMeter, state: MeterState, retryAfter: number): Record<string, string> {
  const { meter, limit } = named;
  // draft-ietf-httpapi-ratelimit-headers: policy q (quota), w (window, s), qu (unit); live r
  // (remaining) and t (seconds until more quota is made available).
  let windowSeconds: number;
  let replenish: number;
  if (meter.kind === "gcra") {
    windowSeconds = Math.round(meter.periodMs / 1000);
    // The theoretical arrival time is resetMs away; one unit frees up when it is within a period less one interval.
    const interval = meter.periodMs / meter.limit;
    replenish = Math.max(0, Math.ceil((state.resetMs - meter.periodMs + interval) / 1000));
  } else {
    windowSeconds = day;
    replenish = Math.ceil(state.resetMs / 1000);
  }
  const unit = limit === "requestsPerMinute" ? "" : ';qu="tokens"';
  const policy = JSON.stringify(named.policy);
  return {
    "retry-after": String(retryAfter),
    "ratelimit-policy": `${policy};q=${meter.limit};w=${windowSeconds}${unit}`,
    ratelimit: `${policy};r=${state.remaining};t=${replenish}`,
  };
}
