// The Redis limiter store against the real local Redis: the same answers as MemoryLimiterStore on
// random sequences of charge / adjust (differential), the server's clock for every replica, keys
// that expire, reservations of a dead replica that stop counting, and a Redis that is down,
// frozen or restarted: a fast refusal, never a hang, and recovery without a new store.
import { afterAll, describe, expect, test } from "bun:test";
import { RedisClient } from "bun";
import {
  LimitsUnavailableError,
  MemoryLimiterStore,
  redisLimiterStore,
  type ChargeResult,
  type LimiterStore,
  type Meter,
  type RedisLimiterStore,
} from "../../plugins/index.ts";
import { dropPrefix, keysUnder, sharedRedisURL, startPrivateRedis, uniquePrefix, type PrivateRedis } from "../helpers/redis.ts";

const prefixes: string[] = [];
const opened: LimiterStore[] = [];
const privateServers: PrivateRedis[] = [];
afterAll(async () => {
  for (const store of opened) await store.close?.();
  for (const server of privateServers) await server.kill();
  for (const prefix of prefixes) await dropPrefix(prefix);
});

const quiet = { info() {}, warn() {}, error() {} };
function store(options: Parameters<typeof redisLimiterStore>[0] & { prefix: string }): RedisLimiterStore {
  if (!prefixes.includes(options.prefix)) prefixes.push(options.prefix);
  const made = redisLimiterStore({ url: sharedRedisURL, ...options });
  opened.push(made);
  return made;
}

/** mulberry32: a small seeded PRNG, so a failing sequence can be replayed from its seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("differential: Redis and memory give the same answers", () => {
  const meterPool: Meter[] = [
    { kind: "gcra", key: "rpm", limit: 5, periodMs: 60_000, amount: 1 },
    { kind: "gcra", key: "tpm", limit: 1_000, periodMs: 60_000, amount: 0 },
    { kind: "gcra", key: "odd", limit: 7, periodMs: 1_000, amount: 0 },
    { kind: "window", key: "tpd", limit: 5_000, calendar: "day", amount: 0 },
    { kind: "window", key: "usd-day", limit: 1_000_000_000, calendar: "day", amount: 0 },
    { kind: "window", key: "usd-month", limit: 3_000_000_000, calendar: "month", amount: 0 },
  ];

  // Ten minutes before a month ends (a leap February, a year end among them).
  const starts = [
    Date.UTC(2026, 0, 31, 23, 50),
    Date.UTC(2028, 1, 29, 23, 50),
    Date.UTC(2026, 11, 31, 23, 50),
    Date.UTC(2027, 3, 30, 23, 50),
  ];

  for (const [seed, start] of starts.entries()) {
    test(`seed ${seed}: 1,500 random charges, settles and adjustments across the end of ${new Date(start).toISOString().slice(0, 7)}`, async () => {
      const next = random(seed + 1);
      const int = (n: number) => Math.floor(next() * n);
      const prefix = uniquePrefix(`differential-${seed}`);
      // Two replicas on one Redis against one memory store: holds of both count as one.
      const replicas = [0, 1].map(() => store({ prefix, clock: "caller", leaseMs: 10 * 365 * 86_400_000 }));
      const memory = new MemoryLimiterStore();
      const pending: { meters: Meter[]; memory: ChargeResult; redis: ChargeResult; replica: number }[] = [];
      const compare = async (meters: Meter[], now: number, step: number) => {
        const replica = int(2);
        const [fromMemory, fromRedis] = [await memory.charge(meters, now), await replicas[replica]!.charge(meters, now)];
        expect({ step, refused: fromRedis.refused, states: fromRedis.states, now: fromRedis.now }).toEqual({
          step,
          refused: fromMemory.refused,
          states: fromMemory.states,
          now: fromMemory.now,
        });
        return { fromMemory, fromRedis, replica };
      };
      let now = start + int(600_000);
      let refusals = 0;
      for (let step = 0; step < 1_500; step++) {
        now += next() < 0.02 ? int(3 * 3_600_000) : int(5_000);
        const roll = next();
        if (roll < 0.6) {
          let meters = meterPool.filter(() => next() < 0.4);
          if (meters.length === 0) continue;
          if (next() < 0.3) {
            // Exactly what is left (or one more): the edge where `<=` and `<` differ.
            const { fromMemory } = await compare(
              meters.map((m) => ({ ...m, amount: 0 })),
              now,
              step,
            );
            const one = next() < 0.5 ? 1 : 0;
            meters = meters.map((m, i) => ({
              ...m,
              amount: Math.max(0, m.kind === "window" ? m.limit - fromMemory.states[i]!.used + one : fromMemory.states[i]!.remaining + one),
            }));
          } else {
            meters = meters.map((m): Meter => {
              if (m.kind === "gcra") return { ...m, amount: m.key === "rpm" ? 1 : int(m.limit * 0.6) };
              return { ...m, amount: next() < 0.03 ? m.limit + 1 : int(m.limit * 0.3) };
            });
          }
          const { fromMemory, fromRedis, replica } = await compare(meters, now, step);
          if (fromRedis.refused === null) pending.push({ meters, memory: fromMemory, redis: fromRedis, replica });
          else refusals++;
        } else if (roll < 0.9 && pending.length > 0) {
          // A call settles: its real amounts replace what it reserved (a delta of -amount … +amount/2).
          const call = pending.splice(int(pending.length), 1)[0]!;
          const deltas = call.meters.map((meter) => Math.round(meter.amount * (next() * 1.5 - 1)));
          const settled = (result: ChargeResult) =>
            call.meters.map((meter, i) => ({
              meter: meter.kind === "window" ? { ...meter, endsAt: result.states[i]!.endsAt } : meter,
              delta: deltas[i]!,
            }));
          await memory.adjust(settled(call.memory), now, call.memory.hold);
          // Mostly through the replica that charged, sometimes through the other one.
          await replicas[next() < 0.8 ? call.replica : 1 - call.replica]!.adjust(settled(call.redis), now, call.redis.hold);
        } else {
          // A plain adjustment (no hold), e.g. the usage of a call let through unchecked.
          const meter = meterPool[int(meterPool.length)]!;
          const delta = int(200) - 50;
          await memory.adjust([{ meter, delta }], now);
          await replicas[int(2)]!.adjust([{ meter, delta }], now);
        }
      }
      expect(refusals).toBeGreaterThan(50); // the sequences do reach the limits
    }, 30_000);
  }
});

describe("the Redis server's clock", () => {
  test("replicas whose clocks are hours apart share one GCRA limit exactly, on Redis time", async () => {
    const prefix = uniquePrefix("skew");
    const [ahead, behind] = [store({ prefix }), store({ prefix })];
    const meter: Meter = { kind: "gcra", key: "rpm", limit: 4, periodMs: 60_000, amount: 1 };
    const passed: boolean[] = [];
    for (let i = 0; i < 8; i++) {
      const [replica, skew] = i % 2 ? [ahead, 3_600_000] : [behind, -3_600_000];
      const result = await replica.charge([meter], Date.now() + skew);
      passed.push(result.refused === null);
      // The store reports the clock it charged by: Redis's, which here is this machine's.
      expect(Math.abs(result.now - Date.now())).toBeLessThan(60_000);
    }
    expect(passed.filter(Boolean)).toHaveLength(4);
  });

  test("a replica whose clock says it is tomorrow still charges the server's today", async () => {
    const prefix = uniquePrefix("skew-window");
    const replica = store({ prefix });
    const result = await replica.charge([{ kind: "window", key: "tpd", limit: 100, calendar: "day", amount: 1 }], Date.now() + 86_400_000);
    const today = new Date(result.now);
    expect(result.states[0]!.endsAt).toBe(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() + 1));
  });
});

test("every key has the prefix and an expiry: GCRA at its arrival time, windows at their end, leases with the last lease", async () => {
  const prefix = uniquePrefix("keys");
  const replica = store({ prefix, leaseMs: 5_000 });
  const result = await replica.charge(
    [
      { kind: "gcra", key: '["t","user",["id","ann"],"rpm"]', limit: 10, periodMs: 60_000, amount: 1 },
      { kind: "window", key: '["t","user",["id","ann"],"usd-day"]', limit: 100, calendar: "day", amount: 10 },
    ],
    Date.now(),
  );
  const keys = await keysUnder(prefix);
  expect(keys.map((k) => [k.key.slice(prefix.length), k.type]).sort()).toEqual([
    ['g:["t","user",["id","ann"],"rpm"]', "string"],
    ["leases", "zset"],
    ['w:["t","user",["id","ann"],"usd-day"]', "hash"],
  ]);
  const ttl = (name: string) => keys.find((k) => k.key === `${prefix}${name}`)!.ttl;
  expect(ttl('g:["t","user",["id","ann"],"rpm"]')).toBeGreaterThan(0);
  expect(ttl('g:["t","user",["id","ann"],"rpm"]')).toBeLessThanOrEqual(6_000); // one interval of 10 per minute
  expect(ttl('w:["t","user",["id","ann"],"usd-day"]')).toBeGreaterThan(0);
  expect(ttl('w:["t","user",["id","ann"],"usd-day"]')).toBeLessThanOrEqual(result.states[1]!.endsAt! - result.now);
  expect(ttl("leases")).toBeGreaterThan(0);
  expect(ttl("leases")).toBeLessThanOrEqual(5_000);
});

describe("reservations of a replica that died", () => {
  const budget: Meter = { kind: "window", key: "usd-day", limit: 100, calendar: "day", amount: 80 };

  test("stop counting once its lease lapses; the survivor's own holds stay", async () => {
    const prefix = uniquePrefix("dead-replica");
    const dying = store({ prefix, leaseMs: 600 });
    const survivor = store({ prefix, leaseMs: 600 });
    await survivor.open(quiet);
    expect((await dying.charge([budget], Date.now())).refused).toBeNull(); // then it dies: never renews, never settles
    expect((await survivor.charge([{ ...budget, amount: 10 }], Date.now())).refused).toBeNull();
    const busy = await survivor.charge([{ ...budget, amount: 20 }], Date.now());
    expect(busy.refused).toBe(0);
    expect(busy.states[0]).toMatchObject({ used: 90, held: 90 });
    await Bun.sleep(900); // the dead replica's lease (600 ms) lapses; the survivor renews its own every 200 ms
    const after = await survivor.charge([{ ...budget, amount: 20 }], Date.now());
    expect(after.refused).toBeNull();
    expect(after.states[0]).toMatchObject({ used: 10, held: 10 });
  });

  test("a replica that comes back after its lease lapsed settles what its call really used, once", async () => {
    const prefix = uniquePrefix("late-settle");
    const partitioned = store({ prefix, leaseMs: 300 });
    const other = store({ prefix, leaseMs: 300 });
    const charged = await partitioned.charge([budget], Date.now());
    await Bun.sleep(500);
    // Settles at 30 of its 80: the hold is gone already, so 30 is added as spent.
    await partitioned.adjust([{ meter: { ...budget, endsAt: charged.states[0]!.endsAt }, delta: -50 }], Date.now(), charged.hold);
    expect((await other.charge([{ ...budget, amount: 0 }], Date.now())).states[0]).toMatchObject({ used: 30, held: 0 });
    // Its next charge takes a new lease and is held again.
    expect((await partitioned.charge([{ ...budget, amount: 5 }], Date.now())).refused).toBeNull();
    expect((await other.charge([{ ...budget, amount: 0 }], Date.now())).states[0]).toMatchObject({ used: 35, held: 5 });
  });
});

describe("Redis down, frozen, restarted", () => {
  const rpm: Meter = { kind: "gcra", key: "rpm", limit: 2, periodMs: 60_000, amount: 1 };

  async function privateStore(options: { failOpen?: boolean } = {}) {
    const server = await startPrivateRedis();
    privateServers.push(server);
    const made = redisLimiterStore({ url: server.url, prefix: "t:", timeoutMs: 200, ...options });
    opened.push(made);
    return { server, store: made };
  }

  const refusal = async (promise: Promise<unknown>) => {
    const started = performance.now();
    const error = await promise.then(
      () => null,
      (e: unknown) => e,
    );
    return { error, ms: performance.now() - started };
  };

  test("killed: charges fail at once with LimitsUnavailableError carrying the policy; a restart is picked up by the next charge", async () => {
    const { server, store: limiter } = await privateStore({ failOpen: true });
    const errors: string[] = [];
    await limiter.open({ ...quiet, error: (m) => errors.push(m) });
    expect((await limiter.charge([rpm], Date.now())).refused).toBeNull();
    await server.kill();
    const { error, ms } = await refusal(limiter.charge([rpm], Date.now()));
    expect(error).toBeInstanceOf(LimitsUnavailableError);
    expect((error as LimitsUnavailableError).failOpen).toBe(true);
    expect((error as Error).message).toContain("AGENT_ATTR_REDIS_URL");
    expect(ms).toBeLessThan(2_000);
    expect(errors.join("\n")).toContain(`Redis at ${server.url} is unreachable`);
    await server.start(); // empty, and without the scripts cached: the next charge loads them again
    const back = await limiter.charge([rpm], Date.now());
    expect(back.refused).toBeNull();
    expect(back.states[0]!.used).toBe(0);
  });

  test("frozen (accepts bytes, never answers): a charge fails within its timeout; one that lands later is given back", async () => {
    const { server, store: limiter } = await privateStore();
    expect((await limiter.charge([rpm], Date.now())).refused).toBeNull(); // 1 of 2 used
    server.freeze();
    const { error, ms } = await refusal(limiter.charge([rpm], Date.now()));
    expect(error).toBeInstanceOf(LimitsUnavailableError);
    expect((error as LimitsUnavailableError).failOpen).toBe(false);
    expect(ms).toBeLessThan(2_000);
    server.thaw(); // the frozen charge now runs on the server, and is given back at once
    let used = -1;
    for (let i = 0; i < 50 && used !== 1; i++) {
      await Bun.sleep(20);
      used = (await limiter.charge([{ ...rpm, amount: 0 }], Date.now())).states[0]!.used;
    }
    expect(used).toBe(1);
  });

  test("a settlement Redis refuses (out of memory) is sent again once it takes writes: the hold ends, the real amount counts", async () => {
    const { server, store: limiter } = await privateStore();
    await limiter.open(quiet);
    const budget: Meter = { kind: "window", key: "usd-day", limit: 100, calendar: "day", amount: 80 };
    const charged = await limiter.charge([budget], Date.now());
    expect(charged.refused).toBeNull();
    const admin = new RedisClient(server.url);
    try {
      await admin.send("CONFIG", ["SET", "maxmemory", "1"]);
      // The call used 30 of its 80: refused by Redis (OOM), it waits instead of being dropped.
      await limiter.adjust([{ meter: { ...budget, endsAt: charged.states[0]!.endsAt }, delta: -50 }], Date.now(), charged.hold);
      await admin.send("CONFIG", ["SET", "maxmemory", "0"]);
    } finally {
      admin.close();
    }
    let state = { used: -1, held: -1 };
    for (let i = 0; i < 100 && state.used !== 30; i++) {
      await Bun.sleep(20);
      state = (await limiter.charge([{ ...budget, amount: 0 }], Date.now())).states[0]!;
    }
    expect(state).toMatchObject({ used: 30, held: 0 });
  });

  test("an adjustment made while Redis is down is sent when it answers again", async () => {
    const { server, store: limiter } = await privateStore();
    await limiter.open(quiet);
    const meter: Meter = { kind: "window", key: "tpd", limit: 1_000, calendar: "day", amount: 0 };
    expect((await limiter.charge([meter], Date.now())).refused).toBeNull();
    await server.kill();
    await limiter.adjust([{ meter, delta: 40 }], Date.now()); // never throws; waits for Redis
    await server.start();
    let used = 0;
    for (let i = 0; i < 50 && used !== 40; i++) {
      await Bun.sleep(20);
      used = (await limiter.charge([meter], Date.now())).states[0]!.used;
    }
    expect(used).toBe(40);
  });
});
