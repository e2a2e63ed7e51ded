// The writer's in-memory rollup sums: written only when they are exactly the records past the
// cursor, and then equal to what folding those records with SQL gives.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { ChainWriter } from "../../../src/store/sqlite/chain-writer.ts";
import { openAuditLog } from "../../../src/store/sqlite/database.ts";
import { toRow } from "../../../src/trail/row.ts";
import { advanceRollup, rollupCursor } from "../../../src/store/sqlite/rollup.ts";
import { RollupSums } from "../../../src/store/sqlite/rollup-memory.ts";
import { sampleRecord } from "../../helpers/records.ts";
import { tempDir } from "../../helpers/proxy.ts";

const varied = (i: number) =>
  toRow(
    sampleRecord(i, {
      id: `r-${i}-${Math.random()}`,
      timestamp: new Date(Date.UTC(2026, 10, 20 + (i % 3), 12)).toISOString(),
      agent_id: i % 5 === 0 ? null : `agent-${i % 4}`,
      user_id: i % 7 === 0 ? "lone \ud800 surrogate" : `user-${i % 3}`,
      model: i % 2 ? "gpt-4o" : "claude-x",
      provider: i % 2 ? "openai" : i % 6 === 0 ? null : "anthropic",
      cost_nano_usd: i % 4 === 0 ? null : 1_000 * i,
      usage_source: i % 8 === 0 ? "none" : i % 3 === 0 ? "estimated" : "provider",
      input_tokens: i % 9 === 0 ? null : 100 + i,
      cache_write_1h_tokens: i,
      // Tags: none, one, two; a personal one, and one whose key is also clear (counted once, as clear).
      // (Tag values never hold lone surrogates: the identifier policy refuses them.)
      tags: i % 3 === 0 ? null : JSON.stringify(i % 3 === 1 ? { team: `t${i % 4}` } : { project: "p é", team: `t${i % 2}` }),
      personal_tags: i % 5 === 1 ? JSON.stringify({ email: `u${i % 2}@x`, ...(i % 10 === 1 ? { team: "shadow" } : {}) }) : null,
    }),
  );

function open() {
  const log = openAuditLog(join(tempDir(), "audit.db"));
  return { log, chain: new ChainWriter(log.db) };
}

const rollupRows = (db: ReturnType<typeof open>["log"]["db"]) =>
  db.query("SELECT * FROM usage_rollup ORDER BY dim, key, provider, day").all();

test("sums of the records this writer appended equal the SQL fold of the same records", () => {
  const rows = Array.from({ length: 300 }, (_, i) => varied(i + 1));
  const bySql = open();
  const byMemory = open();
  const sums = new RollupSums();
  for (const { chain, log } of [bySql, byMemory]) {
    chain.append(rows.slice(0, 50));
    advanceRollup(log.db, undefined, chain === byMemory.chain ? sums : undefined); // both fold the first 50 by SQL
  }
  for (let at = 50; at < rows.length; at += 25) {
    const batch = rows.slice(at, at + 25);
    bySql.chain.append(batch);
    byMemory.chain.append(batch);
    sums.add(batch);
  }
  let used = false;
  const writeIfExact = sums.writeIfExact.bind(sums);
  sums.writeIfExact = (...args) => (used = writeIfExact(...args));
  advanceRollup(bySql.log.db);
  advanceRollup(byMemory.log.db, undefined, sums);
  expect(used).toBe(true);
  expect(rollupCursor(byMemory.log.db)).toBe(300);
  expect(rollupRows(byMemory.log.db)).toEqual(rollupRows(bySql.log.db));
  for (const { log, chain } of [bySql, byMemory]) {
    chain.finalize();
    log.close();
  }
});

test("the records are read instead when another writer appended one, or an erasure may have changed one", () => {
  for (const disturb of ["foreign record", "erasure event"] as const) {
    const { log, chain } = open();
    const sums = new RollupSums();
    chain.append([varied(1)]);
    advanceRollup(log.db, undefined, sums);
    const mine = [varied(2), varied(3)];
    chain.append(mine);
    sums.add(mine);
    if (disturb === "foreign record")
      chain.append([varied(4)]); // e.g. crash recovery, or the CLI
    else chain.append([], [{ kind: "erasure", actor: "test", details: { records: 0 } }]);
    let used = null as boolean | null;
    const writeIfExact = sums.writeIfExact.bind(sums);
    sums.writeIfExact = (...args) => (used = writeIfExact(...args));
    advanceRollup(log.db, undefined, sums);
    expect(used, disturb).toBe(false);
    const calls = log.db.query<{ n: number }, []>("SELECT sum(calls) AS n FROM usage_rollup WHERE dim = 'agent'").get()!.n;
    expect(calls, disturb).toBe(disturb === "foreign record" ? 4 : 3);
    chain.finalize();
    log.close();
  }
});
