// `agent-attr audit verify` and `audit pubkey`, on both drivers: exit 0 and a summary when intact,
// exit 1 naming the first bad seq and the reason when not; JSON for machines; checkpoints against a
// pinned key or a checkpoint file; `audit delete` then verify.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateKeyPairSync } from "node:crypto";
import type { VerifyReport } from "../../src/trail/verify.ts";
import { cliOn, postgresDriver, sqliteDriver, trailOn, type TestDriver } from "../helpers/drivers.ts";
import { pgSchema, type PgSchema } from "../helpers/postgres.ts";
import { tempDir } from "../helpers/proxy.ts";

let pg: PgSchema;
beforeAll(async () => {
  pg = await pgSchema("cli_verify");
});
afterAll(async () => {
  await pg.drop();
});

/** One checkpoint only, the one closing the store signs. */
const atClose = { checkpoint: { everyRecords: 1000, everySeconds: 3600 } };

describe.each([sqliteDriver, postgresDriver(() => pg)])("audit verify on $name", (driver: TestDriver) => {
  test("an intact trail: exit 0 and a one-line summary", async () => {
    const trail = await trailOn(driver, "intact", 6, atClose);
    const { exitCode, stdout } = await cliOn(trail, "audit", "verify");
    expect(exitCode).toBe(0);
    expect(stdout).toContain("Audit trail intact: 6 records (0 redacted), 0 events, 1 signed checkpoints checked; last seq 6");
    // How far the signatures vouch, and that stored checkpoints alone can be deleted with the chain rewritten.
    expect(stdout).toContain("Signed through seq 6, by checkpoints stored in the database only");
  });

  test("a rewritten chain whose stored checkpoints were deleted verifies, but the report says nothing signs it", async () => {
    const trail = await trailOn(driver, "unsigned", 6, atClose);
    await trail.tamper("DELETE FROM audit_checkpoints");
    const text = await cliOn(trail, "audit", "verify");
    expect(text.exitCode).toBe(0);
    expect(text.stdout).toContain("WARNING: no signed checkpoint covers this chain");
    const json = await cliOn(trail, "audit", "verify", "--format", "json");
    // The first verification is seq 7 now, and its closing checkpoint signs it: 7 signed, 8 is the second verification's.
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, checkpoints: 1, signed_through: 7, external_checkpoints: 0, last_seq: 7 });
  });

  test("a tampered trail: exit 1, the first bad seq and the reason; --format json for machines", async () => {
    const trail = await trailOn(driver, "tampered", 6);
    await trail.tamper("DELETE FROM audit_records WHERE seq = 2");
    const text = await cliOn(trail, "audit", "verify");
    expect(text.exitCode).toBe(1);
    expect(text.stdout).toContain("TAMPERED at seq 2 (missing)");
    const json = await cliOn(trail, "audit", "verify", "--format", "json");
    expect(json.exitCode).toBe(1);
    const report = JSON.parse(json.stdout) as VerifyReport;
    expect(report).toMatchObject({ ok: false, failure: { seq: 2, reason: "missing" } });
  });

  test("a failed verification is recorded, but no checkpoint is signed over the chain it found tampered", async () => {
    const trail = await trailOn(driver, "unsealed", 6, atClose);
    await trail.tamper("UPDATE audit_records SET cost_nano_usd = 1 WHERE seq = 3");
    const count = async () => Number((await trail.query<{ n: number }>("SELECT count(*) AS n FROM audit_checkpoints"))[0]!.n);
    const before = await count();
    expect((await cliOn(trail, "audit", "verify")).exitCode).toBe(1);
    expect(await count()).toBe(before);
    const events = await trail.query<{ kind: string; details: string }>("SELECT kind, details FROM audit_events ORDER BY seq");
    expect(events.map((e) => e.kind)).toEqual(["verify"]);
    expect(JSON.parse(events[0]!.details)).toMatchObject({ ok: false, bad_seq: 3, reason: "edited" });
  });

  test("each verification is itself a chain event, and the next verification covers it", async () => {
    const trail = await trailOn(driver, "event", 2);
    await cliOn(trail, "audit", "verify");
    const { stdout } = await cliOn(trail, "audit", "verify", "--format", "json");
    expect(JSON.parse(stdout)).toMatchObject({ ok: true, records: 2, events: 1, last_seq: 3 });
  });

  test("audit pubkey prints the checkpoint key; --public-key pins it, and another key fails the checkpoints", async () => {
    const trail = await trailOn(driver, "pubkey", 3);
    const pub = await cliOn(trail, "audit", "pubkey");
    expect(pub.exitCode).toBe(0);
    expect(pub.stdout).toStartWith("-----BEGIN PUBLIC KEY-----");
    const dir = tempDir();
    writeFileSync(join(dir, "right.pem"), pub.stdout);
    expect((await cliOn(trail, "audit", "verify", "--public-key", join(dir, "right.pem"))).exitCode).toBe(0);
    const other = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString();
    writeFileSync(join(dir, "other.pem"), other);
    const wrong = await cliOn(trail, "audit", "verify", "--public-key", join(dir, "other.pem"));
    expect(wrong.exitCode).toBe(1);
    expect(wrong.stdout).toContain("(checkpoint_invalid)");
  });

  test("audit delete --user: the same answer for a known and an unknown user; verify then passes with the redactions", async () => {
    const trail = await trailOn(driver, "delete", 6);
    const known = await cliOn(trail, "audit", "delete", "--user", "user-1");
    const unknown = await cliOn(trail, "audit", "delete", "--user", "nobody");
    expect([known.exitCode, unknown.exitCode]).toEqual([0, 0]);
    expect(known.stdout).toBe(unknown.stdout);
    const query = await cliOn(trail, "audit", "query", "--user", "user-1", "--format", "json");
    expect(JSON.parse(query.stdout)).toMatchObject({ records: [] });
    const { exitCode, stdout } = await cliOn(trail, "audit", "verify");
    expect(exitCode).toBe(0);
    expect(stdout).toContain("6 records (2 redacted)");
  });

  test("a checkpoint file that mirrors the stored checkpoints counts as kept outside the database", async () => {
    const file = join(tempDir(), "checkpoints.ndjson");
    const trail = await trailOn(driver, "mirrored", 8, { checkpoint: { everyRecords: 1000, everySeconds: 60, file } });
    const { exitCode, stdout } = await cliOn(trail, "audit", "verify", "--checkpoints", file);
    expect(exitCode).toBe(0);
    expect(stdout).toContain("Signed through seq 8; 1 checkpoints kept outside the database checked.");
  });

  test("--checkpoints FILE: checkpoints kept outside the database still catch a truncated tail when the stored ones are deleted", async () => {
    const file = join(tempDir(), "checkpoints.ndjson");
    const trail = await trailOn(driver, "file", 8, { checkpoint: { everyRecords: 1000, everySeconds: 60, file } });
    // A thorough attacker also moves the rollup cursor (and SQLite's key index cursor) back, so nothing inside the database contradicts.
    await trail.tamper("DELETE FROM audit_records WHERE seq > 5");
    await trail.tamper("DELETE FROM audit_checkpoints");
    await trail.tamper(`UPDATE usage_rollup_state SET seq = ${driver.name === "sqlite" ? "min" : "least"}(seq, 5)`);
    if (driver.name === "sqlite") await trail.tamper("UPDATE audit_key_index_state SET seq = min(seq, 5)");
    const inside = await cliOn(trail, "audit", "verify");
    expect(inside.exitCode).toBe(0); // nothing left inside to contradict…
    expect(inside.stdout).toContain("WARNING: no signed checkpoint covers this chain"); // …but nothing signs it either
    const { exitCode, stdout } = await cliOn(trail, "audit", "verify", "--checkpoints", file);
    expect(exitCode).toBe(1);
    // Seq 6 is now the first verification's own event; the checkpoint file still covers seq 8.
    expect(stdout).toContain("TAMPERED at seq 7 (truncated)");
    const kept = await cliOn(trail, "audit", "verify", "--checkpoints", file, "--format", "json");
    expect(JSON.parse(kept.stdout)).toMatchObject({ ok: false, external_checkpoints: 1 });
    writeFileSync(file, "not json\n");
    const bad = await cliOn(trail, "audit", "verify", "--checkpoints", file);
    expect(bad.exitCode).toBe(4); // an unreadable checkpoint file is not a tampered trail
    expect(bad.stderr).toContain("--checkpoints");
  });

  test("a dropped chain table is tampering (exit 1, naming the table), not an unreadable database (exit 4)", async () => {
    const trail = await trailOn(driver, "dropped", 4, atClose);
    await trail.tamper("DROP TABLE audit_events");
    const { exitCode, stderr } = await cliOn(trail, "audit", "verify");
    expect(stderr).toContain("has no table audit_events, which its migrations created");
    expect(exitCode).toBe(1);
  });

  if (driver.name === "sqlite") {
    test("a dropped column is tampering too (SQLite compares every column its migrations made)", async () => {
      const trail = await trailOn(driver, "dropped-column", 4, atClose);
      await trail.tamper("ALTER TABLE audit_records DROP COLUMN purpose");
      const { exitCode, stderr } = await cliOn(trail, "audit", "verify");
      expect(stderr).toContain("has no column audit_records.purpose");
      expect(exitCode).toBe(1);
    });
  }
});

test("audit verify on sqlite: a key table edited by hand (an agent's entry removed, hiding its record from lookups by agent) exits 1 naming the table and seq", async () => {
  const trail = await trailOn(sqliteDriver, "key-index", 12, atClose);
  expect((await cliOn(trail, "audit", "verify")).exitCode).toBe(0);
  await trail.tamper("DELETE FROM audit_agent_index WHERE seq = 4");
  const { exitCode, stdout } = await cliOn(trail, "audit", "verify");
  expect(exitCode).toBe(1);
  expect(stdout).toContain("TAMPERED at seq 4 (index_mismatch)");
  expect(stdout).toContain("audit_agent_index has no entry for the record");
});
