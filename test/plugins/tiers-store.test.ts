// The LimiterStore contract: GCRA arithmetic, calendar windows, all-or-nothing charges,
// adjustments — for the in-memory store and for the Redis store (on the caller's clock, so the
// same times give the same answers; its own clock is tested in tiers-redis-store.test.ts).
import { afterAll, describe, expect, test } from "bun:test";
import { MemoryLimiterStore, redisLimiterStore, type LimiterStore, type Meter } from "../../plugins/index.ts";
import { dropPrefix, sharedRedisURL, uniquePrefix } from "../helpers/redis.ts";

const gcra = (key: string, limit: number, amount = 1): Meter => ({ kind: "gcra", key, limit, periodMs: 60_000, amount });
const windowed = (key: string, limit: number, amount: number): Extract<Meter, { kind: "window" }> => ({
  kind: "window",
  key,
  limit,
  calendar: "day",
  amount,
});
/** The end of a UTC day (2026-01-02T00:00Z). */
const dayEnd = Date.UTC(2026, 0, 2);

const prefix = uniquePrefix("store-contract");
const redisStores: LimiterStore[] = [];
afterAll(async () => {
  for (const store of redisStores) await store.close?.();
  await dropPrefix(prefix);
});

const stores: [string, () => LimiterStore][] = [
  ["memory", () => new MemoryLimiterStore()],
  [
    "redis",
    () => {
      const store = redisLimiterStore({ url: sharedRedisURL, prefix: `${prefix}${redisStores.length}:`, clock: "caller" });
      redisStores.push(store);
      return store;
    },
  ],
];

for (const [name, newStore] of stores) {
  describe(`${name} store`, () => {
    test("GCRA: a burst of the limit, then one per interval, with exact retry times", async () => {
      const store = newStore();
      const t0 = 1_000_000;
      for (let i = 0; i < 6; i++) expect((await store.charge([gcra("k", 6)], t0)).refused).toBeNull();
      const refused = await store.charge([gcra("k", 6)], t0);
      expect(refused.refused).toBe(0);
      expect(refused.states[0]!.retryAfterMs).toBe(10_000);
      expect(refused.states[0]!.remaining).toBe(0);
      expect((await store.charge([gcra("k", 6)], t0 + 9_999)).refused).toBe(0);
      const passed = await store.charge([gcra("k", 6)], t0 + 10_000);
      expect(passed.refused).toBeNull();
      expect(passed.states[0]!.remaining).toBe(0);
      expect((await store.charge([gcra("k", 6)], t0 + 70_000)).states[0]!.remaining).toBe(5);
    });

    test("all or nothing: a refusal by one meter charges none of the others", async () => {
      const store = newStore();
      expect((await store.charge([windowed("w", 10, 10)], 0)).refused).toBeNull();
      const result = await store.charge([gcra("g", 1), windowed("w", 10, 1)], 0);
      expect(result.refused).toBe(1);
      expect(result.hold).toBeNull();
      expect((await store.charge([gcra("g", 1)], 0)).refused).toBeNull(); // g was not charged by the refused call
    });

    test("windows: used + amount may reach the limit, not pass it; a new window starts empty", async () => {
      const store = newStore();
      const t = dayEnd - 1000;
      expect((await store.charge([windowed("day-1", 100, 60)], t)).refused).toBeNull();
      const refused = await store.charge([windowed("day-1", 100, 41)], t + 10);
      expect(refused.refused).toBe(0);
      expect(refused.states[0]).toMatchObject({ used: 60, retryAfterMs: 990, endsAt: dayEnd });
      expect((await store.charge([windowed("day-1", 100, 40)], t + 10)).refused).toBeNull();
      await store.adjust([{ meter: windowed("day-1", 100, 0), delta: -30 }], t + 20);
      expect((await store.charge([windowed("day-1", 100, 30)], t + 20)).refused).toBeNull();
      expect((await store.charge([windowed("day-1", 100, 1)], dayEnd)).states[0]!.used).toBe(0); // a new day
    });

    test("months end on the calendar: January has 31 days, February 28 in 2026", async () => {
      const store = newStore();
      const month = (key: string): Meter => ({ kind: "window", key, limit: 10, calendar: "month", amount: 1 });
      expect((await store.charge([month("m")], Date.UTC(2026, 0, 31, 23))).states[0]!.endsAt).toBe(Date.UTC(2026, 1, 1));
      expect((await store.charge([month("m")], Date.UTC(2026, 1, 1))).states[0]).toMatchObject({ used: 0, endsAt: Date.UTC(2026, 2, 1) });
      expect((await store.charge([month("m")], Date.UTC(2026, 11, 15))).states[0]!.endsAt).toBe(Date.UTC(2027, 0, 1));
    });

    test("holds: what a charge reserves is held until it settles; settling keeps the real amount as spent", async () => {
      const store = newStore();
      const t = dayEnd - 60_000;
      const first = await store.charge([windowed("budget", 100, 60)], t);
      expect(first.hold).not.toBeNull();
      const busy = await store.charge([windowed("budget", 100, 50)], t);
      expect(busy.states[0]).toMatchObject({ used: 60, held: 60 });
      // Settles at 25 of the 60 reserved: 25 spent, nothing held.
      await store.adjust([{ meter: { ...windowed("budget", 100, 60), endsAt: first.states[0]!.endsAt }, delta: -35 }], t + 1, first.hold);
      const after = await store.charge([windowed("budget", 100, 75)], t + 2);
      expect(after.refused).toBeNull();
      expect(after.states[0]).toMatchObject({ used: 25, held: 0 });
    });

    test("a settle after the window ended changes neither that window nor the new one", async () => {
      const store = newStore();
      const charged = await store.charge([windowed("late", 100, 80)], dayEnd - 5);
      await store.adjust([{ meter: { ...windowed("late", 100, 80), endsAt: dayEnd }, delta: -80 }], dayEnd + 5, charged.hold);
      expect((await store.charge([windowed("late", 100, 1)], dayEnd + 6)).states[0]).toMatchObject({ used: 0, held: 0 });
    });

    test("GCRA adjustments: giving back tokens frees them at once", async () => {
      const store = newStore();
      expect((await store.charge([gcra("t", 1000, 900)], 0)).refused).toBeNull();
      expect((await store.charge([gcra("t", 1000, 200)], 0)).refused).toBe(0);
      await store.adjust([{ meter: gcra("t", 1000, 900), delta: -880 }], 0);
      expect((await store.charge([gcra("t", 1000, 200)], 0)).refused).toBeNull();
    });
  });
}
