/** Stage 4, limit: every limiter in order (the first refusal stops the call), and the cap on calls in flight upstream. */
import { ProxyError } from "../errors.ts";
import type { LimitStage } from "../plugin.ts";
import type { CallContext } from "./context.ts";
import { priceUsage } from "./price.ts";
import type { RoutedProvider, Runtime } from "./runtime.ts";
import { runSequential, type MaybePromise } from "./hooks.ts";

/** A promise only if a limiter answered with one (none configured: nothing to wait for). */
export function checkLimits(ctx: CallContext, provider: RoutedProvider, rt: Runtime): MaybePromise<void> {
  if (!rt.plugins.some((plugin) => plugin.limit)) return;
  const stage: LimitStage = {
    capOutput(maxTokens) {
      if (Number.isInteger(maxTokens) && maxTokens > 0) ctx.outputCap = Math.min(ctx.outputCap ?? maxTokens, maxTokens);
    },
    price: async (usage) => priceUsage(ctx, provider, usage, null, rt),
    noteTier(tier) {
      ctx.tier ??= tier;
    },
  };
  return runSequential(
    rt.plugins,
    "limit.check",
    (plugin) =>
      plugin.limit &&
      (async () => {
        const verdict = await plugin.limit!.check(ctx, stage);
        if (verdict?.flag) ctx.limitFlag ??= verdict.flag;
      }),
    "refuse",
  );
}

/**
 * A slot for one upstream call, or a fast 503: past `server.maxUpstreamConnections` a call is
 * refused rather than queued behind streams that may last minutes. Released when the call ends.
 */
export function claimUpstreamSlot(rt: Runtime): () => void {
  const release = rt.upstreamSlots.claim();
  if (release) return release;
  throw new ProxyError(
    "proxy_busy",
    `The proxy is at its limit of ${rt.upstreamSlots.max} calls in flight upstream (server.maxUpstreamConnections); retry shortly, or raise the limit in agent-attr.config.ts.`,
    { "retry-after": "1" },
  );
}
