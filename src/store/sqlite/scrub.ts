/**
 * After an erasure (GDPR, retention), the erased values leave the file too. `secure_delete` zeroes
 * what SQLite deletes, but not every copy: when a b-tree page is rebuilt (a split, a merge), the
 * cells that moved stay behind in the page's unused space, and an index entry erased later lives
 * on there (found in the task index and `usage_rollup`, whose pages are index b-trees). Only
 * a rebuild of every page removes them: VACUUM writes the database anew (it costs about 1 s per
 * 120 MB on this project's machine, and needs free space of the database's size, for its WAL).
 * Then the WAL, which holds the old page images, is checkpointed and cut to nothing.
 */
import type { Database } from "bun:sqlite";
import { statSync, statfsSync } from "node:fs";
import { dirname } from "node:path";
import { errorMessage } from "../../errors.ts";

export interface ScrubResult {
  /** Why the file could not be rewritten, or null. */
  problem: string | null;
  /** A reader kept the WAL from being truncated: it still holds old pages (see `walInUse`). */
  walInUse: boolean;
}

/** Rewrites the database file and truncates its WAL. */
export function scrubDatabase(db: Database, path: string): ScrubResult {
  const size = statSync(path).size;
  const free = freeBytes(path);
  if (free !== null && free < size * 1.1) {
    const problem = `the erased values may stay in unused parts of ${path}'s pages until it can be rewritten (VACUUM), which needs ${megabytes(size * 1.1)} free beside it (${megabytes(free)} are)`;
    return { problem, walInUse: !truncateWal(db) };
  }
  try {
    db.run("VACUUM");
  } catch (error) {
    const problem = `the erased values may stay in unused parts of ${path}'s pages: rewriting it (VACUUM) failed: ${errorMessage(error)}`;
    return { problem, walInUse: !truncateWal(db) };
  }
  return { problem: null, walInUse: !truncateWal(db) };
}

/** What to tell about a WAL that could not be truncated. */
export function walInUse(path: string): string {
  return `the erased values may stay in ${path}-wal until it is truncated: another process was reading the database (it is truncated at the next erasure, or by a proxy running on it)`;
}

/** Copies the WAL into the database and cuts it to nothing (waiting up to the busy timeout for readers). */
export function truncateWal(db: Database): boolean {
  try {
    return db.query<{ busy: number }, []>("PRAGMA wal_checkpoint(TRUNCATE)").get()?.busy === 0;
  } catch {
    return false;
  }
}

function freeBytes(path: string): number | null {
  try {
    const disk = statfsSync(dirname(path));
    return disk.bavail * disk.bsize;
  } catch {
    return null;
  }
}

const megabytes = (bytes: number) => `${Math.ceil(bytes / 1e6)} MB`;
