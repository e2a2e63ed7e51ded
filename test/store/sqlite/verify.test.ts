// The hash chain and `verify`: an intact trail passes; each kind of tampering is reported at the
// right seq with the right reason.
import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { ChainHasher, clearColumns } from "../../../src/trail/chain.ts";
import { ChainWriter } from "../../../src/store/sqlite/chain-writer.ts";
import { openAuditLog } from "../../../src/store/sqlite/database.ts";
import { columns, toRow } from "../../../src/trail/row.ts";
import { loadSigningKey, signingKeyPath } from "../../../src/trail/signing.ts";
import { SqliteAuditStore } from "../../../src/store/sqlite/store.ts";
import { verifyChain } from "../../../src/store/sqlite/verify.ts";
import type { VerifyReport } from "../../../src/trail/verify.ts";
import { tempDir } from "../../helpers/proxy.ts";
import { sampleRecord, tamper, trailWith } from "../../helpers/records.ts";

function verify(logDb: string): VerifyReport {
  const log = openAuditLog(logDb);
  try {
    return verifyChain(log.db, loadSigningKey(signingKeyPath(logDb), { create: false }));
  } finally {
    log.close();
  }
}

test("an untouched trail verifies, with counts and the last seq", async () => {
  const logDb = await trailWith(10);
  const report = verify(logDb);
  expect(report.failure).toBeNull();
  expect(report).toMatchObject({ ok: true, records: 10, events: 0, redacted: 0, checkpoints: 1, last_seq: 10 });
  expect(report.chain_id).toMatch(/^[0-9a-f-]{36}$/);
  // The signing key beside the database is readable by its owner only.
  expect(statSync(signingKeyPath(logDb)).mode & 0o777).toBe(0o600);
});

test("records and events share one chain and one seq space", async () => {
  const logDb = await trailWith(3);
  const db = new Database(logDb);
  new ChainWriter(db).append([], [{ kind: "query", actor: "cli:test", details: { route: "x" } }]);
  db.close();
  expect(verify(logDb)).toMatchObject({ ok: true, records: 3, events: 1, last_seq: 4 });
});

test("a clear field edited with sqlite is reported at its seq as edited", async () => {
  const logDb = await trailWith(10);
  tamper(logDb, "UPDATE audit_records SET output_tokens = 6 WHERE seq = 3");
  expect(verify(logDb).failure).toMatchObject({ seq: 3, reason: "edited" });
});

test("a personal field edited on a non-erased record is detected through its commitment", async () => {
  const logDb = await trailWith(10);
  tamper(logDb, "UPDATE audit_records SET user_id = 'mallory' WHERE seq = 4");
  const failure = verify(logDb).failure;
  expect(failure).toMatchObject({ seq: 4, reason: "edited" });
  expect(failure?.message).toContain("personal field");
});

test("a redaction no erasure or retention event names (personal fields and salt set to NULL by hand) is reported", async () => {
  const logDb = await trailWith(10);
  const redact =
    "user_id = NULL, key_id = NULL, task_context = NULL, session_id = NULL, trace_id = NULL, prompt_hash = NULL, response_hash = NULL, delegation = NULL, salt = NULL";
  tamper(logDb, `UPDATE audit_records SET ${redact} WHERE seq = 6`);
  expect(verify(logDb).failure).toMatchObject({ seq: 6, reason: "unauthorised_redaction" });
});

test("a redacted record is accepted only within the seqs its erasure event names", async () => {
  const logDb = await trailWith(10);
  const store = new SqliteAuditStore(logDb);
  await store.trail.eraseUser("user-1", "cli:test"); // seqs 1, 4, 7, 10
  await store.close();
  expect(verify(logDb)).toMatchObject({ ok: true, redacted: 4 });
  const redact =
    "user_id = NULL, key_id = NULL, task_context = NULL, session_id = NULL, trace_id = NULL, prompt_hash = NULL, response_hash = NULL, delegation = NULL, salt = NULL";
  tamper(logDb, `UPDATE audit_records SET ${redact} WHERE seq = 5`);
  expect(verify(logDb).failure).toMatchObject({ seq: 5, reason: "unauthorised_redaction" });
});

test("the usage rollup is checked against the records: an edited or deleted rollup row is a rollup_mismatch naming dim, key and day", async () => {
  const logDb = await trailWith(9);
  const store = new SqliteAuditStore(logDb);
  await store.trail.eraseUser("user-1", "cli:test"); // the triggers move the user's usage to the '' key
  await store.close();
  const intact = verify(logDb);
  expect(intact).toMatchObject({ ok: true, records: 9 });
  const day = new Date().toISOString().slice(0, 10);
  tamper(logDb, "UPDATE usage_rollup SET output_tokens = output_tokens - 5 WHERE dim = 'user' AND key = 'user-2'");
  const edited = verify(logDb).failure;
  expect(edited).toMatchObject({ seq: 9, reason: "rollup_mismatch" });
  expect(edited?.message).toContain(`dim user, key 'user-2', day ${day}: output_tokens`);
  tamper(
    logDb,
    "UPDATE usage_rollup SET output_tokens = output_tokens + 5 WHERE dim = 'user' AND key = 'user-2'",
    "DELETE FROM usage_rollup WHERE dim = 'agent'",
  );
  expect(verify(logDb).failure?.message).toContain("dim agent, key 'reviewer'");
});

test("a rollup cursor moved past the chain's end (it would hide the next records from summaries) is a rollup_mismatch", async () => {
  const logDb = await trailWith(6);
  tamper(logDb, "UPDATE usage_rollup_state SET seq = 1000");
  expect(verify(logDb).failure).toMatchObject({ reason: "rollup_mismatch" });
  expect(verify(logDb).failure?.message).toContain("claims records up to seq 1000");
});

test("a deleted record is reported missing at its seq", async () => {
  const logDb = await trailWith(10);
  tamper(logDb, "DELETE FROM audit_records WHERE seq = 5");
  expect(verify(logDb).failure).toMatchObject({ seq: 5, reason: "missing" });
});

test("a deleted record with the later seqs renumbered is still reported missing", async () => {
  const logDb = await trailWith(10);
  tamper(logDb, "DELETE FROM audit_records WHERE seq = 5", "UPDATE audit_records SET seq = seq - 1 WHERE seq > 5");
  expect(verify(logDb).failure).toMatchObject({ seq: 5, reason: "missing" });
});

test("two swapped records are reported as reordered at the first of them", async () => {
  const logDb = await trailWith(10);
  tamper(
    logDb,
    "UPDATE audit_records SET seq = -1 WHERE seq = 6",
    "UPDATE audit_records SET seq = 6 WHERE seq = 7",
    "UPDATE audit_records SET seq = 7 WHERE seq = -1",
  );
  expect(verify(logDb).failure).toMatchObject({ seq: 6, reason: "reordered" });
});

test("the tail truncated after a signed checkpoint is reported as truncated", async () => {
  const logDb = await trailWith(10);
  tamper(logDb, "DELETE FROM audit_records WHERE seq > 7");
  const report = verify(logDb);
  expect(report.failure).toMatchObject({ seq: 8, reason: "truncated" });
  expect(report.failure?.message).toContain("seq 10");
});

test("a forged checkpoint (truncated tail, checkpoint moved to the new tail) has an invalid signature", async () => {
  const logDb = await trailWith(10);
  tamper(
    logDb,
    "DELETE FROM audit_records WHERE seq > 7",
    "UPDATE audit_checkpoints SET seq = 7, hash = (SELECT hash FROM audit_records WHERE seq = 7)",
  );
  expect(verify(logDb).failure).toMatchObject({ seq: 7, reason: "checkpoint_invalid" });
});

test("a chain rewritten from an edited record onwards (every hash recomputed) contradicts the checkpoint", async () => {
  const logDb = await trailWith(10);
  const db = new Database(logDb);
  db.run("UPDATE audit_records SET model = 'cheaper-model' WHERE seq = 3");
  const hasher = new ChainHasher();
  let prev = db.query<{ hash: string }, []>("SELECT hash FROM audit_records WHERE seq = 2").get()!.hash;
  for (const row of db.query<Record<string, string | number | null>, []>("SELECT * FROM audit_records WHERE seq >= 3 ORDER BY seq").all()) {
    const hash = hasher.record(
      prev,
      clearColumns.map((c) => row[c]!),
      row.commitment as string,
    );
    db.run("UPDATE audit_records SET prev_hash = ?, hash = ? WHERE seq = ?", [prev, hash, row.seq!]);
    prev = hash;
  }
  db.close();
  expect(verify(logDb).failure).toMatchObject({ seq: 10, reason: "checkpoint_mismatch" });
});

const checkpointsIn = (logDb: string) => {
  const db = new Database(logDb, { readonly: true });
  try {
    return db
      .query<{ seq: number }, []>("SELECT seq FROM audit_checkpoints ORDER BY seq")
      .all()
      .map((row) => row.seq);
  } finally {
    db.close();
  }
};

test("a running store signs a checkpoint every N records", async () => {
  const logDb = join(tempDir(), "audit.db");
  const store = new SqliteAuditStore(logDb, { checkpoint: { everyRecords: 5, everySeconds: 600 } });
  for (let round = 0; round < 3; round++) {
    for (let i = 1; i <= 5; i++) store.commit(sampleRecord(round * 5 + i));
    await store.flush();
    // The checkpoint follows the commit's answer (callers never wait for the signature).
    for (let waited = 0; checkpointsIn(logDb).length <= round && waited < 3000; waited += 10) await Bun.sleep(10);
  }
  expect(checkpointsIn(logDb)).toEqual([5, 10, 15]);
  await store.close();
  expect(verify(logDb)).toMatchObject({ ok: true, checkpoints: 3, last_seq: 15 });
});

test("an idle store signs a checkpoint after T seconds when anything is new, and none when nothing is", async () => {
  const logDb = join(tempDir(), "audit.db");
  const store = new SqliteAuditStore(logDb, { checkpoint: { everyRecords: 1000, everySeconds: 0.2 } });
  store.commit(sampleRecord(1));
  await store.flush();
  for (let waited = 0; checkpointsIn(logDb).length === 0 && waited < 3000; waited += 20) await Bun.sleep(20);
  expect(checkpointsIn(logDb)).toEqual([1]);
  await Bun.sleep(500);
  expect(checkpointsIn(logDb)).toEqual([1]);
  await store.close();
});

test("checkpoints can also go to a file outside the database", async () => {
  const file = join(tempDir(), "checkpoints.ndjson");
  const logDb = await trailWith(3, { checkpoint: { everyRecords: 1000, everySeconds: 60, file } });
  const lines = readFileSync(file, "utf8")
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line) as { seq: number; signature: string });
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatchObject({ seq: 3 });
  expect(lines[0]!.signature.length).toBeGreaterThan(40);
  expect(verify(logDb).ok).toBe(true);
});

test("a user id that is not well-formed UTF-16 is stored and hashed the same way", async () => {
  const logDb = await trailWith(2, { record: (i) => sampleRecord(i, { user_id: `bad\ud800${i}` }) });
  expect(verify(logDb).ok).toBe(true);
});

test("records of a database from before the chain are chained when the store opens; a hand-inserted one later is not", async () => {
  const logDb = join(tempDir(), "legacy.db");
  const legacy = openAuditLog(logDb);
  for (let i = 1; i <= 3; i++) {
    legacy.db.run(
      `INSERT INTO audit_records (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`,
      toRow(sampleRecord(i)),
    );
  }
  legacy.close();
  const warnings: string[] = [];
  const store = new SqliteAuditStore(logDb, { onWarning: (m) => warnings.push(m) });
  store.commit(sampleRecord(4));
  await store.close();
  expect(warnings.join()).toContain("3 record(s)");
  expect(verify(logDb)).toMatchObject({ ok: true, records: 4, last_seq: 4 });
  tamper(
    logDb,
    `INSERT INTO audit_records (${columns.join(", ")}) VALUES (${columns.map((c) => (c === "id" ? "'forged'" : c === "stream" ? "0" : c === "attribution" ? "'default'" : c === "endpoint" || c === "usage_source" || c === "timestamp" ? "'x'" : "NULL")).join(", ")})`,
  );
  const reopened = new SqliteAuditStore(logDb);
  await reopened.close();
  expect(verify(logDb).failure).toMatchObject({ seq: 5, reason: "edited" });
});
