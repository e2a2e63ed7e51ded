// What verify means only for SQLite: a database from before the hash chain (agent-attr 0.1 wrote
// records without it) is chained when the store opens. Tampering and checkpoints on both drivers:
// ../verify.test.ts.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { openAuditLog } from "../../../src/store/sqlite/database.ts";
import { columns, toRow } from "../../../src/trail/row.ts";
import { loadSigningKey, signingKeyPath } from "../../../src/trail/signing.ts";
import { SqliteAuditStore } from "../../../src/store/sqlite/store.ts";
import { verifyChain } from "../../../src/store/sqlite/verify.ts";
import type { VerifyReport } from "../../../src/trail/verify.ts";
import { tempDir } from "../../helpers/proxy.ts";
import { sampleRecord, tamper } from "../../helpers/records.ts";

function verify(logDb: string): VerifyReport {
  const log = openAuditLog(logDb);
  try {
    return verifyChain(log.db, loadSigningKey(signingKeyPath(logDb), { create: false }));
  } finally {
    log.close();
  }
}

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
