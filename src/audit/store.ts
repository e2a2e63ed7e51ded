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

type SQLValue = string | number | null;

interface QueuedWrite {
  record: AuditRecord;
  committed?: { resolve: () => void; reject: (error: Error) => void };
}

export interface AuditStoreOptions {
  /** Called when a commit fails; the store retries queued final records every `retryMs`. */
  onError?: (message: string) => void;
  retryMs?: number;
}

export class SqliteAuditStore {
  readonly db: Database;
  readonly orm: BunSQLiteDatabase<typeof schema>;
  readonly reader: SqliteAuditReader;
  private readonly insert: Statement;
  private readonly update: Statement;
  private queue: QueuedWrite[] = [];
  private scheduled = false;
  private retryTimer: Timer | undefined;
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
    // Same parameter order as the insert; id (first) and timestamp (second) are not overwritten.
    this.update = this.db.prepare(
      `UPDATE audit_records SET ${columns.map((c, i) => `${c} = ?${i + 1}`).slice(2).join(", ")} WHERE id = ?1`,
    );
  }

  /** Queue the in-flight record; resolves once it is committed to disk. */
  begin(record: AuditRecord): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the audit store is closed"));
    return new Promise((resolve, reject) => {
      this.queue.push({ record, committed: { resolve, reject } });
      this.schedule();
    });
  }

  /** Queue a final record (inserted, or replacing the in-flight one with the same id). */
  write(record: AuditRecord): void {
    this.queue.push({ record });
    if (!this.closed) this.schedule();
  }

  /** Commit everything queued now. Throws if the database refuses the write. */
  flush(): void {
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    try {
      this.db.transaction(() => {
        for (const item of batch) {
          const row = toRow(item.record);
          // A final record replaces its in-flight row; calls refused before forwarding have none.
          if (item.committed || this.update.run(...row).changes === 0) this.insert.run(...row);
        }
      })();
    } catch (error) {
      for (const item of batch) item.committed?.reject(error instanceof Error ? error : new Error(String(error)));
      // Final records must not be lost: keep them for the next attempt.
      this.queue = batch.filter((item) => !item.committed).concat(this.queue);
      throw error;
    }
    for (const item of batch) item.committed?.resolve();
  }

  /** Mark records left in flight by a previous process as interrupted; returns how many. */
  recoverInterrupted(): number {
    return this.db.run(
      "UPDATE audit_records SET outcome = 'interrupted', error_type = COALESCE(error_type, 'interrupted') WHERE outcome IS NULL",
    ).changes;
  }

  close(): void {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    this.flush();
    this.closed = true;
    this.db.close();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      try {
        this.flush();
      } catch (error) {
        this.options.onError?.(`audit write failed, will retry: ${errorMessage(error)}`);
        if (this.queue.length > 0 && !this.retryTimer) {
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            this.schedule();
          }, this.options.retryMs ?? 1000);
        }
      }
    });
  }
}

function toRow(record: AuditRecord): SQLValue[] {
  return columns.map((column) => {
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
