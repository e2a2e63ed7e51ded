/**
 * Measures erasing one user with 5,000 records on a large trail (not part of `bun run bench`):
 *   bun bench/erase.ts [sqlite-records=1000000] [postgres-records=200000]
 * The erasure reads and checks the full rows it redacts (../src/trail/erase-check.ts); this reports
 * the wall time of `eraseUser` on SQLite and, with PostgreSQL at 127.0.0.1:5432 (db `test`), there.
 * To compare with a previous version, set AGENT_ATTR_ERASE_BEFORE=1 with its erase.ts copied to
 * src/store/sqlite/_before-erase.ts and its postgres/trail.ts to src/store/postgres/_before-trail.ts.
 */
import { SQL } from "bun";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChainWriter } from "../src/store/sqlite/chain-writer.ts";
import { openAuditLog } from "../src/store/sqlite/database.ts";
import { eraseUser } from "../src/store/sqlite/erase.ts";
import { append, lockChain } from "../src/store/postgres/chain.ts";
import type { PgAuditStore } from "../src/store/postgres/store.ts";
import { toRow, type SQLValue } from "../src/trail/row.ts";
import { loadHashKey } from "../src/trail/secret.ts";
import { loadSigningKey, signingKeyPath } from "../src/trail/signing.ts";
import { postgresDriver } from "../test/helpers/drivers.ts";
import { pgSchema } from "../test/helpers/postgres.ts";
import { sampleRecord } from "../test/helpers/records.ts";

const sqliteTotal = Number(process.argv[2] ?? 1_000_000);
const pgTotal = Number(process.argv[3] ?? 200_000);
const perUser = 5_000;
const before = process.env.AGENT_ATTR_ERASE_BEFORE;

const record = (i: number, users: number) =>
  toRow(sampleRecord(i, { id: `rec-${i}`, user_id: `user-${i % users}`, session_id: `session-${i % 20000}` }));

const time = async (fn: () => unknown) => {
  const started = performance.now();
  await fn();
  return `${(performance.now() - started).toFixed(0)} ms`;
};

// SQLite
{
  const dir = mkdtempSync(join(tmpdir(), "agent-attr-erase-bench-"));
  const logDb = join(dir, "audit.db");
  const log = openAuditLog(logDb);
  const key = loadSigningKey(signingKeyPath(logDb), { create: true })!;
  const hashKey = loadHashKey(logDb);
  const chain = new ChainWriter(log.db, hashKey, key);
  const users = sqliteTotal / perUser;
  for (let from = 0; from < sqliteTotal; from += 10_000) {
    const rows: SQLValue[][] = [];
    for (let i = from; i < Math.min(sqliteTotal, from + 10_000); i++) rows.push(record(i, users));
    chain.append(rows);
  }
  const now = (userId: string) => eraseUser(chain, hashKey, userId, "bench");
  const old = before ? ((await import("../src/store/sqlite/_before-erase.ts" as string)).eraseUser as typeof eraseUser) : null;
  for (let round = 1; round <= 3; round++) {
    const checked = await time(() => now(`user-${round}`));
    const previous = old ? await time(() => old(chain, hashKey, `user-${10 + round}`, "bench")) : "-";
    console.log(`sqlite ${sqliteTotal} records, erase ${perUser}: checked ${checked}, before ${previous}`);
  }
  chain.finalize();
  log.close();
}

// PostgreSQL
if (pgTotal > 0) {
  const pg = await pgSchema("erase_bench");
  try {
    const trail = await postgresDriver(() => pg).open("erase");
    const store = trail.store as PgAuditStore;
    const schema = new URL(trail.logDb).searchParams.get("schema")!;
    const writer = new SQL({ url: trail.logDb.replace(/\?.*$/, ""), max: 1, connection: { search_path: schema } });
    const users = pgTotal / perUser;
    for (let from = 0; from < pgTotal; from += 10_000) {
      const rows: SQLValue[][] = [];
      for (let i = from; i < Math.min(pgTotal, from + 10_000); i++) rows.push(record(i, users));
      await writer.begin(async (tx) => {
        await lockChain(tx);
        await append(tx, store.hashKey, rows);
      });
    }
    await writer.close();
    await writer`ANALYZE`.catch(() => {});
    const s = store as unknown as Record<string, unknown>;
    const t = store.trail as unknown as Record<string, unknown>;
    const Old = before ? (await import("../src/store/postgres/_before-trail.ts" as string)).PgTrail : null;
    const old = Old ? new Old(s.sql, t.meta, store.trail.signingKey, t.settings, t.log) : null;
    for (let round = 1; round <= 3; round++) {
      const checked = await time(() => store.trail.eraseUser(`user-${round}`, "bench"));
      const previous = old ? await time(() => old.eraseUser(`user-${10 + round}`, "bench")) : "-";
      console.log(`postgres ${pgTotal} records, erase ${perUser}: checked ${checked}, before ${previous}`);
    }
    await store.close();
  } finally {
    await pg.drop();
  }
}
