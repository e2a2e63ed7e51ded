/**
 * Opening the PostgreSQL trail: the connection pool, the migrations (./migrations.ts) and the
 * trail's identity row (`audit_meta`: chain id and hash key, created once under a lock, so every
 * replica that opens the same database shares them).
 *
 * `--log-db postgres://user@host:5432/db?schema=name` — `schema` (default `public`) is where the
 * tables live: several trails can share one database, and tests use a schema each.
 */
import { SQL } from "bun";
import { SchemaDamagedError } from "../contract.ts";
import { migrations } from "./migrations.ts";

/** Advisory lock keys (one 64-bit space per database; both are transaction-scoped). */
export const lockKeys = { chain: 0x61612d01, migrate: 0x61612d02 } as const;

export const isPostgresUrl = (logDb: string): boolean => /^postgres(ql)?:\/\//i.test(logDb);

export interface PgTarget {
  /** The URL without our own parameters, and with no password in `display`. */
  url: string;
  schema: string;
  display: string;
}

export function parseTarget(logDb: string): PgTarget {
  const url = new URL(logDb);
  const schema = url.searchParams.get("schema") ?? "public";
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`the schema '${schema}' in --log-db must be a lower-case SQL identifier`);
  url.searchParams.delete("schema");
  const display = new URL(url);
  if (display.password) display.password = "***";
  return { url: url.toString(), schema, display: `${display.toString()}${schema === "public" ? "" : ` (schema ${schema})`}` };
}

export interface PoolOptions {
  max?: number;
  /** Seconds a connection attempt may take (Bun's default, 30 s, would hold calls far too long). */
  connectionTimeout?: number;
}

/**
 * A pool whose connections use the trail's schema. `idle_in_transaction_session_timeout` lets the
 * server release the chain lock of a writer that vanished mid-transaction (a partition leaves its
 * socket open for hours otherwise); `lock_timeout` and `statement_timeout` bound every wait.
 */
export function openPool(target: PgTarget, options: PoolOptions = {}): SQL {
  return new SQL(target.url, {
    max: options.max ?? 8,
    connectionTimeout: options.connectionTimeout ?? 5,
    idleTimeout: 30,
    connection: {
      application_name: "agent-attr",
      search_path: target.schema,
      idle_in_transaction_session_timeout: 10_000,
      lock_timeout: 10_000,
      statement_timeout: 30_000,
    },
  });
}

/** Applies the migrations not yet applied (creating the schema if needed); returns how many ran. */
export async function migrate(sql: SQL, schema: string): Promise<number> {
  return sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${lockKeys.migrate})`;
    await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await tx.unsafe(
      `CREATE TABLE IF NOT EXISTS "${schema}".agent_attr_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const [row] = await tx.unsafe(`SELECT coalesce(max(version), 0)::int AS v FROM "${schema}".agent_attr_migrations`);
    const applied = (row as { v: number }).v;
    for (let v = applied; v < migrations.length; v++) {
      await tx.unsafe(`SET LOCAL search_path TO "${schema}"`);
      await tx.unsafe(migrations[v]!);
      await tx.unsafe(`INSERT INTO "${schema}".agent_attr_migrations (version) VALUES (${v + 1})`);
    }
    await checkSchema(tx, schema);
    return migrations.length - applied;
  });
}

/** The tables and triggers the migrations create (and none drops again), read off their SQL. */
const expected = (() => {
  const text = migrations.join("\n");
  const named = (pattern: RegExp) => new Set([...text.matchAll(pattern)].map((m) => m[1]!.toLowerCase()));
  const dropped = named(/DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(\w+)/gi);
  return {
    tables: [...named(/CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)/gi)].filter((t) => !dropped.has(t)),
    triggers: [...named(/CREATE\s+(?:OR\s+REPLACE\s+)?TRIGGER\s+(\w+)/gi)],
  };
})();

/**
 * Every table and trigger the applied migrations made is there: a dropped one is not made again
 * (its migration is recorded), and would otherwise read as an unreadable trail rather than as
 * tampering. As the SQLite store's `checkSchema`.
 */
async function checkSchema(tx: SQL, schema: string): Promise<void> {
  const tables = new Set(
    ((await tx`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = ${schema}`) as { name: string }[]).map(
      (r) => r.name,
    ),
  );
  const triggers = new Set(
    (
      (await tx`SELECT DISTINCT trigger_name AS name FROM information_schema.triggers WHERE trigger_schema = ${schema}`) as {
        name: string;
      }[]
    ).map((r) => r.name),
  );
  const missing =
    expected.tables.find((t) => !tables.has(t))?.replace(/^/, "table ") ??
    expected.triggers.find((t) => !triggers.has(t))?.replace(/^/, "trigger ");
  if (missing) {
    throw new SchemaDamagedError(
      `the audit schema "${schema}" has no ${missing}, which its migrations created: it was dropped behind the proxy's ` +
        "back (tampering, or a damaged copy). Restore the database from a backup and verify it",
    );
  }
}

export interface TrailMeta {
  chainId: string;
  hashKey: Uint8Array;
}

/**
 * The trail's identity, created by the first process that opens it. AGENT_ATTR_HASH_KEY, when
 * set, is used instead of the stored key (as with SQLite), so a deployment can keep it in a secret.
 */
export async function loadMeta(sql: SQL): Promise<TrailMeta> {
  const created = crypto.getRandomValues(new Uint8Array(32));
  await sql`INSERT INTO audit_meta (id, chain_id, hash_key, created_at)
    VALUES (1, ${crypto.randomUUID()}, ${Buffer.from(created).toString("hex")}, ${new Date().toISOString()})
    ON CONFLICT (id) DO NOTHING`;
  const [meta] = (await sql`SELECT chain_id, hash_key FROM audit_meta WHERE id = 1`) as { chain_id: string; hash_key: string }[];
  const fromEnv = process.env.AGENT_ATTR_HASH_KEY;
  return {
    chainId: meta!.chain_id,
    hashKey: fromEnv ? new TextEncoder().encode(fromEnv) : new Uint8Array(Buffer.from(meta!.hash_key, "hex")),
  };
}

/**
 * The trail cannot be opened or reached: an I/O failure to the CLI (exit code 4), like Bun's own
 * `PostgresError` and SQLite's errors, not an internal one.
 */
export class PostgresError extends Error {
  override name = "PostgresError";
}

/** SQLSTATE of a server error, or Bun's client code (connection refused, closed…). */
export function pgCode(error: unknown): string | undefined {
  const e = error as { errno?: unknown; code?: unknown };
  return typeof e.errno === "string" ? e.errno : typeof e.code === "string" ? e.code : undefined;
}
