/**
 * Erasure (GDPR Art. 17) and retention. Both set a record's personal fields (`personalColumns`)
 * and its salt to NULL; the commitment stays, so every hash in the chain is untouched and `verify`
 * counts the record as redacted. Each run is a chain event with the number of records affected and
 * their seqs, signed with the trail's key (../../trail/redaction.ts): verify accepts a redaction
 * only under a signed event.
 *
 * Before redacting, each run reads the full rows it is about to redact and checks them as verify
 * does (../../trail/erase-check.ts): redacting a record edited in the database would launder the
 * edit (verify skips the commitment of a redacted record). If one fails, the run throws
 * `RedactionRefusedError` and its transaction redacts nothing.
 */
import { erasureForms } from "../../identifiers.ts";
import { personalColumns, storedRecordColumns, userHmac } from "../../trail/chain.ts";
import { RedactionGuard } from "../../trail/erase-check.ts";
import { redactionEvent } from "../../trail/redaction.ts";
import type { ChainRecordRow } from "../../trail/verify.ts";
import type { ChainWriter } from "./chain-writer.ts";
import { eraseConsents } from "./consents.ts";

const redact = `${personalColumns.map((column) => `${column} = NULL`).join(", ")}, salt = NULL`;

/** Redacts the records whose seqs are bound as one JSON array. */
const redactSeqs = `UPDATE audit_records SET ${redact} WHERE seq IN (SELECT value FROM json_each(?1))`;

/**
 * Reads the full rows `where` selects and checks each as verify would (`RedactionGuard`, which
 * throws at the first that fails); returns their seqs in order.
 */
function checkedSeqs(db: ChainWriter["db"], kind: "erasure" | "retention", where: string, binding: string): number[] {
  const guard = new RedactionGuard(kind);
  const seqs: number[] = [];
  const rows = db
    .query<ChainRecordRow, [string]>(`SELECT ${storedRecordColumns.join(", ")} FROM audit_records WHERE ${where} ORDER BY seq`)
    .iterate(binding);
  for (const row of rows) {
    guard.check(row);
    seqs.push(row.seq);
  }
  return seqs;
}

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
 * Throws `RedactionRefusedError` (nothing erased) if one of the records does not match the chain.
 */
export function eraseUser(chain: ChainWriter, hashKey: Uint8Array, userId: string, actor: string): number {
  const db = chain.db;
  const ids = erasureForms(userId);
  return chain.transaction(() => {
    // Checked before anything is written: a record edited to name this user is refused, not laundered.
    const seqs = checkedSeqs(db, "erasure", namesUser, JSON.stringify(ids));
    if (seqs.length > 0) db.run(redactSeqs, [JSON.stringify(seqs)]);
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

/**
 * Erases personal fields of records that started more than `days` ago; returns how many. Throws
 * `RedactionRefusedError` (nothing erased) if one of them does not match the chain.
 */
export function applyRetention(chain: ChainWriter, days: number, now = Date.now()): number {
  const cutoff = new Date(now - days * 86_400_000).toISOString();
  return chain.transaction(() => {
    // As erasure: a tampered record in the range refuses the whole run (the writer logs it; it retries hourly).
    const seqs = checkedSeqs(chain.db, "retention", "salt IS NOT NULL AND timestamp < ?1", cutoff);
    if (seqs.length > 0) chain.db.run(redactSeqs, [JSON.stringify(seqs)]);
    const changes = seqs.length;
    if (changes > 0) {
      const details = { records: changes, older_than: cutoff, days };
      chain.appendInTransaction([], [redactionEvent(chain.redactionSigner(), "retention", "retention", details, seqs)]);
    }
    return changes;
  });
}
