/**
 * Erasure (GDPR Art. 17) and retention. Both set a record's personal fields (`personalColumns`)
 * and its salt to NULL; the commitment stays, so every hash in the chain is untouched and `verify`
 * counts the record as redacted. Each run is a chain event with the number of records affected.
 */
import { ChainWriter, personalColumns, userHmac } from "./chain.ts";

const redact = `${personalColumns.map((column) => `${column} = NULL`).join(", ")}, salt = NULL`;

/**
 * Erases one user's personal data and remembers the erasure (as an HMAC of the id, so records of
 * calls in flight at this moment are redacted when they land). Returns the number of records
 * affected; callers must not show it to the requester (an unknown user must look the same).
 */
export function eraseUser(chain: ChainWriter, hashKey: Uint8Array, userId: string, actor: string): number {
  const db = chain.db;
  return chain.transaction(() => {
    const { changes } = db.run(`UPDATE audit_records SET ${redact} WHERE user_id = ?`, [userId]);
    const now = new Date().toISOString();
    db.run(
      "INSERT INTO audit_erasures (user_hmac, erased_at) VALUES (?, ?) ON CONFLICT (user_hmac) DO UPDATE SET erased_at = excluded.erased_at",
      [userHmac(hashKey, userId), now],
    );
    chain.appendInTransaction([], [{ kind: "erasure", actor, details: { records: changes } }]);
    return changes;
  });
}

/** Erases personal fields of records that started more than `days` ago; returns how many. */
export function applyRetention(chain: ChainWriter, days: number, now = Date.now()): number {
  const cutoff = new Date(now - days * 86_400_000).toISOString();
  return chain.transaction(() => {
    const { changes } = chain.db.run(`UPDATE audit_records SET ${redact} WHERE salt IS NOT NULL AND timestamp < ?`, [cutoff]);
    if (changes > 0) {
      chain.appendInTransaction([], [{ kind: "retention", actor: "retention", details: { records: changes, older_than: cutoff, days } }]);
    }
    return changes;
  });
}
