/**
 * Proxy API keys, in the `proxy_keys` table of the audit database. A key is shown once, when it is
 * created; only its SHA-256 hash is stored (keys are 256 random bits, so a fast hash is enough).
 * A running proxy looks keys up by hash on every call, so keys created or revoked by the CLI take
 * effect at once, without a restart.
 */
import type { Database, Statement } from "bun:sqlite";
import { desc, eq } from "drizzle-orm";
import { drizzle, type BunSQLiteDatabase } from "drizzle-orm/bun-sqlite";
import { z } from "zod";
import { openDatabase } from "./database.ts";
import { migrate } from "./migrate.ts";
import * as schema from "./schema.ts";

export const proxyKeySchema = z.object({
  id: z.string(),
  /** Agent-ID globs the key may act as; a single literal fixes the agent. */
  agents: z.array(z.string()),
  /** User-ID globs the key may act for (`*`: any); null means it acts for no user. */
  users: z.array(z.string()).nullable(),
  tier: z.string().nullable(),
  created_at: z.string(),
  expires_at: z.string().nullable(),
  revoked_at: z.string().nullable(),
});
export type ProxyKey = z.infer<typeof proxyKeySchema>;

export interface NewProxyKey {
  agents: string[];
  users?: string[] | null;
  tier?: string | null;
  expiresAt?: Date | null;
}

type Row = typeof schema.proxyKeys.$inferSelect;

const keyPrefix = "aa-";

export function hashProxyKey(key: string): string {
  return new Bun.CryptoHasher("sha256").update(key).digest("hex");
}

/** True for strings shaped like a proxy key (so a provider key sent by mistake can be named). */
export function looksLikeProxyKey(value: string): boolean {
  return value.startsWith(keyPrefix);
}

export class ProxyKeyStore {
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
    const id = `key_${Buffer.from(crypto.getRandomValues(new Uint8Array(6))).toString("hex")}`;
    const key = `${keyPrefix}${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url")}`;
    const row: Row = {
      id,
      hash: hashProxyKey(key),
      agents: JSON.stringify(options.agents),
      users: options.users ? JSON.stringify(options.users) : null,
      tier: options.tier ?? null,
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
    created_at: row.created_at,
    expires_at: row.expires_at,
    revoked_at: row.revoked_at,
  };
}
