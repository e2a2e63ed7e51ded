/**
 * Consents in PostgreSQL, shared by every replica (../consents.ts). `forUser` and `find` run on
 * the call path and ask the database every time (one indexed read, no cache): a consent withdrawn
 * through any replica or the CLI no longer covers a call on any replica from the next call.
 * Granting and withdrawing append their chain events in the change's transaction.
 */
import type { SQL } from "bun";
import type { ConsentStore } from "../contract.ts";
import {
  consentEvents,
  consentRowColumns,
  matchesFilter,
  newConsentRow,
  toConsent,
  type Consent,
  type ConsentFilter,
  type ConsentRow,
  type NewConsentRequest,
} from "../consents.ts";
import type { ChainEvent } from "../../trail/chain.ts";
import { transaction } from "./writer.ts";

const all = consentRowColumns.join(", ");
const newestFirst = "ORDER BY granted_at DESC, id DESC";

export class PgConsents implements ConsentStore {
  constructor(
    private readonly sql: SQL,
    /** Appends events in the change's transaction (the trail's, which may seal them). */
    private readonly appendEvents: (tx: SQL, events: ChainEvent[]) => Promise<void>,
  ) {}

  async forUser(userId: string): Promise<Consent[]> {
    const rows = (await this.sql.unsafe(
      `SELECT ${all} FROM consents WHERE user_id = $1 AND revoked_at IS NULL AND erased_at IS NULL ${newestFirst}`,
      [userId],
    )) as ConsentRow[];
    const now = Date.now();
    return rows.map((row) => toConsent(row, now));
  }

  async find(id: string): Promise<Consent | null> {
    const [row] = (await this.sql.unsafe(`SELECT ${all} FROM consents WHERE id = $1`, [id])) as ConsentRow[];
    return row ? toConsent(row) : null;
  }

  async list(filter: ConsentFilter): Promise<Consent[]> {
    const rows = (
      filter.user
        ? await this.sql.unsafe(`SELECT ${all} FROM consents WHERE user_id = $1 ${newestFirst}`, [filter.user])
        : await this.sql.unsafe(`SELECT ${all} FROM consents ${newestFirst}`)
    ) as ConsentRow[];
    const now = Date.now();
    return rows.map((row) => toConsent(row, now)).filter((consent) => matchesFilter(consent, filter));
  }

  async grant(request: NewConsentRequest, actor: string): Promise<Consent> {
    const row = newConsentRow(request, actor);
    await transaction(this.sql, 10_000, async (tx) => {
      await tx.unsafe(
        `INSERT INTO consents (${all}) VALUES (${consentRowColumns.map((_, i) => `$${i + 1}`).join(", ")})`,
        consentRowColumns.map((column) => row[column]),
      );
      await this.appendEvents(tx, [consentEvents.granted(row, actor)]);
    });
    return toConsent(row);
  }

  async revoke(id: string, actor: string): Promise<Consent | null> {
    return transaction(this.sql, 10_000, async (tx) => {
      const [row] = (await tx.unsafe(`SELECT ${all} FROM consents WHERE id = $1 FOR UPDATE`, [id])) as ConsentRow[];
      if (!row) return null;
      if (toConsent(row).status !== "active") return toConsent(row);
      const revokedAt = new Date().toISOString();
      await tx.unsafe("UPDATE consents SET revoked_at = $1, revoked_by = $2 WHERE id = $3", [revokedAt, actor, id]);
      await this.appendEvents(tx, [consentEvents.withdrawn(id, actor)]);
      return toConsent({ ...row, revoked_at: revokedAt, revoked_by: actor });
    });
  }

  async recordExpiries(): Promise<number> {
    const now = new Date().toISOString();
    return transaction(this.sql, 10_000, async (tx) => {
      // SKIP LOCKED: replicas sweeping at once each take different consents, none is recorded twice.
      const rows = (await tx.unsafe(
        `UPDATE consents SET expiry_recorded_at = $1 WHERE id IN (
           SELECT id FROM consents WHERE expiry_recorded_at IS NULL AND revoked_at IS NULL AND erased_at IS NULL
             AND expires_at IS NOT NULL AND expires_at <= $1 FOR UPDATE SKIP LOCKED)
         RETURNING id, expires_at`,
        [now],
      )) as Pick<ConsentRow, "id" | "expires_at">[];
      rows.sort((a, b) => (a.expires_at ?? "").localeCompare(b.expires_at ?? "") || a.id.localeCompare(b.id));
      if (rows.length > 0) await this.appendEvents(tx, rows.map(consentEvents.expired));
      return rows.length;
    });
  }
}

/** Inside an erasure's transaction: the consents of any form of the user lose their personal fields. */
export async function eraseConsents(tx: SQL, forms: string[], now: string): Promise<void> {
  await tx.unsafe("UPDATE consents SET user_id = NULL, task_pattern = NULL, erased_at = $1 WHERE user_id = ANY($2::text[])", [now, forms]);
}
