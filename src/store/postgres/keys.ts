/**
 * Proxy keys in PostgreSQL, shared by every replica. `find` runs on every call in keys mode; by
 * default it asks the database each time (one indexed lookup), so a key revoked through any
 * replica or the CLI is refused by all from the next call. `cacheMs` > 0 caches answers (found
 * and not found) for that long: a revocation then takes up to `cacheMs` to reach other replicas.
 *
 * Rows are signed with the trail's signing key (../key-signature.ts): `find` answers only a row
 * whose signature verifies (checked once per row content) and that no `key_revoked` event of the
 * chain revokes. The same query reads the newest event seq, so the revocations are read again
 * only when events were appended; a call usually costs the one round trip it did before.
 */
import type { SQL } from "bun";
import type { KeyObject } from "node:crypto";
import type { ProxyKeyStore } from "../contract.ts";
import { hashProxyKey, keyCreatedDetails, keyTagsColumn, keyTagsOf, mintProxyKey, type NewKeyRequest, type ProxyKey } from "../keys.ts";
import {
  adoptionEventKinds,
  adoptionPlan,
  KeyRowTrust,
  keyRowSigned,
  keyRowTampered,
  keysNeedKey,
  legacyKeyRefused,
  legacyKeysSigned,
  legacyKeysWait,
  revokedKeyIds,
  signKeyRow,
  type StoredKeyRow,
} from "../key-signature.ts";
import type { ChainEvent } from "../../trail/chain.ts";
import { transaction } from "./writer.ts";

interface Row {
  id: string;
  hash: string;
  agents: string;
  users: string | null;
  tier: string | null;
  tags: string | null;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  signature: string | null;
}
const toProxyKey = (row: Omit<Row, "hash" | "signature">): ProxyKey => ({
  id: row.id,
  agents: JSON.parse(row.agents) as string[],
  users: row.users === null ? null : (JSON.parse(row.users) as string[]),
  tier: row.tier,
  tags: keyTagsOf(row.tags),
  created_at: row.created_at,
  expires_at: row.expires_at,
  revoked_at: row.revoked_at,
});
const stored = (row: Row): StoredKeyRow => ({ key: toProxyKey(row), hash: row.hash, signature: row.signature });
const keyColumns = "id, hash, agents, users, tier, tags, created_at, expires_at, revoked_at, signature";

/** The trail's signing key (null: this process cannot sign or vouch for a row) and chain id, and where refusals are logged. */
export interface PgKeySigning {
  key: KeyObject | null;
  chainId: string;
  warn: (message: string) => void;
}

export class PgKeys implements ProxyKeyStore {
  private readonly cache = new Map<string, { key: ProxyKey | null; until: number }>();
  private readonly trust: KeyRowTrust | null;
  /** The newest event seq whose `key_revoked` events `trust` holds. */
  private revokedThrough = 0;

  constructor(
    private readonly sql: SQL,
    private readonly cacheMs: number,
    /** Appends a key event in the change's transaction (the trail's, which may seal it). */
    private readonly appendEvent: (tx: SQL, event: ChainEvent) => Promise<void>,
    private readonly signing: PgKeySigning,
  ) {
    this.trust = signing.key ? new KeyRowTrust(signing.key, signing.warn) : null;
  }

  async find(secret: string): Promise<ProxyKey | null> {
    const hash = hashProxyKey(secret);
    const cached = this.cacheMs > 0 ? this.cache.get(hash) : undefined;
    if (cached && cached.until > Date.now()) return cached.key;
    const [row] = (await this.sql.unsafe(
      `SELECT ${keyColumns}, (SELECT coalesce(max(seq), 0) FROM audit_events) AS events_through FROM proxy_keys WHERE hash = $1`,
      [hash],
    )) as (Row & { events_through: string })[];
    let key: ProxyKey | null = null;
    if (row && this.trust) {
      await this.readRevocations(Number(row.events_through));
      key = this.trust.admit(this.signing.chainId, stored(row));
    }
    if (this.cacheMs > 0) {
      if (this.cache.size > 10_000) this.cache.clear(); // bounded: guessed secrets must not grow memory
      this.cache.set(hash, { key, until: Date.now() + this.cacheMs });
    }
    return key;
  }

  async list(): Promise<ProxyKey[]> {
    return ((await this.sql.unsafe(`SELECT ${keyColumns} FROM proxy_keys ORDER BY created_at DESC, id`)) as Row[]).map(toProxyKey);
  }

  /** Every row with its hash and signature, for `audit verify` (as of the snapshot `tx` reads). */
  static async rows(tx: SQL): Promise<StoredKeyRow[]> {
    return ((await tx.unsafe(`SELECT ${keyColumns} FROM proxy_keys`)) as Row[]).map(stored);
  }

  async create(request: NewKeyRequest, actor: string): Promise<{ key: string; record: ProxyKey }> {
    const signingKey = this.signingKey();
    const { id, key, hash } = mintProxyKey();
    const row: Row = {
      id,
      hash,
      agents: JSON.stringify(request.agents),
      users: request.users ? JSON.stringify(request.users) : null,
      tier: request.tier ?? null,
      tags: keyTagsColumn(request.tags),
      created_at: new Date().toISOString(),
      expires_at: request.expires_at ? new Date(request.expires_at).toISOString() : null,
      revoked_at: null,
      signature: null,
    };
    const record = toProxyKey(row);
    const signature = signKeyRow(signingKey, this.signing.chainId, record, hash);
    await transaction(this.sql, 10_000, async (tx) => {
      await tx`INSERT INTO proxy_keys (id, hash, agents, users, tier, tags, created_at, expires_at, revoked_at, signature)
        VALUES (${row.id}, ${hash}, ${row.agents}, ${row.users}, ${row.tier}, ${row.tags}, ${row.created_at}, ${row.expires_at}, NULL, ${signature})`;
      await this.appendEvent(tx, { kind: "key_created", actor, details: keyCreatedDetails(record) });
    });
    return { key, record };
  }

  async revoke(id: string, actor: string): Promise<ProxyKey | null> {
    const signingKey = this.signingKey();
    const revoked = await transaction(this.sql, 10_000, async (tx) => {
      const [row] = (await tx.unsafe(`SELECT ${keyColumns} FROM proxy_keys WHERE id = $1 FOR UPDATE`, [id])) as Row[];
      if (!row) return null;
      if (row.revoked_at) return toProxyKey(row);
      // A row changed behind agent-attr's back is not signed again as it stands (widened, then "revoked").
      if (!keyRowSigned(signingKey, this.signing.chainId, stored(row))) throw new Error(keyRowTampered(id));
      const key = toProxyKey({ ...row, revoked_at: new Date().toISOString() });
      const signature = signKeyRow(signingKey, this.signing.chainId, key, row.hash);
      await tx`UPDATE proxy_keys SET revoked_at = ${key.revoked_at}, signature = ${signature} WHERE id = ${id}`;
      await this.appendEvent(tx, { kind: "key_revoked", actor, details: { key_id: id } });
      return key;
    });
    this.cache.clear();
    return revoked;
  }

  /**
   * Adopts the rows an earlier version wrote (../key-signature.ts `adoptionPlan`): with the
   * private signing key, signs those the plan allows, as they stand, with a `keys_signed` event
   * naming them (and the unsigned rows it refused), which closes adoption; without it, signs
   * nothing and says a start with the key will. Any open may call it: it reads only `proxy_keys`
   * unless a row is unsigned. Returns how many rows it signed.
   */
  async adoptLegacy(): Promise<number> {
    const warn = this.signing.warn;
    const plan = async (tx: SQL, lock: string) => {
      const rows = (await tx.unsafe(`SELECT ${keyColumns} FROM proxy_keys WHERE signature IS NULL ORDER BY id${lock}`)) as Row[];
      if (rows.length === 0) return null;
      const events = (await tx.unsafe(`SELECT kind, details FROM audit_events WHERE kind IN (${adoptionEventKinds}) ORDER BY seq`)) as {
        kind: string;
        details: string;
      }[];
      return adoptionPlan(rows.map(stored), events);
    };
    const signingKey = this.signing.key;
    if (signingKey?.type !== "private") {
      const waiting = (await plan(this.sql, ""))?.adopt.length ?? 0;
      if (waiting > 0) warn(legacyKeysWait(waiting));
      return 0;
    }
    const [unsigned] = (await this.sql`SELECT count(*)::int AS n FROM proxy_keys WHERE signature IS NULL`) as { n: number }[];
    if (!unsigned?.n) return 0;
    const done = await transaction(this.sql, 10_000, async (tx) => {
      const found = await plan(tx, " FOR UPDATE");
      if (!found?.open) return null;
      for (const row of found.adopt) {
        const signature = signKeyRow(signingKey, this.signing.chainId, row.key, row.hash);
        await tx`UPDATE proxy_keys SET signature = ${signature} WHERE id = ${row.key.id}`;
      }
      const ids = found.adopt.map((row) => row.key.id).sort();
      const notSigned = found.refused.map((r) => r.id).sort();
      await this.appendEvent(tx, {
        kind: "keys_signed",
        actor: "upgrade",
        details: { key_ids: ids, keys: ids.length, ...(notSigned.length ? { not_signed: notSigned } : {}) },
      });
      return found;
    });
    if (!done) return 0;
    if (done.adopt.length > 0) warn(legacyKeysSigned(done.adopt.length));
    for (const { id, why } of done.refused) warn(legacyKeyRefused(id, why));
    this.cache.clear();
    return done.adopt.length;
  }

  private signingKey(): KeyObject {
    if (!this.signing.key) throw new Error(keysNeedKey);
    return this.signing.key;
  }

  /** The `key_revoked` events appended since the last look, when the newest event seq moved. */
  private async readRevocations(through: number): Promise<void> {
    if (through <= this.revokedThrough) return;
    const events = (await this
      .sql`SELECT details FROM audit_events WHERE seq > ${this.revokedThrough} AND seq <= ${through} AND kind = 'key_revoked'`) as {
      details: string;
    }[];
    for (const id of revokedKeyIds(events)) this.trust!.revoked.add(id);
    this.revokedThrough = Math.max(this.revokedThrough, through);
  }
}
