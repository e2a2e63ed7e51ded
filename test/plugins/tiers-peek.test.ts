// LimiterStore.peek: the meters' state now without charging, the same from memory and from Redis
// (a read-only script), so the dashboard shows what a charge would see.
import { afterAll, expect, test } from "bun:test";
import { MemoryLimiterStore, redisLimiterStore, type LimiterStore, type Meter } from "../../plugins/index.ts";
import { dropPrefix, keysUnder, sharedRedisURL, uniquePrefix } from "../helpers/redis.ts";

const prefix = uniquePrefix("peek");
const opened: LimiterStore[] = [];
afterAll(async () => {
  for (const store of opened) await store.close?.();
  await dropPrefix(prefix);
});

const meters: Meter[] = [
  { kind: "gcra", key: "rpm", limit: 5, periodMs: 60_000, amount: 1 },
  { kind: "gcra", key: "tpm", limit: 1_000, periodMs: 60_000, amount: 120 },
  { kind: "window", key: "tpd", limit: 5_000, calendar: "day", amount: 300 },
  { kind: "window", key: "usd-month", limit: 3_000_000_000, calendar: "month", amount: 40_000_000 },
];

test("peek equals between memory and Redis through charges and settlements, and changes nothing", async () => {
  const redis = redisLimiterStore({ url: sharedRedisURL, prefix, clock: "caller", leaseMs: 3_600_000 });
  opened.push(redis);
  const memory = new MemoryLimiterStore();
  const start = Date.UTC(2026, 0, 31, 23, 58);
  const holds: { redis: string | null; now: number }[] = [];
  for (let step = 0; step < 40; step++) {
    const now = start + step * 7_000; // crosses the end of the day and the month
    const [m, r] = [await memory.charge(meters, now), await redis.charge(meters, now)];
    expect(r.refused).toBe(m.refused);
    if (r.hold) holds.push({ redis: r.hold, now });
    if (step % 3 === 2 && holds.length > 0) {
      const held = holds.shift()!;
      const settle = meters.filter((meter) => meter.kind === "window").map((meter) => ({ meter, delta: -50 }));
      await memory.adjust(settle, now, "memory");
      await redis.adjust(settle, now, held.redis);
    }
    const before = await keysUnder(prefix);
    const [peekedMemory, peekedRedis] = [await memory.peek(meters, now + 1), await redis.peek(meters, now + 1)];
    expect(peekedRedis.map(({ endsAt: _, ...state }) => state)).toEqual(peekedMemory.map(({ endsAt: _, ...state }) => state));
    expect(await memory.peek(meters, now + 1)).toEqual(peekedMemory); // nothing was charged
    expect((await keysUnder(prefix)).map((k) => k.key).sort()).toEqual(before.map((k) => k.key).sort());
  }
  // A peeked meter shows what a charge saw: used, held by calls in flight, remaining.
  const [window] = await memory.peek([meters[2]!], start + 40 * 7_000);
  expect(window!.used).toBeGreaterThan(0);
  expect(window!.held).toBeGreaterThan(0);
  expect(window!.remaining).toBe(5_000 - window!.used);
}, 20_000);
