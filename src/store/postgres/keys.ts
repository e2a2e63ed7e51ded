/**
 * Proxy keys in PostgreSQL, shared by every replica. `find` runs on every call in keys mode; by
 * default it asks the database each time (one indexed lookup), so a key revoked through any
 * replica or the CLI is refused by all from the next call. `cacheMs` > 0 caches answers (found
 * and not found) for that long: a revocation then takes up to `cacheMs` to reach other replicas.
 */
import type { SQL } from "bun";
import type { ProxyKeyStore } from "../contract.ts";
import { hashProxyKey, keyCreatedDetails, keyTagsColumn, keyTagsOf, mintProxyKey, type NewKeyRequest, type ProxyKey } from "../keys.ts";
import type { ChainEvent } from "../../trail/chain.ts";
import { transaction } from "./writer.ts";

interface Row {
  id: string;
  agents: string;
  users: string | null;
  tier: string | null;
  tags: string | null;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
}
const toProxyKey = (row: Row): ProxyKey => ({
  id: row.id,
  agents: JSON.parse(row.agents) as string[],
  users: row.users === null ? null : (JSON.parse(row.users) as string[]),
  tier: row.tier,
  tags: keyTagsOf(row.tags),
  created_at: row.created_at,
  expires_at: row.expires_at,
  revoked_at: row.revoked_at,
});
const keyColumns = "id, agents, users, tier, tags, created_at, expires_at, revoked_at";

export class PgKeys implements ProxyKeyStore {
  private readonly cache = new Map<string, { key: ProxyKey | null; until: number }>();

  constructor(
    private readonly sql: SQL,
    private readonly cacheMs: number,
    /** Appends a key event in the change's transaction (the trail's, which may seal it). */
    private readonly appendEvent: (tx: SQL, event: ChainEvent) => Promise<void>,
  ) {}

  async find(secret: string): Promise<ProxyKey | null> {
    const hash = hashProxyKey(secret);
    const cached = this.cacheMs > 0 ? this.cache.get(hash) : undefined;
    if (cached && cached.until > Date.now()) return cached.key;
    const [row] = (await this.sql.unsafe(`SELECT ${keyColumns} FROM proxy_keys WHERE hash = $1`, [hash])) as Row[];
    const key = row ? toProxyKey(row) : null;
    if (this.cacheMs > 0) {
      if (this.cache.size > 10_000) this.cache.clear(); // bounded: guessed secrets must not grow memory
      this.cache.set(hash, { key, until: Date.now() + this.cacheMs });
    }
    return key;
  }

  async list(): Promise<ProxyKey[]> {
    return ((await this.sql.unsafe(`SELECT ${keyColumns} FROM proxy_keys ORDER BY created_at DESC, id`)) as Row[]).map(toProxyKey);
  }

  async create(request: NewKeyRequest, actor: string): Promise<{ key: string; record: ProxyKey }> {
    const { id, key, hash } = mintProxyKey();
    const row: Row = {
      id,
      agents: JSON.stringify(request.agents),
      users: request.users ? JSON.stringify(request.users) : null,
      tier: request.tier ?? null,
      tags: keyTagsColumn(request.tags),
      created_at: new Date().toISOString(),
      expires_at: request.expires_at ? new Date(request.expires_at).toISOString() : null,
      revoked_at: null,
    };
    const record = toProxyKey(row);
    await transaction(this.sql, 10_000, async (tx) => {
      await tx`INSERT INTO proxy_keys (id, hash, agents, users, tier, tags, created_at, expires_at, revoked_at)
        VALUES (${row.id}, ${hash}, ${row.agents}, ${row.users}, ${row.tier}, ${row.tags}, ${row.created_at}, ${row.expires_at}, NULL)`;
      await this.appendEvent(tx, { kind: "key_created", actor, details: keyCreatedDetails(record) });
    });
    return { key, record };
  }

  async revoke(id: string, actor: string): Promise<ProxyKey | null> {
    const revoked = await transaction(this.sql, 10_000, async (tx) => {
      const [row] = (await tx.unsafe(`SELECT ${keyColumns} FROM proxy_keys WHERE id = $1 FOR UPDATE`, [id])) as Row[];
      if (!row) return null;
      if (row.revoked_at) return toProxyKey(row);
      const revokedAt = new Date().toISOString();
      await tx`UPDATE proxy_keys SET revoked_at = ${revokedAt} WHERE id = ${id}`;
      await this.appendEvent(tx, { kind: "key_revoked", actor, details: { key_id: id } });
      return toProxyKey({ ...row, revoked_at: revokedAt });
    });
    this.cache.clear();
    return revoked;
  }
}
