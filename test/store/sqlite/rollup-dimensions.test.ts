// The rollup's key, hour and status dimensions: a trail rolled up by an earlier version (agent,
// user and model only) gets them at its first start, equal to folding its records afresh.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { ChainWriter } from "../../../src/store/sqlite/chain-writer.ts";
import { openAuditLog } from "../../../src/store/sqlite/database.ts";
import { toRow } from "../../../src/trail/row.ts";
import { migrate } from "../../../src/store/sqlite/migrate.ts";
import { advanceRollup } from "../../../src/store/sqlite/rollup.ts";
import { verifyChain } from "../../../src/store/sqlite/verify.ts";
import { sampleRecord } from "../../helpers/records.ts";
import { tempDir } from "../../helpers/proxy.ts";

const rows = Array.from({ length: 120 }, (_, i) =>
  toRow(
    sampleRecord(i + 1, {
      id: `r-${i}`,
      timestamp: new Date(Date.UTC(2026, 10, 20, i % 24, i % 60)).toISOString(),
      key_id: i % 3 === 0 ? null : `key_${i % 2}`,
      outcome: i % 5 === 0 ? "rejected" : "completed",
      status: i % 5 === 0 ? 429 : 200,
    }),
  ),
);

test("an older rollup is backfilled with the new dimensions, and verify agrees with it", () => {
  const log = openAuditLog(join(tempDir(), "audit.db"));
  const chain = new ChainWriter(log.db);
  chain.append(rows.slice(0, 80));
  advanceRollup(log.db);
  const fresh = log.db.query("SELECT * FROM usage_rollup ORDER BY dim, key, provider, day").all();
  // As an earlier version left it: no rows of the new dimensions, the migration not applied.
  log.db.run("DELETE FROM usage_rollup WHERE dim IN ('key', 'hour', 'status')");
  log.db.run("DELETE FROM __agent_attr_migrations WHERE tag = 'usage_rollup_dimensions'");
  migrate(log.db);
  expect(log.db.query("SELECT * FROM usage_rollup ORDER BY dim, key, provider, day").all()).toEqual(fresh);
  expect(log.db.query("SELECT count(*) AS n FROM usage_rollup WHERE dim = 'hour'").get()).toEqual({ n: 24 });
  // The recreated triggers follow changes of rolled-up records in every dimension.
  chain.append(rows.slice(80));
  advanceRollup(log.db);
  log.db.run("DELETE FROM audit_records WHERE seq = 3");
  const after = log.db.query<{ calls: number }, []>("SELECT sum(calls) AS calls FROM usage_rollup WHERE dim = 'status'").get()!;
  expect(after.calls).toBe(119);
  expect(verifyChain(log.db, null).failure?.reason).toBe("missing");
  chain.finalize();
  log.close();
});
