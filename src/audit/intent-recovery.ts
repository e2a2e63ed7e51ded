/**
 * Crash recovery of the intent log (./intent-log.ts): the intents a killed process left behind
 * become `interrupted` records. Reads segments of any version: the header line names the columns
 * (a headerless segment is agent-attr 0.1.0's), and the zeros after the last line are not part of it.
 */
import { readFileSync, readdirSync, unlinkSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { ChainWriter } from "./chain.ts";
import { columns, type SQLValue } from "./database.ts";
import { parseLine } from "./intent-log.ts";

/** The columns of segments written before segments had a header (agent-attr 0.1.0). */
const headerlessColumns = [
  "id", "timestamp", "duration_ms", "ttfb_ms", "agent_id", "user_id", "task_context", "session_id",
  "parent_agent_id", "trace_id", "attribution", "key_id", "provider", "endpoint", "model",
  "response_model", "stream", "status", "outcome", "input_tokens", "output_tokens",
  "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "usage_source", "cost_usd",
  "price_source", "prompt_hash", "response_hash", "error_type",
];

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
  const end = text.indexOf("\0");
  const lines = (end === -1 ? text : text.slice(0, end)).split("\n");
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

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
