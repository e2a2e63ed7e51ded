// The hash chain and `verify` on both drivers: an intact trail passes; each kind of tampering — done
// with SQL on the database, as someone with access to it would — is reported at the right seq with
// the right reason; checkpoints are signed every N records or T seconds, also to a file.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { ChainHasher, clearColumns } from "../../src/trail/chain.ts";
import { postgresDriver, sqliteDriver, trailOn, type OpenedTrail, type TestDriver, verifyTrail as verify } from "../helpers/drivers.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { tempDir } from "../helpers/proxy.ts";
import { sampleRecord } from "../helpers/records.ts";

let pg: PgSchema;
beforeAll(async () => {
  pg = await pgSchema("verify");
});
afterAll(async () => {
  await pg.drop();
});

const redact =
  "user_id = NULL, key_id = NULL, task_context = NULL, session_id = NULL, trace_id = NULL, prompt_hash = NULL, response_hash = NULL, delegation = NULL, salt = NULL";
/** One checkpoint only, the one closing the store signs. */
const atClose = { checkpoint: { everyRecords: 1000, everySeconds: 3600 } };
const checkpointsIn = async (trail: OpenedTrail) =>
  (await trail.query<{ seq: number | string }>("SELECT seq FROM audit_checkpoints ORDER BY seq")).map((row) => Number(row.seq));

describe.each([sqliteDriver, postgresDriver(() => pg)])("verify on $name", (driver: TestDriver) => {
  test("an untouched trail verifies, with counts and the last seq", async () => {
    const trail = await trailOn(driver, "intact", 10, atClose);
    const report = await verify(trail);
    expect(report.failure).toBeNull();
    expect(report).toMatchObject({ ok: true, records: 10, events: 0, redacted: 0, checkpoints: 1, last_seq: 10 });
    expect(report.chain_id).toMatch(/^[0-9a-f-]{36}$/);
    // The signing key is readable by its owner only.
    expect(statSync(trail.signingKey).mode & 0o777).toBe(0o600);
  });

  test("records and events share one chain and one seq space", async () => {
    const trail = await trailOn(driver, "events", 3);
    const store = await trail.reopen();
    await store.trail.recordEvent({ kind: "query", actor: "cli:test", details: { route: "x" } });
    await store.close();
    expect(await verify(trail)).toMatchObject({ ok: true, records: 3, events: 1, last_seq: 4 });
  });

  test("a clear field edited in the database is reported at its seq as edited", async () => {
    const trail = await trailOn(driver, "clear", 10);
    await trail.tamper("UPDATE audit_records SET output_tokens = 6 WHERE seq = 3");
    expect((await verify(trail)).failure).toMatchObject({ seq: 3, reason: "edited" });
  });

  test("a personal field edited on a non-erased record is detected through its commitment", async () => {
    const trail = await trailOn(driver, "personal", 10);
    await trail.tamper("UPDATE audit_records SET user_id = 'mallory' WHERE seq = 4");
    const failure = (await verify(trail)).failure;
    expect(failure).toMatchObject({ seq: 4, reason: "edited" });
    expect(failure?.message).toContain("personal field");
  });

  test("a redaction no erasure or retention event names (personal fields and salt set to NULL by hand) is reported", async () => {
    const trail = await trailOn(driver, "redact", 10);
    await trail.tamper(`UPDATE audit_records SET ${redact} WHERE seq = 6`);
    expect((await verify(trail)).failure).toMatchObject({ seq: 6, reason: "unauthorised_redaction" });
  });

  test("a redacted record is accepted only within the seqs its erasure event names", async () => {
    const trail = await trailOn(driver, "erased", 10);
    const store = await trail.reopen();
    await store.trail.eraseUser("user-1", "cli:test"); // seqs 1, 4, 7, 10
    await store.close();
    expect(await verify(trail)).toMatchObject({ ok: true, redacted: 4 });
    await trail.tamper(`UPDATE audit_records SET ${redact} WHERE seq = 5`);
    expect((await verify(trail)).failure).toMatchObject({ seq: 5, reason: "unauthorised_redaction" });
  });

  test("the usage rollup is checked against the records: an edited or deleted rollup row is a rollup_mismatch naming dim, key and day", async () => {
    const trail = await trailOn(driver, "rollup", 9);
    const store = await trail.reopen();
    await store.trail.eraseUser("user-1", "cli:test"); // the rollup moves the user's usage to the '' key
    await store.close();
    await trail.rollUp();
    expect(await verify(trail)).toMatchObject({ ok: true, records: 9 });
    const day = new Date().toISOString().slice(0, 10);
    await trail.tamper("UPDATE usage_rollup SET output_tokens = output_tokens - 5 WHERE dim = 'user' AND key = 'user-2'");
    const edited = (await verify(trail)).failure;
    expect(edited).toMatchObject({ seq: 9, reason: "rollup_mismatch" });
    expect(edited?.message).toContain(`dim user, key 'user-2', day ${day}: output_tokens`);
    await trail.tamper("UPDATE usage_rollup SET output_tokens = output_tokens + 5 WHERE dim = 'user' AND key = 'user-2'");
    await trail.tamper("DELETE FROM usage_rollup WHERE dim = 'agent'");
    expect((await verify(trail)).failure?.message).toContain("dim agent, key 'reviewer'");
  });

  test("a rollup cursor moved past the chain's end (it would hide the next records from summaries) is a rollup_mismatch", async () => {
    const trail = await trailOn(driver, "cursor", 6);
    await trail.tamper("UPDATE usage_rollup_state SET seq = 1000");
    const failure = (await verify(trail)).failure;
    expect(failure).toMatchObject({ reason: "rollup_mismatch" });
    expect(failure?.message).toContain("claims records up to seq 1000");
  });

  test("a deleted record is reported missing at its seq", async () => {
    const trail = await trailOn(driver, "missing", 10);
    await trail.tamper("DELETE FROM audit_records WHERE seq = 5");
    expect((await verify(trail)).failure).toMatchObject({ seq: 5, reason: "missing" });
  });

  test("a deleted record with the later seqs renumbered is still reported missing", async () => {
    const trail = await trailOn(driver, "renumber", 10);
    await trail.tamper("DELETE FROM audit_records WHERE seq = 5");
    // Through negative seqs: seq is unique, and a one-step renumbering could collide midway.
    await trail.tamper("UPDATE audit_records SET seq = 1 - seq WHERE seq > 5");
    await trail.tamper("UPDATE audit_records SET seq = -seq WHERE seq < 0");
    expect((await verify(trail)).failure).toMatchObject({ seq: 5, reason: "missing" });
  });

  test("two swapped records are reported as reordered at the first of them", async () => {
    const trail = await trailOn(driver, "swap", 10);
    await trail.tamper("UPDATE audit_records SET seq = -1 WHERE seq = 6");
    await trail.tamper("UPDATE audit_records SET seq = 6 WHERE seq = 7");
    await trail.tamper("UPDATE audit_records SET seq = 7 WHERE seq = -1");
    expect((await verify(trail)).failure).toMatchObject({ seq: 6, reason: "reordered" });
  });

  test("the tail truncated after a signed checkpoint is reported as truncated", async () => {
    const trail = await trailOn(driver, "truncate", 10, atClose);
    await trail.tamper("DELETE FROM audit_records WHERE seq > 7");
    const report = await verify(trail);
    expect(report.failure).toMatchObject({ seq: 8, reason: "truncated" });
    expect(report.failure?.message).toContain("seq 10");
  });

  test("a forged checkpoint (truncated tail, checkpoint moved to the new tail) has an invalid signature", async () => {
    const trail = await trailOn(driver, "forged", 10, atClose);
    await trail.tamper("DELETE FROM audit_records WHERE seq > 7");
    await trail.tamper("UPDATE audit_checkpoints SET seq = 7, hash = (SELECT hash FROM audit_records WHERE seq = 7)");
    expect((await verify(trail)).failure).toMatchObject({ seq: 7, reason: "checkpoint_invalid" });
  });

  test("a chain rewritten from an edited record onwards (every hash recomputed) contradicts the checkpoint", async () => {
    const trail = await trailOn(driver, "rewrite", 10, atClose);
    await trail.tamper("UPDATE audit_records SET model = 'cheaper-model' WHERE seq = 3");
    const hasher = new ChainHasher();
    let [{ hash: prev }] = (await trail.query<{ hash: string }>("SELECT hash FROM audit_records WHERE seq = 2")) as [{ hash: string }];
    for (const row of await trail.query<Record<string, string | number | null>>(
      "SELECT * FROM audit_records WHERE seq >= 3 ORDER BY seq",
    )) {
      // As the store hashes them: numbers as numbers (PostgreSQL hands bigint columns over as text).
      const clear = clearColumns.map((c) => (c === "cost_nano_usd" && row[c] !== null ? Number(row[c]) : row[c]!));
      const hash = hasher.record(prev, clear, row.commitment as string);
      await trail.tamper(`UPDATE audit_records SET prev_hash = '${prev}', hash = '${hash}' WHERE seq = ${Number(row.seq)}`);
      prev = hash;
    }
    expect((await verify(trail)).failure).toMatchObject({ seq: 10, reason: "checkpoint_mismatch" });
  });

  test("a running store signs a checkpoint every N records", async () => {
    const trail = await driver.open("every_n", { checkpoint: { everyRecords: 5, everySeconds: 600 } });
    for (let round = 0; round < 3; round++) {
      await Promise.all(Array.from({ length: 5 }, (_, i) => trail.store.commit(sampleRecord(round * 5 + i + 1))));
      await trail.store.flush();
      // The checkpoint may follow the commit's answer (callers never wait for the signature).
      for (let waited = 0; (await checkpointsIn(trail)).length <= round && waited < 3000; waited += 10) await Bun.sleep(10);
    }
    expect(await checkpointsIn(trail)).toEqual([5, 10, 15]);
    await trail.store.close();
    expect(await verify(trail)).toMatchObject({ ok: true, checkpoints: 3, last_seq: 15 });
  });

  test("an idle store signs a checkpoint after T seconds when anything is new, and none when nothing is", async () => {
    const trail = await driver.open("idle", { checkpoint: { everyRecords: 1000, everySeconds: 0.2 } });
    try {
      await trail.store.commit(sampleRecord(1));
      await trail.store.flush();
      for (let waited = 0; (await checkpointsIn(trail)).length === 0 && waited < 3000; waited += 20) await Bun.sleep(20);
      expect(await checkpointsIn(trail)).toEqual([1]);
      await Bun.sleep(500);
      expect(await checkpointsIn(trail)).toEqual([1]);
    } finally {
      await trail.store.close();
    }
  });

  test("checkpoints can also go to a file outside the database", async () => {
    const file = join(tempDir(), "checkpoints.ndjson");
    const trail = await trailOn(driver, "file", 3, { checkpoint: { everyRecords: 1000, everySeconds: 60, file } });
    const lines = readFileSync(file, "utf8")
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { seq: number; signature: string });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ seq: 3 });
    expect(lines[0]!.signature.length).toBeGreaterThan(40);
    expect((await verify(trail)).ok).toBe(true);
  });

  test("a user id that is not well-formed UTF-16 is stored and hashed the same way", async () => {
    const trail = await trailOn(driver, "utf16", 2, { record: (i) => sampleRecord(i, { user_id: `bad\ud800${i}` }) });
    expect((await verify(trail)).ok).toBe(true);
  });
});
