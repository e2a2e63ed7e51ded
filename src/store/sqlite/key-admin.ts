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
import { adoptionEventKinds, adoptionPlan, legacyKeyRefused, legacyKeysSigned, legacyKeysWait, signKeyRow } from "../key-signature.ts";
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
 * Adopts the key rows an earlier version wrote (../key-signature.ts `adoptionPlan`): with the
 * private signing key, signs the rows the plan allows, as they stand, and appends a `keys_signed`
 * event naming them (and the unsigned rows it refused), which closes adoption for good; without
 * it, signs nothing and says that a start with the key will. Any open may call it: it reads only
 * `proxy_keys` unless a row is unsigned. Returns how many rows it signed.
 */
export function adoptLegacyKeys(db: Database, chain: ChainWriter, signingKey: KeyObject | null, warn: (message: string) => void): number {
  const table = new SqliteProxyKeys(db);
  const plan = () =>
    adoptionPlan(
      table.rows(),
      db
        .query<{ kind: string; details: string }, []>(
          `SELECT kind, details FROM audit_events WHERE kind IN (${adoptionEventKinds}) ORDER BY seq`,
        )
        .all(),
    );
  try {
    if (!table.rows().some((row) => row.signature === null)) return 0;
    if (signingKey?.type !== "private") {
      const waiting = plan().adopt.length;
      if (waiting > 0) warn(legacyKeysWait(waiting));
      return 0;
    }
    const done = chain.transaction(() => {
      const { open, adopt, refused } = plan();
      if (!open) return null;
      const ids = adopt.map((row) => row.key.id).sort();
      const notSigned = refused.map((r) => r.id).sort();
      chain.appendInTransaction(
        [],
        [
          {
            kind: "keys_signed",
            actor: "upgrade",
            details: { key_ids: ids, keys: ids.length, ...(notSigned.length ? { not_signed: notSigned } : {}) },
          },
        ],
      );
      const chainId = ensureChainId(db);
      for (const row of adopt) table.setSignature(row.key.id, signKeyRow(signingKey, chainId, row.key, row.hash));
      return { signed: adopt.length, refused };
    });
    if (!done) return 0;
    if (done.signed > 0) warn(legacyKeysSigned(done.signed));
    for (const { id, why } of done.refused) warn(legacyKeyRefused(id, why));
    return done.signed;
  } finally {
    table.close();
  }
}
