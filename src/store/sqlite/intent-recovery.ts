/**
 * Crash recovery of the intent log (./intent-log.ts): what a killed process left behind is
 * committed — a call's final line as it is (the client may have seen the call finish: its usage
 * and cost are kept), an intent without one as an `interrupted` record. Reads segments of any
 * version: the header line names the columns (a headerless segment is agent-attr 0.1.0's), and the
 * zeros after the last line are not part of it.
 */
import { readFileSync, readdirSync, unlinkSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { ChainWriter } from "./chain-writer.ts";
import { columns, type SQLValue } from "../../trail/row.ts";
import type { CommittedRecord } from "../contract.ts";
import { committedRecord } from "./committed.ts";
import { parseLine, rowOfLine } from "./intent-log.ts";

/** The columns of segments written before segments had a header (agent-attr 0.1.0). */
const headerlessColumns = [
  "id",
  "timestamp",
  "duration_ms",
  "ttfb_ms",
  "agent_id",
  "user_id",
  "task_context",
  "session_id",
  "parent_agent_id",
  "trace_id",
  "attribution",
  "key_id",
  "provider",
  "endpoint",
  "model",
  "response_model",
  "stream",
  "status",
  "outcome",
  "input_tokens",
  "output_tokens",
  "cache_read_tokens",
  "cache_write_tokens",
  "reasoning_tokens",
  "usage_source",
  "cost_usd",
  "price_source",
  "prompt_hash",
  "response_hash",
  "error_type",
];

/**
 * Commits what processes that are gone left in their segments and has no record yet — final lines
 * as they are, intents without a final line as `interrupted` — then deletes those segments. A call
 * may have lines in several segments (its intent in one, its final line in a later one, or both
 * twice after a compaction cut short): all of a process's segments are read before anything is
 * committed. Segments of a live process (another proxy on the same database) are left alone.
 * Returns how many calls were recorded interrupted, and how many finished ones were committed;
 * `committed`, if given, receives every record appended.
 */
export function recoverIntents(
  chain: ChainWriter,
  logDb: string,
  committed?: CommittedRecord[],
): { interrupted: number; finished: number } {
  const dir = dirname(logDb) || ".";
  const prefix = `${basename(logDb)}.intents-`;
  const outcomeIndex = columns.indexOf("outcome");
  const errorIndex = columns.indexOf("error_type");
  const segments = readdirSync(dir)
    .filter((file) => file.startsWith(prefix))
    .map((file) => ({ file, order: file.slice(prefix.length).split("-").map(Number) }))
    .filter(({ order: [pid] }) => pid === process.pid || !isAlive(pid!))
    .sort((a, b) => a.order[0]! - b.order[0]! || a.order[1]! - b.order[1]!)
    .map(({ file }) => join(dir, file));
  if (segments.length === 0) return { interrupted: 0, finished: 0 };
  // One row per call, in the order calls began; a final line replaces its intent.
  const calls = new Map<SQLValue, SQLValue[]>();
  for (const path of segments) {
    for (const row of readSegment(readFileSync(path, "utf8"))) {
      const known = calls.get(row[0]!);
      if (!known || (known[outcomeIndex] === null && row[outcomeIndex] !== null)) calls.set(row[0]!, row);
    }
  }
  const exists = chain.db.prepare("SELECT 1 FROM audit_records WHERE id = ?");
  let interrupted = 0;
  let finished = 0;
  // Appended to the chain like any record (and redacted if its user was erased meanwhile).
  chain.transaction(() => {
    const rows = [...calls.values()].filter((row) => !exists.get(row[0]!));
    for (const row of rows) {
      if (row[outcomeIndex] !== null) {
        finished++; // a final record: committed as the proxy would have
        continue;
      }
      row[outcomeIndex] = "interrupted";
      row[errorIndex] = "interrupted";
      interrupted++;
    }
    chain.appendInTransaction(
      rows,
      [],
      committed && ((index, seq, hash, redacted) => void committed.push(committedRecord(rows[index]!, seq, hash, redacted))),
    );
  });
  exists.finalize();
  for (const path of segments) unlinkSync(path);
  return { interrupted, finished };
}

/**
 * A segment's rows, intents and final lines alike, in today's `columns` order (columns the writer
 * did not know are null); an intent's outcome is null, a final record's is not. A line cut short by
 * the crash is skipped: an intent cut short never reached an upstream, and a final line cut short
 * leaves its intent standing.
 */
export function readSegment(text: string): SQLValue[][] {
  const end = text.indexOf("\0");
  const lines = (end === -1 ? text : text.slice(0, end)).split("\n");
  const head = parseLine(lines[0] ?? "");
  const named = head !== null && !Array.isArray(head) && Array.isArray((head as { columns?: unknown }).columns);
  const written = named ? (head as { columns: string[] }).columns : headerlessColumns;
  const positions = columns.map((column) => written.indexOf(column));
  if (positions[0] === -1) return []; // no id column: nothing to recover by
  return lines.slice(named ? 1 : 0).flatMap((line) => {
    const row = rowOfLine(line);
    if (row === null || row.length !== written.length) return [];
    return [positions.map((at) => (at === -1 ? null : (row[at] as SQLValue)))];
  });
}

/** Whether a live process other than this one has an intent log on this database (a running proxy). */
export function proxyAttached(logDb: string): boolean {
  const prefix = `${basename(logDb)}.intents-`;
  try {
    return readdirSync(dirname(logDb) || ".").some((file) => {
      if (!file.startsWith(prefix)) return false;
      const pid = Number(file.slice(prefix.length).split("-")[0]);
      return pid !== process.pid && isAlive(pid);
    });
  } catch {
    return false;
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
