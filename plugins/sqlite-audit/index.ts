/**
 * `sqliteAudit({ path })`: the embedded audit store (the default primary sink). Without `path` it
 * uses `--log-db` / AGENT_ATTR_LOG_DB — and when that is a `postgres://` URL it runs the
 * PostgreSQL driver instead (`postgresAudit()`), so `--log-db` alone moves the trail of any config,
 * including the default one and those `agent-attr init` writes. On start it marks calls a killed
 * process left in flight as `interrupted`. Records are hash-chained and checkpoints signed per the
 * config's `audit` settings (`audit.checkpoint`, `audit.signingKey`, `audit.retentionDays`).
 */
import { SqliteAuditStore, definePlugin, storeKindFor } from "agent-attr";
import { z } from "zod";
import { parseOptions } from "../options.ts";
import { postgresAudit } from "../postgres-audit/index.ts";

const optionsSchema = z.object({ path: z.string().min(1).optional() }).strict();

export function sqliteAudit(options: z.input<typeof optionsSchema> = {}) {
  const opts = parseOptions("sqlite-audit", optionsSchema, options);
  let store: SqliteAuditStore | null = null;
  /** Set when `--log-db` names PostgreSQL: every audit member forwards to it. */
  let postgres: ReturnType<typeof postgresAudit> | null = null;
  const open = (): SqliteAuditStore => {
    if (!store) throw new Error("the SQLite audit store is not open (setup has not run)");
    return store;
  };
  return definePlugin({
    name: "sqlite-audit",
    async setup(ctx) {
      const { logDb, log, audit } = ctx;
      if (!opts.path && storeKindFor(logDb) === "postgres") {
        postgres = postgresAudit();
        await postgres.setup!(ctx);
        return;
      }
      store = new SqliteAuditStore(opts.path ?? logDb, { onError: log.error, onWarning: log.warn, ...audit });
      const interrupted = store.recoverInterrupted();
      if (interrupted > 0) log.warn(`${interrupted} call(s) were in flight when the proxy last stopped; recorded as interrupted`);
    },
    async teardown() {
      await postgres?.teardown?.();
      postgres = null;
      await store?.close();
      store = null;
    },
    audit: {
      begin: (record) => (postgres ? postgres.audit!.begin(record) : open().begin(record)),
      write: (record) => (postgres ? postgres.audit!.write(record) : open().write(record)),
      get reader() {
        return postgres ? postgres.audit!.reader : open().reader;
      },
      get trail() {
        return postgres ? postgres.audit!.trail : open().trail;
      },
      get keys() {
        return postgres ? postgres.audit!.keys : open().keys;
      },
      flush: () => (postgres ? postgres.audit!.flush!() : open().flush()),
      get hashKey() {
        return postgres ? postgres.audit!.hashKey : undefined;
      },
    },
  });
}
