/**
 * A Worker that plays "another process holding the write lock": it opens the audit database,
 * takes `BEGIN IMMEDIATE`, answers "locked", holds the lock for `holdMs`, then sets `released[0]`
 * to 1 *before* it commits (so a reader that sees 0 knows the lock was still held) and answers
 * "released".
 */
import { Database } from "bun:sqlite";

declare const self: Worker;

export interface LockRequest {
  path: string;
  holdMs: number;
  /** An Int32Array's buffer of length 1: 0 while the lock is held, 1 once it is being released. */
  released: SharedArrayBuffer;
}

self.onmessage = (event: MessageEvent<LockRequest>) => {
  const { path, holdMs, released } = event.data;
  const flag = new Int32Array(released);
  const db = new Database(path, { strict: true });
  db.run("PRAGMA busy_timeout = 10000");
  db.run("BEGIN IMMEDIATE");
  self.postMessage("locked");
  Atomics.wait(flag, 0, 0, holdMs); // sleeps: nobody notifies it
  Atomics.store(flag, 0, 1);
  db.run("COMMIT");
  db.close();
  self.postMessage("released");
};
