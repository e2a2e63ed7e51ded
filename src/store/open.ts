/**
 * Which driver a `--log-db` (AGENT_ATTR_LOG_DB, `audit.logDb`) names: a `postgres://` or
 * `postgresql://` URL is the PostgreSQL driver (./postgres/), anything else a SQLite file path.
 * The proxy's default audit plugin and keys mode ask here, so one setting moves every part of the
 * trail.
 */
import { isPostgresUrl } from "./postgres/connection.ts";

export type StoreKind = "sqlite" | "postgres";

export function storeKindFor(logDb: string): StoreKind {
  return isPostgresUrl(logDb) ? "postgres" : "sqlite";
}
