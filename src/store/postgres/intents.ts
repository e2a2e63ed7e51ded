/**
 * The intents of calls in flight, group-committed as ONE row per group (`audit_intent_groups`,
 * keyed by replica and group number): everything `write` receives within `delayMs` (or while the
 * previous group is being written) becomes one JSON array of rows, written by one INSERT committed
 * on its own; each `write` resolves once that row is durable. One heap row (TOASTed, compressed)
 * per group instead of one row, two index entries and a later delete per call.
 *
 * A group row stays until the last of its calls has its final record in the chain: the append that
 * lands it deletes the row in the same transaction (`settle`). A group whose calls mostly landed
 * while a few stay in flight (long streams) is rewritten to hold only those, once at most a quarter
 * of what it holds is still open, so the stored intents stay within four times the calls in flight.
 *
 * A survivor that claims this replica (lease ran out) deletes its groups under the chain lock and
 * appends an `interrupted` record for each intent whose call has no record yet (./store.ts). The
 * append takes the same lock and checks that its groups still exist, so each call gets exactly
 * one record: the final one if it landed first, the interrupted one otherwise.
 *
 * A group whose INSERT failed may still land: the store gave up at its deadline (the answer was
 * lost, or the INSERT waited on a lock) and refused the calls, but PostgreSQL can commit it after.
 * Its calls were never forwarded (unless `audit.failOpen`), so it must not stand for them. Its key
 * is taken by an empty group (a tombstone: `INSERT … ON CONFLICT DO UPDATE` empties one that
 * landed; one still to land then fails on the key), retried until PostgreSQL takes it or the store
 * closes. Tombstones hold no intents, so recovery finds nothing in them; they go when the replica
 * closes (or is claimed). A late group the replica could not bury before it died or closed is
 * recovered like any other: its calls get `interrupted` records, though they were refused.
 */
import type { SQL } from "bun";
import type { SQLValue } from "../../trail/row.ts";
import { errorMessage } from "../../errors.ts";
import { onConnection } from "./writer.ts";

interface Group {
  n: number;
  /** Intents the stored row holds. */
  size: number;
  /** Calls of this group whose record is not in the chain yet: id → its row as JSON. */
  open: Map<string, string>;
}

interface Pending {
  id: string;
  json: string;
  done: (error?: unknown) => void;
}

/** What an append does about its calls' intents (./store.ts `appendRows`). */
export interface Settled {
  /** Calls that may already have a record (no live intent of this replica): check the chain. */
  unsure: Set<string>;
  /** Call once the append's transaction committed. */
  landed(): void;
}

export class IntentGroups {
  private pending: Pending[] = [];
  private timer: Timer | undefined;
  private nextGroup = 1;
  /** Calls whose intent is stored and whose record has not landed, by id. */
  private readonly calls = new Map<string, Group>();
  /** Groups whose INSERT failed and may still land: their keys wait for a tombstone. */
  private doubtful: number[] = [];
  private buryTimer: Timer | undefined;
  private buryFailures = 0;
  private stopped = false;
  writing = false;

  constructor(
    private readonly sql: SQL,
    private readonly replicaId: string,
    private readonly delayMs: number,
    private readonly deadlineMs: number,
    private readonly onSettled: () => void,
    /** This replica was claimed by a survivor (its row gone) and is registering again. */
    private readonly onClaimed: () => void,
  ) {}

  get idle(): boolean {
    return this.pending.length === 0 && !this.writing;
  }

  /** Resolves once the call's intent is durable; rejects if PostgreSQL did not take it. */
  write(id: string, row: SQLValue[]): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.pending.push({ id, json: JSON.stringify(row), done: (error) => (error === undefined ? resolve() : reject(error)) });
    if (!this.writing && this.timer === undefined) this.timer = setTimeout(() => void this.flush(), this.delayMs);
    return promise;
  }

  /** No more timers: the store is closing (a last `bury` may still be called, once). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.buryTimer);
  }

  /**
   * Writes a tombstone over each doubtful group (see the file comment); retried with backoff while
   * PostgreSQL does not take it. Resolves true once none is left.
   */
  async bury(): Promise<boolean> {
    clearTimeout(this.buryTimer);
    this.buryTimer = undefined;
    const groups = this.doubtful.splice(0);
    if (groups.length === 0) return true;
    try {
      await onConnection(
        this.sql,
        this.deadlineMs,
        (connection) =>
          connection`INSERT INTO audit_intent_groups (replica_id, n, intents)
          SELECT ${this.replicaId}, n, '[]' FROM unnest(${groups}::bigint[]) AS g(n)
          ON CONFLICT (replica_id, n) DO UPDATE SET intents = '[]'`,
      );
      this.buryFailures = 0;
      return this.doubtful.length === 0;
    } catch {
      this.doubtful.push(...groups);
      this.buryFailures++;
      if (!this.stopped) this.buryTimer = setTimeout(() => void this.bury(), Math.min(5000, 100 * 2 ** this.buryFailures));
      return false;
    }
  }

  private async flush(): Promise<void> {
    this.timer = undefined;
    if (this.writing || this.pending.length === 0) return;
    this.writing = true;
    const batch = this.pending.splice(0);
    const group: Group = { n: this.nextGroup++, size: batch.length, open: new Map() };
    try {
      const intents = `[${batch.map((p) => p.json).join(",")}]`;
      // Committed on its own (autocommit): the row is durable when the INSERT returns. It lands
      // only while this replica's row exists (KEY SHARE waits for a survivor claiming us): a group
      // written after a survivor claimed this replica would have no replica row, and no survivor
      // would ever look for it. Claimed (a pause longer than the lease), we register again first.
      await onConnection(this.sql, this.deadlineMs, async (connection) => {
        const insert = () => connection`INSERT INTO audit_intent_groups (replica_id, n, intents)
          SELECT ${this.replicaId}, ${group.n}, ${intents}
          WHERE EXISTS (SELECT 1 FROM audit_replicas WHERE replica_id = ${this.replicaId} FOR KEY SHARE)
          RETURNING n`;
        if ((await insert()).length > 0) return;
        this.onClaimed();
        await connection`INSERT INTO audit_replicas (replica_id) VALUES (${this.replicaId})
          ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = now()`;
        if ((await insert()).length === 0) throw new Error("this replica could not register itself in audit_replicas");
      });
      for (const p of batch) {
        group.open.set(p.id, p.json);
        this.calls.set(p.id, group);
      }
      for (const p of batch) p.done();
    } catch (error) {
      const failure = new Error(`the audit trail in PostgreSQL cannot be written: ${errorMessage(error)}`);
      for (const p of batch) p.done(failure);
      this.doubtful.push(group.n);
      if (this.buryTimer === undefined && !this.stopped) this.buryTimer = setTimeout(() => void this.bury(), 0);
    } finally {
      this.writing = false;
      if (this.pending.length > 0) this.timer = setTimeout(() => void this.flush(), this.delayMs);
      this.onSettled();
    }
  }

  /**
   * Inside the append's transaction, under the chain lock: deletes the groups whose last calls
   * land with `ids`, compacts those left mostly empty, and names the calls that need a look at the
   * chain — those with no live intent of ours (refused before `begin`, or claimed by a survivor
   * after we missed our lease) and those of a retried append (`retried`: its COMMIT may have landed).
   */
  async settle(tx: SQL, ids: readonly string[], retried: ReadonlySet<string>): Promise<Settled> {
    const unsure = new Set<string>();
    const landing = new Map<Group, Set<string>>();
    for (const id of ids) {
      const group = this.calls.get(id);
      if (!group) unsure.add(id);
      else {
        if (retried.has(id)) unsure.add(id);
        const set = landing.get(group) ?? new Set<string>();
        set.add(id);
        landing.set(group, set);
      }
    }
    if (landing.size === 0) return { unsure, landed: () => undefined };
    const done: number[] = [];
    const compact: { group: Group; intents: string[] }[] = [];
    for (const [group, landed] of landing) {
      const left = group.open.size - landed.size;
      if (left <= 0) done.push(group.n);
      else if (left * 4 <= group.size) {
        compact.push({ group, intents: [...group.open].filter(([id]) => !landed.has(id)).map(([, json]) => json) });
      }
    }
    // The SELECT reads the snapshot before the DELETE: every group of the batch that still exists.
    const alive = new Set(
      (
        (await tx`WITH gone AS (DELETE FROM audit_intent_groups WHERE replica_id = ${this.replicaId} AND n = ANY(${done}::bigint[]))
          SELECT n FROM audit_intent_groups WHERE replica_id = ${this.replicaId} AND n = ANY(${[...landing.keys()].map((g) => g.n)}::bigint[])`) as {
          n: string;
        }[]
      ).map((r) => Number(r.n)),
    );
    for (const [group, landed] of landing) if (!alive.has(group.n)) for (const id of landed) unsure.add(id);
    const rewritten = compact.filter(({ group }) => alive.has(group.n));
    for (const { group, intents } of rewritten) {
      await tx`UPDATE audit_intent_groups SET intents = ${`[${intents.join(",")}]`} WHERE replica_id = ${this.replicaId} AND n = ${group.n}`;
    }
    return {
      unsure,
      landed: () => {
        for (const [group, landed] of landing) {
          for (const id of landed) {
            group.open.delete(id);
            this.calls.delete(id);
          }
        }
        for (const { group, intents } of rewritten) group.size = intents.length;
      },
    };
  }
}

/** A group row as a survivor reads it back: the rows of its calls, in the order they began. */
export const groupRows = (intents: string): SQLValue[][] => JSON.parse(intents) as SQLValue[][];
