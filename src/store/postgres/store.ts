/**
 * The PostgreSQL audit store: many replicas, one trail.
 *  - `begin` writes the call's intent before the call is forwarded. Intents of concurrent calls
 *    are group-committed as one row per group (./intents.ts): everything that arrives within
 *    `intentDelayMs` (default 1 ms), or while the previous group is being written, goes in one
 *    INSERT (its own transaction); each `begin` resolves once that row is committed, and rejects
 *    at once if PostgreSQL is unreachable (→ 503 audit_unavailable unless failOpen).
 *  - `commit` queues the final record for the chain and resolves once it is there: an appender
 *    takes up to `batchRows` queued records per transaction, appends them under the chain lock
 *    (./chain.ts, COPY) and, in the same transaction, deletes the intent groups whose last calls
 *    they are — a call's record replaces its intent atomically, in the one write that also makes
 *    it durable. (There is no
 *    separate durable copy of the final record: until its append commits, the call's intent is what
 *    a survivor finds, so a replica killed before then leaves an `interrupted` record; the client
 *    has not received the call's last byte yet, which waits for `commit`.)
 *  - Each replica heartbeats `audit_replicas`. A replica whose heartbeat is older than `leaseMs`
 *    is dead: any survivor claims it (FOR UPDATE SKIP LOCKED, so one survivor does it) and, under
 *    the chain lock, commits the intents of its groups whose calls have no record yet as
 *    `interrupted` records in one transaction (and the one-row-per-call intents older versions
 *    wrote to `audit_intents`: in flight as interrupted, final ones as they are).
 *  - While PostgreSQL is down final records stay queued (bounded by `maxBacklog`: beyond it `begin`
 *    rejects), their `commit`s reject (the pipeline logs it), are retried with backoff, and drain
 *    when it returns, with no restart.
 */
import type { SQL } from "bun";
import type { AuditStore, CommittedRecord, Recovery, StoreContext } from "../contract.ts";
import type { Logger } from "../../log.ts";
import { columns, toRow, type SQLValue } from "../../trail/row.ts";
import type { AuditRecord } from "../../trail/record.ts";
import { defaultCheckpointSettings, type CheckpointSettings } from "../../trail/checkpoint.ts";
import { errorMessage } from "../../errors.ts";
import { append, keepRows, lockChain, prepareRows, tail, type PreparedRows } from "./chain.ts";
import { loadMeta, migrate, openPool, parseTarget, PostgresError, type PgTarget } from "./connection.ts";
import { fromRow } from "../../trail/row.ts";
import { transaction } from "./writer.ts";
import { groupRows, IntentGroups } from "./intents.ts";
import { PgTrail, signingKeyFor } from "./trail.ts";
import { PgReader } from "./reader.ts";
import { PgConsents } from "./consents.ts";
import { advanceRollup } from "./rollup.ts";
import { PgKeys } from "./keys.ts";
import { isRedactionRefusal } from "../../trail/erase-check.ts";

export interface PgStoreOptions {
  /** How long intents gather before they are written together (ms, default 1). */
  intentDelayMs?: number;
  /** A replica whose heartbeat is older than this is dead and its calls are recovered (ms, default 10,000). */
  leaseMs?: number;
  /** How often this replica heartbeats and looks for dead ones (ms, default 2,000). */
  heartbeatMs?: number;
  /** Records per append transaction (default 1,000). */
  batchRows?: number;
  /** How long one write to PostgreSQL may take before it counts as failed (ms, default 5,000). */
  deadlineMs?: number;
  /** Key lookups are cached this long (ms, default 0: every call asks the database, so a revocation applies from the next call). */
  keyCacheMs?: number;
  /** With `audit.retentionDays`: how often retention runs after the one at start (ms, default 3,600,000: hourly, as on SQLite). */
  retentionEveryMs?: number;
}

const outcomeIndex = columns.indexOf("outcome");
const errorIndex = columns.indexOf("error_type");

interface Queued {
  id: string;
  row: SQLValue[];
  /** Settles the `commit` that queued it (once: a record retried after a failed append has none). */
  done: ((error?: unknown) => void) | undefined;
}

export class PgAuditStore implements AuditStore {
  readonly replicaId = crypto.randomUUID();
  private readonly intents: IntentGroups;
  private queue: Queued[] = [];
  private appending = false;
  private appendTimer: Timer | undefined;
  /** Calls of an append that failed: its COMMIT may have landed, so their records need a look at the chain. */
  private readonly retried = new Set<string>();
  private failures = 0;
  private droppedRefused = 0;
  private readonly listeners = new Set<(records: readonly CommittedRecord[]) => void>();
  private idleWaiters: (() => void)[] = [];
  private heartbeatTimer: Timer | undefined;
  /** Every `checkpoint.everySeconds`: seals what was appended since the last checkpoint, as SQLite's writer does. */
  private checkpointTimer: Timer | undefined;
  /** With `audit.retentionDays`: hourly, records that aged past it lose their personal fields (as SQLite's writer does). */
  private retentionTimer: Timer | undefined;
  private lastCheckpoint = { seq: 0, at: Date.now() };
  private closed = false;
  /** How long an idle appender waits for more final records before it appends (the intents' delay). */
  private readonly appendDelayMs: number;
  private readonly leaseMs: number;
  private readonly batchRows: number;
  private readonly deadlineMs: number;
  private readonly maxBacklog: number;
  private readonly checkpoint: CheckpointSettings;

  private constructor(
    readonly sql: SQL,
    readonly target: PgTarget,
    readonly hashKey: Uint8Array,
    readonly chainId: string,
    readonly trail: PgTrail,
    readonly reader: PgReader,
    readonly keys: PgKeys,
    readonly consents: PgConsents,
    private readonly log: Logger,
    settings: StoreContext["audit"],
    options: PgStoreOptions,
  ) {
    const intentDelayMs = options.intentDelayMs ?? 1;
    this.appendDelayMs = intentDelayMs;
    this.leaseMs = options.leaseMs ?? 10_000;
    this.batchRows = options.batchRows ?? 1000;
    this.deadlineMs = options.deadlineMs ?? 5000;
    this.maxBacklog = settings.maxBacklog ?? 10_000;
    this.checkpoint = settings.checkpoint ?? defaultCheckpointSettings;
    this.intents = new IntentGroups(
      sql,
      this.replicaId,
      intentDelayMs,
      this.deadlineMs,
      () => this.settleIdle(),
      () => this.log.warn(this.missedLease()),
    );
    const heartbeatMs = options.heartbeatMs ?? 2000;
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), heartbeatMs);
    this.checkpointTimer = setInterval(() => void this.checkpointWhenIdle(), this.checkpoint.everySeconds * 1000);
    const retentionDays = settings.retentionDays;
    if (retentionDays !== undefined) {
      this.retentionTimer = setInterval(() => void this.retain(retentionDays), options.retentionEveryMs ?? 3_600_000);
    }
  }

  static async open(ctx: StoreContext, options: PgStoreOptions = {}): Promise<PgAuditStore> {
    const target = parseTarget(ctx.logDb);
    const sql = openPool(target);
    try {
      await migrate(sql, target.schema);
      const meta = await loadMeta(sql);
      const signingKey = await signingKeyFor(sql, ctx.audit.signingKey, { create: true });
      const trail = new PgTrail(sql, meta, signingKey, ctx.audit, ctx.log);
      const keys = new PgKeys(sql, options.keyCacheMs ?? 0, (tx, event) => trail.appendSealed(tx, [event]), {
        key: signingKey,
        chainId: meta.chainId,
        warn: ctx.log.warn,
      });
      // Rows an earlier version wrote are adopted by any open with the key, under ../key-signature.ts's rules.
      await keys.adoptLegacy();
      const consents = new PgConsents(sql, (tx, events) => trail.appendSealed(tx, events));
      const reader = new PgReader(sql);
      const store = new PgAuditStore(sql, target, meta.hashKey, meta.chainId, trail, reader, keys, consents, ctx.log, ctx.audit, options);
      await sql`INSERT INTO audit_replicas (replica_id) VALUES (${store.replicaId})`;
      if (ctx.audit.retentionDays !== undefined) {
        try {
          await trail.applyRetention(ctx.audit.retentionDays);
        } catch (error) {
          // A tampered record in the range refuses retention, not the proxy: it starts, and says so.
          if (!isRedactionRefusal(error)) throw error;
          ctx.log.error(`audit: retention did not run: ${errorMessage(error)}`);
        }
      }
      return store;
    } catch (error) {
      await sql.close({ timeout: 0 });
      throw new PostgresError(`cannot open the audit trail at ${target.display}: ${errorMessage(error)}`);
    }
  }

  begin(record: AuditRecord): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the audit store is closed"));
    if (this.queue.length >= this.maxBacklog) {
      return Promise.reject(
        new Error(
          `${this.queue.length} final records wait for PostgreSQL (audit.maxBacklog ${this.maxBacklog}); refusing new calls until it takes them`,
        ),
      );
    }
    return this.intents.write(record.id, toRow(record));
  }

  commit(record: AuditRecord): Promise<void> {
    const row = toRow(record);
    if (this.queue.length >= 2 * this.maxBacklog) {
      // Only records of calls refused before `begin` can get here (begin refuses past maxBacklog).
      this.droppedRefused++;
      if (this.droppedRefused === 1 || this.droppedRefused % 1000 === 0) {
        this.log.error(
          `audit: ${this.droppedRefused} record(s) of refused calls dropped while the chain is far behind (PostgreSQL unavailable or too slow)`,
        );
      }
      return Promise.resolve();
    }
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.queue.push({ id: record.id, row, done: (error) => (error === undefined ? resolve() : reject(error)) });
    this.scheduleAppend(this.appendDelayMs);
    return promise;
  }

  onCommitted(listener: (records: readonly CommittedRecord[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async recover(): Promise<Recovery> {
    return this.claimDead(true);
  }

  /** Final records not yet appended to the chain. */
  get backlog(): number {
    return this.queue.length;
  }

  flush(): Promise<void> {
    if (this.queue.length === 0 && this.intents.idle && !this.appending) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeatTimer);
    clearInterval(this.checkpointTimer);
    clearInterval(this.retentionTimer);
    // Commit what is queued while PostgreSQL takes it; whatever stays is in its intent group
    // (audit_intent_groups), where a survivor (or this replica's next start, by lease) commits it.
    const deadline = Date.now() + this.deadlineMs;
    while ((this.queue.length > 0 || !this.intents.idle || this.appending) && Date.now() < deadline) {
      if (!this.appending) this.scheduleAppend(0);
      await Bun.sleep(10);
    }
    clearTimeout(this.appendTimer);
    this.intents.stop();
    // Seal what this replica appended since its last checkpoint, as SQLite does on shutdown.
    if (this.queue.length === 0) {
      await transaction(this.sql, this.deadlineMs, async (tx) => {
        const last = await tail(tx);
        if (last.seq > this.lastCheckpoint.seq) await this.trail.checkpoint(tx, last);
      }).catch((error: unknown) => this.log.warn(`audit: no final checkpoint (${errorMessage(error)})`));
    }
    // With intents left (calls that never ended), the row stays: its lease runs out and a survivor
    // records them. Tombstones (./intents.ts) are no intents: they go with the row, which, once
    // deleted, no late group INSERT can land under (it needs the row). The row is locked first: a
    // group INSERT still under way holds it (KEY SHARE) until it commits, and the check after the
    // lock sees that group. A group whose tombstone could not be written keeps the row too (a
    // survivor recovers it, see ./intents.ts).
    if (this.queue.length === 0 && (await this.intents.bury())) {
      await transaction(this.sql, this.deadlineMs, async (tx) => {
        await tx`SELECT 1 FROM audit_replicas WHERE replica_id = ${this.replicaId} FOR UPDATE`;
        const gone = await tx`DELETE FROM audit_replicas WHERE replica_id = ${this.replicaId}
          AND NOT EXISTS (SELECT 1 FROM audit_intent_groups WHERE replica_id = ${this.replicaId} AND intents <> '[]') RETURNING 1`;
        if (gone.length > 0) await tx`DELETE FROM audit_intent_groups WHERE replica_id = ${this.replicaId} AND intents = '[]'`;
      }).catch(() => undefined);
    }
    for (const waiter of this.idleWaiters.splice(0)) waiter();
    await this.sql.close({ timeout: 1 });
  }

  // --- the chain: batched appends ---------------------------------------------------------------

  private scheduleAppend(ms: number): void {
    if (this.appending || this.appendTimer !== undefined) return;
    this.appendTimer = setTimeout(() => {
      this.appendTimer = undefined;
      void this.appendBatch();
    }, ms);
  }

  private async appendBatch(): Promise<void> {
    const batch = this.queue.slice(0, this.batchRows);
    if (batch.length === 0) return this.settleIdle();
    this.appending = true;
    try {
      // Hashed before the transaction: the chain lock is held only for what depends on the tail.
      const prepared = prepareRows(batch.map((q) => q.row));
      const ids = batch.map((q) => q.id);
      const { records: committed, landed } = await transaction(this.sql, this.deadlineMs * 2, (tx) => this.appendRows(tx, prepared, ids));
      landed();
      this.queue.splice(0, batch.length);
      for (const queued of batch) this.retried.delete(queued.id);
      this.failures = 0;
      for (const queued of batch) queued.done?.();
      this.report(committed);
    } catch (error) {
      this.failures++;
      const failure = new Error(`the audit trail in PostgreSQL cannot be written (the record stays queued): ${errorMessage(error)}`);
      for (const queued of batch) {
        queued.done?.(failure);
        queued.done = undefined;
        this.retried.add(queued.id);
      }
      if (this.failures === 1 || this.failures % 20 === 0) {
        this.log.error(
          `audit: ${this.queue.length} final record(s) queued, PostgreSQL does not take them (${errorMessage(error)}); retrying`,
        );
      }
    } finally {
      this.appending = false;
    }
    if (this.queue.length > 0) this.scheduleAppend(this.failures ? Math.min(2000, 100 * 2 ** this.failures) : 0);
    this.settleIdle();
  }

  /**
   * Appends the rows whose calls have no record yet (a survivor may have committed a call of this
   * replica's as interrupted, a retried batch may have landed before its COMMIT was lost), and
   * settles their intents — all under the chain lock, so the check cannot race another writer.
   */
  private async appendRows(tx: SQL, rows: PreparedRows, ids: string[]): Promise<{ records: CommittedRecord[]; landed: () => void }> {
    await lockChain(tx);
    // A call whose intent group is still ours has no record yet; only the others (refused before
    // `begin`, claimed by a survivor, or of a retried batch) need a look at the chain.
    const settled = await this.intents.settle(tx, ids, this.retried);
    const unsure = [...settled.unsure];
    const known = new Set(
      unsure.length
        ? ((await tx`SELECT id FROM audit_records WHERE id = ANY(${unsure}::text[])`) as { id: string }[]).map((r) => r.id)
        : [],
    );
    const fresh = known.size ? keepRows(rows, (i) => !known.has(ids[i]!)) : rows;
    const { stored, tail } = await append(tx, this.hashKey, fresh, [], this.trail.redactionSigner());
    await this.maybeCheckpoint(tx, tail);
    return { records: this.committedRecords(stored), landed: settled.landed };
  }

  /** The records as listeners get them (built only when someone listens: most replicas have no secondary sink). */
  private committedRecords(stored: { seq: number; hash: string; row: SQLValue[] }[]): CommittedRecord[] {
    if (this.listeners.size === 0) return [];
    return stored.map(({ seq, hash, row }) => ({ ...fromRow(row, seq), seq, hash }));
  }

  private async maybeCheckpoint(tx: SQL, tail: { seq: number; hash: string }): Promise<void> {
    const key = this.trail.signingKey;
    if (!key || tail.seq === 0) return;
    const due =
      tail.seq - this.lastCheckpoint.seq >= this.checkpoint.everyRecords ||
      Date.now() - this.lastCheckpoint.at >= this.checkpoint.everySeconds * 1000;
    if (!due) return;
    // Also when refused (an unsigned redaction event, logged by the trail): tried again at the next
    // due time, not at every batch.
    await this.trail.checkpoint(tx, tail);
    this.lastCheckpoint = { seq: tail.seq, at: Date.now() };
  }

  private report(records: CommittedRecord[]): void {
    if (records.length === 0) return;
    for (const listener of this.listeners) {
      try {
        listener(records);
      } catch (error) {
        this.log.error(`audit: a committed-records listener failed: ${errorMessage(error)}`);
      }
    }
  }

  private settleIdle(): void {
    if (this.queue.length === 0 && this.intents.idle && !this.appending) {
      for (const waiter of this.idleWaiters.splice(0)) waiter();
    }
  }

  private async checkpointWhenIdle(): Promise<void> {
    if (this.closed) return;
    try {
      const signed = await this.trail.checkpointIfBehind();
      if (signed) this.lastCheckpoint = { seq: signed.seq, at: Date.now() };
    } catch (error) {
      // PostgreSQL is unavailable (the appender reports that); the next interval tries again.
      if (!this.closed) this.log.warn(`audit: no checkpoint this interval (${errorMessage(error)})`);
    }
  }

  private async retain(days: number): Promise<void> {
    if (this.closed) return;
    try {
      await this.trail.applyRetention(days);
    } catch (error) {
      if (this.closed) return;
      // A record in the range was edited in the database: retention refuses to launder it, loudly, every hour until the trail is restored.
      if (isRedactionRefusal(error)) this.log.error(`audit: retention did not run: ${errorMessage(error)}`);
      else this.log.warn(`audit: retention did not run this hour (${errorMessage(error)}); it runs again at the next`);
    }
  }

  // --- liveness: heartbeats and leases -----------------------------------------------------------

  private missedLease(): string {
    return `audit: this replica missed its lease (${this.leaseMs} ms); its calls in flight were recorded as interrupted by another replica`;
  }

  private async heartbeat(): Promise<void> {
    if (this.closed) return;
    try {
      const alive = await this.sql`UPDATE audit_replicas SET heartbeat_at = now() WHERE replica_id = ${this.replicaId} RETURNING 1`;
      if (alive.length === 0) {
        // Declared dead (a pause longer than the lease): our intents were committed by a survivor.
        this.log.warn(this.missedLease());
        await this
          .sql`INSERT INTO audit_replicas (replica_id) VALUES (${this.replicaId}) ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = now()`;
      }
      await this.claimDead();
      if (this.queue.length > 0) this.scheduleAppend(0);
      await advanceRollup(this.sql);
    } catch {
      // PostgreSQL is unavailable: begin/commit report it; the next beat tries again.
    }
  }

  /**
   * Commits the intents of replicas whose lease ran out (one survivor each, SKIP LOCKED), as
   * `interrupted` records for the calls that have no record yet. With `orphans` (at start), also
   * those of replicas whose row is gone (one that closed with intents left, which a replica of this
   * version never does: it keeps its row then, and its lease runs out; or one an older version's
   * survivor claimed without knowing intent groups) — at the price of a scan of the intents, too
   * dear for every heartbeat.
   */
  private async claimDead(orphans = false): Promise<Recovery> {
    const total: Recovery = { interrupted: 0, finished: 0 };
    const committed = await transaction(this.sql, this.deadlineMs * 2, async (tx) => {
      const dead = (await tx`SELECT replica_id FROM audit_replicas
        WHERE heartbeat_at < now() - make_interval(secs => ${this.leaseMs / 1000}) AND replica_id <> ${this.replicaId}
        FOR UPDATE SKIP LOCKED`) as { replica_id: string }[];
      if (dead.length === 0 && !orphans) return [];
      // The lock first: a dead replica's appender may still be in a transaction that lands some of
      // its calls; once we hold the lock, what it landed is in the chain and its groups are ours.
      await lockChain(tx);
      const ids = dead.map((d) => d.replica_id);
      const orphan = orphans ? this.replicaId : null;
      const groups = (await tx`DELETE FROM audit_intent_groups g
        WHERE replica_id = ANY(${ids}::text[])
           OR (${orphan}::text IS NOT NULL AND replica_id <> ${orphan}
               AND NOT EXISTS (SELECT 1 FROM audit_replicas r WHERE r.replica_id = g.replica_id))
        RETURNING intents, created_at, n`) as { intents: string; created_at: Date; n: string }[];
      // One row per call: what older versions wrote (final = true: a final record not yet in the chain).
      const single = (await tx`DELETE FROM audit_intents i
        WHERE replica_id = ANY(${ids}::text[])
           OR (${orphan}::text IS NOT NULL AND replica_id <> ${orphan}
               AND NOT EXISTS (SELECT 1 FROM audit_replicas r WHERE r.replica_id = i.replica_id))
        RETURNING final, row, created_at`) as { final: boolean; row: string; created_at: Date }[];
      await tx`DELETE FROM audit_replicas WHERE replica_id = ANY(${ids}::text[])`;
      type Intent = { row: SQLValue[]; final: boolean; at: number; order: number };
      const intents: Intent[] = [];
      for (const group of groups) {
        for (const [order, row] of groupRows(group.intents).entries()) {
          intents.push({ row, final: false, at: group.created_at.getTime(), order });
        }
      }
      for (const intent of single) {
        intents.push({ row: JSON.parse(intent.row) as SQLValue[], final: intent.final, at: intent.created_at.getTime(), order: 0 });
      }
      if (intents.length === 0) return [];
      intents.sort((a, b) => a.at - b.at || a.order - b.order);
      const known = new Set(
        ((await tx`SELECT id FROM audit_records WHERE id = ANY(${intents.map((i) => String(i.row[0]))}::text[])`) as { id: string }[]).map(
          (r) => r.id,
        ),
      );
      const rows: SQLValue[][] = [];
      for (const { row, final } of intents) {
        if (known.has(String(row[0]))) continue;
        known.add(String(row[0]));
        if (final && row[outcomeIndex] !== null) {
          total.finished++;
        } else {
          row[outcomeIndex] = "interrupted";
          row[errorIndex] = "interrupted";
          total.interrupted++;
        }
        rows.push(row);
      }
      const { stored } = await append(tx, this.hashKey, rows, [], this.trail.redactionSigner());
      return this.committedRecords(stored);
    });
    if (committed.length > 0) {
      this.log.info(`audit: recovered ${total.interrupted} interrupted and ${total.finished} finished call(s) of replicas that stopped`);
    }
    this.report(committed);
    return total;
  }
}
