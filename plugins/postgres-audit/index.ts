/**
 * `postgresAudit({ url, leaseMs, heartbeatMs })`: the audit trail in PostgreSQL as the primary store
 * (`auditStore`), for any number of replicas. Without `url` it is the store a `postgres://`
 * `--log-db` names — the default for such a URL, so listing it only makes the choice explicit or
 * sets the lease. Every replica appends to one hash chain; calls in flight on a replica that dies
 * are recorded as `interrupted` by a survivor once its lease runs out. Checkpoints, signing key,
 * retention and the backlog bound follow the config's `audit` settings, as with SQLite.
 */
import { definePlugin, parseOptions, postgresStore } from "agent-attr";
import { z } from "zod";

const optionsSchema = z
  .object({
    /** The database URL; default `--log-db`. */
    url: z
      .string()
      .regex(/^postgres(ql)?:\/\//, "expected a postgres:// URL")
      .optional(),
    /** A replica silent for this long is dead and its calls are recovered (ms, default 10,000). */
    leaseMs: z.number().int().min(100).optional(),
    /** Heartbeat interval (ms, default 2,000; keep it at most a third of the lease). */
    heartbeatMs: z.number().int().min(50).optional(),
  })
  .strict();

export function postgresAudit(options: z.input<typeof optionsSchema> = {}) {
  const opts = parseOptions("postgres-audit", optionsSchema, options);
  return definePlugin({ name: "postgres-audit", auditStore: postgresStore(opts) });
}
