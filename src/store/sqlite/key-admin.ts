/**
 * Managing proxy keys over the audit API (the dashboard's Limits and keys page): list them, create
 * one (its secret is in this one answer only), revoke one. Creating and revoking are admin actions:
 * each appends a chain event (`key_created`, `key_revoked`) in the same transaction as the change,
 * naming the key, its agents and tier — never the secret, and only the number of user globs (they
 * may name people). Beside a trail each row is signed (../key-signature.ts), so both need the
 * trail's signing key.
 *
 * The SQLite store serves it from its reader thread (./reader-thread.ts), with `SqliteKeyAdmin`
 * there; the CLI in process.
 */
import type { Database } from "bun:sqlite";
import type { KeyObject } from "node:crypto";
import { ensureChainId, type ChainWriter } from "./chain-writer.ts";
import type { ProxyKeyStore } from "../contract.ts";
import { keyCreatedDetails, type NewKeyRequest, type ProxyKey } from "../keys.ts";
import { signKeyRow } from "../key-signature.ts";
import { SqliteProxyKeys } from "./keys.ts";

/**
 * The keys of a `proxy_keys` table as a `ProxyKeyStore`. With `chain` (the table beside a trail, on
 * that trail's connection) creating and revoking append their chain events in the same
 * transaction, and `afterEvent` runs after each (the CLI seals it with a checkpoint). Without one
 * (keys in a database of their own) the changes are not chain events.
 */
export class SqliteKeyAdmin implements ProxyKeyStore {
  constructor(
    private readonly table: SqliteProxyKeys,
    private readonly chain: ChainWriter | null,
    private readonly afterEvent: () => void = () => {},
  ) {}

  async find(secret: string): Promise<ProxyKey | null> {
    return this.table.find(secret);
  }

  async list(): Promise<ProxyKey[]> {
    return this.table.list();
  }

  async create(request: NewKeyRequest, actor: string): Promise<{ key: string; record: ProxyKey }> {
    const make = () =>
      this.table.create({
        agents: request.agents,
        users: request.users ?? null,
        tier: request.tier ?? null,
        tags: request.tags ?? null,
        expiresAt: request.expires_at ? new Date(request.expires_at) : null,
      });
    const chain = this.chain;
    if (!chain) return make();
    const created = chain.transaction(() => {
      const made = make();
      chain.appendInTransaction([], [{ kind: "key_created", actor, details: keyCreatedDetails(made.record) }]);
      return made;
    });
    this.afterEvent();
    return created;
  }

  async revoke(id: string, actor: string): Promise<ProxyKey | null> {
    const chain = this.chain;
    if (!chain) return this.table.revoke(id);
    let recorded = false;
    const revoked = chain.transaction(() => {
      const before = this.table.list().find((key) => key.id === id);
      const result = this.table.revoke(id);
      if (result && before && !before.revoked_at) {
        chain.appendInTransaction([], [{ kind: "key_revoked", actor, details: { key_id: id } }]);
        recorded = true;
      }
      return result;
    });
    if (recorded) this.afterEvent();
    return revoked;
  }

  close(): void {
    this.table.close();
  }
}

/**
 * Proxy keys in a SQLite database of their own (`apiKeys({ path })`), created and migrated if new.
 * Their rows are not signed: whoever can write that file can change a key (docs/operators.md).
 */
export function sqliteKeyStore(path: string): ProxyKeyStore & { close(): void } {
  return new SqliteKeyAdmin(new SqliteProxyKeys(path), null);
}

/**
 * Signs the key rows an earlier version wrote (no signature), as they stand, and records which in
 * a `keys_signed` chain event; returns how many. Only the opener that has just applied the
 * migration adding the column calls it (../key-signature.ts): a row unsigned later was not
 * written by agent-attr, and stays refused.
 */
export function signLegacyKeys(db: Database, chain: ChainWriter, signingKey: KeyObject): number {
  const table = new SqliteProxyKeys(db);
  try {
    return chain.transaction(() => {
      const unsigned = table.rows().filter((row) => row.signature === null);
      if (unsigned.length === 0) return 0;
      const ids = unsigned.map((row) => row.key.id).sort();
      chain.appendInTransaction([], [{ kind: "keys_signed", actor: "upgrade", details: { key_ids: ids, keys: ids.length } }]);
      const chainId = ensureChainId(db);
      for (const row of unsigned) table.setSignature(row.key.id, signKeyRow(signingKey, chainId, row.key, row.hash));
      return unsigned.length;
    });
  } finally {
    table.close();
  }
}
