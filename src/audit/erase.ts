/**
 * Erasure (GDPR Art. 17) and retention. Both set a record's personal fields (`personalColumns`)
 * and its salt to NULL; the commitment stays, so every hash in the chain is untouched and `verify`
 * counts the record as redacted. Each run is a chain event with the number of records affected.
 */
import { ChainWriter, personalColumns, seqRanges, userHmac } from "./chain.ts";

const redact = `${personalColumns.map((column) => `${column} = NULL`).join(", ")}, salt = NULL`;

/**
 * The records that name the user: as user, as key id (a JWT's `sub` is both), or as any value in
 * the delegation JSON (`act.sub` of a chain the user took part in).
 */
const namesUser = `salt IS NOT NULL AND (user_id = ?1 OR key_id = ?1 OR (delegation IS NOT NULL AND json_valid(delegation)
  AND EXISTS (SELECT 1 FROM json_tree(audit_records.delegation) WHERE json_tree.atom = ?1)))`;

/**
 * Erases one user's personal data and remembers the erasure (as an HMAC of the id, so records of
 * calls in flight at this moment are redacted when they land). Returns the number of records
 * affected; callers must not show it to the requester (an unknown user must look the same).
 */
export function eraseUser(chain: ChainWriter, hashKey: Uint8Array, userId: string, actor: string): number {
  const db = chain.db;
  return chain.transaction(() => {
    const seqs = db
      .query<{ seq: number }, [string]>(`UPDATE audit_records SET ${redact} WHERE ${namesUser} RETURNING seq`)
      .all(userId)
      .map((row) => row.seq)
      .sort((a, b) => a - b);
    const changes = seqs.length;
    const now = new Date().toISOString();
    db.run(
      "INSERT INTO audit_erasures (user_hmac, erased_at) VALUES (?, ?) ON CONFLICT (user_hmac) DO UPDATE SET erased_at = excluded.erased_at",
      [userHmac(hashKey, userId), now],
    );
    // The affected seqs make the redaction accountable: verify rejects a redacted record no event names.
    chain.appendInTransaction([], [{ kind: "erasure", actor, details: { records: changes, seqs: seqRanges(seqs) } }]);
    return changes;
  });
}

/** Erases personal fields of records that started more than `days` ago; returns how many. */
export function applyRetention(chain: ChainWriter, days: number, now = Date.now()): number {
  const cutoff = new Date(now - days * 86_400_000).toISOString();
  return chain.transaction(() => {
    const seqs = chain.db
      .query<{ seq: number }, [string]>(`UPDATE audit_records SET ${redact} WHERE salt IS NOT NULL AND timestamp < ? RETURNING seq`)
      .all(cutoff)
      .map((row) => row.seq)
      .sort((a, b) => a - b);
    const changes = seqs.length;
    if (changes > 0) {
      chain.appendInTransaction([], [{ kind: "retention", actor: "retention", details: { records: changes, older_than: cutoff, days, seqs: seqRanges(seqs) } }]);
    }
    return changes;
  });
}
