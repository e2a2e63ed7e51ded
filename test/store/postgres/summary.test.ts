// The usage rollup on PostgreSQL: verify checks it against the records wherever its cursor stands,
// and the triggers keep it right when rolled-up records change (erasure) or go (deletion).
// Summaries themselves, on both drivers: ../summary.test.ts.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { summaryFilterSchema } from "../../../src/store/filters.ts";
import { PgAuditStore } from "../../../src/store/postgres/store.ts";
import { advanceRollup, rollupCursor } from "../../../src/store/postgres/rollup.ts";
import type { AuditRecord } from "../../../src/trail/record.ts";
import { pgContext, pgSchema, type PgSchema } from "../../helpers/postgres.ts";
import { bruteForce, record } from "../../helpers/summary-trail.ts";

let pg: PgSchema;
let store: PgAuditStore;
const written: AuditRecord[] = [];

beforeAll(async () => {
  pg = await pgSchema("summary");
  // No heartbeat during the test: the test moves the rollup's cursor itself.
  store = await PgAuditStore.open(pgContext(pg.logDb), { heartbeatMs: 3_600_000 });
  for (let i = 1; i <= 220; i++) written.push(record(i));
  await Promise.all(written.map((r) => store.commit(r)));
  await store.flush();
});
afterAll(async () => {
  await store.close();
  await pg.drop();
});

/** Runs `body` with the cursor at 0, in the middle and at the end. */
async function atEveryCursor(body: () => Promise<void>): Promise<void> {
  await pg.sql`DELETE FROM usage_rollup`;
  await pg.sql`UPDATE usage_rollup_state SET seq = 0`;
  for (const upTo of [0, 110, 1000]) {
    const cursor = await rollupCursor(pg.sql);
    if (upTo > cursor) await advanceRollup(pg.sql, upTo - cursor);
    expect(await rollupCursor(pg.sql)).toBe(Math.min(upTo, 220));
    await body();
  }
}

test("verify checks the rollup against the records: an edited rollup row, or a cursor past the chain's end, is a rollup_mismatch", async () => {
  await pg.sql`DELETE FROM usage_rollup`;
  await pg.sql`UPDATE usage_rollup_state SET seq = 0`;
  await advanceRollup(pg.sql, 150);
  expect(await store.trail.verify("cli:test")).toMatchObject({ ok: true, failure: null });
  const [row] = (await pg.sql`SELECT dim, key, day FROM usage_rollup WHERE dim = 'agent' ORDER BY day, key LIMIT 1`) as {
    dim: string;
    key: string;
    day: string;
  }[];
  await pg.sql`UPDATE usage_rollup SET cost_nano_usd = cost_nano_usd + 1 WHERE dim = 'agent' AND key = ${row!.key} AND day = ${row!.day}`;
  const edited = await store.trail.verify("cli:test");
  expect(edited.failure).toMatchObject({ seq: 150, reason: "rollup_mismatch" });
  expect(edited.failure?.message).toContain(`dim agent, key '${row!.key}', day ${row!.day}: cost_nano_usd is`);
  await pg.sql`UPDATE usage_rollup SET cost_nano_usd = cost_nano_usd - 1 WHERE dim = 'agent' AND key = ${row!.key} AND day = ${row!.day}`;
  expect((await store.trail.verify("cli:test")).ok).toBe(true);
  await pg.sql`UPDATE usage_rollup_state SET seq = 100000`;
  expect((await store.trail.verify("cli:test")).failure).toMatchObject({ reason: "rollup_mismatch" });
  await pg.sql`UPDATE usage_rollup_state SET seq = 150`;
});

test("the rollup equals a fresh fold of the records after an erasure clears a user and records are deleted", async () => {
  await atEveryCursor(async () => undefined); // everything rolled up
  await pg.sql`UPDATE audit_records SET user_id = NULL WHERE user_id = 'user-2'`;
  await pg.sql`DELETE FROM audit_records WHERE seq IN (3, 4, 200)`;
  const kept = written.filter((_, i) => ![3, 4, 200].includes(i + 1)).map((r) => (r.user_id === "user-2" ? { ...r, user_id: null } : r));
  const summary = await store.reader.summary(summaryFilterSchema.parse({ by: "user" }));
  const expected = bruteForce(kept, "user");
  expect(summary.groups.map((g) => [g.key, g.calls])).toEqual(expect.arrayContaining([...expected].map(([key, g]) => [key, g.calls])));
  expect(summary.groups.length).toBe(expected.size);
  const triggered = await pg.sql`SELECT dim, key, provider, day, calls, cost_nano_usd FROM usage_rollup ORDER BY 1, 2, 3, 4`;
  await pg.sql`DELETE FROM usage_rollup`;
  await pg.sql`UPDATE usage_rollup_state SET seq = 0`;
  await advanceRollup(pg.sql);
  const folded = await pg.sql`SELECT dim, key, provider, day, calls, cost_nano_usd FROM usage_rollup ORDER BY 1, 2, 3, 4`;
  expect([...triggered]).toEqual([...folded]);
  expect([...triggered].some((r) => (r as { key: string }).key === "user-2")).toBe(false);
});
