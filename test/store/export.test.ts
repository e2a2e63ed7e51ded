// Exports as streams on both drivers: bounded chunks read as the consumer pulls, and an export
// whose reader goes away is still a chain event (cancelled, with the records produced). An export
// signs only records that match the chain: one edited in the database is refused, not signed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { eventFilterSchema } from "../../src/trail/events.ts";
import { exportFilterSchema } from "../../src/trail/export.ts";
import { ChainHasher, clearColumns } from "../../src/trail/chain.ts";
import { postgresDriver, sqliteDriver, trailOn, type OpenedTrail, type TestDriver } from "../helpers/drivers.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";

let pg: PgSchema;
beforeAll(async () => {
  pg = await pgSchema("export");
});
afterAll(async () => {
  await pg.drop();
});

describe.each([sqliteDriver, postgresDriver(() => pg)])("exports on $name", (driver: TestDriver) => {
  test("a cancelled export stops reading and is recorded as cancelled; a complete one with its manifest", async () => {
    const trail = await trailOn(driver, "cancel", 1200);
    const store = await trail.reopen();
    try {
      const cancelled = store.trail.export("ndjson", exportFilterSchema.parse({}), "api:auditor");
      const reader = cancelled.stream().getReader();
      const first = await reader.read();
      expect(first.value!.byteLength).toBeGreaterThan(0);
      await reader.cancel();
      expect(cancelled.exported).toBeLessThan(1200); // rows are read as the client pulls, not ahead
      const complete = store.trail.export("csv", exportFilterSchema.parse({}), "api:auditor");
      let chunks = 0;
      for await (const _ of complete.stream()) chunks++;
      expect(chunks).toBeGreaterThanOrEqual(3); // 512 rows per chunk
      const events = (await store.trail.events(eventFilterSchema.parse({ kind: "export" }))).events.reverse();
      expect(events.map((e) => e.actor)).toEqual(["api:auditor", "api:auditor"]);
      expect(events[0]!.details).toEqual({
        export_id: cancelled.id,
        format: "ndjson",
        cancelled: true,
        records_sent_at_most: cancelled.exported,
      });
      expect(events[1]!.details).toMatchObject({ manifest: { export_id: complete.id, record_count: 1200, first_seq: 1, last_seq: 1200 } });
      expect(await store.trail.manifest(complete.id)).toMatchObject({ record_count: 1200 });
      expect(await store.trail.manifest(cancelled.id)).toBeNull();
    } finally {
      await store.close();
    }
  });

  /**
   * Exports everything as NDJSON: the error it stopped with (null when it completed; SQLite's comes
   * from its reader thread as a message), why it was refused (from its chain event), and its manifest.
   */
  async function exportAll(trail: OpenedTrail, filter: Record<string, string> = {}) {
    const store = await trail.reopen();
    try {
      const run = store.trail.export("ndjson", exportFilterSchema.parse(filter), "api:auditor");
      let error: unknown = null;
      try {
        for await (const _ of run.stream());
      } catch (caught) {
        error = caught;
      }
      const [event] = (await store.trail.events(eventFilterSchema.parse({ kind: "export" }))).events;
      const refused = (event!.details as { refused?: { seq: number; reason: string } }).refused ?? null;
      return { error: error as Error | null, refused, event, manifest: await store.trail.manifest(run.id) };
    } finally {
      await store.close();
    }
  }

  /** Recomputes the hash of record `seq` from its (edited) fields and its stored prev_hash, as someone covering an edit would. */
  async function rehash(trail: OpenedTrail, seq: number, prevFrom: "stored" | string = "stored"): Promise<string> {
    const [row] = await trail.query<Record<string, string | number | null>>(`SELECT * FROM audit_records WHERE seq = ${seq}`);
    const clear = clearColumns.map((c) => (c === "cost_nano_usd" && row![c] !== null ? Number(row![c]) : row![c]!));
    const prev = prevFrom === "stored" ? (row!.prev_hash as string) : prevFrom;
    const hash = new ChainHasher().record(prev, clear, row!.commitment as string);
    await trail.tamper(`UPDATE audit_records SET prev_hash = '${prev}', hash = '${hash}' WHERE seq = ${seq}`);
    return hash;
  }

  test("an untouched trail exports with a manifest; records edited behind the store are refused at their seq, and no manifest is signed", async () => {
    const trail = await trailOn(driver, "tamper", 40, { checkpoint: { everyRecords: 1000, everySeconds: 3600 } });
    expect((await exportAll(trail)).manifest).toMatchObject({ record_count: 40 });

    // A clear field edited in place: its hash no longer matches.
    await trail.tamper("UPDATE audit_records SET cost_usd = 0 WHERE seq = 30");
    const edited = await exportAll(trail);
    expect(edited.error?.message).toContain("the export was refused at seq 30: seq 30: a field was edited");
    expect(edited.refused).toEqual({ seq: 30, reason: "edited" });
    expect(edited.manifest).toBeNull();
    expect(edited.event!.details).toMatchObject({ cancelled: true, refused: { seq: 30, reason: "edited" } });

    // ...and re-hashed: the record matches its own hash, but the entry after it no longer links to
    // it (verify's answer: the entry at 31 follows one that is no longer there).
    await rehash(trail, 30);
    const rehashed = await exportAll(trail);
    expect(rehashed.refused).toEqual({ seq: 31, reason: "missing" });
    expect(rehashed.manifest).toBeNull();
  });

  test("a filtered export checks the records it signs: an edited record before its first does not stop it, one inside does", async () => {
    const trail = await trailOn(driver, "filtered", 20, { checkpoint: { everyRecords: 1000, everySeconds: 3600 } });
    // A user whose first record is not the trail's first.
    const [{ user_id: user, first }] = (await trail.query<{ user_id: string; first: number | string }>(
      "SELECT user_id, min(seq) AS first FROM audit_records GROUP BY user_id HAVING min(seq) > 1 ORDER BY 2 LIMIT 1",
    )) as [{ user_id: string; first: number | string }];
    const [{ n }] = (await trail.query<{ n: number | string }>(`SELECT count(*) AS n FROM audit_records WHERE user_id = '${user}'`)) as [
      { n: number | string },
    ];
    await trail.tamper(`UPDATE audit_records SET model = 'm-edited' WHERE seq = 1`);
    const before = await exportAll(trail, { user });
    expect(before.error).toBeNull();
    expect(before.manifest).toMatchObject({ record_count: Number(n) });
    await trail.tamper(`UPDATE audit_records SET model = 'm-edited' WHERE seq = ${first}`);
    expect((await exportAll(trail, { user })).refused).toEqual({ seq: Number(first), reason: "edited" });
  });

  test("a record edited and re-hashed with only the next entry's link repointed is refused, filtered or not", async () => {
    const trail = await trailOn(driver, "relinked", 12, { checkpoint: { everyRecords: 1000, everySeconds: 3600 } });
    const [{ task_context: task }] = (await trail.query<{ task_context: string }>(
      "SELECT task_context FROM audit_records WHERE seq = 3",
    )) as [{ task_context: string }];
    await trail.tamper("UPDATE audit_records SET model = 'cheaper-model' WHERE seq = 3");
    const hash = await rehash(trail, 3);
    await trail.tamper(`UPDATE audit_records SET prev_hash = '${hash}' WHERE seq = 4`);
    // Seq 3 now matches its hash and seq 4 links to it; seq 4 no longer matches its own hash.
    for (const filter of [{}, { task }] as Record<string, string>[]) {
      const relinked = await exportAll(trail, filter);
      expect(relinked.refused).toEqual({ seq: 4, reason: "edited" });
      expect(relinked.manifest).toBeNull();
    }
  });

  test("a chain re-hashed from an edited record to its tail contradicts the signed checkpoint: refused", async () => {
    const trail = await trailOn(driver, "rechain", 10, { checkpoint: { everyRecords: 1000, everySeconds: 3600 } });
    await trail.tamper("UPDATE audit_records SET model = 'cheaper-model' WHERE seq = 3");
    let prev = await rehash(trail, 3);
    for (let seq = 4; seq <= 10; seq++) prev = await rehash(trail, seq, prev);
    const rechained = await exportAll(trail);
    expect(rechained.refused).toEqual({ seq: 10, reason: "checkpoint_mismatch" });
    expect(rechained.manifest).toBeNull();
  });

  test("a record erased by hand (no erasure event names it) is refused; a deleted successor is reported missing", async () => {
    const trail = await trailOn(driver, "redacted", 10, { checkpoint: { everyRecords: 1000, everySeconds: 3600 } });
    await trail.tamper(
      "UPDATE audit_records SET user_id = NULL, key_id = NULL, task_context = NULL, session_id = NULL, trace_id = NULL, prompt_hash = NULL, response_hash = NULL, delegation = NULL, personal_tags = NULL, salt = NULL WHERE seq = 4",
    );
    expect((await exportAll(trail)).refused).toEqual({ seq: 4, reason: "unauthorised_redaction" });

    const other = await trailOn(driver, "gap", 10, { checkpoint: { everyRecords: 1000, everySeconds: 3600 } });
    await other.tamper("DELETE FROM audit_records WHERE seq = 6");
    expect((await exportAll(other)).refused).toEqual({ seq: 6, reason: "missing" });
  });
});
