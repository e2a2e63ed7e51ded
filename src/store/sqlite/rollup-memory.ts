/**
 * The writer thread's shortcut for the rollup (./rollup.ts): it adds up, in memory, the records it
 * appends, and at the next fold writes one row per group instead of having SQLite read the records
 * back and group them (measured: 3.7 µs per record for the three GROUP BYs).
 *
 * The sums are used only when they provably equal what the GROUP BY would find: the cursor is
 * where they started, every record past it is one of them (no other writer — a CLI, crash
 * recovery, another process — appended one), and no erasure or retention event past the cursor
 * may have changed one since. Otherwise the fold reads the records, as before.
 */
import type { Database, Statement } from "bun:sqlite";
import { columns, type SQLValue } from "../../trail/row.ts";
import { accumulate, rollupDimensions, rollupValueColumns, summedColumns, tagPairs } from "./rollup.ts";

const index = (column: string) => columns.indexOf(column as (typeof columns)[number]);
const dimensions = Object.entries(rollupDimensions).map(([dim, { js }]) => ({ dim, js }));
const summedAt = summedColumns.map(index);
const timestampAt = index("timestamp");
const providerAt = index("provider");
const costAt = index("cost_nano_usd");
const sourceAt = index("usage_source");
const tagsAt = index("tags");
const personalTagsAt = index("personal_tags");

/** Stored text is well-formed UTF-8 (see chain.ts): group by what SQLite will hold. */
const text = (value: SQLValue): string =>
  value === null ? "" : typeof value === "string" ? (value.isWellFormed() ? value : value.toWellFormed()) : String(value);
const columnAt = new Map<string, number>(columns.map((column, i) => [column, i]));

export class RollupSums {
  /** Group key → [calls, ...summed columns, unpriced calls]. */
  private groups = new Map<string, { dim: string; key: string; provider: string; day: string; sums: number[] }>();
  private records = 0;
  /** The cursor the sums start from; null until a fold has set it. */
  private base: number | null = null;

  /** Adds committed records (rows in `columns` order, as stored). */
  add(rows: readonly SQLValue[][]): void {
    if (this.base === null) return; // nothing to add to yet: the next fold reads the records
    for (const row of rows) {
      this.records++;
      const day = String(row[timestampAt]).slice(0, 10);
      const unpriced = row[costAt] === null && row[sourceAt] !== null && row[sourceAt] !== "none" ? 1 : 0;
      const get = (column: string) => row[columnAt.get(column)!] ?? null;
      const keyed = dimensions.map(({ dim, js }): [string, string] => [dim, js(get)]);
      for (const pair of tagPairs(row[tagsAt] ?? null, row[personalTagsAt] ?? null)) keyed.push(pair);
      for (const [dim, key] of keyed) {
        const provider = dim === "model" ? text(row[providerAt]!) : "";
        const id = `${dim}\u0000${key}\u0000${provider}\u0000${day}`;
        let group = this.groups.get(id);
        if (!group) this.groups.set(id, (group = { dim, key, provider, day, sums: new Array<number>(summedAt.length + 2).fill(0) }));
        const sums = group.sums;
        sums[0]!++;
        for (let i = 0; i < summedAt.length; i++) sums[i + 1]! += Number(row[summedAt[i]!] ?? 0);
        sums[summedAt.length + 1]! += unpriced;
      }
    }
  }

  /**
   * Inside the fold's transaction, with the cursor at `from` and the last record at `to`: writes
   * the sums and returns true if they cover exactly the records in (from, to]; false (nothing
   * written) if the fold must read the records.
   */
  writeIfExact(db: Database, from: number, to: number): boolean {
    if (this.base !== from || this.records === 0) return false;
    const inRange = db
      .query<{ n: number }, [number, number]>("SELECT count(*) AS n FROM audit_records WHERE seq > ? AND seq <= ?")
      .get(from, to)!.n;
    if (inRange !== this.records) return false;
    const changed = db
      .query<{ n: number }, [number]>(
        "SELECT count(*) AS n FROM (SELECT 1 FROM audit_events WHERE seq > ? AND kind IN ('erasure', 'retention') LIMIT 1)",
      )
      .get(from)!.n;
    if (changed > 0) return false;
    const upsert: Statement = db.query(upsertSQL);
    for (const { dim, key, provider, day, sums } of this.groups.values()) upsert.run(dim, key, provider, day, ...sums);
    return true;
  }

  /** After a fold up to `cursor`: the sums start again from there. */
  restart(cursor: number): void {
    this.groups = new Map();
    this.records = 0;
    this.base = cursor;
  }
}

const upsertSQL = `INSERT INTO usage_rollup (dim, key, provider, day, ${rollupValueColumns.join(", ")})
  VALUES (?, ?, ?, ?, ${rollupValueColumns.map(() => "?").join(", ")})
  ON CONFLICT (dim, key, provider, day) DO UPDATE SET ${accumulate}`;
