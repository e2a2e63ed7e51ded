/**
 * `sqliteAudit({ path })`: the embedded SQLite audit store as the primary store (`auditStore`).
 * Without `path` it is the store `--log-db` / AGENT_ATTR_LOG_DB names — the default when no plugin
 * provides a store, so listing it without a path only makes the choice explicit (and a
 * `postgres://` --log-db then runs the PostgreSQL driver, as it would without the plugin). On start it
 * marks calls a killed process left in flight as `interrupted`. Records are hash-chained and
 * checkpoints signed per the config's `audit` settings (`audit.checkpoint`, `audit.signingKey`,
 * `audit.retentionDays`).
 */
import { definePlugin, logDbStore, parseOptions, sqliteStore } from "agent-attr";
import { z } from "zod";

const optionsSchema = z.object({ path: z.string().min(1).optional() }).strict();

export function sqliteAudit(options: z.input<typeof optionsSchema> = {}) {
  const opts = parseOptions("sqlite-audit", optionsSchema, options);
  // Without a path: whatever --log-db names (a file is SQLite; a postgres:// URL, PostgreSQL).
  return definePlugin({ name: "sqlite-audit", auditStore: opts.path ? sqliteStore(opts.path) : logDbStore() });
}
