/**
 * Proxy API keys, as every driver keeps them. A key is shown once, when it is created; only its
 * SHA-256 hash is stored (keys are 256 random bits, so a fast hash is enough). Creating and revoking
 * are admin actions a driver records as chain events (`key_created`, `key_revoked`), naming the key,
 * its agents and tier — never the secret, and only the number of user globs (they may name people).
 */
import { z } from "zod";
import { checkIdentifier } from "../identifiers.ts";
import { errorMessage } from "../errors.ts";
import { tagsJSON, tagsSchema } from "../tags.ts";

export const proxyKeySchema = z.object({
  id: z.string(),
  /** Agent-ID globs the key may act as; a single literal fixes the agent. */
  agents: z.array(z.string()),
  /** User-ID globs the key may act for (`*`: any); null means it acts for no user. */
  users: z.array(z.string()).nullable(),
  tier: z.string().nullable(),
  /** Tags the key fixes (`--tag team=platform`): every call made with it carries them, and a call claiming another value is refused (403). */
  tags: z.record(z.string(), z.string()).default({}),
  created_at: z.string(),
  expires_at: z.string().nullable(),
  revoked_at: z.string().nullable(),
});
export type ProxyKey = z.infer<typeof proxyKeySchema>;

export interface NewProxyKey {
  agents: string[];
  users?: string[] | null;
  tier?: string | null;
  tags?: Readonly<Record<string, string>> | null;
  expiresAt?: Date | null;
}

const keyPrefix = "aa-";

/** A key's tags as stored (JSON, null for none) and back. */
export const keyTagsColumn = (tags: Readonly<Record<string, string>> | null | undefined): string | null => tagsJSON(tags ?? {});
export const keyTagsOf = (column: string | null | undefined): Record<string, string> =>
  column ? (JSON.parse(column) as Record<string, string>) : {};

/** What a key's chain event says of its tags: their keys only (values may be personal, e.g. a declared-personal tag). */
export const keyTagsDetail = (tags: Readonly<Record<string, string>>): string[] => Object.keys(tags);

export function hashProxyKey(key: string): string {
  return new Bun.CryptoHasher("sha256").update(key).digest("hex");
}

/** True for strings shaped like a proxy key (so a provider key sent by mistake can be named). */
export function looksLikeProxyKey(value: string): boolean {
  return value.startsWith(keyPrefix);
}

/** A new key: its id, its secret (shown once) and the hash that is stored. */
export function mintProxyKey(): { id: string; key: string; hash: string } {
  const id = `key_${Buffer.from(crypto.getRandomValues(new Uint8Array(6))).toString("hex")}`;
  const key = `${keyPrefix}${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url")}`;
  return { id, key, hash: hashProxyKey(key) };
}

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
    /** Tags the key fixes, e.g. `{ "team": "platform" }` (keys lower-cased, `_` read as `-`). */
    tags: tagsSchema.optional(),
    /** ISO 8601 date-time in the future; absent: never expires. */
    expires_at: z
      .string()
      .refine((value) => !Number.isNaN(Date.parse(value)) && Date.parse(value) > Date.now(), {
        message: "expected an ISO 8601 date-time in the future",
      })
      .nullable()
      .optional(),
  })
  .strict();
export type NewKeyRequest = z.output<typeof newKeySchema>;

/**
 * What a `key_created` chain event says about the key: never the secret, and only the number of
 * user globs. `signed: true` (a row beside a trail, signed as it is written) tells adoption that
 * the key is not one of an earlier version's (./key-signature.ts `adoptionPlan`): its row is never
 * signed later. Keys in a database of their own (`signed` false) are not signed, and say nothing.
 */
export function keyCreatedDetails(key: ProxyKey, signed = true): Record<string, unknown> {
  return {
    key_id: key.id,
    agents: key.agents,
    user_globs: key.users?.length ?? 0,
    tier: key.tier,
    tags: keyTagsDetail(key.tags),
    expires_at: key.expires_at,
    ...(signed ? { signed: true } : {}),
  };
}

/** The answer of `POST /audit/keys`: the secret (shown once) and the key's record. */
export const createdKeySchema = z.object({ key: z.string(), record: proxyKeySchema });
