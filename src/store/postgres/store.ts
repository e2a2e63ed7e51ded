/**
 * The PostgreSQL audit store: many replicas, one trail.
 *  - `begin` writes the call's intent to `audit_intents` (tagged with this replica's id) before the
 *    call is forwarded. Intents of concurrent calls are group-committed: everything that arrives
 *    within `intentDelayMs` (default 1 ms), or while the previous flush is in flight, goes in one
 *    COPY (its own transaction); each `begin` resolves once its row is committed, and rejects at
 *    once if PostgreSQL is unreachable (→ 503 audit_unavailable unless failOpen).
 *  - `commit` queues the final record for the chain and resolves once it is there: an appender
 *    takes up to `batchRows` queued records per transaction, appends them under the chain lock
 *    (./chain.ts, COPY) and deletes their intents in the same transaction — the final record
 *    replaces its intent atomically, in the one write that also makes it durable. (There is no
 *    separate durable copy of the final record: until its append commits, the call's intent is what
 *    a survivor finds, so a replica killed before then leaves an `interrupted` record; the client
 *    has not received the call's last byte yet, which waits for `commit`.)
 *  - Each replica heartbeats `audit_replicas`. A replica whose heartbeat is older than `leaseMs`
 *    is dead: any survivor claims it (FOR UPDATE SKIP LOCKED, so one survivor does it) and commits
 *    its intents as `interrupted` records (final ones, which older versions wrote, as they are) in
 *    one transaction.
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
import { append, lockChain, tail } from "./chain.ts";
import { loadMeta, migrate, openPool, parseTarget, PostgresError, type PgTarget } from "./connection.ts";
import { fromRow } from "../../trail/row.ts";
import { copyRows, onConnection, transaction } from "./writer.ts";
import { PgTrail, signingKeyFor } from "./trail.ts";
import { PgReader } from "./reader.ts";
import { PgConsents } from "./consents.ts";
import { advanceRollup } from "./rollup.ts";
import { PgKeys } from "./keys.ts";

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

interface PendingIntent {
  id: string;
  row: string;
  done: (error?: unknown) => void;
}
interface Queued {
  id: string;
  row: SQLValue[];
  /** Settles the `commit` that queued it (once: a record retried after a failed append has none). */
  done: ((error?: unknown) => void) | undefined;
}

export class PgAuditStore implements AuditStore {
  readonly replicaId = crypto.randomUUID();
  private pending: PendingIntent[] = [];
  private flushing = false;
  private flushTimer: Timer | undefined;
  private queue: Queued[] = [];
  private appending = false;
  private appendTimer: Timer | undefined;
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
  private readonly intentDelayMs: number;
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
    this.intentDelayMs = options.intentDelayMs ?? 1;
    this.appendDelayMs = this.intentDelayMs;
    this.leaseMs = options.leaseMs ?? 10_000;
    this.batchRows = options.batchRows ?? 1000;
    this.deadlineMs = options.deadlineMs ?? 5000;
    this.maxBacklog = settings.maxBacklog ?? 10_000;
    this.checkpoint = settings.checkpoint ?? defaultCheckpointSettings;
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
      const keys = new PgKeys(sql, options.keyCacheMs ?? 0, (tx, event) => trail.appendSealed(tx, [event]));
      const consents = new PgConsents(sql, (tx, events) => trail.appendSealed(tx, events));
      const reader = new PgReader(sql);
      const store = new PgAuditStore(sql, target, meta.hashKey, meta.chainId, trail, reader, keys, consents, ctx.log, ctx.audit, options);
      await sql`INSERT INTO audit_replicas (replica_id) VALUES (${store.replicaId})`;
      if (ctx.audit.retentionDays !== undefined) await trail.applyRetention(ctx.audit.retentionDays);
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
    return this.writeIntent(record.id, toRow(record));
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
    if (this.queue.length === 0 && this.pending.length === 0 && !this.appending) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeatTimer);
    clearInterval(this.checkpointTimer);
    clearInterval(this.retentionTimer);
    // Commit what is queued while PostgreSQL takes it; whatever stays is in audit_intents, where a
    // survivor (or this replica's next start, by lease) commits it.
    const deadline = Date.now() + this.deadlineMs;
    while ((this.queue.length > 0 || this.pending.length > 0 || this.appending || this.flushing) && Date.now() < deadline) {
      if (!this.appending) this.scheduleAppend(0);
      await Bun.sleep(10);
    }
    clearTimeout(this.appendTimer);
    clearTimeout(this.flushTimer);
    // Seal what this replica appended since its last checkpoint, as SQLite does on shutdown.
    if (this.queue.length === 0) {
      await transaction(this.sql, this.deadlineMs, async (tx) => {
        const last = await tail(tx);
        if (last.seq > this.lastCheckpoint.seq) await this.trail.checkpoint(tx, last);
      }).catch((error: unknown) => this.log.warn(`audit: no final checkpoint (${errorMessage(error)})`));
    }
    // With intents left (calls that never ended), the row stays: its lease runs out and a survivor records them.
    if (this.queue.length === 0) {
      await this.sql`DELETE FROM audit_replicas WHERE replica_id = ${this.replicaId}
        AND NOT EXISTS (SELECT 1 FROM audit_intents WHERE replica_id = ${this.replicaId})`.catch(() => undefined);
    }
    for (const waiter of this.idleWaiters.splice(0)) waiter();
    await this.sql.close({ timeout: 1 });
  }

  // --- intents: group commit -------------------------------------------------------------------

  private writeIntent(id: string, row: SQLValue[]): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.pending.push({ id, row: JSON.stringify(row), done: (error) => (error === undefined ? resolve() : reject(error)) });
    if (!this.flushing && this.flushTimer === undefined) this.flushTimer = setTimeout(() => void this.flushIntents(), this.intentDelayMs);
    return promise;
  }

  private async flushIntents(): Promise<void> {
    this.flushTimer = undefined;
    if (this.flushing || this.pending.length === 0) return;
    this.flushing = true;
    const batch = this.pending.splice(0);
    try {
      // One COPY, committed on its own (no BEGIN/COMMIT round trips): the rows are durable when it returns.
      await onConnection(this.sql, this.deadlineMs, (connection) =>
        copyRows(
          connection,
          "audit_intents (id, replica_id, final, row)",
          batch.map((intent) => [intent.id, this.replicaId, "f", intent.row]),
        ),
      );
      for (const intent of batch) intent.done();
    } catch (error) {
      const failure = new Error(`the audit trail in PostgreSQL cannot be written: ${errorMessage(error)}`);
      for (const intent of batch) intent.done(failure);
    } finally {
      this.flushing = false;
      if (this.pending.length > 0) this.flushTimer = setTimeout(() => void this.flushIntents(), this.intentDelayMs);
      this.settleIdle();
    }
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
      const committed = await transaction(this.sql, this.deadlineMs * 2, (tx) =>
        this.appendRows(
          tx,
          batch.map((q) => q.row),
          batch.map((q) => q.id),
        ),
      );
      this.queue.splice(0, batch.length);
      this.failures = 0;
      for (const queued of batch) queued.done?.();
      this.report(committed);
    } catch (error) {
      this.failures++;
      const failure = new Error(`the audit trail in PostgreSQL cannot be written (the record stays queued): ${errorMessage(error)}`);
      for (const queued of batch) {
        queued.done?.(failure);
        queued.done = undefined;
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
   * deletes their intents — all under the chain lock, so the check cannot race another writer.
   */
  private async appendRows(tx: SQL, rows: SQLValue[][], ids: string[]): Promise<CommittedRecord[]> {
    await lockChain(tx);
    // Every call that began has its intent row, unless a survivor claimed it or an earlier attempt
    // of this batch landed: only those few (and calls refused before `begin`) need a look at the chain.
    const had = new Set(
      ((await tx`DELETE FROM audit_intents WHERE id = ANY(${ids}::text[]) RETURNING id`) as { id: string }[]).map((r) => r.id),
    );
    const unsure = ids.filter((id) => !had.has(id));
    const known = new Set(
      unsure.length
        ? ((await tx`SELECT id FROM audit_records WHERE id = ANY(${unsure}::text[])`) as { id: string }[]).map((r) => r.id)
        : [],
    );
    const fresh = rows.filter((_, i) => !known.has(ids[i]!));
    const { stored, tail } = await append(tx, this.hashKey, fresh);
    await this.maybeCheckpoint(tx, tail);
    return this.committedRecords(stored);
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
    if (this.queue.length === 0 && this.pending.length === 0 && !this.appending && !this.flushing) {
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
      if (!this.closed) this.log.warn(`audit: retention did not run this hour (${errorMessage(error)}); it runs again at the next`);
    }
  }

  // --- liveness: heartbeats and leases -----------------------------------------------------------

  private async heartbeat(): Promise<void> {
    if (this.closed) return;
    try {
      const alive = await this.sql`UPDATE audit_replicas SET heartbeat_at = now() WHERE replica_id = ${this.replicaId} RETURNING 1`;
      if (alive.length === 0) {
        // Declared dead (a pause longer than the lease): our intents were committed by a survivor.
        this.log.warn(
          `audit: this replica missed its lease (${this.leaseMs} ms); its calls in flight were recorded as interrupted by another replica`,
        );
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
   * Commits the intents of replicas whose lease ran out (one survivor each, SKIP LOCKED). With
   * `orphans` (at start), also those of replicas that closed with intents left — which a replica
   * of this version never does (it keeps its row then, and its lease runs out) — at the price of a
   * scan of the intents, too dear for every heartbeat.
   */
  private async claimDead(orphans = false): Promise<Recovery> {
    const total: Recovery = { interrupted: 0, finished: 0 };
    const committed = await transaction(this.sql, this.deadlineMs * 2, async (tx) => {
      const dead = (await tx`SELECT replica_id FROM audit_replicas
        WHERE heartbeat_at < now() - make_interval(secs => ${this.leaseMs / 1000}) AND replica_id <> ${this.replicaId}
        FOR UPDATE SKIP LOCKED`) as { replica_id: string }[];
      // Intents whose replica row is gone (it closed with work it could not commit) are orphans.
      const ids = dead.map((d) => d.replica_id);
      type Intent = { id: string; final: boolean; row: string; created_at: Date };
      const intents = (
        orphans
          ? await tx`DELETE FROM audit_intents
              WHERE replica_id = ANY(${ids}::text[])
                 OR (replica_id <> ${this.replicaId} AND NOT EXISTS (SELECT 1 FROM audit_replicas r WHERE r.replica_id = audit_intents.replica_id))
              RETURNING id, final, row, created_at`
          : ids.length
            ? await tx`DELETE FROM audit_intents WHERE replica_id = ANY(${ids}::text[]) RETURNING id, final, row, created_at`
            : []
      ) as Intent[];
      await tx`DELETE FROM audit_replicas WHERE replica_id = ANY(${ids}::text[])`;
      if (intents.length === 0) return [];
      intents.sort((a, b) => a.created_at.getTime() - b.created_at.getTime());
      const rows = intents.map((intent) => {
        const row = JSON.parse(intent.row) as SQLValue[];
        if (intent.final && row[outcomeIndex] !== null) {
          total.finished++;
        } else {
          row[outcomeIndex] = "interrupted";
          row[errorIndex] = "interrupted";
          total.interrupted++;
        }
        return row;
      });
      await lockChain(tx);
      const known = new Set(
        ((await tx`SELECT id FROM audit_records WHERE id = ANY(${intents.map((i) => i.id)}::text[])`) as { id: string }[]).map((r) => r.id),
      );
      const { stored } = await append(
        tx,
        this.hashKey,
        rows.filter((row) => !known.has(String(row[0]))),
      );
      return this.committedRecords(stored);
    });
    if (committed.length > 0) {
      this.log.info(`audit: recovered ${total.interrupted} interrupted and ${total.finished} finished call(s) of replicas that stopped`);
    }
    this.report(committed);
    return total;
  }
}
