/**
 * Notices erasures another process made on the same database (`agent-attr audit delete` while the
 * proxy runs): every `everyMs` (1 s) it looks for erasure events in the chain past the last one it
 * saw, and calls `onErasure` (the store then compacts its intent log, so no settled line of the
 * erased user stays in it). It has its own read connection with no busy timeout: a lookup never
 * waits on a lock (one that cannot read now looks again next time), so it costs the proxy's event
 * loop a few microseconds per second. Erasures of records as they land are the writer's own and
 * are not reported.
 */
import { Database, type Statement } from "bun:sqlite";

export class ErasureWatch {
  private readonly db: Database;
  private readonly lastSeq: Statement<{ seq: number | null }, []>;
  private readonly erasureAfter: Statement<{ seq: number }, [number]>;
  private seen: number;
  private readonly timer: Timer;

  constructor(path: string, onErasure: () => void, everyMs = 1000) {
    this.db = new Database(path, { strict: true });
    this.db.run("PRAGMA busy_timeout = 0");
    this.db.run("PRAGMA query_only = ON");
    this.lastSeq = this.db.query("SELECT max(seq) AS seq FROM audit_events");
    this.erasureAfter = this.db.query(
      "SELECT seq FROM audit_events WHERE seq > ? AND kind = 'erasure' AND json_extract(details, '$.on_landing') IS NULL LIMIT 1",
    );
    this.seen = this.lastSeq.get()?.seq ?? 0;
    this.timer = setInterval(() => {
      if (this.look()) onErasure();
    }, everyMs);
    this.timer.unref();
  }

  /** Whether an erasure was appended since the last look. */
  private look(): boolean {
    try {
      const last = this.lastSeq.get()?.seq ?? 0;
      if (last === this.seen) return false;
      const erased = this.erasureAfter.get(this.seen) !== null;
      this.seen = last;
      return erased;
    } catch {
      return false; // busy (a checkpoint under way): next time
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.lastSeq.finalize();
    this.erasureAfter.finalize();
    this.db.close();
  }
}
