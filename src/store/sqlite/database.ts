/** Opening the audit database: the pragmas every connection of the store uses. */
import { Database } from "bun:sqlite";
import { closeSync, existsSync, openSync, statSync } from "node:fs";
import { drizzle, type BunSQLiteDatabase } from "drizzle-orm/bun-sqlite";
import { migrate } from "./migrate.ts";
import { SqliteAuditReader } from "./reader.ts";
import * as schema from "./schema.ts";
import { errorMessage } from "../../errors.ts";

/**
 * WAL with synchronous=NORMAL: a committed transaction survives a crash of the process.
 * secure_delete: erased values (GDPR erasure, retention) are overwritten with zeros in the file,
 * not left in free space (it only costs deletes and updates, which the hot path does not do).
 * A new database file is created 0600 (it holds user ids and task text); SQLite gives its `-wal`
 * and `-shm` files the database file's mode.
 */
export function openDatabase(path: string, busyTimeoutMs = 5000): Database {
  let db: Database;
  try {
    if (path !== ":memory:" && !existsSync(path)) closeSync(openSync(path, "a", 0o600));
    db = new Database(path, { create: true, strict: true });
  } catch (error) {
    const reason = errorMessage(error);
    throw new Error(
      `cannot open the audit database ${path} (${reason}); check that its folder exists and is writable, or choose another with --log-db`,
    );
  }
  db.run(`PRAGMA busy_timeout = ${Math.trunc(busyTimeoutMs)}`);
  db.run("PRAGMA journal_mode = WAL");
  db.run("PRAGMA synchronous = NORMAL");
  db.run("PRAGMA secure_delete = ON");
  return db;
}

/** The files of the database (`-wal`, `-shm` included) that other users can read, with their modes. */
export function filesReadableByOthers(path: string): { file: string; mode: number }[] {
  return [path, `${path}-wal`, `${path}-shm`].flatMap((file) => {
    try {
      const mode = statSync(file).mode & 0o777;
      return mode & 0o077 ? [{ file, mode }] : [];
    } catch {
      return []; // not there (yet)
    }
  });
}

/** A migrated connection for reading the trail (the CLI, the audit API), with the migrations it applied. */
export function openAuditLog(path: string): { db: Database; reader: SqliteAuditReader; migrated: string[]; close(): void } {
  const db = openDatabase(path);
  const migrated = migrate(db);
  const orm: BunSQLiteDatabase<typeof schema> = drizzle(db, { schema });
  return { db, reader: new SqliteAuditReader(orm, db), migrated, close: () => db.close() };
}
