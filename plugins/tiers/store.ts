/**
 * Limiter state behind one async interface: the in-memory store below (one process) and the Redis
 * store (./redis-store.ts, shared by replicas, the same two operations as atomic scripts) have
 * the same semantics, which a differential test holds them to.
 *
 * Two kinds of meter:
 * - `gcra`: the Generic Cell Rate Algorithm over a rolling period. A meter of `limit` units per
 *   `periodMs` lets a fresh caller spend `limit` at once, then one unit every `periodMs / limit`;
 *   there is no window edge, so no 2x burst at a boundary. State: the theoretical arrival time.
 * - `window`: a counter for a calendar window (the UTC day or month), for budgets and daily
 *   quotas. The store picks the window from its own clock (so replicas whose clocks differ agree
 *   on when a day ends) and a new window starts at zero.
 *
 * Holds: what a charge adds to a window meter is *held* for the call until it settles (`adjust`
 * with the charge's `hold`), so a refusal can tell "spent" from "reserved by calls in flight",
 * and a shared store can drop the holds of a replica that died (see ./redis-store.ts).
 */
import type { Logger } from "agent-attr";

export type Calendar = "day" | "month";

export type Meter =
  | { kind: "gcra"; key: string; limit: number; periodMs: number; amount: number }
  | {
      kind: "window";
      key: string;
      limit: number;
      calendar: Calendar;
      amount: number;
      /** For `adjust`: the end of the window the charge was made in (`MeterState.endsAt`); absent: the current one. */
      endsAt?: number;
    };

export interface MeterState {
  /** Units left after this charge (or now, when the charge was refused). */
  remaining: number;
  /** Amount used in the meter's window (window) or in flight in its period (gcra), before this charge. */
  used: number;
  /** Window meters: the part of `used` that calls in flight hold (every replica's, on a shared store); 0 for gcra. */
  held: number;
  /** Milliseconds until the meter is back to its full quota. */
  resetMs: number;
  /** When refused: milliseconds until this charge would pass. */
  retryAfterMs: number;
  /** Window meters: the end of the window charged (epoch ms, the store's clock). */
  endsAt?: number;
}

export interface ChargeResult {
  /** Index of the first meter that refused; null when every meter was charged. */
  refused: number | null;
  states: MeterState[];
  /** A charge that passed: the token to settle it with (`adjust(…, hold)`). Null when refused. */
  hold: string | null;
  /** The clock the store charged by (a shared store's own; otherwise the caller's `now`). */
  now: number;
}

export interface LimiterStore {
  /** Charges every meter, or none when any would go over its limit (all or nothing). */
  charge(meters: readonly Meter[], now: number): Promise<ChargeResult>;
  /**
   * Adds `delta` (negative gives back) to meters charged before; never refuses. With the charge's
   * `hold`, each window meter's hold of `meter.amount` ends and `meter.amount + delta` stays as
   * spent (list every window meter of the charge, with delta 0 if nothing changed).
   */
  adjust(adjustments: readonly { meter: Meter; delta: number }[], now: number, hold?: string | null): Promise<void>;
  /**
   * The meters' state now, charging nothing (`amount` is ignored): what the dashboard shows as used,
   * held and remaining. Dead replicas' holds are left out, as a charge would leave them out.
   */
  peek(meters: readonly Meter[], now: number): Promise<MeterState[]>;
  /**
   * Claims a one-time marker (a budget alert's window, scope and threshold) until `expiresAt`
   * (epoch ms, the store's clock, as `MeterState.endsAt`): true for the first caller only — on a
   * shared store, the first of every replica. Absent: alerts claim in this process's memory.
   */
  claim?(marker: string, expiresAt: number, now: number): Promise<boolean>;
  /** Called once at start (plugin setup): connect, start timers. */
  open?(log: Logger): Promise<void>;
  /** Called once at shutdown: flush what is queued, close connections. */
  close?(): Promise<void>;
}

/**
 * The store could not answer (e.g. Redis is unreachable). `failOpen` is the store's configured
 * policy: true lets the call through unchecked (and flagged in its record), false refuses it.
 */
export class LimitsUnavailableError extends Error {
  constructor(
    message: string,
    readonly failOpen: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "LimitsUnavailableError";
  }
}

/** Slack for float rounding in GCRA times (ms). */
export const epsilon = 1e-6;

/** End of the UTC day or month that contains `now` (epoch ms). */
export function windowEnd(calendar: Calendar, now: number): number {
  const date = new Date(now);
  if (calendar === "day") return Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate() + 1);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
}

/** A GCRA meter's state given its stored theoretical arrival time (null: none stored). */
export function gcraState(meter: Extract<Meter, { kind: "gcra" }>, stored: number | null, now: number): MeterState {
  const interval = meter.periodMs / meter.limit;
  const tat = Math.max(stored ?? now, now);
  // A charge bigger than the whole quota passes once the meter is empty, instead of never.
  const next = tat + Math.min(meter.amount, meter.limit) * interval;
  const fits = next - now <= meter.periodMs + epsilon;
  const after = fits ? tat + meter.amount * interval : tat;
  return {
    used: Math.round((tat - now) / interval),
    held: 0,
    remaining: Math.max(0, Math.floor((meter.periodMs - (after - now) + epsilon) / interval)),
    resetMs: Math.max(0, after - now),
    retryAfterMs: fits ? 0 : Math.max(1, next - meter.periodMs - now),
  };
}

/** A window meter's state given what its window holds (`used`, of which `held` by calls in flight). */
export function windowState(
  meter: Extract<Meter, { kind: "window" }>,
  used: number,
  held: number,
  endsAt: number,
  now: number,
): MeterState {
  const fits = used + meter.amount <= meter.limit;
  return {
    used,
    held,
    remaining: Math.max(0, meter.limit - used - (fits ? meter.amount : 0)),
    resetMs: endsAt - now,
    retryAfterMs: fits ? 0 : Math.max(1, endsAt - now),
    endsAt,
  };
}

interface Entry {
  value: number;
  held: number;
  expiresAt: number;
}

/** The in-memory store: one process's limits. Expired entries are swept as it goes. */
export class MemoryLimiterStore implements LimiterStore {
  private readonly values = new Map<string, Entry>();
  private readonly markers = new Markers();
  private operations = 0;

  async claim(marker: string, expiresAt: number, now: number): Promise<boolean> {
    return this.markers.claim(marker, expiresAt, now);
  }

  async charge(meters: readonly Meter[], now: number): Promise<ChargeResult> {
    this.sweep(now);
    const states = meters.map((meter) => this.evaluate(meter, now));
    const refused = states.findIndex((state) => state.retryAfterMs > 0);
    if (refused >= 0) return { refused, states, hold: null, now };
    for (const meter of meters) this.apply(meter, meter.amount, meter.amount, now);
    // One process never loses its own holds: every charge settles with the same token.
    return { refused: null, states, hold: "memory", now };
  }

  async adjust(adjustments: readonly { meter: Meter; delta: number }[], now: number, hold?: string | null): Promise<void> {
    for (const { meter, delta } of adjustments) this.apply(meter, delta, hold ? -meter.amount : 0, now);
  }

  async peek(meters: readonly Meter[], now: number): Promise<MeterState[]> {
    return meters.map((meter) => this.evaluate({ ...meter, amount: 0 }, now));
  }

  private evaluate(meter: Meter, now: number): MeterState {
    if (meter.kind === "gcra") return gcraState(meter, this.values.get(meter.key)?.value ?? null, now);
    const endsAt = windowEnd(meter.calendar, now);
    const stored = this.values.get(windowKey(meter.key, endsAt));
    const live = stored !== undefined && stored.expiresAt > now;
    return windowState(meter, live ? stored.value : 0, live ? stored.held : 0, endsAt, now);
  }

  /** Adds `amount` to the meter, and `holdChange` to what calls in flight hold of a window. */
  private apply(meter: Meter, amount: number, holdChange: number, now: number): void {
    if (meter.kind === "window") {
      const endsAt = meter.endsAt ?? windowEnd(meter.calendar, now);
      const key = windowKey(meter.key, endsAt);
      const stored = this.values.get(key);
      const live = stored !== undefined && stored.expiresAt > now;
      const [used, held] = live ? [stored.value, stored.held] : [0, 0];
      this.values.set(key, { value: Math.max(0, used + amount), held: Math.max(0, held + holdChange), expiresAt: endsAt });
      return;
    }
    const interval = meter.periodMs / meter.limit;
    const tat = Math.max(this.values.get(meter.key)?.value ?? now, now) + amount * interval;
    this.values.set(meter.key, { value: tat, held: 0, expiresAt: tat });
  }

  private sweep(now: number): void {
    if (++this.operations % 1024 !== 0) return;
    for (const [key, entry] of this.values) if (entry.expiresAt <= now) this.values.delete(key);
  }
}

const windowKey = (key: string, endsAt: number) => `${key}\u0000${endsAt}`;

/** One-time markers in memory (MemoryLimiterStore.claim, and alerts on a store without claim). */
export class Markers {
  private readonly until = new Map<string, number>();
  private claims = 0;

  holds(marker: string, now: number): boolean {
    const held = this.until.get(marker);
    return held !== undefined && held > now;
  }

  claim(marker: string, expiresAt: number, now: number): boolean {
    if (this.holds(marker, now)) return false;
    if (++this.claims % 1024 === 0) for (const [key, end] of this.until) if (end <= now) this.until.delete(key);
    this.until.set(marker, expiresAt);
    return true;
  }
}
