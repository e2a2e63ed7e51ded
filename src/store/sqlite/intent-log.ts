/**
 * The intent log: before a call is forwarded, its in-flight record is written to a segment file
 * beside the database (`<log-db>.intents-<pid>-<n>`, one JSON row per line). Segments are memory-
 * mapped and shared with the kernel's page cache, so an intent is on its way to disk the moment
 * its bytes are copied in: it survives a crash of the process (the same guarantee as SQLite's WAL
 * with synchronous=NORMAL, or a write(2) without fsync) and costs no system call on the hot path.
 * A segment is created at full size with zeros written into it, so its disk space is taken when it
 * is created: a full disk refuses the call then (begin rejects), never later inside the mapping.
 *
 * When a call ends, its final record (usage and cost included) is written too, as a final line
 * (`{"final":[...]}`), before the call's last byte reaches the client: from then on the final
 * line stands for the call, wherever its intent line is. When the final record is committed to
 * SQLite the call is settled. Once every call of a segment is settled, settled lines (which name
 * users) do not linger: a quiet proxy's current segment is zeroed and reused in place, any other
 * segment is deleted. The zeros of the next segment are written in the background while the
 * current one fills, so a rotation only maps a ready file. `compact` rewrites each segment to its
 * unsettled lines only (after an erasure).
 *
 * After a crash, `recoverIntents` (./intent-recovery.ts) commits each final line that has no
 * record yet as it is, and turns every intent without one into an `interrupted` record, so a call
 * that reached an upstream is never missing, and one its client saw finish keeps its usage.
 *
 * Each segment starts with a header line naming its columns (`{"columns":[...]}`), so a newer
 * version with more or reordered columns still recovers what an older one left behind; the zeros
 * after the last line are not part of it. Final lines are objects, which versions before them
 * skip (they record such a call as interrupted, as they always did).
 *
 * Disk full: segments are made ahead, so a full disk shows first as a spare that cannot be made.
 * From then on an intent is refused unless the segments at hand keep room for the final line of
 * every call in flight (its intent line's length and `finalSlack`), so a call is forwarded only
 * if its final record can be made durable too. While spares fail, one is retried every second.
 */
import { closeSync, openSync, truncateSync, unlinkSync, writeSync } from "node:fs";
import { open } from "node:fs/promises";
import { columns, toRow } from "../../trail/row.ts";
import type { AuditRecord } from "../../trail/record.ts";

/** The size of a segment: past it the next intent goes to another segment. */
const defaultSegmentBytes = 8 * 1024 * 1024;

const header = `${JSON.stringify({ columns })}\n`;
const encoder = new TextEncoder();
const utf8 = new TextDecoder();

/** Room kept per call in flight for its final line, beyond its intent line's length. */
const finalSlack = 512;
/** While the disk refuses spares, how often one is tried again (in the background). */
const spareRetryMs = 1000;

interface Segment {
  readonly file: string;
  /** The file, mapped shared: what is written here is in the page cache at once. */
  map: Uint8Array;
  /** Bytes in use from the start (header and lines); the rest is zeros. */
  used: number;
  /** Calls whose line in it (intent, or final once written) stands for them, not yet settled. */
  unsettled: number;
}

/** A call not yet settled: the segment of its line, and the room its final line will need. */
interface Pending {
  segment: Segment;
  /** Bytes kept for the final line; 0 once it is written. */
  reserve: number;
}

export class IntentLog {
  private current: Segment | null = null;
  /** A zeroed segment ready for the next rotation, made in the background (see `makeSpare`). */
  private spare: Segment | null = null;
  /** The background writing of the next spare's zeros, if under way. */
  private makingSpare: Promise<void> | null = null;
  /** Every segment file this log has and has not deleted. */
  private readonly segments = new Set<Segment>();
  /** Unsettled calls: id → where their line is. */
  private readonly pending = new Map<string, Pending>();
  /** Room the final lines of the calls in flight will need (sum of their `reserve`). */
  private reserved = 0;
  /** The last attempt to make a segment failed (e.g. the disk is full), at this time (ms). */
  private spareFailedAt: number | null = null;
  private spareError = "";
  /** Lines left on disk that no longer stand for a call, since the last compaction. */
  private stale = false;
  /** The calls a compaction kept (in flight then): once all are settled, it runs once more. */
  private compactWhenSettled: Set<string> | null = null;
  private nextNumber = 0;
  private closed = false;

  constructor(
    private readonly logDb: string,
    private readonly segmentBytes = defaultSegmentBytes,
    /** Told when the rewrite that follows a compaction fails (the lines then stay until their segment goes). */
    private readonly onError: (message: string) => void = () => {},
  ) {}

  /**
   * Makes the first segment ahead of time, so the first call does not wait for its zeros (call it
   * after recovery, which deletes this process id's old segments). If it cannot be made, the first
   * append tries again and fails that call with the reason.
   */
  prepare(): void {
    if (this.current || this.spare) return;
    try {
      this.spare = this.adopt(this.createSync(this.nextFile(), this.segmentBytes));
    } catch {
      this.spare = null;
    }
  }

  /** The call has a line here not yet settled (it was forwarded and is not committed). */
  has(id: string): boolean {
    return this.pending.has(id);
  }

  /** Calls with a line here not yet settled. */
  get unsettled(): number {
    return this.pending.size;
  }

  /**
   * Writes the in-flight record; throws (e.g. disk full) if it could not be written, or if the disk
   * refuses new segments and the ones at hand would not keep room for every final line to come.
   */
  append(record: AuditRecord): void {
    const line = `${JSON.stringify(toRow(record))}\n`;
    const reserve = line.length + finalSlack;
    if (this.spareFailedAt !== null) this.checkRoom(line.length + reserve);
    const segment = this.write(line);
    segment.unsettled++;
    this.pending.set(record.id, { segment, reserve });
    this.reserved += reserve;
  }

  /**
   * Writes a call's final record (`row`: its JSON row) after its intent: from now on this line
   * stands for the call (recovery commits it as it is). Does nothing for a call without an intent
   * (refused before forwarding). Throws if it could not be written; the intent then still stands.
   */
  appendFinal(id: string, row: string): void {
    const entry = this.pending.get(id);
    if (entry === undefined) return;
    const segment = this.write(`{"final":${row}}\n`);
    this.stale = true; // the intent line
    this.reserved -= entry.reserve;
    entry.reserve = 0;
    if (segment === entry.segment) return;
    const previous = entry.segment;
    entry.segment = segment;
    segment.unsettled++;
    this.release(previous);
  }

  /** Copies `line` into the current segment, rotating to the next when it is full; returns it. */
  private write(line: string): Segment {
    let segment = this.current ?? this.open(line);
    let { read, written } = encoder.encodeInto(line, segment.map.subarray(segment.used));
    if (read < line.length) {
      // Full: clear the part that fit, and write the line to the next segment.
      segment.map.fill(0, segment.used, segment.used + written);
      this.current = null;
      if (segment.unsettled === 0) this.remove(segment);
      segment = this.open(line);
      ({ written } = encoder.encodeInto(line, segment.map.subarray(segment.used)));
    }
    segment.used += written;
    return segment;
  }

  /**
   * With segments failing to be made: refuses a call unless the current segment and the spare keep
   * room for `bytes` beyond what the calls in flight need for their final lines. A spare is tried
   * again once per `spareRetryMs`, so calls pass again as soon as the disk has room.
   */
  private checkRoom(bytes: number): void {
    if (this.room() >= this.reserved + bytes) return;
    if (!this.spare && Date.now() - this.spareFailedAt! >= spareRetryMs) {
      // A full-size segment, else an eighth of one: a nearly full disk still takes calls.
      for (const size of [this.segmentBytes, Math.max(this.segmentBytes / 8, header.length + bytes * 3)]) {
        try {
          this.spare = this.adopt(this.createSync(this.nextFile(), Math.ceil(size)));
          break;
        } catch {
          // still failing: refused below
        }
      }
      if (this.room() >= this.reserved + bytes) return;
    }
    throw new Error(
      `the intent log cannot take more calls: a new segment cannot be created (${this.spareError}), and the room left is kept for the final records of the ${this.pending.size} call(s) in flight or not yet committed`,
    );
  }

  /** Bytes free in the current segment and the spare. */
  private room(): number {
    const free = (segment: Segment | null) => (segment ? segment.map.byteLength - segment.used : 0);
    return free(this.current) + (this.spare ? free(this.spare) - header.length : 0);
  }

  /**
   * The final records of these calls are committed: their lines are no longer needed. A segment
   * left with none unsettled is zeroed and reused in place if it is the current one and short
   * (a quiet proxy), else deleted (zeroing megabytes would stall the event loop).
   */
  settle(ids: Iterable<string>): void {
    let compactAgain = false;
    for (const id of ids) {
      const entry = this.pending.get(id);
      if (entry === undefined) continue;
      this.pending.delete(id);
      this.reserved -= entry.reserve;
      this.stale = true;
      this.release(entry.segment);
      if (this.compactWhenSettled?.delete(id) && this.compactWhenSettled.size === 0) compactAgain = true;
    }
    if (compactAgain) {
      this.compactWhenSettled = null;
      try {
        this.rewrite();
      } catch (error) {
        this.onError(
          `the intent log could not be rewritten without the settled lines of calls in flight at an erasure: ${error instanceof Error ? error.message : String(error)}`,
        );
      }
    }
  }

  /**
   * One call less stands in `segment`; with none left, its lines go. While the disk refuses new
   * segments, the current one is zeroed and kept whatever its size: its space is the log's.
   */
  private release(segment: Segment): void {
    if (--segment.unsettled > 0) return;
    if (segment === this.current && (segment.used <= maxWipeBytes || this.spareFailedAt !== null)) {
      segment.map.fill(0, 0, segment.used);
      segment.used = encoder.encodeInto(header, segment.map).written;
    } else {
      if (segment === this.current) this.current = null;
      this.remove(segment);
    }
  }

  /**
   * Rewrites the log to its unsettled lines only: afterwards no settled line — e.g. of a user just
   * erased — is left in any intent file. Unsettled lines are calls in flight or not yet committed;
   * they are needed, and once they are all settled the log is rewritten once more, so the lines of
   * an erased user's calls that were in flight go too. Crash-safe: they are written to a fresh
   * segment before the old ones are zeroed and deleted (if the process dies in between, recovery
   * finds them twice and records them once).
   */
  compact(): void {
    this.compactWhenSettled = this.pending.size > 0 ? new Set(this.pending.keys()) : null;
    this.rewrite();
  }

  /** The rewrite `compact` does; nothing to do when no line has gone stale since the last one. */
  private rewrite(): void {
    if (!this.stale) return;
    this.stale = false;
    const old = [...this.segments].filter((segment) => segment.unsettled > 0 || segment === this.current);
    if (old.length === 0) return;
    const kept: string[] = [];
    const keptIds: string[] = [];
    for (const segment of old) {
      for (const line of utf8.decode(segment.map.subarray(0, segment.used)).split("\n").slice(1)) {
        const id = idOfLine(line);
        if (id !== null && this.pending.get(id)?.segment === segment) {
          kept.push(`${line}\n`);
          keptIds.push(id);
        }
      }
    }
    const text = header + kept.join("");
    const fresh = this.take(text.length * 3);
    fresh.used = encoder.encodeInto(text, fresh.map).written;
    fresh.unsettled = keptIds.length;
    for (const id of keptIds) this.pending.get(id)!.segment = fresh;
    this.current = fresh;
    for (const segment of old) {
      segment.map.fill(0, 0, segment.used);
      this.remove(segment);
    }
    this.makeSpare();
  }

  /** Deletes the segments with nothing unsettled; those with calls in flight stay for recovery. */
  async close(): Promise<void> {
    this.closed = true;
    await this.makingSpare; // it deletes its file once it sees the log closed
    for (const segment of this.segments) {
      if (segment.unsettled === 0) this.remove(segment);
    }
    this.current = null;
    this.spare = null;
  }

  /** Makes a segment with room for `line` the current one: the spare, or a new file. */
  private open(line: string): Segment {
    const segment = this.take(header.length + line.length * 3);
    segment.used = encoder.encodeInto(header, segment.map).written;
    this.current = segment;
    this.makeSpare();
    return segment;
  }

  /**
   * A zeroed segment of at least `bytes` (a UTF-16 text takes at most 3 UTF-8 bytes per unit): the
   * spare if it is large enough, else a new file.
   */
  private take(bytes: number): Segment {
    const spare = this.spare;
    if (spare && spare.map.byteLength >= bytes) {
      this.spare = null;
      return spare;
    }
    return this.adopt(this.createSync(this.nextFile(), Math.max(this.segmentBytes, bytes)));
  }

  /**
   * Writes the next spare's zeros off the event loop. If that fails (e.g. the disk is full), the
   * next rotation tries again synchronously and fails its call with the reason.
   */
  private makeSpare(): void {
    if (this.spare || this.makingSpare || this.closed) return;
    const file = this.nextFile();
    this.makingSpare = createAsync(file, this.segmentBytes).then(
      () => {
        this.makingSpare = null;
        this.spareFailedAt = null;
        if (this.closed || this.spare) return removeFile(file);
        try {
          this.spare = this.adopt(file);
        } catch {
          removeFile(file); // deleted meanwhile: the next rotation makes one itself
        }
      },
      (error: unknown) => {
        this.makingSpare = null;
        this.failedToCreate(error);
        removeFile(file);
      },
    );
  }

  private nextFile(): string {
    return `${this.logDb}.intents-${process.pid}-${this.nextNumber++}`;
  }

  /** A new segment file of `size` zero bytes (its disk space taken now). */
  private createSync(file: string, size: number): string {
    let fd: number | null = null;
    try {
      fd = openSync(file, "w", 0o600);
      for (let at = 0; at < size; at += zeros.byteLength) writeSync(fd, zeros, 0, Math.min(zeros.byteLength, size - at));
    } catch (error) {
      if (fd !== null) {
        closeSync(fd);
        removeFile(file);
      }
      this.failedToCreate(error);
      throw error;
    }
    closeSync(fd);
    this.spareFailedAt = null;
    return file;
  }

  private failedToCreate(error: unknown): void {
    this.spareFailedAt = Date.now();
    this.spareError = error instanceof Error ? error.message : String(error);
  }

  /** Maps a zeroed segment file. */
  private adopt(file: string): Segment {
    const segment: Segment = { file, map: Bun.mmap(file, { shared: true }), used: 0, unsettled: 0 };
    this.segments.add(segment);
    return segment;
  }

  /**
   * Deletes a segment no longer in use. Truncated first: its mapping lives until garbage
   * collection, and would hold the file's disk space until then.
   */
  private remove(segment: Segment): void {
    this.segments.delete(segment);
    segment.map = noBytes; // never written again (the truncated file would fault)
    try {
      truncateSync(segment.file, 0);
    } catch {
      // Already gone.
    }
    removeFile(segment.file);
  }
}

/** A current segment at most this full is zeroed in place once settled; a fuller one is deleted. */
const maxWipeBytes = 256 * 1024;
const zeros = new Uint8Array(1024 * 1024);
const noBytes = new Uint8Array(0);

async function createAsync(file: string, size: number): Promise<void> {
  const handle = await open(file, "w", 0o600);
  try {
    for (let at = 0; at < size; at += zeros.byteLength) await handle.write(zeros, 0, Math.min(zeros.byteLength, size - at));
  } finally {
    await handle.close();
  }
}

function removeFile(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // Already gone: nothing to keep.
  }
}

/** The call id of a segment line (an intent row, or a final line); null for the header or a cut line. */
function idOfLine(line: string): string | null {
  const row = rowOfLine(line);
  return row ? String(row[0]) : null;
}

/** The row of an intent line (`[...]`) or a final line (`{"final":[...]}`); null otherwise. */
export function rowOfLine(line: string): unknown[] | null {
  const parsed = parseLine(line);
  if (Array.isArray(parsed)) return parsed;
  const final = (parsed as { final?: unknown } | null)?.final;
  return Array.isArray(final) ? final : null;
}

/** One line of a segment as JSON; null for an empty or cut-short line. */
export function parseLine(line: string): unknown {
  if (!line) return null;
  try {
    return JSON.parse(line) as unknown;
  } catch {
    return null;
  }
}
