/**
 * Managing proxy keys over the audit API (the dashboard's Limits and keys page): list them, create
 * one (its secret is in this one answer only), revoke one. Creating and revoking are admin actions:
 * each appends a chain event (`key_created`, `key_revoked`) in the same transaction as the change,
 * naming the key, its agents and tier — never the secret, and only the number of user globs (they
 * may name people).
 *
 * `KeyAdmin` is asynchronous so a driver can do its work elsewhere: the SQLite store serves it from
 * its reader thread (./reader-thread.ts), with `SqliteKeyAdmin` there.
 */
import type { Database } from "bun:sqlite";
import type { ChainWriter } from "./chain-writer.ts";
import type { NewKeyRequest, ProxyKey } from "../keys.ts";
import { ProxyKeyStore } from "./keys.ts";

export interface KeyAdmin {
  listKeys(): Promise<ProxyKey[]>;
  /** Creates a key; `key` is the only copy of the secret. */
  createKey(request: NewKeyRequest, actor: string): Promise<{ key: string; record: ProxyKey }>;
  /** Revokes a key (idempotent: revoking a revoked key changes nothing and records nothing); null when no key has that id. */
  revokeKey(id: string, actor: string): Promise<ProxyKey | null>;
}

/** The keys in the audit database's `proxy_keys` table, on the connection of `chain` (the reader thread's). */
export class SqliteKeyAdmin implements KeyAdmin {
  private readonly store: ProxyKeyStore;

  constructor(
    private readonly db: Database,
    private readonly chain: ChainWriter,
  ) {
    this.store = new ProxyKeyStore(db);
  }

  async listKeys(): Promise<ProxyKey[]> {
    return this.store.list();
  }

  async createKey(request: NewKeyRequest, actor: string): Promise<{ key: string; record: ProxyKey }> {
    return this.chain.transaction(() => {
      const created = this.store.create({
        agents: request.agents,
        users: request.users ?? null,
        tier: request.tier ?? null,
        expiresAt: request.expires_at ? new Date(request.expires_at) : null,
      });
      const { record } = created;
      const details = { key_id: record.id, agents: record.agents, user_globs: record.users?.length ?? 0, tier: record.tier, expires_at: record.expires_at };
      this.chain.appendInTransaction([], [{ kind: "key_created", actor, details }]);
      return created;
    });
  }

  async revokeKey(id: string, actor: string): Promise<ProxyKey | null> {
    return this.chain.transaction(() => {
      const before = this.store.list().find((key) => key.id === id);
      const revoked = this.store.revoke(id);
      if (revoked && before && !before.revoked_at) {
        this.chain.appendInTransaction([], [{ kind: "key_revoked", actor, details: { key_id: id } }]);
      }
      return revoked;
    });
  }

  close(): void {
    this.store.close();
  }
}
