/**
 * Limiter state behind one async interface, so a shared store (Redis, with the same two
 * operations as atomic scripts) can replace the in-memory one without touching the limiter.
 *
 * Two kinds of meter:
 * - `gcra`: the Generic Cell Rate Algorithm over a rolling period. A meter of `limit` units per
 *   `periodMs` lets a fresh caller spend `limit` at once, then one unit every `periodMs / limit`;
 *   there is no window edge, so no 2x burst at a boundary. State: the theoretical arrival time.
 * - `window`: a counter for a calendar window (a UTC day or month), for budgets and daily quotas.
 *   The key includes the window, so a new window starts at zero.
 */
export type Meter =
  | { kind: "gcra"; key: string; limit: number; periodMs: number; amount: number }
  | { kind: "window"; key: string; limit: number; endsAt: number; amount: number };

export interface MeterState {
  /** Units left after this charge (or now, when the charge was refused). */
  remaining: number;
  /** Amount used in the meter's window (window) or in flight in its period (gcra), before this charge. */
  used: number;
  /** Milliseconds until the meter is back to its full quota. */
  resetMs: number;
  /** When refused: milliseconds until this charge would pass. */
  retryAfterMs: number;
}

export interface ChargeResult {
  /** Index of the first meter that refused; null when every meter was charged. */
  refused: number | null;
  states: MeterState[];
}

export interface LimiterStore {
  /** Charges every meter, or none when any would go over its limit (all or nothing). */
  charge(meters: readonly Meter[], now: number): Promise<ChargeResult>;
  /** Adds `delta` (negative gives back) to meters charged before; never refuses. */
  adjust(adjustments: readonly { meter: Meter; delta: number }[], now: number): Promise<void>;
}

/** Slack for float rounding in GCRA times (ms). */
const epsilon = 1e-6;

/** The in-memory store: one process's limits. Expired entries are swept as it goes. */
export class MemoryLimiterStore implements LimiterStore {
  private readonly values = new Map<string, { value: number; expiresAt: number }>();
  private operations = 0;

  async charge(meters: readonly Meter[], now: number): Promise<ChargeResult> {
    this.sweep(now);
    const states = meters.map((meter) => this.evaluate(meter, now));
    const refused = states.findIndex((state) => state.retryAfterMs > 0);
    if (refused >= 0) return { refused, states };
    for (const meter of meters) this.apply(meter, meter.amount, now);
    return { refused: null, states };
  }

  async adjust(adjustments: readonly { meter: Meter; delta: number }[], now: number): Promise<void> {
    for (const { meter, delta } of adjustments) this.apply(meter, delta, now);
  }

  private evaluate(meter: Meter, now: number): MeterState {
    const stored = this.values.get(meter.key);
    if (meter.kind === "window") {
      const used = stored && stored.expiresAt > now ? stored.value : 0;
      const fits = used + meter.amount <= meter.limit;
      return {
        used,
        remaining: Math.max(0, meter.limit - used - (fits ? meter.amount : 0)),
        resetMs: meter.endsAt - now,
        retryAfterMs: fits ? 0 : Math.max(1, meter.endsAt - now),
      };
    }
    const interval = meter.periodMs / meter.limit;
    const tat = Math.max(stored?.value ?? now, now);
    // A charge bigger than the whole quota passes once the meter is empty, instead of never.
    const next = tat + Math.min(meter.amount, meter.limit) * interval;
    const fits = next - now <= meter.periodMs + epsilon;
    const after = fits ? tat + meter.amount * interval : tat;
    return {
      used: Math.round((tat - now) / interval),
      remaining: Math.max(0, Math.floor((meter.periodMs - (after - now) + epsilon) / interval)),
      resetMs: Math.max(0, after - now),
      retryAfterMs: fits ? 0 : Math.max(1, next - meter.periodMs - now),
    };
  }

  private apply(meter: Meter, amount: number, now: number): void {
    const stored = this.values.get(meter.key);
    if (meter.kind === "window") {
      const used = stored && stored.expiresAt > now ? stored.value : 0;
      this.values.set(meter.key, { value: Math.max(0, used + amount), expiresAt: meter.endsAt });
      return;
    }
    const interval = meter.periodMs / meter.limit;
    const tat = Math.max(stored?.value ?? now, now) + amount * interval;
    this.values.set(meter.key, { value: tat, expiresAt: tat });
  }

  private sweep(now: number): void {
    if (++this.operations % 1024 !== 0) return;
    for (const [key, entry] of this.values) if (entry.expiresAt <= now) this.values.delete(key);
  }
}
