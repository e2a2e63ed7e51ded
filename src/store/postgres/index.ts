/**
 * The PostgreSQL driver (`--log-db postgres://…`): the proxy's store (./store.ts) and the CLI's
 * admin handle on the same trail, for any number of replicas and CLI processes at once.
 */
import {
  SchemaDamagedError,
  TrailNotFoundError,
  type AdminContext,
  type AuditAdmin,
  type AuditStoreProvider,
  type StoreContext,
} from "../contract.ts";
import { errorMessage } from "../../errors.ts";
import { isPostgresUrl, loadMeta, migrate, openPool, parseTarget, PostgresError } from "./connection.ts";
import { PgConsents } from "./consents.ts";
import { PgKeys } from "./keys.ts";
import { PgReader } from "./reader.ts";
import { PgAuditStore, type PgStoreOptions } from "./store.ts";
import { PgTrail, signingKeyFor } from "./trail.ts";
import { signWith } from "../../trail/signing.ts";

export { isPostgresUrl, PgAuditStore };

/** The PostgreSQL store at `url` (default: `--log-db`). */
export function postgresStore(options: PgStoreOptions & { url?: string } = {}): AuditStoreProvider {
  return {
    problems: ({ logDb: given }) => {
      const logDb = options.url ?? given;
      if (!isPostgresUrl(logDb)) return [`${logDb} is not a postgres:// URL`];
      try {
        parseTarget(logDb);
        return [];
      } catch (error) {
        return [errorMessage(error)];
      }
    },
    open: (ctx: StoreContext) => PgAuditStore.open({ ...ctx, logDb: options.url ?? ctx.logDb }, options),
    openAdmin: (ctx: AdminContext) => openPgAdmin({ ...ctx, logDb: options.url ?? ctx.logDb }, options),
  };
}

/**
 * The CLI's handle. With `create` false, a database without the trail's tables is an error (the
 * CLI never creates a trail by reading one); with it, the tables are migrated like the proxy does.
 */
export async function openPgAdmin(ctx: AdminContext, options: PgStoreOptions = {}): Promise<AuditAdmin & { trail: PgTrail }> {
  const target = parseTarget(ctx.logDb);
  const sql = openPool(target, { max: 4 });
  try {
    if (ctx.create) await migrate(sql, target.schema);
    else {
      const [found] = (await sql`SELECT to_regclass(${`"${target.schema}".audit_meta`}) IS NOT NULL AS ok`) as { ok: boolean }[];
      if (!found?.ok) {
        throw new TrailNotFoundError(
          `No audit trail at ${target.display}: start the proxy with this --log-db first, or pass another --log-db (or set AGENT_ATTR_LOG_DB, or audit.logDb in the config).`,
        );
      }
      await migrate(sql, target.schema);
    }
    const meta = await loadMeta(sql);
    const signingKey = await signingKeyFor(sql, ctx.audit.signingKey, { create: ctx.create });
    const trail = new PgTrail(sql, meta, signingKey, ctx.audit, ctx.log, true);
    const keys = new PgKeys(sql, options.keyCacheMs ?? 0, (tx, event) => trail.appendSealed(tx, [event]), {
      key: signingKey,
      chainId: meta.chainId,
      warn: ctx.log.warn,
    });
    // Rows an earlier version wrote are adopted by any open with the key, under ../key-signature.ts's rules.
    await keys.adoptLegacy();
    return {
      reader: new PgReader(sql),
      trail,
      keys,
      consents: new PgConsents(sql, (tx, events) => trail.appendSealed(tx, events)),
      signs: signingKey !== null,
      sign: (data) => signWith(signingKey, data),
      close: () => sql.close({ timeout: 1 }),
    };
  } catch (error) {
    await sql.close({ timeout: 0 });
    if (error instanceof TrailNotFoundError || error instanceof SchemaDamagedError) throw error;
    throw new PostgresError(`cannot open the audit trail at ${target.display}: ${errorMessage(error)}`);
  }
}
