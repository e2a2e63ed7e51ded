/**
 * Consents, as every driver keeps them: who (a user) allowed which agents (globs) to act for them,
 * for what purpose (optionally only on tasks matching a pattern), on which lawful basis (GDPR
 * Art. 6(1)), until when. Granting and withdrawing are admin actions a driver records as chain
 * events (`consent_granted`, `consent_withdrawn`) in the same transaction as the change; the
 * first look after a consent's end records `consent_expired`. Events name the consent, its
 * agents, purpose and basis — never the user (events are not erasable) — and whether a task
 * pattern was set, not the pattern (free text that may name people).
 *
 * Personal fields: `user_id` and `task_pattern`. Erasing the user sets both to null and marks the
 * consent erased; the consent's id, purpose, basis and dates stay, so records that name it still
 * say for what and on which basis a call was made.
 */
import { z } from "zod";
import { checkIdentifier } from "../identifiers.ts";
import { errorMessage } from "../errors.ts";
import type { ChainEvent } from "../trail/chain.ts";

/** GDPR Art. 6(1) (a)–(f), in the order of the article. */
export const lawfulBases = ["consent", "contract", "legal-obligation", "vital-interests", "public-task", "legitimate-interest"] as const;
export type LawfulBasis = (typeof lawfulBases)[number];

export const consentStatuses = ["active", "expired", "withdrawn", "erased"] as const;
export type ConsentStatus = (typeof consentStatuses)[number];

/** A consent as stored (`status` is derived when it is read). */
export const consentSchema = z.object({
  id: z.string(),
  /** The data subject; null once erased. */
  user_id: z.string().nullable(),
  /** Agent-ID globs the consent covers (`*`: any). */
  agents: z.array(z.string()),
  purpose: z.string(),
  /** A glob the call's task context must match; null: any task. Null once erased. */
  task_pattern: z.string().nullable(),
  lawful_basis: z.enum(lawfulBases),
  granted_at: z.string(),
  granted_by: z.string(),
  expires_at: z.string().nullable(),
  revoked_at: z.string().nullable(),
  revoked_by: z.string().nullable(),
  erased_at: z.string().nullable(),
  status: z.enum(consentStatuses),
});
export type Consent = z.infer<typeof consentSchema>;

/** A consent row as the drivers store it (`agents` as JSON text, no derived status). */
export interface ConsentRow {
  id: string;
  user_id: string | null;
  agents: string;
  purpose: string;
  task_pattern: string | null;
  lawful_basis: string;
  granted_at: string;
  granted_by: string;
  expires_at: string | null;
  revoked_at: string | null;
  revoked_by: string | null;
  expiry_recorded_at: string | null;
  erased_at: string | null;
}

export const consentRowColumns = [
  "id",
  "user_id",
  "agents",
  "purpose",
  "task_pattern",
  "lawful_basis",
  "granted_at",
  "granted_by",
  "expires_at",
  "revoked_at",
  "revoked_by",
  "expiry_recorded_at",
  "erased_at",
] as const satisfies readonly (keyof ConsentRow)[];

export function statusOf(row: Pick<ConsentRow, "revoked_at" | "expires_at" | "erased_at">, now = Date.now()): ConsentStatus {
  if (row.erased_at) return "erased";
  if (row.revoked_at) return "withdrawn";
  if (row.expires_at && Date.parse(row.expires_at) <= now) return "expired";
  return "active";
}

export function toConsent(row: ConsentRow, now = Date.now()): Consent {
  return {
    id: row.id,
    user_id: row.user_id,
    agents: JSON.parse(row.agents) as string[],
    purpose: row.purpose,
    task_pattern: row.task_pattern,
    lawful_basis: row.lawful_basis as LawfulBasis,
    granted_at: row.granted_at,
    granted_by: row.granted_by,
    expires_at: row.expires_at,
    revoked_at: row.revoked_at,
    revoked_by: row.revoked_by,
    erased_at: row.erased_at,
    status: statusOf(row, now),
  };
}

const id = (where: string, max: number, text = false) =>
  z.string().transform((value, ctx) => {
    try {
      const checked = checkIdentifier(value, { where, max, text });
      if (checked === null) throw new Error(`${where} is empty`);
      return checked;
    } catch (error) {
      ctx.addIssue({ code: "custom", message: errorMessage(error) });
      return z.NEVER;
    }
  });

/** The body of `POST /audit/consents` (and what `agent-attr consent grant` sends). */
export const newConsentSchema = z
  .object({
    /** The user (data subject) the consent is for: an exact id, held to the identifier rules. */
    user: id("user", 256),
    /** Agent-ID globs the consent covers. */
    agents: z.array(id("agent", 256)).min(1, "give at least one agent ID or glob"),
    /** What the processing is for, e.g. "PR review". Describe the processing; do not name people. */
    purpose: id("purpose", 200, true),
    /** A glob over the call's task context (`PR review #*`); absent: any task. */
    task_pattern: id("task_pattern", 2048, true).nullable().optional(),
    lawful_basis: z.enum(lawfulBases).default("consent"),
    /** ISO 8601 date-time in the future; absent: until withdrawn. */
    expires_at: z
      .string()
      .refine((value) => !Number.isNaN(Date.parse(value)) && Date.parse(value) > Date.now(), {
        message: "expected an ISO 8601 date-time in the future",
      })
      .nullable()
      .optional(),
  })
  .strict();
export type NewConsentRequest = z.output<typeof newConsentSchema>;

/** A new consent's id: 64 random bits. */
export function mintConsentId(): string {
  return `cns_${Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString("hex")}`;
}

/** The stored row of a new consent. */
export function newConsentRow(request: NewConsentRequest, actor: string, now = new Date()): ConsentRow {
  return {
    id: mintConsentId(),
    user_id: request.user,
    agents: JSON.stringify(request.agents),
    purpose: request.purpose,
    task_pattern: request.task_pattern ?? null,
    lawful_basis: request.lawful_basis,
    granted_at: now.toISOString(),
    granted_by: actor,
    expires_at: request.expires_at ? new Date(request.expires_at).toISOString() : null,
    revoked_at: null,
    revoked_by: null,
    expiry_recorded_at: null,
    erased_at: null,
  };
}

/** The chain events of a consent's life; never the user, never the task pattern's text. */
export const consentEvents = {
  granted: (row: ConsentRow, actor: string): ChainEvent => ({
    kind: "consent_granted",
    actor,
    details: {
      consent_id: row.id,
      agents: JSON.parse(row.agents) as string[],
      purpose: row.purpose,
      lawful_basis: row.lawful_basis,
      task_pattern: row.task_pattern !== null,
      expires_at: row.expires_at,
    },
  }),
  withdrawn: (id: string, actor: string): ChainEvent => ({ kind: "consent_withdrawn", actor, details: { consent_id: id } }),
  expired: (row: Pick<ConsentRow, "id" | "expires_at">): ChainEvent => ({
    kind: "consent_expired",
    actor: "expiry",
    details: { consent_id: row.id, expired_at: row.expires_at },
  }),
};

/** `agent-attr consent list` / `GET /audit/consents`: by user, by status. */
export const consentFilterSchema = z.object({
  user: z.string().min(1).optional(),
  status: z.enum(consentStatuses).optional(),
});
export type ConsentFilter = z.output<typeof consentFilterSchema>;

/** Whether a stored consent passes a filter (drivers select by user in SQL, then apply this). */
export function matchesFilter(consent: Consent, filter: ConsentFilter): boolean {
  return (!filter.user || consent.user_id === filter.user) && (!filter.status || consent.status === filter.status);
}

/** A `*` glob (any run of characters, newlines included), anchored. */
function globRegex(pattern: string): RegExp {
  const body = pattern
    .split("*")
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
    .join(".*");
  return new RegExp(`^${body}$`, "s");
}
const regexCache = new Map<string, RegExp>();
export function globMatches(pattern: string, value: string): boolean {
  let regex = regexCache.get(pattern);
  if (!regex) {
    if (regexCache.size > 10_000) regexCache.clear();
    regex = globRegex(pattern);
    regexCache.set(pattern, regex);
  }
  return regex.test(value);
}

/** What a call asks a consent to cover. */
export interface ConsentQuestion {
  user_id: string;
  agent_id: string | null;
  task_context: string | null;
  /** The purpose the call states (a token's claim); null: any purpose. */
  purpose: string | null;
}

/**
 * Why `consent` does not cover the call, or null when it does: active (not expired, withdrawn or
 * erased), for this user, an agent glob matching the agent (a call with no agent only under `*`),
 * the task pattern (if any) matching the task context, and the stated purpose (if any) its own.
 */
export function uncovered(consent: Consent, call: ConsentQuestion, now = Date.now()): string | null {
  const status = statusOf(consent, now);
  if (status !== "active") return `consent ${consent.id} is ${status}`;
  if (consent.user_id !== call.user_id) return `consent ${consent.id} is not for this user`;
  if (!consent.agents.some((glob) => globMatches(glob, call.agent_id ?? ""))) return `consent ${consent.id} does not cover this agent`;
  if (consent.task_pattern !== null && !globMatches(consent.task_pattern, call.task_context ?? ""))
    return `consent ${consent.id} does not cover this task`;
  if (call.purpose !== null && call.purpose !== consent.purpose) return `consent ${consent.id} is for another purpose`;
  return null;
}
