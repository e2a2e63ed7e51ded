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
 * a daily limit or budget held only by calls in flight (every replica's, on a shared store) answers
 * 429 with Retry-After 1 s. The store (`store`, else Redis at AGENT_ATTR_REDIS_URL, else memory)
 * cannot answer: 503 `limits_unavailable`, or with its `failOpen` the call goes through unchecked,
 * recorded with `error_type: "limits_unavailable:fail_open"`.
 */
import {
  ProxyError,
  definePlugin,
  type AuditRecord,
  type CallContext,
  type LimitStage,
  type Logger,
  type Usage,
  parseOptions,
} from "agent-attr";
import type { z } from "zod";
import { metersFor, ruleMatchers, tierOf, type NamedMeter } from "./meters.ts";
import { optionsSchema } from "./options.ts";
import { redisLimiterStore } from "./redis-store.ts";
import { refusalOf } from "./refusal.ts";
import { ceilingVariants, reservationOf } from "./reserve.ts";
import { LimitsUnavailableError, MemoryLimiterStore, type ChargeResult, type LimiterStore } from "./store.ts";
import { RecentScopes } from "./recent.ts";
import { BudgetAlerts } from "./alerts.ts";
import { WebhookDeliveries, resolveWebhooks } from "./webhook.ts";

export { LimitsUnavailableError, MemoryLimiterStore, type ChargeResult, type LimiterStore, type Meter, type MeterState } from "./store.ts";
export { RedisLimiterStore, redisLimiterStore } from "./redis-store.ts";
export type { BudgetAlert } from "./webhook.ts";

interface Held {
  tier: string;
  meters: NamedMeter[];
  tokens: number;
  costNano: number;
  /** The store's token for this charge; null when the call went through unchecked (failOpen). */
  hold: string | null;
}

/** The record's `error_type` of a call forwarded while the limiter store could not be reached. */
const failedOpen = "limits_unavailable:fail_open";

/** The store: the option, else Redis when AGENT_ATTR_REDIS_URL is set, else this process's memory. */
function storeOf(option: LimiterStore | undefined): LimiterStore {
  if (option) return option;
  return process.env.AGENT_ATTR_REDIS_URL ? redisLimiterStore() : new MemoryLimiterStore();
}

export function tiers(options: z.input<typeof optionsSchema>) {
  const opts = parseOptions("tiers", optionsSchema, options);
  const store = storeOf(opts.store);
  const now = opts.now ?? Date.now;
  const matchers = ruleMatchers(opts);
  const reservations = new Map<string, Held>();
  let log: Logger | null = null;
  const warned = new Set<string>();
  const recent = new RecentScopes();
  const alerts = new BudgetAlerts(opts, store, new WebhookDeliveries(resolveWebhooks(opts.webhooks), opts.maxQueuedAlerts), now);

  return definePlugin({
    name: "tiers",
    async setup(context) {
      log = context.log;
      alerts.open(context);
      await store.open?.(context.log);
    },
    async teardown() {
      await alerts.close();
      await store.close?.();
    },
    limit: {
      async check(ctx, stage) {
        const keyTier = ctx.principal?.tier;
        if (keyTier && !opts.tiers[keyTier] && !warned.has(keyTier)) {
          warned.add(keyTier);
          log?.warn(
            `[plugin tiers] ${ctx.principal!.keyId} names tier '${keyTier}', which the config does not define; its calls get the assigned or default tier.`,
          );
        }
        const tierName = tierOf(ctx, opts, matchers);
        stage.noteTier(tierName);
        const tier = opts.tiers[tierName]!;
        const reservation = reservationOf(ctx, opts.maxOutputTokens);
        const needsCost = tier.costPerDay !== undefined || tier.costPerMonth !== undefined;
        const costNano = needsCost ? await costCeiling(reservation.ceiling, stage) : 0;
        const at = now();
        const meters = metersFor(ctx, tierName, tier, { tokens: reservation.tokens, costNano });
        if (meters.length === 0) return;
        // The budget reserved maxOutputTokens for a call that names no limit: make it the limit.
        const capOutput = () => {
          if (needsCost && opts.capOutput && !tier.shadow && !reservation.outputFromRequest) stage.capOutput(opts.maxOutputTokens);
        };
        recent.note(tierName, meters, at);
        let result: ChargeResult;
        try {
          result = await store.charge(
            meters.map((m) => m.meter),
            at,
          );
        } catch (error) {
          if (!(error instanceof LimitsUnavailableError)) throw error;
          if (!error.failOpen && !tier.shadow) throw new ProxyError("limits_unavailable", error.message, { "retry-after": "1" });
          // Forwarded unchecked: its usage is added to the meters when it settles (once the store answers).
          reservations.set(ctx.id, { tier: tierName, meters, tokens: reservation.tokens, costNano, hold: null });
          capOutput();
          return { flag: failedOpen };
        }
        if (result.refused === null) {
          // Settle into the windows the store charged, even if the call ends after midnight.
          const charged = meters.map((m, i) =>
            m.meter.kind === "window" ? { ...m, meter: { ...m.meter, endsAt: result.states[i]!.endsAt } } : m,
          );
          reservations.set(ctx.id, { tier: tierName, meters: charged, tokens: reservation.tokens, costNano, hold: result.hold });
          capOutput();
          return;
        }
        const error = refusalOf(meters, result.states, {
          tier: tierName,
          now: result.now,
          outputFromRequest: reservation.outputFromRequest,
        });
        if (!tier.shadow) throw error;
        return { flag: `shadow:${error.code}` };
      },
      async settle(ctx, record) {
        const reservation = reservations.get(ctx.id);
        if (!reservation) return;
        reservations.delete(ctx.id);
        const changes =
          reservation.hold === null ? uncheckedUsage(reservation, record) : adjustments(reservation, record, keepsCeiling(ctx, record));
        await store.adjust(changes, now(), reservation.hold);
        // Reads the budgets it watches and claims what they reached; posting is in the background.
        if (alerts.any) await alerts.check(reservation.tier, reservation.meters);
      },
      usage: () => recent.usage(store, now()),
      forgetUser: (userId) => recent.forgetUser(userId),
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

/** The tokens and cost a call is charged in the end: its real ones, else (completed) its reservation. */
function finalAmounts(reservation: Held, record: AuditRecord, keepCeiling: boolean) {
  const completed = record.outcome === "completed";
  const hasUsage = record.input_tokens !== null || record.output_tokens !== null;
  let tokens = hasUsage ? (record.input_tokens ?? 0) + (record.output_tokens ?? 0) : completed ? reservation.tokens : 0;
  let costNano = record.cost_nano_usd ?? (completed ? reservation.costNano : 0);
  if (keepCeiling) [tokens, costNano] = [Math.max(tokens, reservation.tokens), Math.max(costNano, reservation.costNano)];
  return { tokens, costNano };
}

const isCost = (limit: NamedMeter["limit"]) => limit === "costPerDay" || limit === "costPerMonth";

/**
 * Real tokens and cost replace the estimate. Every window meter is listed, so the store ends its
 * hold; GCRA meters only when they change.
 */
function adjustments(reservation: Held, record: AuditRecord, keepCeiling: boolean) {
  const { tokens, costNano } = finalAmounts(reservation, record, keepCeiling);
  return reservation.meters.flatMap(({ meter, limit }) => {
    if (limit === "requestsPerMinute") return [];
    const delta = isCost(limit) ? costNano - reservation.costNano : tokens - reservation.tokens;
    return delta === 0 && meter.kind === "gcra" ? [] : [{ meter, delta }];
  });
}

/** A call forwarded unchecked (failOpen): what it used is added to its meters, as if charged then. */
function uncheckedUsage(reservation: Held, record: AuditRecord) {
  const { tokens, costNano } = finalAmounts(reservation, record, false);
  return reservation.meters.flatMap(({ meter, limit }) => {
    const amount = limit === "requestsPerMinute" ? 1 : isCost(limit) ? costNano : tokens;
    return amount === 0 ? [] : [{ meter, delta: amount }];
  });
}

/** The dearest price the price plugins give the call's ceiling (0 when none prices it). */
async function costCeiling(ceiling: Usage, stage: LimitStage): Promise<number> {
  let highest = 0;
  for (const usage of ceilingVariants(ceiling)) highest = Math.max(highest, (await stage.price(usage))?.cost_nano_usd ?? 0);
  return highest;
}
