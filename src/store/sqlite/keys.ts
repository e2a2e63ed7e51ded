/**
 * Proxy keys in SQLite: the `proxy_keys` table, beside the audit trail in the same database
 * file (migrated with it) or in a database of its own (`apiKeys({ path })`). Only the SHA-256 of a
 * key is stored (../keys.ts). A running proxy looks keys up by hash on every call, with a prepared
 * statement on its own connection, so keys created or revoked by the CLI take effect at once.
 *
 * Beside a trail, rows are signed (../key-signature.ts): with `signing` the table signs what it
 * writes and `find` answers only rows whose signature verifies and that the chain's `key_revoked`
 * events (read as they are appended, by seq) do not revoke. Without a signing key it can neither
 * write nor vouch for a row: `create` and `revoke` throw, `find` answers null.
 */
import type { Database, Statement } from "bun:sqlite";
import type { KeyObject } from "node:crypto";
import { desc, eq } from "drizzle-orm";
import { drizzle, type BunSQLiteDatabase } from "drizzle-orm/bun-sqlite";
import { hashProxyKey, keyTagsColumn, keyTagsOf, mintProxyKey, type NewProxyKey, type ProxyKey } from "../keys.ts";
import { KeyRowTrust, keyRowSigned, keyRowTampered, keysNeedKey, revokedKeyIds, signKeyRow, type StoredKeyRow } from "../key-signature.ts";
import { chainId, ensureChainId } from "./chain-writer.ts";
import { openDatabase } from "./database.ts";
import { migrate } from "./migrate.ts";
import * as schema from "./schema.ts";

type Row = typeof schema.proxyKeys.$inferSelect;

/** How a table beside a trail signs and checks its rows: the trail's signing key (null: not here), and where refusals are logged. */
export interface KeyTableSigning {
  key: KeyObject | null;
  warn?: (message: string) => void;
}

export class SqliteProxyKeys {
  private readonly db: Database;
  private readonly orm: BunSQLiteDatabase<typeof schema>;
  private readonly byHash: Statement<Row, [string]>;
  private readonly owned: boolean;
  private readonly trust: KeyRowTrust | null;
  private readonly lastEvent: Statement<{ seq: number }, []> | null = null;
  private readonly revocations: Statement<{ details: string }, [number, number]> | null = null;
  /** The newest event seq whose `key_revoked` events `trust` holds. */
  private revokedThrough = 0;
  private chain: string | null = null;

  /**
   * A path opens (and migrates) a connection of its own; a connection is used as it is, and not
   * closed by `close`. `signing`: the table is beside a trail and its rows are signed; absent: a
   * database of its own (`apiKeys({ path })`), rows unsigned.
   */
  constructor(
    source: string | Database,
    private readonly signing?: KeyTableSigning,
  ) {
    this.owned = typeof source === "string";
    this.db = typeof source === "string" ? openDatabase(source) : source;
    if (this.owned) migrate(this.db);
    this.orm = drizzle(this.db, { schema });
    this.byHash = this.db.prepare<Row, [string]>("SELECT * FROM proxy_keys WHERE hash = ?");
    this.trust = signing?.key ? new KeyRowTrust(signing.key, signing.warn ?? (() => {})) : null;
    if (this.trust) {
      this.lastEvent = this.db.prepare<{ seq: number }, []>("SELECT coalesce(max(seq), 0) AS seq FROM audit_events");
      this.revocations = this.db.prepare<{ details: string }, [number, number]>(
        "SELECT details FROM audit_events WHERE seq > ? AND seq <= ? AND kind = 'key_revoked'",
      );
    }
  }

  /** Creates a key; the returned `key` is the only copy of the secret. Beside a trail, call it in the chain's transaction. */
  create(options: NewProxyKey, now = new Date()): { key: string; record: ProxyKey } {
    const signingKey = this.signingKey();
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
      signature: null,
    };
    const record = toProxyKey(row);
    if (signingKey) row.signature = signKeyRow(signingKey, ensureChainId(this.db), record, hash);
    this.orm.insert(schema.proxyKeys).values(row).run();
    return { key, record };
  }

  list(): ProxyKey[] {
    return this.orm.select().from(schema.proxyKeys).orderBy(desc(schema.proxyKeys.created_at)).all().map(toProxyKey);
  }

  /** Every row with its hash and signature, for `audit verify` (../key-signature.ts `keyRowsMismatch`). */
  rows(): StoredKeyRow[] {
    return this.orm.select().from(schema.proxyKeys).all().map(stored);
  }

  /** Stores a row's signature (the adoption of rows an earlier version wrote, ./key-admin.ts `adoptLegacyKeys`). */
  setSignature(id: string, signature: string): void {
    this.orm.update(schema.proxyKeys).set({ signature }).where(eq(schema.proxyKeys.id, id)).run();
  }

  /** Marks a key revoked (idempotent); null when no key has that id. */
  revoke(id: string, now = new Date()): ProxyKey | null {
    const signingKey = this.signingKey();
    const existing = this.orm.select().from(schema.proxyKeys).where(eq(schema.proxyKeys.id, id)).get();
    if (!existing) return null;
    if (existing.revoked_at) return toProxyKey(existing);
    // A row changed behind agent-attr's back is not signed again as it stands (widened, then "revoked").
    if (signingKey && !keyRowSigned(signingKey, ensureChainId(this.db), stored(existing))) throw new Error(keyRowTampered(id));
    const revoked = toProxyKey({ ...existing, revoked_at: now.toISOString() });
    const signature = signingKey ? signKeyRow(signingKey, ensureChainId(this.db), revoked, existing.hash) : null;
    this.orm.update(schema.proxyKeys).set({ revoked_at: revoked.revoked_at, signature }).where(eq(schema.proxyKeys.id, id)).run();
    return revoked;
  }

  /**
   * The key with this secret, revoked or expired ones included (the caller decides); null if
   * unknown, and (beside a trail) if its row is not signed or the chain revokes it (logged once).
   */
  find(key: string): ProxyKey | null {
    const row = this.byHash.get(hashProxyKey(key));
    if (!row) return null;
    if (!this.signing) return toProxyKey(row);
    if (!this.trust) return null;
    this.readRevocations();
    this.chain ??= chainId(this.db);
    return this.trust.admit(this.chain, stored(row));
  }

  close(): void {
    this.byHash.finalize();
    this.lastEvent?.finalize();
    this.revocations?.finalize();
    if (this.owned) this.db.close();
  }

  /** The key rows are signed with; throws beside a trail without one (no row could be signed). */
  private signingKey(): KeyObject | null {
    if (this.signing && !this.signing.key) throw new Error(keysNeedKey);
    return this.signing?.key ?? null;
  }

  /** The `key_revoked` events appended since the last look (seqs only grow: a range read on the primary key). */
  private readRevocations(): void {
    const top = this.lastEvent!.get()!.seq;
    if (top <= this.revokedThrough) return;
    for (const id of revokedKeyIds(this.revocations!.all(this.revokedThrough, top))) this.trust!.revoked.add(id);
    this.revokedThrough = top;
  }
}

const stored = (row: Row): StoredKeyRow => ({ key: toProxyKey(row), hash: row.hash, signature: row.signature });

function toProxyKey(row: Omit<Row, "signature">): ProxyKey {
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
