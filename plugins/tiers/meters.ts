/** Turning one call into the meters its tier charges: which tier, whose meters, how much. */
import { modelMatcher, type CallContext } from "agent-attr";
import type { Scope, Tier, TiersOptions } from "./options.ts";
import type { Meter } from "./store.ts";

export type Limit = "requestsPerMinute" | "tokensPerMinute" | "tokensPerDay" | "costPerDay" | "costPerMonth";

/** A meter with what the refusal message and headers need. */
export interface NamedMeter {
  meter: Meter;
  limit: Limit;
  scope: Scope;
  who: string;
  /** Policy name for the RateLimit headers, e.g. `pro.requests_per_minute.user`. */
  policy: string;
}

/** Cost is metered in integer nano-dollars, so sums are exact. */
const nanoUSD = (usd: number) => Math.round(usd * 1e9);

const minute = 60_000;
const policyName: Record<Limit, string> = {
  requestsPerMinute: "requests_per_minute",
  tokensPerMinute: "tokens_per_minute",
  tokensPerDay: "tokens_per_day",
  costPerDay: "cost_per_day",
  costPerMonth: "cost_per_month",
};

function identityOf(ctx: CallContext, scope: Scope): string | null {
  if (scope === "key") return ctx.principal?.keyId ?? null;
  if (scope.startsWith("tag:")) return ctx.attribution.tags[scope.slice(4)] ?? null;
  return ctx.attribution[scope === "user" ? "user_id" : scope === "agent" ? "agent_id" : "task_context"];
}

/**
 * A task or tag the call's credential does not vouch for (keys and jwt mode: a tag the key or token
 * does not fix): it must not reach another identity's limits, nor select a tier.
 */
const unvouchedTask = (ctx: CallContext, scope: Scope) =>
  ctx.principal !== null &&
  (scope.startsWith("tag:")
    ? ctx.principal.tags?.[scope.slice(4)] === undefined
    : scope === "task" && (ctx.unverified ?? []).includes("task_context"));

/**
 * Whose meter a scope charges: `key` is the meter's identity in the store, `who` its name in
 * messages. An unvouched task is metered per credential, and so are the calls of a credential
 * that carry no such identity: one key cannot drain what another's calls share. The key is a
 * JSON tuple whose first element says which namespace it is in — a claimed identity is always
 * `["id", claim]` — so no claimed string, whatever it contains, can name an internal meter.
 */
function meterOwner(ctx: CallContext, scope: Scope): { key: unknown[]; who: string } {
  const id = identityOf(ctx, scope);
  const keyId = ctx.principal?.keyId ?? null;
  if (id === null) return keyId ? { key: ["none-of-key", keyId], who: `(none) (key ${keyId})` } : { key: ["none"], who: "(none)" };
  return unvouchedTask(ctx, scope) ? { key: ["asserted", keyId, id], who: `${id} (asserted by ${keyId})` } : { key: ["id", id], who: id };
}

/** The call's tier: its key's tier, else the first matching rule, else the default. */
export function tierOf(ctx: CallContext, opts: TiersOptions, matchers: ((ctx: CallContext) => boolean)[]): string {
  const fromKey = ctx.principal?.tier;
  if (fromKey && opts.tiers[fromKey]) return fromKey;
  const index = matchers.findIndex((matches) => matches(ctx));
  return index >= 0 ? opts.assign[index]!.tier : opts.default;
}

export function ruleMatchers(opts: TiersOptions): ((ctx: CallContext) => boolean)[] {
  return opts.assign.map((rule) => {
    const fields: { scope: Scope; matches: (id: string) => boolean }[] = (["user", "agent", "task", "key"] as const).flatMap((scope) => {
      const patterns = rule[scope];
      return patterns ? [{ scope, matches: modelMatcher(patterns) }] : [];
    });
    for (const [key, globs] of Object.entries(rule.tags ?? {})) fields.push({ scope: `tag:${key}`, matches: modelMatcher(globs) });
    return (ctx) =>
      fields.every(({ scope, matches }) => {
        // An unvouched task never selects a tier: a key holder could claim its way into a better one.
        const id = unvouchedTask(ctx, scope) ? null : identityOf(ctx, scope);
        return id !== null && matches(id);
      });
  });
}

/** Every meter the call charges: each configured limit of its tier, once per scope. */
export function metersFor(ctx: CallContext, tierName: string, tier: Tier, estimate: { tokens: number; costNano: number }): NamedMeter[] {
  const meters: NamedMeter[] = [];
  for (const scope of tier.per) {
    const { key: owner, who } = meterOwner(ctx, scope);
    // JSON of a tuple: injective, so no two (tier, scope, owner, limit) share a key. The store
    // adds the calendar window (the day or month of its own clock).
    const key = (limit: string) => JSON.stringify([tierName, scope, owner, limit]);
    const add = (limit: Limit, meter: Meter) =>
      meters.push({ meter, limit, scope, who, policy: `${tierName}.${policyName[limit]}.${scope}` });
    if (tier.requestsPerMinute) {
      add("requestsPerMinute", { kind: "gcra", key: key("rpm"), limit: tier.requestsPerMinute, periodMs: minute, amount: 1 });
    }
    if (tier.tokensPerMinute) {
      add("tokensPerMinute", { kind: "gcra", key: key("tpm"), limit: tier.tokensPerMinute, periodMs: minute, amount: estimate.tokens });
    }
    if (tier.tokensPerDay) {
      add("tokensPerDay", { kind: "window", key: key("tpd"), limit: tier.tokensPerDay, calendar: "day", amount: estimate.tokens });
    }
    if (tier.costPerDay) {
      add("costPerDay", {
        kind: "window",
        key: key("usd-day"),
        limit: nanoUSD(tier.costPerDay),
        calendar: "day",
        amount: estimate.costNano,
      });
    }
    if (tier.costPerMonth) {
      add("costPerMonth", {
        kind: "window",
        key: key("usd-month"),
        limit: nanoUSD(tier.costPerMonth),
        calendar: "month",
        amount: estimate.costNano,
      });
    }
  }
  return meters;
}
