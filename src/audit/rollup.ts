/**
 * Daily usage rollups, so summaries over millions of records read thousands of rows instead.
 * `usage_rollup` holds, per dimension (agent, user, task, model) and UTC day, the call count, token
 * sums, exact cost and unpriced calls. SQLite triggers keep it in step with `audit_records` inside
 * the same transaction, whoever writes: the proxy's writer, crash recovery, an erasure that clears
 * a user (the user's rows move to the empty key, so the user no longer appears). The model rows
 * also carry the provider, so summaries by provider and by day read them too.
 */

/** Rollup dimensions and the record column each is keyed by. */
export const rollupDimensions = { agent: "agent_id", user: "user_id", task: "task_context", model: "model" } as const;
export type RollupDimension = keyof typeof rollupDimensions;

/** Summed columns: record column → rollup column (same names). */
export const summedColumns = [
  "input_tokens",
  "output_tokens",
  "cache_read_tokens",
  "cache_write_tokens",
  "cache_write_1h_tokens",
  "reasoning_tokens",
  "cost_nano_usd",
] as const;

/** A record is unpriced when it has usage but no cost. */
export const unpricedSQL = (row: string) => `(${row}.cost_nano_usd IS NULL AND ${row}.usage_source != 'none')`;

const dayOf = (row: string) => `substr(${row}.timestamp, 1, 10)`;

/** Adds (sign 1) or removes (sign -1) one record's contribution to its four rollup rows. */
function apply(row: "NEW" | "OLD", sign: 1 | -1): string {
  return Object.entries(rollupDimensions)
    .map(([dim, column]) => {
      const provider = dim === "model" ? `coalesce(${row}.provider, '')` : "''";
      const values = summedColumns.map((c) => `${sign} * coalesce(${row}.${c}, 0)`).join(", ");
      const updates = ["calls", ...summedColumns, "unpriced_calls"].map((c) => `${c} = ${c} + excluded.${c}`).join(", ");
      return `INSERT INTO usage_rollup (dim, key, provider, day, calls, ${summedColumns.join(", ")}, unpriced_calls)
    VALUES ('${dim}', coalesce(${row}.${column}, ''), ${provider}, ${dayOf(row)}, ${sign}, ${values}, ${sign} * ${unpricedSQL(row)})
    ON CONFLICT (dim, key, provider, day) DO UPDATE SET ${updates};`;
    })
    .join("\n  ");
}

const trackedColumns = ["timestamp", "provider", "usage_source", ...Object.values(rollupDimensions), ...summedColumns];

/** The migration that creates the rollup, its triggers, and fills it from existing records. */
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
CREATE TRIGGER audit_records_rollup_insert AFTER INSERT ON audit_records BEGIN
  ${apply("NEW", 1)}
END;
--> statement-breakpoint
CREATE TRIGGER audit_records_rollup_update AFTER UPDATE OF ${trackedColumns.join(", ")} ON audit_records BEGIN
  ${apply("OLD", -1)}
  ${apply("NEW", 1)}
  DELETE FROM usage_rollup WHERE calls = 0 AND day IN (${dayOf("OLD")}, ${dayOf("NEW")});
END;
--> statement-breakpoint
CREATE TRIGGER audit_records_rollup_delete AFTER DELETE ON audit_records BEGIN
  ${apply("OLD", -1)}
  DELETE FROM usage_rollup WHERE calls = 0 AND day = ${dayOf("OLD")};
END;
--> statement-breakpoint
${Object.entries(rollupDimensions)
  .map(
    ([dim, column]) => `INSERT INTO usage_rollup
  SELECT '${dim}', coalesce(${column}, ''), ${dim === "model" ? "coalesce(provider, '')" : "''"}, substr(timestamp, 1, 10), count(*),
    ${summedColumns.map((c) => `coalesce(sum(${c}), 0)`).join(", ")}, sum(${unpricedSQL("audit_records")})
  FROM audit_records GROUP BY 1, 2, 3, 4;`,
  )
  .join("\n--> statement-breakpoint\n")}
`;
