/**
 * The scopes the dashboard's limits view shows (`limit.usage`): per tier, the meters of the most
 * recent distinct callers this process charged — at most `perTier` (200) of them, the least
 * recently seen dropped first. It is this process's view: on Redis the amounts are the shared
 * store's, but a replica lists only the callers it served itself. An erased user is dropped at once
 * (`forgetUser`); the limiter's own state keeps counting them.
 */
import { normalizeIdentifier, type LimitUsage } from "agent-attr";
import type { NamedMeter } from "./meters.ts";
import type { LimiterStore } from "./store.ts";

const unitOf = {
  requestsPerMinute: "requests",
  tokensPerMinute: "tokens",
  tokensPerDay: "tokens",
  costPerDay: "nano_usd",
  costPerMonth: "nano_usd",
} as const;
const limitName = {
  requestsPerMinute: "requests_per_minute",
  tokensPerMinute: "tokens_per_minute",
  tokensPerDay: "tokens_per_day",
  costPerDay: "cost_per_day",
  costPerMonth: "cost_per_month",
} as const;

interface Seen {
  tier: string;
  meters: NamedMeter[];
  lastSeen: number;
}

export class RecentScopes {
  /** Per tier: meter set key → what was seen, in least-recently-seen-first order. */
  private readonly tiers = new Map<string, Map<string, Seen>>();

  constructor(private readonly perTier = 200) {}

  /** Notes the meters a call was charged (one entry per scope and identity). */
  note(tier: string, meters: readonly NamedMeter[], at: number): void {
    let recent = this.tiers.get(tier);
    if (!recent) this.tiers.set(tier, (recent = new Map()));
    const byOwner = new Map<string, NamedMeter[]>();
    for (const meter of meters) {
      const owner = `${meter.scope}\u0000${meter.who}`;
      byOwner.set(owner, [...(byOwner.get(owner) ?? []), { ...meter, meter: { ...meter.meter, amount: 0 } }]);
    }
    for (const [owner, owned] of byOwner) {
      recent.delete(owner);
      recent.set(owner, { tier, meters: owned, lastSeen: at });
    }
    while (recent.size > this.perTier) recent.delete(recent.keys().next().value!);
  }

  forgetUser(userId: string): void {
    const user = normalizeIdentifier(userId);
    for (const recent of this.tiers.values()) {
      for (const [owner, seen] of recent)
        if (seen.meters[0]?.scope === "user" && normalizeIdentifier(seen.meters[0].who) === user) recent.delete(owner);
    }
  }

  /** Their state now in `store`, newest first; charges nothing. */
  async usage(store: LimiterStore, now: number): Promise<LimitUsage[]> {
    const seen = [...this.tiers.values()].flatMap((recent) => [...recent.values()]).sort((a, b) => b.lastSeen - a.lastSeen);
    const meters = seen.flatMap((s) => s.meters);
    const states = await store.peek(
      meters.map((m) => m.meter),
      now,
    );
    let i = 0;
    return seen.flatMap((s) =>
      s.meters.map((m) => {
        const state = states[i++]!;
        return {
          plugin: "tiers",
          tier: s.tier,
          scope: m.scope,
          who: m.who,
          limit: limitName[m.limit],
          unit: unitOf[m.limit],
          max: m.meter.limit,
          used: state.used,
          held: state.held,
          remaining: state.remaining,
          resets_at: new Date(now + state.resetMs).toISOString(),
          last_seen: new Date(s.lastSeen).toISOString(),
        };
      }),
    );
  }
}
