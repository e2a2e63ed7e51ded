// `agent-attr audit verify` and `audit pubkey`: exit 0 and a summary when intact, exit 1 naming the
// first bad seq and the reason when not; JSON for machines; checkpoints against a pinned key.
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateKeyPairSync } from "node:crypto";
import type { VerifyReport } from "../../src/trail/verify.ts";
import { runCli } from "../helpers/process.ts";
import { tempDir } from "../helpers/proxy.ts";
import { tamper, trailWith } from "../helpers/records.ts";

test("an intact trail: exit 0 and a one-line summary", async () => {
  const logDb = await trailWith(6);
  const { exitCode, stdout } = await runCli(["audit", "verify", "--log-db", logDb]);
  expect(exitCode).toBe(0);
  expect(stdout).toContain("Audit trail intact: 6 records (0 redacted), 0 events, 1 signed checkpoints checked; last seq 6");
});

test("a tampered trail: exit 1, the first bad seq and the reason; --format json for machines", async () => {
  const logDb = await trailWith(6);
  tamper(logDb, "DELETE FROM audit_records WHERE seq = 2");
  const text = await runCli(["audit", "verify", "--log-db", logDb]);
  expect(text.exitCode).toBe(1);
  expect(text.stdout).toContain("TAMPERED at seq 2 (missing)");
  const json = await runCli(["audit", "verify", "--format", "json", "--log-db", logDb]);
  expect(json.exitCode).toBe(1);
  const report = JSON.parse(json.stdout) as VerifyReport;
  expect(report).toMatchObject({ ok: false, failure: { seq: 2, reason: "missing" } });
});

test("each verification is itself a chain event, and the next verification covers it", async () => {
  const logDb = await trailWith(2);
  await runCli(["audit", "verify", "--log-db", logDb]);
  const { stdout } = await runCli(["audit", "verify", "--format", "json", "--log-db", logDb]);
  expect(JSON.parse(stdout)).toMatchObject({ ok: true, records: 2, events: 1, last_seq: 3 });
});

test("audit pubkey prints the checkpoint key; --public-key pins it, and another key fails the checkpoints", async () => {
  const logDb = await trailWith(3);
  const pub = await runCli(["audit", "pubkey", "--log-db", logDb]);
  expect(pub.exitCode).toBe(0);
  expect(pub.stdout).toStartWith("-----BEGIN PUBLIC KEY-----");
  const dir = tempDir();
  writeFileSync(join(dir, "right.pem"), pub.stdout);
  expect((await runCli(["audit", "verify", "--public-key", join(dir, "right.pem"), "--log-db", logDb])).exitCode).toBe(0);
  const other = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "pem" }).toString();
  writeFileSync(join(dir, "other.pem"), other);
  const wrong = await runCli(["audit", "verify", "--public-key", join(dir, "other.pem"), "--log-db", logDb]);
  expect(wrong.exitCode).toBe(1);
  expect(wrong.stdout).toContain("(checkpoint_invalid)");
});

test("audit delete --user: the same answer for a known and an unknown user; verify then passes with the redactions", async () => {
  const logDb = await trailWith(6);
  const known = await runCli(["audit", "delete", "--user", "user-1", "--log-db", logDb]);
  const unknown = await runCli(["audit", "delete", "--user", "nobody", "--log-db", logDb]);
  expect([known.exitCode, unknown.exitCode]).toEqual([0, 0]);
  expect(known.stdout).toBe(unknown.stdout);
  const query = await runCli(["audit", "query", "--user", "user-1", "--format", "json", "--log-db", logDb]);
  expect(JSON.parse(query.stdout)).toMatchObject({ records: [] });
  const { exitCode, stdout } = await runCli(["audit", "verify", "--log-db", logDb]);
  expect(exitCode).toBe(0);
  expect(stdout).toContain("6 records (2 redacted)");
});

test("--checkpoints FILE: checkpoints kept outside the database still catch a truncated tail when the stored ones are deleted", async () => {
  const file = join(tempDir(), "checkpoints.ndjson");
  const logDb = await trailWith(8, { checkpoint: { everyRecords: 1000, everySeconds: 60, file } });
  // A thorough attacker also moves the rollup cursor back, so nothing inside the database contradicts.
  tamper(
    logDb,
    "DELETE FROM audit_records WHERE seq > 5",
    "DELETE FROM audit_checkpoints",
    "UPDATE usage_rollup_state SET seq = min(seq, 5)",
  );
  expect((await runCli(["audit", "verify", "--log-db", logDb])).exitCode).toBe(0); // nothing left inside to contradict
  const { exitCode, stdout } = await runCli(["audit", "verify", "--checkpoints", file, "--log-db", logDb]);
  expect(exitCode).toBe(1);
  // Seq 6 is now the first verification's own event; the checkpoint file still covers seq 8.
  expect(stdout).toContain("TAMPERED at seq 7 (truncated)");
  writeFileSync(file, "not json\n");
  const bad = await runCli(["audit", "verify", "--checkpoints", file, "--log-db", logDb]);
  expect(bad.exitCode).toBe(4); // an unreadable checkpoint file is not a tampered trail
  expect(bad.stderr).toContain("--checkpoints");
});
