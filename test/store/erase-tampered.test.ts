// Erasure and retention refuse to redact a record edited in the database. Redacting it would
// launder the edit: verify does not check the commitment of a redacted record, so a row whose
// user_id was set to the user being erased (its real user, key and task then gone) would verify
// intact under a legitimately signed erasure event. The store, the CLI (exit 1) and the audit API
// (409 erasure_refused) refuse it; nothing is erased, and verify still reports the edit.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { VerifyReport } from "../../src/trail/verify.ts";
import { eventFilterSchema } from "../../src/trail/events.ts";
import { cliOn, postgresDriver, proxyOn, sqliteDriver, trailOn, type OpenedTrail, type TestDriver } from "../helpers/drivers.ts";
import { startFakeUpstream, type FakeUpstream } from "../helpers/fake-upstream.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { sampleRecord } from "../helpers/records.ts";

let pg: PgSchema;
let upstream: FakeUpstream;
beforeAll(async () => {
  pg = await pgSchema("erase_tampered");
  upstream = await startFakeUpstream();
});
afterAll(async () => {
  await upstream.stop();
  await pg.drop();
});

const redactions = eventFilterSchema.parse({ limit: 100 });

/** Seqs whose salt is gone (redacted), and the user of each seq, as the database holds them. */
async function rowsOf(trail: OpenedTrail) {
  const rows = await trail.query<{ seq: number | string; user_id: string | null; salt: string | null }>(
    "SELECT seq, user_id, salt FROM audit_records ORDER BY seq",
  );
  return rows.map((r) => ({ seq: Number(r.seq), user: r.user_id, redacted: r.salt === null }));
}

async function expectNothingErased(trail: OpenedTrail, before: Awaited<ReturnType<typeof rowsOf>>, editedSeq: number) {
  expect(await rowsOf(trail)).toEqual(before);
  const store = await trail.reopen();
  try {
    const events = (await store.trail.events(redactions)).events;
    expect(events.filter((e) => e.kind === "erasure" || e.kind === "retention")).toEqual([]);
    const report = await store.trail.verify("cli:test");
    expect(report).toMatchObject({ ok: false, failure: { seq: editedSeq, reason: "edited" } });
  } finally {
    await store.close();
  }
}

describe.each([sqliteDriver, postgresDriver(() => pg)])("a tampered record and erasure on $name", (driver: TestDriver) => {
  // Six records: user-1 at seqs 1 and 4, user-2 at 2 and 5, user-0 at 3 and 6.

  test("a record whose user_id was edited to the erased user is refused: nothing erased, the edit still shows", async () => {
    const trail = await trailOn(driver, "edited_user", 6);
    await trail.tamper("UPDATE audit_records SET user_id = 'mallory' WHERE seq = 2");
    const before = await rowsOf(trail);
    const store = await trail.reopen();
    try {
      const refused = await store.trail.eraseUser("mallory", "cli:test").then(
        () => null,
        (error: unknown) => error as Error,
      );
      expect(refused?.message).toMatch(/^the erasure was refused at seq 2: the trail was edited there/);
      expect(refused?.message).toContain("agent-attr audit verify");
      expect(refused?.message).toContain("backup");
      expect(refused?.message).not.toContain("mallory");
      expect(refused?.message).not.toContain("user-2");
    } finally {
      await store.close();
    }
    await expectNothingErased(trail, before, 2);
  });

  test("a record whose clear field (cost) was edited is refused too, and the user's honest records stay", async () => {
    const trail = await trailOn(driver, "edited_cost", 6);
    await trail.tamper("UPDATE audit_records SET cost_nano_usd = 999 WHERE seq = 4");
    const before = await rowsOf(trail);
    const store = await trail.reopen();
    try {
      await expect(store.trail.eraseUser("user-1", "cli:test")).rejects.toThrow(
        /^the erasure was refused at seq 4: the trail was edited there/,
      );
    } finally {
      await store.close();
    }
    await expectNothingErased(trail, before, 4);
  });

  test("the CLI's audit delete exits 1 (tampered), names the seq and not the user", async () => {
    const trail = await trailOn(driver, "edited_cli", 6);
    await trail.tamper("UPDATE audit_records SET user_id = 'mallory' WHERE seq = 2");
    const before = await rowsOf(trail);
    const run = await cliOn(trail, "audit", "delete", "--user", "mallory");
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain("refused at seq 2");
    expect(run.stderr).not.toContain("mallory");
    expect(run.stdout).not.toContain("Erased");
    await expectNothingErased(trail, before, 2);
  });

  test("DELETE /audit/user/:id answers 409 erasure_refused; nothing is erased", async () => {
    const trail = await trailOn(driver, "edited_api", 6);
    await trail.tamper("UPDATE audit_records SET user_id = 'mallory' WHERE seq = 2");
    const before = await rowsOf(trail);
    const proxy = await proxyOn(trail, upstream.url);
    try {
      const answer = await fetch(`${proxy.url}/audit/user/mallory`, { method: "DELETE" });
      expect(answer.status).toBe(409);
      const body = (await answer.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("erasure_refused");
      expect(body.error.message).toMatch(/refused at seq 2/);
      expect(body.error.message).not.toContain("mallory");
      const report = (await (await fetch(`${proxy.url}/audit/verify`)).json()) as VerifyReport;
      expect(report).toMatchObject({ ok: false, failure: { seq: 2, reason: "edited" } });
    } finally {
      await proxy.stop();
    }
    expect((await rowsOf(trail)).slice(0, before.length)).toEqual(before);
  });

  test("retention with a tampered record in its range redacts nothing, and the store keeps running", async () => {
    const day = 86_400_000;
    const trail = await trailOn(driver, "edited_retention", 6, {
      record: (i) => sampleRecord(i, { timestamp: new Date(Date.now() - (i <= 3 ? 40 : 1) * day).toISOString() }),
    });
    await trail.tamper("UPDATE audit_records SET task_context = 'laundered' WHERE seq = 3");
    const before = await rowsOf(trail);
    const store = await trail.reopen({ retentionDays: 30 });
    try {
      // Retention ran at open (refused); the store still records calls.
      await store.commit(sampleRecord(7));
    } finally {
      await store.close();
    }
    expect((await rowsOf(trail)).slice(0, 6)).toEqual(before);
    expect((await rowsOf(trail)).length).toBe(7);
    const again = await trail.reopen();
    try {
      expect((await again.trail.events(redactions)).events.filter((e) => e.kind === "retention")).toEqual([]);
      expect(await again.trail.verify("cli:test")).toMatchObject({ ok: false, failure: { seq: 3, reason: "edited" } });
    } finally {
      await again.close();
    }
  });
});
