/**
 * Managing proxy keys over the audit API (the dashboard's Limits and keys page): list them, create
 * one (its secret is in this one answer only), revoke one. Creating and revoking are admin actions:
 * each appends a chain event (`key_created`, `key_revoked`) in the same transaction as the change,
 * naming the key, its agents and tier — never the secret, and only the number of user globs (they
 * may name people).
 *
 * `KeyAdmin` is asynchronous so a driver can do its work elsewhere: the SQLite store serves it from
 * its reader thread (../audit/reader-thread.ts), with `SqliteKeyAdmin` there.
 */
import type { Database } from "bun:sqlite";
import { z } from "zod";
import type { ChainWriter } from "../../trail/chain.ts";
import { checkIdentifier } from "../../identifiers.ts";
import { errorMessage } from "../../errors.ts";
import { ProxyKeyStore, proxyKeySchema, type ProxyKey } from "./keys.ts";

/** One ID or glob, held to the identifier rules of the ids claimed against it (as `keys create` does). */
const idGlob = z.string().transform((glob, ctx) => {
  try {
    return checkIdentifier(glob, { where: JSON.stringify(glob), max: 256 })!;
  } catch (error) {
    ctx.addIssue({ code: "custom", message: errorMessage(error) });
    return z.NEVER;
  }
});

/** The body of `POST /audit/keys`. */
export const newKeySchema = z
  .object({
    /** Agent ID the key acts as, or globs it may act as. */
    agents: z.array(idGlob).min(1, "give at least one agent ID or glob"),
    /** User-ID globs the key may act for (`["*"]`: any); absent or null: none. */
    users: z.array(idGlob).min(1).nullable().optional(),
    tier: z.string().min(1).max(64).nullable().optional(),
    /** ISO 8601 date-time in the future; absent: never expires. */
    expires_at: z
      .string()
      .refine((value) => !Number.isNaN(Date.parse(value)) && Date.parse(value) > Date.now(), { message: "expected an ISO 8601 date-time in the future" })
      .nullable()
      .optional(),
  })
  .strict();
export type NewKeyRequest = z.output<typeof newKeySchema>;

/** The answer of `POST /audit/keys`: the secret (shown once) and the key's record. */
export const createdKeySchema = z.object({ key: z.string(), record: proxyKeySchema });

export interface KeyAdmin {
  listKeys(): Promise<ProxyKey[]>;
  /** Creates a key; `key` is the only copy of the secret. */
  createKey(request: NewKeyRequest, actor: string): Promise<{ key: string; record: ProxyKey }>;
  /** Revokes a key (idempotent: revoking a revoked key changes nothing and records nothing); null when no key has that id. */
  revokeKey(id: string, actor: string): Promise<ProxyKey | null>;
}

/** The keys in the audit database's `proxy_keys` table, on the connection of `chain` (the reader thread's). */
export class SqliteKeyAdmin implements KeyAdmin {
  private readonly store: ProxyKeyStore;

  constructor(
    private readonly db: Database,
    private readonly chain: ChainWriter,
  ) {
    this.store = new ProxyKeyStore(db);
  }

  async listKeys(): Promise<ProxyKey[]> {
    return this.store.list();
  }

  async createKey(request: NewKeyRequest, actor: string): Promise<{ key: string; record: ProxyKey }> {
    return this.chain.transaction(() => {
      const created = this.store.create({
        agents: request.agents,
        users: request.users ?? null,
        tier: request.tier ?? null,
        expiresAt: request.expires_at ? new Date(request.expires_at) : null,
      });
      const { record } = created;
      const details = { key_id: record.id, agents: record.agents, user_globs: record.users?.length ?? 0, tier: record.tier, expires_at: record.expires_at };
      this.chain.appendInTransaction([], [{ kind: "key_created", actor, details }]);
      return created;
    });
  }

  async revokeKey(id: string, actor: string): Promise<ProxyKey | null> {
    return this.chain.transaction(() => {
      const before = this.store.list().find((key) => key.id === id);
      const revoked = this.store.revoke(id);
      if (revoked && before && !before.revoked_at) {
        this.chain.appendInTransaction([], [{ kind: "key_revoked", actor, details: { key_id: id } }]);
      }
      return revoked;
    });
  }

  close(): void {
    this.store.close();
  }
}
