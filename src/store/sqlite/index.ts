/**
 * The SQLite driver of the storage contract (../contract.ts): the default store, one database file
 * (`--log-db`, or `sqliteAudit({ path })`) with its WAL, intent log, hash key and signing key
 * beside it. `open` is the proxy's store (./store.ts: intent log, writer and reader threads);
 * `openAdmin` is the CLI's handle, in process, on its own connection.
 */
import { accessSync, constants, existsSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { TrailNotFoundError, type AdminContext, type AuditAdmin, type AuditStoreProvider } from "../contract.ts";
import { loadHashKey } from "../../trail/secret.ts";
import { loadSigningKey, signingKeyPath, signWith } from "../../trail/signing.ts";
import { openAuditLog } from "./database.ts";
import { SqliteConsents } from "./consents.ts";
import { adoptLegacyKeys, SqliteKeyAdmin } from "./key-admin.ts";
import { SqliteProxyKeys } from "./keys.ts";
import { SqliteAuditStore } from "./store.ts";
import { SqliteAuditTrail } from "./trail.ts";

const isURL = (logDb: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(logDb);

/** The SQLite store in the file `path` (default: `--log-db`). */
export function sqliteStore(path?: string): AuditStoreProvider {
  return {
    problems: ({ logDb }) => fileProblems(path ?? logDb, path === undefined),
    open: async ({ logDb, log, audit }) => new SqliteAuditStore(path ?? logDb, { onError: log.error, onWarning: log.warn, ...audit }),
    openAdmin: async (ctx) => openSqliteAdmin(path ?? ctx.logDb, ctx),
  };
}

/**
 * The CLI's handle: reader, trail and keys on one connection of this process. Events it appends
 * (queries, verifications, erasures, exports, key changes) are sealed at once by a signed
 * checkpoint when the signing key is present: no writer thread signs after a CLI.
 */
function openSqliteAdmin(path: string, { log, audit, create }: AdminContext): AuditAdmin {
  if (!create && (path === ":memory:" || !existsSync(path))) {
    throw new TrailNotFoundError(
      `No audit database at ${path}. Pass --log-db PATH (or set AGENT_ATTR_LOG_DB, or audit.logDb in the config).`,
    );
  }
  // A trail this command creates gets its signing key now, as the proxy's first start would make it
  // (its key rows are signed); an existing trail's missing key is never replaced by a new one.
  const fresh = create && path !== ":memory:" && !existsSync(path);
  const opened = openAuditLog(path);
  try {
    const key = loadSigningKey(signingKeyPath(path, audit.signingKey), { create: fresh });
    const trail = new SqliteAuditTrail(opened.db, key, loadHashKey(path), {
      checkpoint: audit.checkpoint,
      sealEvents: true,
      onError: log.warn,
    });
    // Rows an earlier version wrote are adopted by any open with the key, under ../key-signature.ts's rules.
    if (adoptLegacyKeys(opened.db, trail.chain, key, log.warn) > 0) trail.seal();
    const keys = new SqliteKeyAdmin(new SqliteProxyKeys(opened.db, { key, warn: log.warn }), trail.chain, () => trail.seal());
    const consents = new SqliteConsents(opened.db, trail.chain, () => trail.seal());
    return {
      reader: opened.reader,
      trail,
      keys,
      consents,
      signs: key !== null,
      sign: (data) => signWith(key, data),
      async close() {
        keys.close();
        consents.close();
        trail.close();
        opened.close();
      },
    };
  } catch (error) {
    opened.close();
    throw error;
  }
}

/**
 * The folder of the database must exist and be writable: SQLite's WAL and shared memory, the
 * intent log and the key files live beside the database.
 */
function fileProblems(logDb: string, fromLogDb: boolean): string[] {
  const elsewhere = fromLogDb
    ? "choose another path with --log-db (or AGENT_ATTR_LOG_DB, or audit.logDb in the config)"
    : "give sqliteAudit() another path";
  if (isURL(logDb)) {
    return [
      `The SQLite audit store keeps the trail in a file, and ${logDb.split("://")[0]}:// names a server: give sqliteAudit({ path }) a file, or remove sqliteAudit() from plugins to use the store --log-db names.`,
    ];
  }
  if (logDb === ":memory:") return [`The SQLite audit store needs a file; ':memory:' would be lost with the process: ${elsewhere}.`];
  const folder = dirname(resolve(logDb));
  if (!existsSync(folder) || !statSync(folder).isDirectory()) {
    return [`The audit database ${logDb} cannot be created: the folder ${folder} does not exist. Create it, or ${elsewhere}.`];
  }
  try {
    accessSync(folder, constants.W_OK);
  } catch {
    const uid = process.getuid?.();
    const who = uid === undefined ? "this process" : `user id ${uid}`;
    // In a container with a bind-mounted /data, the host folder belongs to a host user.
    return [
      `The folder ${folder} of the audit database is not writable by ${who}. Give ${who} write access (chown ${uid ?? "<uid>"} ${folder}), or ${elsewhere}.`,
    ];
  }
  return [];
}
