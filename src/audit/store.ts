/**
 * The embedded audit store: SQLite through bun:sqlite (WAL, synchronous=NORMAL: a committed
 * transaction survives a crash of the process). Writes are queued and committed together once per
 * event-loop turn (group commit), so many concurrent calls share one transaction:
 *  - `begin` resolves only after the in-flight record is committed, so no call reaches an upstream
 *    without a durable record;
 *  - `write` (the final record) is queued and committed on the next turn; a failed commit keeps the
 *    records queued and retries, so nothing is silently dropped.
 * On start, records left in flight by a killed process become `interrupted` (`recoverInterrupted`).
 */
import { Database, type Statement } from "bun:sqlite";
import { drizzle, type BunSQLiteDatabase } from "drizzle-orm/bun-sqlite";
import { errorMessage } from "../errors.ts";
import { migrate } from "./migrate.ts";
import { SqliteAuditReader } from "./query.ts";
import type { AuditRecord } from "./record.ts";
import * as schema from "./schema.ts";

const columns = [
  "id", "timestamp", "duration_ms", "ttfb_ms", "agent_id", "user_id", "task_context", "session_id",
  "parent_agent_id", "trace_id", "attribution", "key_id", "provider", "endpoint", "model",
  "response_model", "stream", "status", "outcome", "input_tokens", "output_tokens",
  "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "usage_source", "cost_usd",
  "price_source", "prompt_hash", "response_hash", "error_type",
] as const satisfies readonly (keyof AuditRecord)[];

/** What the end of a call adds to its in-flight record; the rest (identity, request) is fixed. */
const finalColumns = [
  "duration_ms", "ttfb_ms", "response_model", "status", "outcome", "input_tokens", "output_tokens",
  "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "usage_source", "cost_usd",
  "price_source", "response_hash", "error_type",
] as const satisfies readonly (keyof AuditRecord)[];

type SQLValue = string | number | null;

interface QueuedBegin {
  record: AuditRecord;
  resolve: () => void;
  reject: (error: Error) => void;
}

export interface AuditStoreOptions {
  /** Called when a commit fails; the store retries queued final records every `retryMs`. */
  onError?: (message: string) => void;
  retryMs?: number;
  /** Final records wait at most this long (ms) to share a commit; in-flight records never wait. */
  finalDelayMs?: number;
}

export class SqliteAuditStore {
  readonly db: Database;
  readonly orm: BunSQLiteDatabase<typeof schema>;
  readonly reader: SqliteAuditReader;
  private readonly insert: Statement;
  private readonly update: Statement;
  private begins: QueuedBegin[] = [];
  private finals: AuditRecord[] = [];
  /** seq of each committed in-flight record, so its final update is a rowid lookup. */
  private readonly inflightSeq = new Map<string, number>();
  private immediate = false;
  private timer: Timer | undefined;
  private closed = false;

  constructor(
    readonly path: string,
    private readonly options: AuditStoreOptions = {},
  ) {
    this.db = openDatabase(path);
    migrate(this.db);
    this.orm = drizzle(this.db, { schema });
    this.reader = new SqliteAuditReader(this.orm);
    this.insert = this.db.prepare(
      `INSERT INTO audit_records (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`,
    );
    this.update = this.db.prepare(
      `UPDATE audit_records SET ${finalColumns.map((c) => `${c} = ?`).join(", ")} WHERE seq = ?`,
    );
  }

  /** Queue the in-flight record; resolves once it is committed to disk. */
  begin(record: AuditRecord): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the audit store is closed"));
    return new Promise((resolve, reject) => {
      this.begins.push({ record, resolve, reject });
      this.scheduleNow();
    });
  }

  /**
   * Queue a final record: it completes its in-flight row (committed within `finalDelayMs`), or is a
   * new row for a call that was never forwarded (committed at once, so `seq` follows arrival).
   */
  write(record: AuditRecord): void {
    this.finals.push(record);
    if (this.closed) return;
    if (this.inflightSeq.has(record.id)) this.scheduleSoon(this.options.finalDelayMs ?? 5);
    else this.scheduleNow();
  }

  /** Commit everything queued now. Throws if the database refuses the write. */
  flush(): void {
    if (this.begins.length === 0 && this.finals.length === 0) return;
    const begins = this.begins;
    const finals = this.finals;
    this.begins = [];
    this.finals = [];
    const seqs: [string, number][] = [];
    try {
      this.db.transaction(() => {
        for (const item of begins) {
          seqs.push([item.record.id, Number(this.insert.run(...toRow(item.record, columns)).lastInsertRowid)]);
        }
        for (const record of finals) {
          const seq = this.inflightSeq.get(record.id) ?? seqs.find(([id]) => id === record.id)?.[1];
          if (seq === undefined) this.insert.run(...toRow(record, columns));
          else this.update.run(...toRow(record, finalColumns), seq);
        }
      })();
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      for (const item of begins) item.reject(failure);
      // Final records must not be lost: keep them for the next attempt.
      this.finals = finals.concat(this.finals);
      throw error;
    }
    for (const [id, seq] of seqs) this.inflightSeq.set(id, seq);
    for (const record of finals) this.inflightSeq.delete(record.id);
    for (const item of begins) item.resolve();
  }

  /** Mark records left in flight by a previous process as interrupted; returns how many. */
  recoverInterrupted(): number {
    return this.db.run(
      "UPDATE audit_records SET outcome = 'interrupted', error_type = COALESCE(error_type, 'interrupted') WHERE outcome IS NULL",
    ).changes;
  }

  close(): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.flush();
    this.closed = true;
    this.db.close();
  }

  private scheduleNow(): void {
    if (this.immediate) return;
    this.immediate = true;
    setImmediate(() => {
      this.immediate = false;
      this.commit();
    });
  }

  private scheduleSoon(ms: number): void {
    if (this.timer || this.immediate) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.commit();
    }, ms);
  }

  private commit(): void {
    try {
      this.flush();
    } catch (error) {
      this.options.onError?.(`audit write failed, will retry: ${errorMessage(error)}`);
      if (this.finals.length > 0) this.scheduleSoon(this.options.retryMs ?? 1000);
    }
  }
}

function toRow(record: AuditRecord, fields: readonly (keyof AuditRecord)[]): SQLValue[] {
  return fields.map((column) => {
    const value = record[column];
    return typeof value === "boolean" ? (value ? 1 : 0) : value;
  });
}

export function openDatabase(path: string): Database {
  const db = new Database(path, { create: true, strict: true });
  db.run("PRAGMA busy_timeout = 5000");
  db.run("PRAGMA journal_mode = WAL");
  db.run("PRAGMA synchronous = NORMAL");
  return db;
}
