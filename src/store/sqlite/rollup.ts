/**
 * Daily usage rollups, so summaries over millions of records read thousands of rows instead.
 *
 * `usage_rollup` holds, per dimension (agent, user, model) and UTC day, the call count, token
 * sums, exact cost and unpriced calls of every record up to a cursor (`usage_rollup_state.seq`).
 * Nothing is added on the hot path: `advanceRollup` folds new records in with one GROUP BY per
 * dimension (the writer thread calls it every few seconds while records arrive), and a summary
 * adds the records past the cursor itself, so it is always exact. Changes to rolled-up records
 * (an erasure clearing a user, retention, a deletion) are applied by SQLite triggers in the same
 * transaction: the user's usage moves to the empty key and the user no longer appears. The model
 * rows also carry the provider, so summaries by provider and by day read them too.
 * What is rolled up (dimensions, summed columns) is shared with PostgreSQL: ../rollup.ts.
 */
import type { Database } from "bun:sqlite";
import {
  accumulate,
  dayOf,
  providerOf,
  rollupDimensionList,
  rollupDimensions,
  summedColumns,
  unpricedSQL,
  type RollupDimension,
} from "../rollup.ts";

export { rollupDimensions, rollupValueColumns, summedColumns, unpricedSQL, type RollupDimension } from "../rollup.ts";

/** Dimensions added after the first rollup migration: backfilled for the records already rolled up. */
const addedDimensions: readonly RollupDimension[] = ["key", "hour", "status"];

const accumulateSQL = accumulate();

/** Adds (sign 1) or removes (sign -1) one record's contribution to its rollup rows. */
function applyRow(row: "NEW" | "OLD", sign: 1 | -1): string {
  return rollupDimensionList
    .map(([dim, { sql }]) => {
      const values = summedColumns.map((c) => `${sign} * coalesce(${row}.${c}, 0)`).join(", ");
      return `INSERT INTO usage_rollup (dim, key, provider, day, calls, ${summedColumns.join(", ")}, unpriced_calls)
    VALUES ('${dim}', ${sql(row)}, ${providerOf(dim, row)}, ${dayOf(row)}, ${sign}, ${values}, ${sign} * ${unpricedSQL(row)})
    ON CONFLICT (dim, key, provider, day) DO UPDATE SET ${accumulateSQL};`;
    })
    .join("\n  ");
}

/** Folds the records with cursor < seq <= ?2 (?1 = cursor) into the rollup, one statement per dimension. */
const foldSQL = (
  dim: RollupDimension,
  where: string,
) => `INSERT INTO usage_rollup (dim, key, provider, day, calls, ${summedColumns.join(", ")}, unpriced_calls)
  SELECT '${dim}', ${rollupDimensions[dim].sql("audit_records")}, ${providerOf(dim, "audit_records")}, ${dayOf("audit_records")}, count(*),
    ${summedColumns.map((c) => `coalesce(sum(${c}), 0)`).join(", ")}, sum(${unpricedSQL("audit_records")})
  FROM audit_records WHERE ${where} GROUP BY 1, 2, 3, 4
  ON CONFLICT (dim, key, provider, day) DO UPDATE SET ${accumulateSQL}`;
const foldStatements = rollupDimensionList.map(([dim]) => foldSQL(dim, "seq > ?1 AND seq <= ?2"));

const rolledUp = "(SELECT seq FROM usage_rollup_state WHERE id = 1)";
const trackedColumns = [
  "timestamp",
  "provider",
  "usage_source",
  "agent_id",
  "user_id",
  "model",
  "key_id",
  "outcome",
  "status",
  ...summedColumns,
];

/** The migration that creates the rollup, its cursor and the triggers that follow changes. */
export const rollupMigrationSQL = `
CREATE TABLE usage_rollup (
  dim TEXT NOT NULL,
  key TEXT NOT NULL,
  provider TEXT NOT NULL,
  day TEXT NOT NULL,
  calls INTEGER NOT NULL,
  ${summedColumns.map((c) => `${c} INTEGER NOT NULL`).join(",\n  ")},
  unpriced_calls INTEGER NOT NULL,
  PRIMARY KEY (dim, key, provider, day)
) WITHOUT ROWID;
--> statement-breakpoint
CREATE INDEX usage_rollup_day ON usage_rollup (dim, day);
--> statement-breakpoint
CREATE TABLE usage_rollup_state (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
--> statement-breakpoint
INSERT INTO usage_rollup_state (id, seq) VALUES (1, 0);
--> statement-breakpoint
${triggersSQL()}`;

function triggersSQL(): string {
  return `CREATE TRIGGER audit_records_rollup_update AFTER UPDATE OF ${trackedColumns.join(", ")} ON audit_records
WHEN OLD.seq <= ${rolledUp} BEGIN
  ${applyRow("OLD", -1)}
  ${applyRow("NEW", 1)}
  DELETE FROM usage_rollup WHERE calls = 0 AND day IN (${dayOf("OLD")}, ${dayOf("NEW")});
END;
--> statement-breakpoint
CREATE TRIGGER audit_records_rollup_delete AFTER DELETE ON audit_records
WHEN OLD.seq <= ${rolledUp} BEGIN
  ${applyRow("OLD", -1)}
  DELETE FROM usage_rollup WHERE calls = 0 AND day = ${dayOf("OLD")};
END;`;
}

/**
 * The second rollup migration: the key, hour and status dimensions. The triggers are made anew
 * with every dimension, and the records already rolled up are folded into the new ones once (a
 * GROUP BY over them, at the first start of this version).
 */
export const rollupDimensionsMigrationSQL = `
DROP TRIGGER IF EXISTS audit_records_rollup_update;
--> statement-breakpoint
DROP TRIGGER IF EXISTS audit_records_rollup_delete;
--> statement-breakpoint
DELETE FROM usage_rollup WHERE dim IN (${addedDimensions.map((d) => `'${d}'`).join(", ")});
--> statement-breakpoint
${addedDimensions.map((dim) => foldSQL(dim, `seq <= ${rolledUp}`)).join(";\n--> statement-breakpoint\n")};
--> statement-breakpoint
${triggersSQL()}`;

/** The rollup cursor: every record with seq ≤ it is in `usage_rollup`. */
export function rollupCursor(db: Database): number {
  return db.query<{ seq: number }, []>("SELECT seq FROM usage_rollup_state WHERE id = 1").get()?.seq ?? 0;
}

/** What a fold may use instead of reading the records back (the writer's `RollupSums`). */
export interface FoldShortcut {
  /** Inside the fold's transaction: writes the sums and returns true if they are exactly the records in (from, to]. */
  writeIfExact(db: Database, from: number, to: number): boolean;
  /** After a fold up to `cursor`: start again from there. */
  restart(cursor: number): void;
}

/**
 * Folds up to `maxRecords` records past the cursor into the rollup, in one write transaction
 * (bounded, so it never holds the write lock for long). With `sums` (the writer thread's), the
 * records it added up as it appended them are written without reading them back, when they are
 * exactly the records to fold (./rollup-memory.ts). Returns how many seqs it advanced.
 */
export function advanceRollup(db: Database, maxRecords = 200_000, sums?: FoldShortcut): number {
  return db
    .transaction(() => {
      const from = rollupCursor(db);
      const last = db.query<{ seq: number | null }, []>("SELECT max(seq) AS seq FROM audit_records").get()?.seq ?? 0;
      const to = Math.min(last, from + maxRecords);
      if (to <= from) {
        sums?.restart(from);
        return 0;
      }
      if (!(to === last && sums?.writeIfExact(db, from, to))) {
        for (const sql of foldStatements) db.query(sql).run(from, to);
      }
      db.query("UPDATE usage_rollup_state SET seq = ? WHERE id = 1").run(to);
      sums?.restart(to);
      return to - from;
    })
    .immediate();
}
