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
 * Rows written by earlier versions (no signature) are adopted: signed once, as they stand, by the
 * first open that has the signing key (`adoptionPlan`), with a `keys_signed` chain event naming
 * them. Not by whoever applied the migration adding the column: a database writer can drop the
 * column and forget the migration, and an honest command would then sign their forged rows. A row
 * is adopted only when the chain has no `keys_signed` event yet (a trail adopts at most once, and
 * events cannot be removed without breaking the chain), its id has a `key_created` event written
 * by an earlier version (this version's say `signed: true`: such a key's unsigned row is
 * tampering), and the row agrees with that event (agents, tier, tag keys, expiry, number of user
 * globs). An open without the key leaves legacy rows unsigned (refused) and says so. What the
 * event does not hold (the hash, which users) is trusted as it stands at adoption: docs/auditors.md.
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

/** Why `keys revoke` refuses to re-sign a row whose signature does not verify (the key id only, never its secret or hash). */
export const keyRowTampered = (id: string): string =>
  `proxy key ${id}: its row in proxy_keys is not signed by this instance's key for this chain (changed outside agent-attr?), so it is not signed again as it stands; the proxy refuses it already. Run agent-attr audit verify, and create a new key if one is needed`;

/** The signed bytes: a versioned label, the chain and every field of the row, in a fixed order. */
export function keyRowPayload(chainId: string, key: ProxyKey, hash: string): string {
  const tags = Object.fromEntries(Object.entries(key.tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const fields = [chainId, key.id, hash, key.agents, key.users, key.tier, tags, key.created_at, key.expires_at, key.revoked_at];
  return `agent-attr-key/v1\n${JSON.stringify(fields)}`;
}

export function signKeyRow(signingKey: KeyObject, chainId: string, key: ProxyKey, hash: string): string {
  return signBytes(signingKey, keyRowPayload(chainId, key, hash));
}

/** What an adopting open logs (../sqlite/key-admin.ts `adoptLegacyKeys`, ../postgres/keys.ts `adoptLegacy`). */
export const legacyKeysSigned = (n: number): string =>
  `${n} proxy key(s) written by an earlier version are now signed, as they stood (keys_signed event)`;
export const legacyKeysWait = (n: number): string =>
  `${n} proxy key(s) written by an earlier version are not signed yet, and the proxy refuses them until an open with this trail's signing key signs them: start the proxy, or run agent-attr keys list with --signing-key FILE (or audit.signingKey)`;
export const legacyKeyRefused = (id: string, why: string): string =>
  `proxy key ${id} was not signed with the keys of earlier versions: ${why}; calls with it are refused as with an unknown key. Run agent-attr audit verify.`;

/** True when the row's signature verifies for this chain with `key` (private or public). */
export function keyRowSigned(key: KeyObject, chainId: string, row: StoredKeyRow): boolean {
  const publicKey = key.type === "private" ? createPublicKey(key) : key;
  return row.signature !== null && verifyBytes(publicKey, keyRowPayload(chainId, row.key, row.hash), row.signature);
}

/** The chain events adoption reads (`kind IN ('key_created', 'key_revoked', 'keys_signed')`, in seq order). */
export const adoptionEventKinds = "'key_created', 'key_revoked', 'keys_signed'";

/** What adoption would do with the unsigned rows (`adoptionPlan`). */
export interface AdoptionPlan {
  /** Adoption is still possible: the chain has legacy `key_created` events and no `keys_signed` event. */
  open: boolean;
  /** Unsigned rows to sign now, as they stand. */
  adopt: StoredKeyRow[];
  /** Unsigned rows that are not adopted, and why (naming nothing but the key id). */
  refused: { id: string; why: string }[];
}

/**
 * Which unsigned rows a process with the signing key may sign (module comment): `events` are the
 * chain's key events (`adoptionEventKinds`) in seq order, with their `details` as stored.
 */
export function adoptionPlan(rows: readonly StoredKeyRow[], events: readonly { kind: string; details: string }[]): AdoptionPlan {
  const created = new Map<string, Record<string, unknown>>();
  const revoked = new Set<string>();
  let closed = false;
  for (const event of events) {
    if (event.kind === "keys_signed") closed = true;
    const details = parse(event.details);
    if (typeof details?.key_id !== "string" || details.key_store !== undefined) continue;
    if (event.kind === "key_created" && !created.has(details.key_id)) created.set(details.key_id, details);
    if (event.kind === "key_revoked") revoked.add(details.key_id);
  }
  const open = !closed && [...created.values()].some((details) => details.signed !== true);
  const plan: AdoptionPlan = { open, adopt: [], refused: [] };
  for (const row of rows) {
    if (row.signature !== null) continue;
    const details = created.get(row.key.id);
    const why =
      details === undefined
        ? "the audit trail has no key_created event for it (the row was inserted outside agent-attr)"
        : details.signed === true
          ? "its key_created event says it was created signed, so its unsigned row was changed outside agent-attr"
          : (legacyDisagreement(row.key, details) ??
            (revoked.has(row.key.id) && !row.key.revoked_at
              ? "the audit trail records its revocation but its row says it is not revoked"
              : closed
                ? "the trail's keys_signed event already signed the keys of earlier versions, so a row unsigned since was changed outside agent-attr"
                : null));
    if (why === null) plan.adopt.push(row);
    else plan.refused.push({ id: row.key.id, why });
  }
  return plan;
}

/** What of a legacy row differs from its `key_created` event's details (`keyCreatedDetails`), or null when it agrees. */
function legacyDisagreement(key: ProxyKey, details: Record<string, unknown>): string | null {
  const differs: string[] = [];
  if (JSON.stringify(details.agents) !== JSON.stringify(key.agents)) differs.push("agents");
  if (details.user_globs !== (key.users?.length ?? 0)) differs.push("number of user globs");
  if ((details.tier ?? null) !== key.tier) differs.push("tier");
  const tags = Array.isArray(details.tags) ? (details.tags as unknown[]).map(String).sort() : [];
  if (JSON.stringify(tags) !== JSON.stringify(Object.keys(key.tags).sort())) differs.push("tags");
  if ((details.expires_at ?? null) !== key.expires_at) differs.push("expiry");
  return differs.length === 0
    ? null
    : `its row disagrees with its key_created event (${differs.join(", ")}): changed outside agent-attr before it was signed`;
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
 * without a key: the report's checkpoints are then unverified too; an unsigned row says whether it
 * awaits adoption or was tampered with, `adoptionPlan`), and no row of a key a
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
  const plan = publicKey === null ? null : adoptionPlan(rows, events);
  const awaiting = new Set(plan?.adopt.map((row) => row.key.id));
  const refused = new Map(plan?.refused.map(({ id, why }) => [id, why]));
  const failures: VerifyFailure[] = [];
  for (const { key, hash, signature } of rows) {
    const seq = createdAt.get(key.id) ?? lastSeq;
    const signed =
      publicKey === null ||
      (signature !== null && trust.chainId !== null && verifyBytes(publicKey, keyRowPayload(trust.chainId, key, hash), signature));
    if (!signed && awaiting.has(key.id)) {
      failures.push({
        seq,
        reason: "key_tampered",
        message: `proxy key ${key.id}: written by an earlier version and not signed yet, so the proxy refuses it (not tampering as far as the trail shows): start the proxy, or run agent-attr keys list, with this trail's signing key to sign it (keys_signed event)`,
      });
    } else if (!signed) {
      const why = refused.get(key.id);
      failures.push({
        seq,
        reason: "key_tampered",
        message: `proxy key ${key.id}: its row in proxy_keys is not signed by this instance's key for this chain (its scope, expiry or revocation was changed, or the row inserted, outside agent-attr)${why ? `: ${why}` : ""}`,
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
