/**
 * Daily usage rollups, so summaries over millions of records read thousands of rows instead.
 *
 * `usage_rollup` holds, per dimension (agent, user, model) and UTC day, the call count, token
 * sums, exact cost and unpriced calls of every record up to a cursor (`usage_rollup_state.seq`).
 * Nothing is added on the hot path: `advanceRollup` folds new records in with one GROUP BY per
 * dimension (the writer thread calls it every 10 s while records arrive, and once idle), and a summary
 * adds the records past the cursor itself, so it is always exact. Changes to rolled-up records
 * (an erasure clearing a user, retention, a deletion) are applied by SQLite triggers in the same
 * transaction: the user's usage moves to the empty key and the user no longer appears. The model
 * rows also carry the provider, so summaries by provider and by day read them too.
 *
 * Tags are rolled up too (`tagRollupMigrationSQL`): one row per tag key and value a record carries,
 * dim `tag:<key>` (clear tags and personal ones; a key in both counts once, as clear). A record
 * without a tag is in no row of its dimension: summaries find that usage as the total's (the model
 * rows) minus the tagged. Erasing a personal tag moves its usage out the same way, by trigger.
 * What is rolled up (dimensions, summed columns) is shared with PostgreSQL: ../rollup.ts.
 */
import type { Database } from "bun:sqlite";
import type { SQLValue } from "../../trail/row.ts";
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
import { taskTotalsFoldSQL } from "./task-totals.ts";

export { rollupDimensions, rollupValueColumns, summedColumns, unpricedSQL, type RollupDimension } from "../rollup.ts";

/** Dimensions added after the first rollup migration: backfilled for the records already rolled up. */
const addedDimensions: readonly RollupDimension[] = ["key", "hour", "status"];

/** The rollup dimension of a tag key. */
export const tagDim = (key: string) => `tag:${key}`;

/**
 * The JS side of the tag dimensions (the writer's sums, verify), equal to `tagPairsSQL`: each
 * (dim, value) of a record's string-valued tags, clear ones first, personal ones whose key is not
 * also clear. Unreadable JSON gives none (the SQL side would fail the fold; verify reports it).
 */
export function tagPairs(tags: SQLValue, personal: SQLValue): [dim: string, value: string][] {
  if (tags === null && personal === null) return [];
  const pairs: [string, string][] = [];
  const clear = new Set<string>();
  for (const [json, isPersonal] of [
    [tags, false],
    [personal, true],
  ] as const) {
    if (typeof json !== "string") continue;
    let object: unknown;
    try {
      object = JSON.parse(json);
    } catch {
      continue;
    }
    if (object === null || typeof object !== "object" || Array.isArray(object)) continue;
    for (const [key, value] of Object.entries(object)) {
      if (typeof value !== "string") continue;
      if (isPersonal ? clear.has(key) : (clear.add(key), false)) continue;
      pairs.push([tagDim(key), value.isWellFormed() ? value : value.toWellFormed()]);
    }
  }
  return pairs;
}

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
const taskTotalsFold = taskTotalsFoldSQL("seq > ?1 AND seq <= ?2");

/**
 * The tag rows of one record `row` (`NEW`, `OLD`, or a FROM alias): `FROM` clauses and conditions
 * for the clear and the personal tags, as `tagPairs` reads them.
 */
const tagSources = (row: string) => [
  { from: `json_each(${row}.tags) AS j`, where: "j.type = 'text'" },
  {
    from: `json_each(${row}.personal_tags) AS j`,
    where: `j.type = 'text' AND NOT EXISTS (SELECT 1 FROM json_each(${row}.tags) AS c WHERE c.key = j.key)`,
  },
];

/** Folds the tags of records with cursor < seq <= ?2 (?1 = cursor), or those `where` selects (alias `r`). */
const tagFoldSQL = (where: string) =>
  tagSources("r").map(
    ({ from, where: tagged }) => `INSERT INTO usage_rollup (dim, key, provider, day, calls, ${summedColumns.join(", ")}, unpriced_calls)
  SELECT 'tag:' || j.key, j.value, '', ${dayOf("r")}, count(*), ${summedColumns.map((c) => `coalesce(sum(r.${c}), 0)`).join(", ")},
    sum(${unpricedSQL("r")})
  FROM audit_records AS r, ${from} WHERE ${where} AND ${tagged} GROUP BY 1, 2, 3, 4
  ON CONFLICT (dim, key, provider, day) DO UPDATE SET ${accumulateSQL}`,
  );
const tagFoldStatements = tagFoldSQL("r.seq > ?1 AND r.seq <= ?2 AND (r.tags IS NOT NULL OR r.personal_tags IS NOT NULL)");

/** Adds (sign 1) or removes (sign -1) one record's tags to their rollup rows (trigger bodies). */
function applyTags(row: "NEW" | "OLD", sign: 1 | -1): string {
  return tagSources(row)
    .map(
      ({ from, where }) => `INSERT INTO usage_rollup (dim, key, provider, day, calls, ${summedColumns.join(", ")}, unpriced_calls)
    SELECT 'tag:' || j.key, j.value, '', ${dayOf(row)}, ${sign}, ${summedColumns.map((c) => `${sign} * coalesce(${row}.${c}, 0)`).join(", ")},
      ${sign} * ${unpricedSQL(row)}
    FROM ${from} WHERE ${where}
    ON CONFLICT (dim, key, provider, day) DO UPDATE SET ${accumulateSQL};`,
    )
    .join("\n  ");
}

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

/** The triggers that follow changes to rolled-up records; `tags`: with the tag dimensions (the tag rollup migration). */
function triggersSQL(tags = false): string {
  const tracked = tags ? [...trackedColumns, "tags", "personal_tags"] : trackedColumns;
  const old = tags ? `${applyRow("OLD", -1)}\n  ${applyTags("OLD", -1)}` : applyRow("OLD", -1);
  const added = tags ? `${applyRow("NEW", 1)}\n  ${applyTags("NEW", 1)}` : applyRow("NEW", 1);
  return `CREATE TRIGGER audit_records_rollup_update AFTER UPDATE OF ${tracked.join(", ")} ON audit_records
WHEN OLD.seq <= ${rolledUp} BEGIN
  ${old}
  ${added}
  DELETE FROM usage_rollup WHERE calls = 0 AND day IN (${dayOf("OLD")}, ${dayOf("NEW")});
END;
--> statement-breakpoint
CREATE TRIGGER audit_records_rollup_delete AFTER DELETE ON audit_records
WHEN OLD.seq <= ${rolledUp} BEGIN
  ${old}
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

/**
 * The third rollup migration: the tag dimensions (after the migration that adds the tag columns).
 * The triggers are made anew with them, and the tags of records already rolled up are folded once.
 */
export const tagRollupMigrationSQL = `
DROP TRIGGER IF EXISTS audit_records_rollup_update;
--> statement-breakpoint
DROP TRIGGER IF EXISTS audit_records_rollup_delete;
--> statement-breakpoint
DELETE FROM usage_rollup WHERE dim LIKE 'tag:%';
--> statement-breakpoint
${tagFoldSQL(`r.seq <= ${rolledUp}`).join(";\n--> statement-breakpoint\n")};
--> statement-breakpoint
${triggersSQL(true)}`;

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
 * exactly the records to fold (./rollup-memory.ts). The per-task totals (./task-totals.ts) are
 * folded in the same transaction, always from the records. Returns how many seqs it advanced.
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
        for (const sql of tagFoldStatements) db.query(sql).run(from, to);
      }
      // The writer's sums have no tasks (one group per call, about): the task totals read the records.
      db.query(taskTotalsFold).run(from, to);
      db.query("UPDATE usage_rollup_state SET seq = ? WHERE id = 1").run(to);
      sums?.restart(to);
      return to - from;
    })
    .immediate();
}
