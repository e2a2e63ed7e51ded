/**
 * Keys kept apart from the trail (`apiKeys({ path })`): their database has no chain, so `keys
 * create|revoke` records each change in the primary store's trail instead, as the same
 * `key_created` / `key_revoked` events (with `key_store: "apiKeys({ path })"`). Not in one
 * transaction with the change, so the order is chosen to fail safe: a key whose event cannot be
 * written is revoked again before its secret is shown (no key without its event), and a
 * revocation happens even when the trail cannot record it — the command then says so and fails.
 */
import type { AuditAdmin, ProxyKeyStore } from "../store/contract.ts";
import { keyCreatedDetails, type NewKeyRequest, type ProxyKey } from "../store/keys.ts";
import { errorMessage } from "../errors.ts";
import { IoError } from "./_shared.ts";

const keyStore = "apiKeys({ path })";

export class OwnKeysInTrail implements ProxyKeyStore {
  constructor(
    private readonly keys: ProxyKeyStore,
    /** The primary store's admin handle, or why it could not be opened. */
    private readonly admin: { handle: AuditAdmin } | { error: unknown },
    private readonly trailWhere: string,
  ) {}

  find(secret: string): Promise<ProxyKey | null> {
    return this.keys.find(secret);
  }

  list(): Promise<ProxyKey[]> {
    return this.keys.list();
  }

  async create(request: NewKeyRequest, actor: string): Promise<{ key: string; record: ProxyKey }> {
    const handle = this.handle("no key was created");
    const made = await this.keys.create(request, actor);
    try {
      await handle.trail.recordEvent({
        kind: "key_created",
        actor,
        details: { ...keyCreatedDetails(made.record, false), key_store: keyStore },
      });
    } catch (error) {
      await this.keys.revoke(made.record.id, actor);
      throw new IoError(
        `The key could not be recorded in the audit trail at ${this.trailWhere} (${errorMessage(error)}), so it was revoked again and no key was issued; fix the trail and retry.`,
      );
    }
    return made;
  }

  async revoke(id: string, actor: string): Promise<ProxyKey | null> {
    const before = (await this.keys.list()).find((key) => key.id === id);
    const revoked = await this.keys.revoke(id, actor);
    if (!revoked || !before || before.revoked_at) return revoked;
    try {
      const handle = this.handle(`key ${id} is revoked all the same`);
      await handle.trail.recordEvent({ kind: "key_revoked", actor, details: { key_id: id, key_store: keyStore } });
    } catch (error) {
      throw error instanceof IoError
        ? error
        : new IoError(`Key ${id} is revoked, but the audit trail at ${this.trailWhere} could not record it: ${errorMessage(error)}.`);
    }
    return revoked;
  }

  async close(): Promise<void> {
    if ("handle" in this.admin) await this.admin.handle.close();
  }

  private handle(meanwhile: string): AuditAdmin {
    if ("handle" in this.admin) return this.admin.handle;
    throw new IoError(
      `The audit trail at ${this.trailWhere}, where key changes are recorded, cannot be opened (${errorMessage(this.admin.error)}); ${meanwhile}.`,
    );
  }
}
