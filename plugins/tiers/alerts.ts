/**
 * Budget alerts: when what a scope has spent of a budget in its window reaches a threshold (e.g.
 * 50%, 80%, 100%), one alert — for that window, scope and threshold, whichever call got there and
 * whichever replica served it — is recorded in the trail as a `budget_alert` chain event and
 * posted to the alert's webhook in the background (./webhook.ts).
 *
 * After a call settles, the meters of its tier's watched budgets are read (one `peek`, skipped
 * once every threshold of the window the call was charged in is known to have fired) and every
 * threshold they have reached is claimed in the limiter store (`LimiterStore.claim`: on Redis an
 * atomic SET NX shared by every replica, kept until the window ends). The claim is what makes it
 * once: only the first claimer alerts, and a process that restarts finds the claims Redis kept.
 * With the in-memory store, claims live and die with the process, as the spend they watch does: a
 * restart starts both from zero, so a threshold alerts again only once it is reached again.
 * Spent is what settled calls used (`used - held`): calls in flight do not raise alerts. A check
 * that cannot reach the store is skipped; the next call's settle checks again (an alert is raised
 * by the level reached, not by one call crossing it).
 *
 * The chain event holds no personal data (events cannot be erased): tier, budget, scope,
 * threshold, amounts, window and webhook name — the agent's id for `per: ["agent"]`, never a
 * user, task or key. The webhook's body names whose budget it is (`who`).
 */
import type { Logger, PluginSetupContext } from "agent-attr";
import type { NamedMeter } from "./meters.ts";
import type { Alert, TiersOptions } from "./options.ts";
import { Markers, type LimiterStore } from "./store.ts";
import type { BudgetAlert, WebhookDeliveries } from "./webhook.ts";

const budgetName = { tokensPerDay: "tokens_per_day", costPerDay: "cost_per_day", costPerMonth: "cost_per_month" } as const;
const budgetText = { tokensPerDay: "daily token quota", costPerDay: "daily cost budget", costPerMonth: "monthly cost budget" } as const;

type Watched = { meter: NamedMeter; alert: Alert };

export class BudgetAlerts {
  private trail: PluginSetupContext["trail"] | null = null;
  private log: Logger | null = null;
  /** Markers this process knows are claimed (by it or another replica): not asked for again. */
  private readonly known = new Markers();
  /** For a store without `claim`. */
  private readonly local = new Markers();

  constructor(
    private readonly opts: TiersOptions,
    private readonly store: LimiterStore,
    private readonly deliveries: WebhookDeliveries,
    private readonly now: () => number,
  ) {}

  /** True when some tier has alerts (otherwise `check` is never called). */
  get any(): boolean {
    return Object.values(this.opts.tiers).some((tier) => tier.alerts.length > 0);
  }

  open(context: Pick<PluginSetupContext, "trail" | "log">): void {
    this.trail = context.trail;
    this.log = context.log;
    this.deliveries.log = context.log;
  }

  async close(): Promise<void> {
    await this.deliveries.flush(this.opts.alertFlushMs);
  }

  /** After a call of `tierName` settled on `meters`: the alerts its watched budgets have reached. Never throws. */
  async check(tierName: string, meters: readonly NamedMeter[]): Promise<void> {
    const alerts = this.opts.tiers[tierName]?.alerts ?? [];
    const at = this.now();
    // A budget whose every threshold has fired in the window the call was charged in needs no read.
    const watched: Watched[] = meters.flatMap((meter) =>
      alerts.filter((alert) => alert.budget === meter.limit && !this.allFired(meter, alert, at)).map((alert) => ({ meter, alert })),
    );
    if (watched.length === 0) return;
    try {
      const states = await this.store.peek(
        watched.map((w) => w.meter.meter),
        this.now(),
      );
      for (const [i, { meter, alert }] of watched.entries()) {
        const state = states[i]!;
        const spent = state.used - state.held;
        for (const threshold of alert.thresholds) {
          if (spent < threshold * meter.meter.limit) break;
          const endsAt = state.endsAt!;
          const marker = markerOf(meter, endsAt, threshold, alert);
          if (this.known.holds(marker, at)) continue;
          const first = this.store.claim ? await this.store.claim(marker, endsAt, at) : this.local.claim(marker, endsAt, at);
          this.known.claim(marker, endsAt, at);
          if (first) await this.raise(tierName, meter, alert, threshold, spent, endsAt);
        }
      }
    } catch (error) {
      // The store could not answer (logged by it): the next settle checks again.
      if (!(error instanceof Error && error.name === "LimitsUnavailableError"))
        this.log?.error(`[plugin tiers] budget alerts: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  private allFired(meter: NamedMeter, alert: Alert, now: number): boolean {
    const endsAt = meter.meter.kind === "window" ? meter.meter.endsAt : undefined;
    return endsAt !== undefined && alert.thresholds.every((t) => this.known.holds(markerOf(meter, endsAt, t, alert), now));
  }

  private async raise(tierName: string, { scope, who, meter }: NamedMeter, alert: Alert, threshold: number, spent: number, endsAt: number) {
    const budget = alert.budget;
    const unit = budget === "tokensPerDay" ? "tokens" : "nano_usd";
    const windowEnd = new Date(endsAt).toISOString();
    const body: BudgetAlert = {
      type: "budget_alert",
      id: Bun.randomUUIDv7(),
      time: new Date().toISOString(),
      tier: tierName,
      budget: budgetName[budget],
      threshold,
      scope,
      who,
      used: spent,
      limit: meter.limit,
      unit,
      window_end: windowEnd,
      text:
        `agent-attr: ${scope} ${who} has used ${Math.floor((spent / meter.limit) * 100)}% of the ${budgetText[budget]} of tier ${tierName} ` +
        `(${amount(spent, unit)} of ${amount(meter.limit, unit)}; alert at ${Math.round(threshold * 100)}%). It resets at ${windowEnd}.`,
    };
    const details = {
      alert_id: body.id,
      tier: tierName,
      budget: body.budget,
      threshold,
      scope,
      ...(scope === "agent" && namesAgent(meter.key) ? { agent_id: who } : {}),
      used: spent,
      limit: meter.limit,
      unit,
      window_end: windowEnd,
      webhook: alert.webhook,
    };
    try {
      await this.trail?.recordEvent({ kind: "budget_alert", actor: "plugin:tiers", details });
    } catch (error) {
      this.log?.error(
        `[plugin tiers] budget alert ${body.id} could not be recorded in the trail (${error instanceof Error ? error.message : String(error)}); it is posted all the same.`,
      );
    }
    this.deliveries.enqueue(alert.webhook, body);
  }
}

function amount(value: number, unit: "nano_usd" | "tokens"): string {
  if (unit === "tokens") return `${value.toLocaleString("en-US")} tokens`;
  return `$${(value / 1e9).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

/** What is claimed once: the budget's meter, its window, the threshold and the webhook. */
const markerOf = (meter: NamedMeter, endsAt: number, threshold: number, alert: Alert) =>
  JSON.stringify([meter.meter.key, endsAt, threshold, alert.webhook]);

/** A meter key (./meters.ts: `[tier, scope, owner, limit]`) whose owner is a claimed agent id, not "none of key K". */
function namesAgent(key: string): boolean {
  const [, , owner] = JSON.parse(key) as [string, string, unknown[]];
  return owner[0] === "id";
}
