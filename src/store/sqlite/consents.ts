/**
 * Consents in SQLite: the `consents` table beside the audit trail (../consents.ts). Granting and
 * withdrawing append their chain events in the same `BEGIN IMMEDIATE` transaction as the change.
 * The proxy answers `forUser`/`find` with prepared statements on its own connection (one indexed
 * read per call, nothing cached), so a withdrawal by the CLI or the audit API applies from the
 * next call; it manages consents (grant, revoke, list) on its reader thread, the CLI in process.
 */
import type { Database, Statement } from "bun:sqlite";
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
import type { ChainWriter } from "./chain-writer.ts";

const all = consentRowColumns.join(", ");

export class SqliteConsents implements ConsentStore {
  private readonly byUser: Statement<ConsentRow, [string]>;
  private readonly byId: Statement<ConsentRow, [string]>;

  /** Without `chain` (the proxy's lookup connection) only `forUser`, `find` and `list` may be used. */
  constructor(
    private readonly db: Database,
    private readonly chain: ChainWriter | null,
    /** Runs after each appended event (the CLI seals it with a checkpoint). */
    private readonly afterEvent: () => void = () => {},
  ) {
    this.byUser = db.query(
      `SELECT ${all} FROM consents WHERE user_id = ? AND revoked_at IS NULL AND erased_at IS NULL ORDER BY granted_at DESC, id DESC`,
    );
    this.byId = db.query(`SELECT ${all} FROM consents WHERE id = ?`);
  }

  async forUser(userId: string): Promise<Consent[]> {
    return this.forUserSync(userId);
  }

  forUserSync(userId: string): Consent[] {
    const now = Date.now();
    return this.byUser.all(userId).map((row) => toConsent(row, now));
  }

  async find(id: string): Promise<Consent | null> {
    return this.findSync(id);
  }

  findSync(id: string): Consent | null {
    const row = this.byId.get(id);
    return row ? toConsent(row) : null;
  }

  async list(filter: ConsentFilter): Promise<Consent[]> {
    const now = Date.now();
    const rows = filter.user
      ? this.db
          .query<ConsentRow, [string]>(`SELECT ${all} FROM consents WHERE user_id = ? ORDER BY granted_at DESC, id DESC`)
          .all(filter.user)
      : this.db.query<ConsentRow, []>(`SELECT ${all} FROM consents ORDER BY granted_at DESC, id DESC`).all();
    return rows.map((row) => toConsent(row, now)).filter((consent) => matchesFilter(consent, filter));
  }

  async grant(request: NewConsentRequest, actor: string): Promise<Consent> {
    const chain = this.writer();
    const row = newConsentRow(request, actor);
    chain.transaction(() => {
      this.db.run(
        `INSERT INTO consents (${all}) VALUES (${consentRowColumns.map(() => "?").join(", ")})`,
        consentRowColumns.map((c) => row[c]),
      );
      chain.appendInTransaction([], [consentEvents.granted(row, actor)]);
    });
    this.afterEvent();
    return toConsent(row);
  }

  async revoke(id: string, actor: string): Promise<Consent | null> {
    const chain = this.writer();
    let recorded = false;
    const result = chain.transaction(() => {
      const row = this.byId.get(id);
      if (!row) return null;
      if (toConsent(row).status !== "active") return toConsent(row);
      const revokedAt = new Date().toISOString();
      this.db.run("UPDATE consents SET revoked_at = ?, revoked_by = ? WHERE id = ?", [revokedAt, actor, id]);
      chain.appendInTransaction([], [consentEvents.withdrawn(id, actor)]);
      recorded = true;
      return toConsent({ ...row, revoked_at: revokedAt, revoked_by: actor });
    });
    if (recorded) this.afterEvent();
    return result;
  }

  async recordExpiries(): Promise<number> {
    const chain = this.writer();
    const now = new Date().toISOString();
    // Read first: the write lock is taken only when there is an expiry to record.
    const due = this.db
      .query<{ n: number }, [string]>(
        `SELECT count(*) AS n FROM consents WHERE expiry_recorded_at IS NULL AND revoked_at IS NULL AND erased_at IS NULL
           AND expires_at IS NOT NULL AND expires_at <= ?`,
      )
      .get(now)!.n;
    if (due === 0) return 0;
    const recorded = chain.transaction(() => {
      const rows = this.db
        .query<Pick<ConsentRow, "id" | "expires_at">, [string]>(
          `UPDATE consents SET expiry_recorded_at = ?1 WHERE expiry_recorded_at IS NULL AND revoked_at IS NULL AND erased_at IS NULL
             AND expires_at IS NOT NULL AND expires_at <= ?1 RETURNING id, expires_at`,
        )
        .all(now)
        .sort((a, b) => (a.expires_at ?? "").localeCompare(b.expires_at ?? "") || a.id.localeCompare(b.id));
      if (rows.length > 0) chain.appendInTransaction([], rows.map(consentEvents.expired));
      return rows.length;
    });
    if (recorded > 0) this.afterEvent();
    return recorded;
  }

  close(): void {
    this.byUser.finalize();
    this.byId.finalize();
  }

  private writer(): ChainWriter {
    if (!this.chain) throw new Error("this connection only looks consents up; manage them through the trail's admin handle");
    return this.chain;
  }
}

/** Inside an erasure's transaction: the consents of any form of the user lose their personal fields. */
export function eraseConsents(db: Database, formsJSON: string, now: string): void {
  db.run("UPDATE consents SET user_id = NULL, task_pattern = NULL, erased_at = ? WHERE user_id IN (SELECT value FROM json_each(?))", [
    now,
    formsJSON,
  ]);
}
