/**
 * The intent log: before a call is forwarded, its in-flight record is appended to a plain file
 * beside the database (`<log-db>.intents-<pid>-<n>`, one JSON row per line) with a synchronous
 * write. Once written, the bytes are in the kernel and survive a crash of the process (the same
 * guarantee as SQLite's WAL with synchronous=NORMAL) at the cost of one write(2), without a
 * database transaction on the hot path. When a call's final record is committed to SQLite its
 * intent is settled; a segment whose intents are all settled is deleted.
 *
 * After a crash, `recoverIntents` turns every intent that has no final record into an
 * `interrupted` record, so a call that reached an upstream is never missing from the trail.
 *
 * Each segment starts with a header line naming its columns (`{"columns":[...]}`), so a newer
 * version with more or reordered columns still recovers what an older one left behind.
 */
import { closeSync, existsSync, openSync, readFileSync, readdirSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { ChainWriter } from "./chain.ts";
import { columns, toRow, type SQLValue } from "./database.ts";
import type { AuditRecord } from "./record.ts";

/** A segment is closed for new intents past this size and deleted once all of them are settled. */
const defaultSegmentBytes = 8 * 1024 * 1024;

/** The columns of segments written before segments had a header (agent-attr 0.1.0). */
const headerlessColumns = [
  "id", "timestamp", "duration_ms", "ttfb_ms", "agent_id", "user_id", "task_context", "session_id",
  "parent_agent_id", "trace_id", "attribution", "key_id", "provider", "endpoint", "model",
  "response_model", "stream", "status", "outcome", "input_tokens", "output_tokens",
  "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "usage_source", "cost_usd",
  "price_source", "prompt_hash", "response_hash", "error_type",
];

const header = `${JSON.stringify({ columns })}\n`;

export class IntentLog {
  private fd: number | null = null;
  private segment = 0;
  private bytes = 0;
  /** Unsettled intents: id → segment. */
  private readonly pending = new Map<string, number>();
  /** Unsettled intents per segment. */
  private readonly counts = new Map<number, number>();

  constructor(
    private readonly logDb: string,
    private readonly segmentBytes = defaultSegmentBytes,
  ) {}

  /** Appends the in-flight record; throws (e.g. disk full) if it could not be written. */
  append(record: AuditRecord): void {
    if (this.fd === null) {
      this.fd = openSync(this.file(this.segment), "a", 0o600);
      writeSync(this.fd, header);
      this.bytes += header.length;
    }
    const line = `${JSON.stringify(toRow(record))}\n`;
    writeSync(this.fd, line);
    this.bytes += line.length;
    this.pending.set(record.id, this.segment);
    this.counts.set(this.segment, (this.counts.get(this.segment) ?? 0) + 1);
    if (this.bytes > this.segmentBytes) this.rotate();
  }

  /** The final records of these calls are committed: their intents are no longer needed. */
  settle(ids: Iterable<string>): void {
    for (const id of ids) {
      const segment = this.pending.get(id);
      if (segment === undefined) continue;
      this.pending.delete(id);
      const left = (this.counts.get(segment) ?? 1) - 1;
      this.counts.set(segment, left);
      if (left === 0 && segment !== this.segment) this.remove(segment);
    }
  }

  /** Closes the current segment; deletes it if nothing in it is unsettled. */
  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    if ((this.counts.get(this.segment) ?? 0) === 0 && existsSync(this.file(this.segment))) this.remove(this.segment);
  }

  private rotate(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    if ((this.counts.get(this.segment) ?? 0) === 0) this.remove(this.segment);
    this.segment++;
    this.bytes = 0;
  }

  private remove(segment: number): void {
    this.counts.delete(segment);
    try {
      unlinkSync(this.file(segment));
    } catch {
      // Already gone: nothing to keep.
    }
  }

  private file(segment: number): string {
    return `${this.logDb}.intents-${process.pid}-${segment}`;
  }
}

/**
 * Records every intent left by processes that are gone and has no final record as `interrupted`,
 * then deletes those segments. Segments of a live process (another proxy on the same database)
 * are left alone. Returns the number of interrupted calls recorded.
 */
export function recoverIntents(chain: ChainWriter, logDb: string): number {
  const dir = dirname(logDb) || ".";
  const prefix = `${basename(logDb)}.intents-`;
  const exists = chain.db.prepare("SELECT 1 FROM audit_records WHERE id = ?");
  const outcomeIndex = columns.indexOf("outcome");
  const errorIndex = columns.indexOf("error_type");
  let recovered = 0;
  for (const name of readdirSync(dir).filter((file) => file.startsWith(prefix)).sort()) {
    const pid = Number(name.slice(prefix.length).split("-")[0]);
    if (pid !== process.pid && isAlive(pid)) continue;
    const path = join(dir, name);
    const rows = readSegment(readFileSync(path, "utf8"));
    // Appended to the chain like any record (and redacted if its user was erased meanwhile).
    chain.transaction(() => {
      const interrupted = rows.filter((row) => !exists.get(row[0]!));
      for (const row of interrupted) {
        row[outcomeIndex] = "interrupted";
        row[errorIndex] = "interrupted";
      }
      chain.appendInTransaction(interrupted);
      recovered += interrupted.length;
    });
    unlinkSync(path);
  }
  exists.finalize();
  return recovered;
}

/**
 * A segment's rows in today's `columns` order (columns the writer did not know are null). A line
 * cut short by the crash is skipped: its call never reached an upstream.
 */
export function readSegment(text: string): SQLValue[][] {
  const lines = text.split("\n");
  const head = parseLine(lines[0] ?? "");
  const named = head !== null && !Array.isArray(head) && Array.isArray((head as { columns?: unknown }).columns);
  const written = named ? ((head as { columns: string[] }).columns) : headerlessColumns;
  const positions = columns.map((column) => written.indexOf(column));
  if (positions[0] === -1) return []; // no id column: nothing to recover by
  return lines.slice(named ? 1 : 0).flatMap((line) => {
    const row = parseLine(line);
    if (!Array.isArray(row) || row.length !== written.length) return [];
    return [positions.map((at) => (at === -1 ? null : (row[at] as SQLValue)))];
  });
}

function parseLine(line: string): unknown {
  if (!line) return null;
  try {
    return JSON.parse(line) as unknown;
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
