/**
 * `tiers({...})`: named rate-limit tiers and cost budgets (stage 4, settled in stage 9).
 *
 * Before a call is forwarded its meters are charged all or nothing: 1 request, an estimate of its
 * tokens (body bytes / 4 + its max output tokens) and of its cost (the price stage over that
 * estimate). After the response the estimate is replaced by the real tokens and `cost_usd`, so
 * concurrent calls can overshoot a budget by at most what one call's real cost exceeds its estimate.
 * Rate and token limits answer 429 (`Retry-After`, `RateLimit-Policy`, `RateLimit`); cost budgets
 * answer 402 naming the budget.
 */
import { definePlugin, type AuditRecord, type Logger } from "agent-attr";
import { z } from "zod";
import { parseOptions } from "../options.ts";
import { estimateUsage, metersFor, ruleMatchers, tierOf, type NamedMeter } from "./meters.ts";
import { optionsSchema } from "./options.ts";
import { refusal } from "./refusal.ts";
import { MemoryLimiterStore } from "./store.ts";

export { MemoryLimiterStore, type LimiterStore, type Meter } from "./store.ts";

interface Reservation {
  meters: NamedMeter[];
  tokens: number;
  costNano: number;
}

export function tiers(options: z.input<typeof optionsSchema>) {
  const opts = parseOptions("tiers", optionsSchema, options);
  const store = opts.store ?? new MemoryLimiterStore();
  const now = opts.now ?? Date.now;
  const matchers = ruleMatchers(opts);
  const reservations = new Map<string, Reservation>();
  let log: Logger | null = null;
  const warned = new Set<string>();

  return definePlugin({
    name: "tiers",
    setup(context) {
      log = context.log;
    },
    limit: {
      async check(ctx, stage) {
        const keyTier = ctx.principal?.tier;
        if (keyTier && !opts.tiers[keyTier] && !warned.has(keyTier)) {
          warned.add(keyTier);
          log?.warn(`[plugin tiers] ${ctx.principal!.keyId} names tier '${keyTier}', which the config does not define; its calls get the assigned or default tier.`);
        }
        const tierName = tierOf(ctx, opts, matchers);
        const tier = opts.tiers[tierName]!;
        const usage = estimateUsage(ctx, opts.defaultOutputTokens);
        const tokens = (usage.input_tokens ?? 0) + (usage.output_tokens ?? 0);
        const needsCost = tier.costPerDay !== undefined || tier.costPerMonth !== undefined;
        const quote = needsCost ? await stage.price(usage) : null;
        const costNano = quote?.cost_nano_usd ?? 0;
        const at = now();
        const meters = metersFor(ctx, tierName, tier, { tokens, costNano }, at);
        if (meters.length === 0) return;
        const result = await store.charge(meters.map((m) => m.meter), at);
        if (result.refused === null) {
          reservations.set(ctx.id, { meters, tokens, costNano });
          return;
        }
        const error = refusal(meters[result.refused]!, result.states[result.refused]!, tierName, at);
        if (!tier.shadow) throw error;
        ctx.shadowDenial = `shadow:${error.code}`;
      },
      async settle(ctx, record) {
        const reservation = reservations.get(ctx.id);
        if (!reservation) return;
        reservations.delete(ctx.id);
        await store.adjust(adjustments(reservation, record), now());
      },
    },
  });
}

/** Real tokens and cost replace the estimate; a call that ended without usage keeps it only if it completed. */
function adjustments(reservation: Reservation, record: AuditRecord) {
  const completed = record.outcome === "completed";
  const hasUsage = record.input_tokens !== null || record.output_tokens !== null;
  const tokens = hasUsage ? (record.input_tokens ?? 0) + (record.output_tokens ?? 0) : completed ? reservation.tokens : 0;
  const costNano = record.cost_nano_usd ?? (completed ? reservation.costNano : 0);
  return reservation.meters.flatMap(({ meter, limit }) => {
    if (limit === "requestsPerMinute") return [];
    const delta = limit === "costPerDay" || limit === "costPerMonth" ? costNano - reservation.costNano : tokens - reservation.tokens;
    return delta === 0 ? [] : [{ meter, delta }];
  });
}
