// The in-memory LimiterStore: GCRA arithmetic, calendar windows, all-or-nothing charges, adjustments.
import { expect, test } from "bun:test";
import { MemoryLimiterStore, type Meter } from "../../plugins/index.ts";

const gcra = (key: string, limit: number, amount = 1): Meter => ({ kind: "gcra", key, limit, periodMs: 60_000, amount });
const windowed = (key: string, limit: number, amount: number, endsAt: number): Meter => ({ kind: "window", key, limit, endsAt, amount });

test("GCRA: a burst of the limit, then one per interval, with exact retry times", async () => {
  const store = new MemoryLimiterStore();
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
  const store = new MemoryLimiterStore();
  const end = 2_000_000;
  expect((await store.charge([windowed("w", 10, 10, end)], 0)).refused).toBeNull();
  const result = await store.charge([gcra("g", 1), windowed("w", 10, 1, end)], 0);
  expect(result.refused).toBe(1);
  expect((await store.charge([gcra("g", 1)], 0)).refused).toBeNull(); // g was not charged by the refused call
});

test("windows: used + amount may reach the limit, not pass it; a new window starts empty", async () => {
  const store = new MemoryLimiterStore();
  expect((await store.charge([windowed("day-1", 100, 60, 1000)], 0)).refused).toBeNull();
  const refused = await store.charge([windowed("day-1", 100, 41, 1000)], 10);
  expect(refused.refused).toBe(0);
  expect(refused.states[0]).toMatchObject({ used: 60, retryAfterMs: 990 });
  expect((await store.charge([windowed("day-1", 100, 40, 1000)], 10)).refused).toBeNull();
  await store.adjust([{ meter: windowed("day-1", 100, 0, 1000), delta: -30 }], 20);
  expect((await store.charge([windowed("day-1", 100, 30, 1000)], 20)).refused).toBeNull();
  expect((await store.charge([windowed("day-1", 100, 1, 1000)], 1000)).states[0]!.used).toBe(0); // expired
});

test("GCRA adjustments: giving back tokens frees them at once", async () => {
  const store = new MemoryLimiterStore();
  expect((await store.charge([gcra("t", 1000, 900)], 0)).refused).toBeNull();
  expect((await store.charge([gcra("t", 1000, 200)], 0)).refused).toBe(0);
  await store.adjust([{ meter: gcra("t", 1000, 900), delta: -880 }], 0);
  expect((await store.charge([gcra("t", 1000, 200)], 0)).refused).toBeNull();
});
