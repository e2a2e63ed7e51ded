/**
 * Proxy API keys in SQLite: the `proxy_keys` table, beside the audit trail in the same database
 * file (migrated with it) or in a database of its own (`apiKeys({ path })`). Only the SHA-256 of a
 * key is stored (../keys.ts). A running proxy looks keys up by hash on every call, with a prepared
 * statement on its own connection, so keys created or revoked by the CLI take effect at once.
 */
import type { Database, Statement } from "bun:sqlite";
import { desc, eq } from "drizzle-orm";
import { drizzle, type BunSQLiteDatabase } from "drizzle-orm/bun-sqlite";
import { hashProxyKey, keyTagsColumn, keyTagsOf, mintProxyKey, type NewProxyKey, type ProxyKey } from "../keys.ts";
import { openDatabase } from "./database.ts";
import { migrate } from "./migrate.ts";
import * as schema from "./schema.ts";

type Row = typeof schema.proxyKeys.$inferSelect;

export class SqliteProxyKeys {
  private readonly db: Database;
  private readonly orm: BunSQLiteDatabase<typeof schema>;
  private readonly byHash: Statement<Row, [string]>;
  private readonly owned: boolean;

  /** A path opens (and migrates) a connection of its own; a connection is used as it is, and not closed by `close`. */
  constructor(source: string | Database) {
    this.owned = typeof source === "string";
    this.db = typeof source === "string" ? openDatabase(source) : source;
    if (this.owned) migrate(this.db);
    this.orm = drizzle(this.db, { schema });
    this.byHash = this.db.prepare<Row, [string]>("SELECT * FROM proxy_keys WHERE hash = ?");
  }

  /** Creates a key; the returned `key` is the only copy of the secret. */
  create(options: NewProxyKey, now = new Date()): { key: string; record: ProxyKey } {
    const { id, key, hash } = mintProxyKey();
    const row: Row = {
      id,
      hash,
      agents: JSON.stringify(options.agents),
      users: options.users ? JSON.stringify(options.users) : null,
      tier: options.tier ?? null,
      tags: keyTagsColumn(options.tags),
      created_at: now.toISOString(),
      expires_at: options.expiresAt ? options.expiresAt.toISOString() : null,
      revoked_at: null,
    };
    this.orm.insert(schema.proxyKeys).values(row).run();
    return { key, record: toProxyKey(row) };
  }

  list(): ProxyKey[] {
    return this.orm.select().from(schema.proxyKeys).orderBy(desc(schema.proxyKeys.created_at)).all().map(toProxyKey);
  }

  /** Marks a key revoked (idempotent); null when no key has that id. */
  revoke(id: string, now = new Date()): ProxyKey | null {
    const existing = this.orm.select().from(schema.proxyKeys).where(eq(schema.proxyKeys.id, id)).get();
    if (!existing) return null;
    if (existing.revoked_at) return toProxyKey(existing);
    const revoked_at = now.toISOString();
    this.orm.update(schema.proxyKeys).set({ revoked_at }).where(eq(schema.proxyKeys.id, id)).run();
    return toProxyKey({ ...existing, revoked_at });
  }

  /** The key with this secret, revoked or expired ones included (the caller decides); null if unknown. */
  find(key: string): ProxyKey | null {
    const row = this.byHash.get(hashProxyKey(key));
    return row ? toProxyKey(row) : null;
  }

  close(): void {
    this.byHash.finalize();
    if (this.owned) this.db.close();
  }
}

function toProxyKey(row: Row): ProxyKey {
  return {
    id: row.id,
    agents: JSON.parse(row.agents) as string[],
    users: row.users ? (JSON.parse(row.users) as string[]) : null,
    tier: row.tier,
    tags: keyTagsOf(row.tags),
    created_at: row.created_at,
    expires_at: row.expires_at,
    revoked_at: row.revoked_at,
  };
}
