/**
 * A `proxy start` that fails after it created a new audit database (the port is taken, a later
 * plugin cannot set up) removes what it created beside it: the database with its WAL and shared
 * memory, the hash key (`<log-db>.key`), the signing key, its intent segments. No secret is left
 * lying next to a checkout, and the next start does not find keys that sign nothing. A database
 * that existed before is never touched, nor a key file that existed before.
 */
import { existsSync, readdirSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { Config } from "../config/schema.ts";
import { signingKeyPath } from "../trail/signing.ts";

export async function removeWhatAFailedStartCreated<T>(logDb: string, config: Config, start: () => Promise<T>): Promise<T> {
  const fresh = logDb !== ":memory:" && !/^[a-z][a-z0-9+.-]*:\/\//i.test(logDb) && !existsSync(logDb);
  const candidates = [
    logDb,
    `${logDb}-wal`,
    `${logDb}-shm`,
    `${logDb}-journal`,
    `${logDb}.key`,
    signingKeyPath(logDb, config.audit.signingKey),
  ];
  const before = new Set(candidates.filter((file) => existsSync(file)));
  try {
    return await start();
  } catch (error) {
    if (fresh) {
      for (const file of candidates) if (!before.has(file)) rmSync(file, { force: true });
      const intents = `${basename(logDb)}.intents-${process.pid}-`;
      const folder = dirname(logDb);
      if (existsSync(folder))
        for (const name of readdirSync(folder)) if (name.startsWith(intents)) rmSync(join(folder, name), { force: true });
    }
    throw error;
  }
}
