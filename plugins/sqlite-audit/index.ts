/**
 * `sqliteAudit({ path })`: the embedded audit store (the default primary sink). Without `path` it
 * uses `--log-db` / AGENT_ATTR_LOG_DB. On start it marks calls a killed process left in flight
 * as `interrupted`. Records are hash-chained and checkpoints signed per the config's `audit`
 * settings (`audit.checkpoint`, `audit.signingKey`, `audit.retentionDays`).
 */
import { SqliteAuditStore, definePlugin } from "agent-attr";
import { z } from "zod";
import { parseOptions } from "../options.ts";

const optionsSchema = z.object({ path: z.string().min(1).optional() }).strict();

export function sqliteAudit(options: z.input<typeof optionsSchema> = {}) {
  const opts = parseOptions("sqlite-audit", optionsSchema, options);
  let store: SqliteAuditStore | null = null;
  const open = (): SqliteAuditStore => {
    if (!store) throw new Error("the SQLite audit store is not open (setup has not run)");
    return store;
  };
  return definePlugin({
    name: "sqlite-audit",
    setup({ logDb, log, audit }) {
      store = new SqliteAuditStore(opts.path ?? logDb, { onError: log.error, onWarning: log.warn, ...audit });
      const interrupted = store.recoverInterrupted();
      if (interrupted > 0) log.warn(`${interrupted} call(s) were in flight when the proxy last stopped; recorded as interrupted`);
    },
    async teardown() {
      await store?.close();
      store = null;
    },
    audit: {
      begin: (record) => open().begin(record),
      write: (record) => open().write(record),
      get reader() {
        return open().reader;
      },
      get trail() {
        return open().trail;
      },
      get keys() {
        return open().keys;
      },
      flush: () => open().flush(),
    },
  });
}
