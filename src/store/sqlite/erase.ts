/**
 * Erasure (GDPR Art. 17) and retention. Both set a record's personal fields (`personalColumns`)
 * and its salt to NULL; the commitment stays, so every hash in the chain is untouched and `verify`
 * counts the record as redacted. Each run is a chain event with the number of records affected and
 * their seqs, signed with the trail's key (../../trail/redaction.ts): verify accepts a redaction
 * only under a signed event.
 */
import { erasureForms } from "../../identifiers.ts";
import { personalColumns, userHmac } from "../../trail/chain.ts";
import { redactionEvent } from "../../trail/redaction.ts";
import type { ChainWriter } from "./chain-writer.ts";
import { eraseConsents } from "./consents.ts";

const redact = `${personalColumns.map((column) => `${column} = NULL`).join(", ")}, salt = NULL`;

/** The forms of the id being erased (`erasureForms`), bound as one JSON array. */
const forms = "(SELECT value FROM json_each(?1))";

/**
 * The records that name the user under any of its forms: as user, as key id (a JWT's `sub` is
 * both), as any value in the delegation JSON (`act.sub` of a chain the user took part in), or as
 * the device or account of a Claude Code `metadata.user_id` that an older version stored whole
 * (`{"device_id":…,"account_uuid":…}` or `user_<device>_account_<account>_session_<session>`).
 */
const namesUser = `salt IS NOT NULL AND (user_id IN ${forms} OR key_id IN ${forms}
  OR (delegation IS NOT NULL AND json_valid(delegation)
    AND EXISTS (SELECT 1 FROM json_tree(audit_records.delegation) WHERE json_tree.atom IN ${forms}))
  OR (user_id LIKE '{%' AND json_valid(user_id)
    AND (json_extract(user_id, '$.device_id') IN ${forms} OR json_extract(user_id, '$.account_uuid') IN ${forms}))
  OR (user_id LIKE 'user\\_%\\_account\\_%\\_session\\_%' ESCAPE '\\'
    AND EXISTS (SELECT 1 FROM json_each(?1) AS f WHERE f.value <> ''
      AND (substr(user_id, 6, length(f.value) + 9) = f.value || '_account_' OR instr(user_id, '_account_' || f.value || '_session_') > 0))))`;

/**
 * Erases one user's personal data (their records' personal fields, their consents' user and task
 * pattern) and remembers the erasure (as an HMAC of each form of the id,
 * so records of calls in flight at this moment are redacted when they land). Returns the number of
 * records affected; callers must not show it to the requester (an unknown user must look the same).
 */
export function eraseUser(chain: ChainWriter, hashKey: Uint8Array, userId: string, actor: string): number {
  const db = chain.db;
  const ids = erasureForms(userId);
  return chain.transaction(() => {
    const seqs = db
      .query<{ seq: number }, [string]>(`UPDATE audit_records SET ${redact} WHERE ${namesUser} RETURNING seq`)
      .all(JSON.stringify(ids))
      .map((row) => row.seq)
      .sort((a, b) => a - b);
    const changes = seqs.length;
    const now = new Date().toISOString();
    const remember = db.prepare(
      "INSERT INTO audit_erasures (user_hmac, erased_at) VALUES (?, ?) ON CONFLICT (user_hmac) DO UPDATE SET erased_at = excluded.erased_at",
    );
    for (const id of ids) remember.run(userHmac(hashKey, id), now);
    remember.finalize();
    eraseConsents(db, JSON.stringify(ids), now);
    // The affected seqs, signed, make the redaction accountable: verify rejects a redacted record
    // no signed event names (../../trail/redaction.ts).
    chain.appendInTransaction([], [redactionEvent(chain.redactionSigner(), "erasure", actor, { records: changes }, seqs)]);
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
      const details = { records: changes, older_than: cutoff, days };
      chain.appendInTransaction([], [redactionEvent(chain.redactionSigner(), "retention", "retention", details, seqs)]);
    }
    return changes;
  });
}
