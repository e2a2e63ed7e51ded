/**
 * Signed proxy keys. The `proxy_keys` table is outside the hash chain, so without more anyone who
 * can write to the database could widen a key (agents, users, tier, tags, expiry), clear its
 * revocation or insert a key of their own, and the proxy would honour it. Each row therefore
 * carries an Ed25519 signature by the instance's signing key (a file, not in the database) over
 * the row's every field and the chain id (`keyRowPayload`). The proxy honours a row only when
 * its signature verifies (checked once per row content, `KeyRowTrust`), and only when the chain
 * names no `key_revoked` event for it: an old signed row put back (the row before its
 * revocation) verifies, but the chain says the key is revoked. `audit verify` checks both
 * (`keyRowsMismatch`, reason `key_tampered`).
 *
 * Rows written by earlier versions are signed once, by the process that applies the migration
 * adding the column (it has the signing key: the proxy always does), as they stand at that moment
 * (`keys_signed` event). A row still unsigned later is refused: nothing in the database can ask
 * for it to be signed again, since re-running that migration fails on the existing column.
 */
import { createPublicKey, type KeyObject } from "node:crypto";
import type { ProxyKey } from "./keys.ts";
import { signBytes, verifyBytes } from "../trail/signing.ts";
import type { VerifyFailure } from "../trail/verify.ts";

/** A key's row as stored: the key, its secret's hash and its signature (null: never signed). */
export interface StoredKeyRow {
  key: ProxyKey;
  hash: string;
  signature: string | null;
}

/** Why a CLI without the trail's signing key refuses to create or revoke a key (its row could not be signed). */
export const keysNeedKey =
  "proxy keys are signed, and this trail has no signing key here: pass --signing-key FILE (or set audit.signingKey)";

/** The signed bytes: a versioned label, the chain and every field of the row, in a fixed order. */
export function keyRowPayload(chainId: string, key: ProxyKey, hash: string): string {
  const tags = Object.fromEntries(Object.entries(key.tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const fields = [chainId, key.id, hash, key.agents, key.users, key.tier, tags, key.created_at, key.expires_at, key.revoked_at];
  return `agent-attr-key/v1\n${JSON.stringify(fields)}`;
}

export function signKeyRow(signingKey: KeyObject, chainId: string, key: ProxyKey, hash: string): string {
  return signBytes(signingKey, keyRowPayload(chainId, key, hash));
}

/** The key ids `key_revoked` events name (their `details`, stored JSON text), apart from keys kept in a database of their own. */
export function revokedKeyIds(events: Iterable<{ details: string }>): Set<string> {
  const ids = new Set<string>();
  for (const event of events) {
    const details = parse(event.details);
    if (typeof details?.key_id === "string" && details.key_store === undefined) ids.add(details.key_id);
  }
  return ids;
}

/**
 * What the proxy may honour of the rows it reads. A row's signature is verified once per content
 * (about 50 µs, see CHANGELOG) and remembered, so the per-call cost is building the payload and a
 * map lookup; a row that fails is logged once per key id (never its secret or hash).
 */
export class KeyRowTrust {
  private readonly publicKey: KeyObject;
  /** Signature → the payload it verified for. Bounded: rows are few, a flood of forged ones must not grow memory. */
  private readonly verified = new Map<string, string>();
  private readonly warned = new Set<string>();
  /** Key ids the chain's `key_revoked` events name. */
  readonly revoked = new Set<string>();

  constructor(
    signingKey: KeyObject,
    private readonly warn: (message: string) => void,
  ) {
    this.publicKey = signingKey.type === "private" ? createPublicKey(signingKey) : signingKey;
  }

  /** The row's key when its signature verifies for this chain and the chain does not say it is revoked; null otherwise (logged once). */
  admit(chainId: string | null, row: StoredKeyRow): ProxyKey | null {
    const problem = this.problem(chainId, row);
    if (problem === null) return row.key;
    if (!this.warned.has(row.key.id)) {
      this.warned.add(row.key.id);
      this.warn(`proxy key ${row.key.id}: ${problem}; calls with it are refused as with an unknown key. Run agent-attr audit verify.`);
    }
    return null;
  }

  private problem(chainId: string | null, row: StoredKeyRow): string | null {
    if (!this.signed(chainId, row)) return "its row in proxy_keys is not signed by this instance's key (changed outside agent-attr?)";
    if (!row.key.revoked_at && this.revoked.has(row.key.id)) {
      return "the audit trail records its revocation but its row says it is not revoked (an old row put back?)";
    }
    return null;
  }

  private signed(chainId: string | null, row: StoredKeyRow): boolean {
    if (row.signature === null || chainId === null) return false;
    const payload = keyRowPayload(chainId, row.key, row.hash);
    if (this.verified.get(row.signature) === payload) return true;
    if (!verifyBytes(this.publicKey, payload, row.signature)) return false;
    if (this.verified.size > 10_000) this.verified.clear();
    this.verified.set(row.signature, payload);
    return true;
  }
}

/**
 * `audit verify`'s check of the key table: every row signed by `publicKey` for this chain (skipped
 * without a key: the report's checkpoints are then unverified too), and no row of a key a
 * `key_revoked` event names left unrevoked. The failure's seq is the key's `key_created` event
 * (or its `key_revoked` event), else `lastSeq`.
 */
export function keyRowsMismatch(
  rows: readonly StoredKeyRow[],
  events: readonly { seq: number; kind: string; details: string }[],
  trust: { chainId: string | null; publicKey: KeyObject | null },
  lastSeq: number,
): VerifyFailure | null {
  const createdAt = new Map<string, number>();
  const revokedAt = new Map<string, number>();
  for (const event of events) {
    const details = parse(event.details);
    if (typeof details?.key_id !== "string" || details.key_store !== undefined) continue;
    const seen = event.kind === "key_created" ? createdAt : event.kind === "key_revoked" ? revokedAt : null;
    if (seen && !seen.has(details.key_id)) seen.set(details.key_id, event.seq);
  }
  const publicKey = trust.publicKey && (trust.publicKey.type === "private" ? createPublicKey(trust.publicKey) : trust.publicKey);
  const failures: VerifyFailure[] = [];
  for (const { key, hash, signature } of rows) {
    const seq = createdAt.get(key.id) ?? lastSeq;
    const signed =
      publicKey === null ||
      (signature !== null && trust.chainId !== null && verifyBytes(publicKey, keyRowPayload(trust.chainId, key, hash), signature));
    if (!signed) {
      failures.push({
        seq,
        reason: "key_tampered",
        message: `proxy key ${key.id}: its row in proxy_keys is not signed by this instance's key for this chain (its scope, expiry or revocation was changed, or the row inserted, outside agent-attr)`,
      });
    } else if (!key.revoked_at && revokedAt.has(key.id)) {
      failures.push({
        seq: revokedAt.get(key.id)!,
        reason: "key_tampered",
        message: `proxy key ${key.id}: the key_revoked event at seq ${revokedAt.get(key.id)} revokes it, but its row in proxy_keys is not revoked (an older row put back)`,
      });
    }
  }
  return failures.sort((a, b) => a.seq - b.seq)[0] ?? null;
}

function parse(details: string): Record<string, unknown> | null {
  try {
    const parsed = JSON.parse(details) as unknown;
    return parsed && typeof parsed === "object" ? (parsed as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
