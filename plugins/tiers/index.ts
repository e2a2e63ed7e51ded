/**
 * `tiers({...})`: named rate-limit tiers and cost budgets (stage 4, settled in stage 9).
 *
 * Before a call is forwarded its meters are charged all or nothing: 1 request, an estimate of its
 * tokens, and the ceiling of its cost (./reserve.ts). A budget admits a call only while spent +
 * the reservations of calls in flight + this call's ceiling ≤ the limit; after the response the
 * reservation is replaced by the real `cost_usd`. So a budget is passed only by calls whose real
 * cost exceeded their ceiling, and by no more than the sum of those excesses.
 * Rate and token limits answer 429 (`Retry-After`, `RateLimit-Policy`, `RateLimit`); cost budgets
 * answer 402 naming the budget; a call larger than a whole daily limit or budget is told it never fits;
 * a daily limit or budget held only by this process's calls in flight answers 429 with Retry-After 1 s.
 */
import { definePlugin, type AuditRecord, type CallContext, type LimitStage, type Logger, type Usage } from "agent-attr";
import { z } from "zod";
import { parseOptions } from "../options.ts";
import { metersFor, ruleMatchers, tierOf, type NamedMeter } from "./meters.ts";
import { optionsSchema } from "./options.ts";
import { refusalOf } from "./refusal.ts";
import { ceilingVariants, reservationOf } from "./reserve.ts";
import { MemoryLimiterStore } from "./store.ts";

export { MemoryLimiterStore, type LimiterStore, type Meter } from "./store.ts";

interface Held {
  meters: NamedMeter[];
  tokens: number;
  costNano: number;
}

export function tiers(options: z.input<typeof optionsSchema>) {
  const opts = parseOptions("tiers", optionsSchema, options);
  const store = opts.store ?? new MemoryLimiterStore();
  const now = opts.now ?? Date.now;
  const matchers = ruleMatchers(opts);
  const reservations = new Map<string, Held>();
  /** What this process's calls in flight hold on each window meter (so a refusal can say so). */
  const inFlight = new Map<string, number>();
  const hold = (meters: readonly NamedMeter[], sign: 1 | -1) => {
    for (const { meter } of meters) {
      if (meter.kind !== "window" || meter.amount === 0) continue;
      const held = (inFlight.get(meter.key) ?? 0) + sign * meter.amount;
      if (held > 0) inFlight.set(meter.key, held);
      else inFlight.delete(meter.key);
    }
  };
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
        const reservation = reservationOf(ctx, opts.maxOutputTokens);
        const needsCost = tier.costPerDay !== undefined || tier.costPerMonth !== undefined;
        const costNano = needsCost ? await costCeiling(reservation.ceiling, stage) : 0;
        const at = now();
        const meters = metersFor(ctx, tierName, tier, { tokens: reservation.tokens, costNano }, at);
        if (meters.length === 0) return;
        const result = await store.charge(meters.map((m) => m.meter), at);
        if (result.refused === null) {
          reservations.set(ctx.id, { meters, tokens: reservation.tokens, costNano });
          hold(meters, 1);
          // The budget reserved maxOutputTokens for a call that names no limit: make it the limit.
          if (needsCost && opts.capOutput && !tier.shadow && !reservation.outputFromRequest) stage.capOutput(opts.maxOutputTokens);
          return;
        }
        const reserved = meters.map(({ meter }) => inFlight.get(meter.key) ?? 0);
        const error = refusalOf(meters, result.states, reserved, { tier: tierName, now: at, outputFromRequest: reservation.outputFromRequest });
        if (!tier.shadow) throw error;
        ctx.shadowDenial = `shadow:${error.code}`;
      },
      async settle(ctx, record) {
        const reservation = reservations.get(ctx.id);
        if (!reservation) return;
        reservations.delete(ctx.id);
        hold(reservation.meters, -1);
        await store.adjust(adjustments(reservation, record, keepsCeiling(ctx, record)), now());
      },
    },
  });
}

/**
 * Calls whose real cost the proxy never sees keep their whole reservation: a Responses call run in
 * the background (its answer is `queued`, the generation is billed later), and a non-streamed call
 * whose client hung up before the headers (the upstream may have generated the whole answer).
 */
function keepsCeiling(ctx: CallContext, record: AuditRecord): boolean {
  if (ctx.body?.background === true) return true;
  return record.outcome === "client_aborted" && record.status === null && !ctx.stream;
}

/** Real tokens and cost replace the estimate; a call that ended without usage keeps it only if it completed. */
function adjustments(reservation: Held, record: AuditRecord, keepCeiling: boolean) {
  const completed = record.outcome === "completed";
  const hasUsage = record.input_tokens !== null || record.output_tokens !== null;
  let tokens = hasUsage ? (record.input_tokens ?? 0) + (record.output_tokens ?? 0) : completed ? reservation.tokens : 0;
  let costNano = record.cost_nano_usd ?? (completed ? reservation.costNano : 0);
  if (keepCeiling) [tokens, costNano] = [Math.max(tokens, reservation.tokens), Math.max(costNano, reservation.costNano)];
  return reservation.meters.flatMap(({ meter, limit }) => {
    if (limit === "requestsPerMinute") return [];
    const delta = limit === "costPerDay" || limit === "costPerMonth" ? costNano - reservation.costNano : tokens - reservation.tokens;
    return delta === 0 ? [] : [{ meter, delta }];
  });
}

/** The dearest price the price plugins give the call's ceiling (0 when none prices it). */
async function costCeiling(ceiling: Usage, stage: LimitStage): Promise<number> {
  let highest = 0;
  for (const usage of ceilingVariants(ceiling)) highest = Math.max(highest, (await stage.price(usage))?.cost_nano_usd ?? 0);
  return highest;
}
