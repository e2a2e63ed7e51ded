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
import { accumulate, rollupDimensions, rollupValueColumns, summedColumns } from "../rollup.ts";
import { tagPairs } from "./rollup.ts";

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

type Group = { dim: string; key: string; provider: string; day: string; sums: number[] };

/** Distinct tag objects remembered with their (dim, value) pairs: records of a fleet repeat a few. */
const tagCacheSize = 4096;

export class RollupSums {
  /** Every group, and the same by day → dimension → key (no string built per record to find one). */
  private groups: Group[] = [];
  private byDay = new Map<string, Map<string, Map<string, Group>>>();
  private readonly tagCache = new Map<string, [dim: string, value: string][]>();
  private records = 0;
  /** The cursor the sums start from; null until a fold has set it. */
  private base: number | null = null;

  /** Adds committed records (rows in `columns` order, as stored). */
  add(rows: readonly SQLValue[][]): void {
    if (this.base === null) return; // nothing to add to yet: the next fold reads the records
    for (const row of rows) {
      this.records++;
      const day = String(row[timestampAt]).slice(0, 10);
      let dims = this.byDay.get(day);
      if (!dims) this.byDay.set(day, (dims = new Map()));
      const unpriced = row[costAt] === null && row[sourceAt] !== null && row[sourceAt] !== "none" ? 1 : 0;
      const get = (column: string) => row[columnAt.get(column)!] ?? null;
      for (const { dim, js } of dimensions)
        this.addTo(dims, dim, js(get), dim === "model" ? text(row[providerAt]!) : "", day, row, unpriced);
      for (const [dim, key] of this.tagsOf(row[tagsAt] ?? null, row[personalTagsAt] ?? null))
        this.addTo(dims, dim, key, "", day, row, unpriced);
    }
  }

  private addTo(
    dims: Map<string, Map<string, Group>>,
    dim: string,
    key: string,
    provider: string,
    day: string,
    row: readonly SQLValue[],
    unpriced: number,
  ): void {
    let keys = dims.get(dim);
    if (!keys) dims.set(dim, (keys = new Map()));
    // The provider is part of a model group's key (a model name can be served by two providers).
    const id = provider === "" ? key : `${key}\u0000${provider}`;
    let group = keys.get(id);
    if (!group) {
      group = { dim, key, provider, day, sums: new Array<number>(summedAt.length + 2).fill(0) };
      keys.set(id, group);
      this.groups.push(group);
    }
    const sums = group.sums;
    sums[0]!++;
    for (let i = 0; i < summedAt.length; i++) sums[i + 1]! += Number(row[summedAt[i]!] ?? 0);
    sums[summedAt.length + 1]! += unpriced;
  }

  /** `tagPairs`, remembered per distinct pair of tag objects. */
  private tagsOf(tags: SQLValue, personal: SQLValue): [string, string][] {
    if (tags === null && personal === null) return [];
    const id = `${typeof tags === "string" ? tags : ""}\u0000${typeof personal === "string" ? personal : ""}`;
    let pairs = this.tagCache.get(id);
    if (!pairs) {
      if (this.tagCache.size >= tagCacheSize) this.tagCache.clear();
      this.tagCache.set(id, (pairs = tagPairs(tags, personal)));
    }
    return pairs;
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
    for (const { dim, key, provider, day, sums } of this.groups) upsert.run(dim, key, provider, day, ...sums);
    return true;
  }

  /** After a fold up to `cursor`: the sums start again from there. */
  restart(cursor: number): void {
    this.groups = [];
    this.byDay = new Map();
    this.records = 0;
    this.base = cursor;
  }
}

const upsertSQL = `INSERT INTO usage_rollup (dim, key, provider, day, ${rollupValueColumns.join(", ")})
  VALUES (?, ?, ?, ?, ${rollupValueColumns.map(() => "?").join(", ")})
  ON CONFLICT (dim, key, provider, day) DO UPDATE SET ${accumulate()}`;
