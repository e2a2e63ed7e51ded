/** The answer to a refused call: 429 with Retry-After and IETF RateLimit headers, or 402 naming the budget. */
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

export function refusal(named: NamedMeter, state: MeterState, tier: string, now: number): ProxyError {
  const { meter, limit, scope, who } = named;
  const retryAfter = Math.max(1, Math.ceil(state.retryAfterMs / 1000));
  const whose = `${scope} '${who}' (tier ${tier})`;
  if (limit === "costPerDay" || limit === "costPerMonth") {
    const resets = new Date(now + state.resetMs).toISOString();
    return new ProxyError(
      "budget_exceeded",
      `Budget exhausted: ${what[limit]} of ${whose}: spent ${dollars(state.used)} of ${dollars(meter.limit)}, and this call may cost up to ${dollars(meter.amount)}. It resets at ${resets}.`,
    );
  }
  // draft-ietf-httpapi-ratelimit-headers: policy q (quota), w (window s), qu (unit); live r (remaining), t (s until it passes).
  const windowSeconds = Math.round((meter.kind === "gcra" ? meter.periodMs : state.resetMs) / 1000);
  const unit = limit === "requestsPerMinute" ? "" : ';qu="tokens"';
  const policy = JSON.stringify(named.policy);
  const unitName = limit === "requestsPerMinute" ? "requests" : "tokens";
  return new ProxyError(
    "rate_limited",
    `Rate limit reached: ${what[limit]} of ${whose} is ${meter.limit}; ${limit === "requestsPerMinute" ? "" : `this call needs about ${meter.amount} ${unitName}; `}retry in ${retryAfter} s.`,
    {
      "retry-after": String(retryAfter),
      "ratelimit-policy": `${policy};q=${meter.limit};w=${windowSeconds}${unit}`,
      ratelimit: `${policy};r=${state.remaining};t=${retryAfter}`,
    },
  );
}
