/**
 * `postgresAudit()`: the audit trail in PostgreSQL, for any number of replicas (the default
 * primary sink when `--log-db` is a `postgres://` URL). Every replica appends to one hash chain;
 * calls in flight on a replica that dies are recorded as `interrupted` by a survivor once its lease
 * runs out. Checkpoints, signing key, retention and the backlog bound follow the config's `audit`
 * settings, as with SQLite.
 */
import { definePlugin, PgAuditStore, type PgStoreOptions } from "agent-attr";
import { z } from "zod";
import { parseOptions } from "../options.ts";

const optionsSchema = z
  .object({
    /** The database URL; default `--log-db`. */
    url: z.string().regex(/^postgres(ql)?:\/\//, "expected a postgres:// URL").optional(),
    /** A replica silent for this long is dead and its calls are recovered (ms, default 10,000). */
    leaseMs: z.number().int().min(100).optional(),
    /** Heartbeat interval (ms, default 2,000; keep it at most a third of the lease). */
    heartbeatMs: z.number().int().min(50).optional(),
  })
  .strict();

export function postgresAudit(options: z.input<typeof optionsSchema> = {}) {
  const opts = parseOptions("postgres-audit", optionsSchema, options);
  let store: PgAuditStore | null = null;
  const open = (): PgAuditStore => {
    if (!store) throw new Error("the PostgreSQL audit store is not open (setup has not run)");
    return store;
  };
  const storeOptions: PgStoreOptions = { leaseMs: opts.leaseMs, heartbeatMs: opts.heartbeatMs };
  return definePlugin({
    name: "postgres-audit",
    async setup({ logDb, log, audit }) {
      store = await PgAuditStore.open({ logDb: opts.url ?? logDb, log, audit: audit ?? { checkpoint: { everyRecords: 1000, everySeconds: 60 } } }, storeOptions);
      const recovered = await store.recover();
      if (recovered.interrupted > 0) log.warn(`${recovered.interrupted} call(s) of replicas that stopped were in flight; recorded as interrupted`);
    },
    async teardown() {
      await store?.close();
      store = null;
    },
    audit: {
      begin: (record) => open().begin(record),
      write: (record) => open().commit(record),
      get reader() {
        return open().reader;
      },
      get trail() {
        return open().trail;
      },
      get keys() {
        const keys = open().keys;
        return {
          listKeys: keys.list.bind(keys),
          createKey: keys.create.bind(keys),
          revokeKey: keys.revoke.bind(keys),
        };
      },
      flush: () => open().flush(),
      get hashKey() {
        return open().hashKey;
      },
    },
  });
}
