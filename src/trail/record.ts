/**
 * The audit record: the public JSON shape of one proxied call (DESIGN §2). The zod schema is the
 * single source of the type; the SQLite table, the REST API and the CLI all use these field names.
 * Unknown values are `null`, never 0.
 */
import { z } from "zod";

export const outcomes = ["completed", "upstream_error", "client_aborted", "rejected", "interrupted"] as const;
export const attributionKinds = ["verified", "asserted", "default"] as const;
export const usageSources = ["provider", "estimated", "none"] as const;
/** How a call's consent was established (src/pipeline/consent.ts). */
export const consentSources = ["jwt", "header", "lookup", "none"] as const;

const count = z.number().int().nonnegative().nullable();

export const auditRecordSchema = z.object({
  id: z.string(),
  seq: z.number().int(),
  timestamp: z.string(),
  duration_ms: z.number().nullable(),
  ttfb_ms: z.number().nullable(),
  agent_id: z.string().nullable(),
  user_id: z.string().nullable(),
  task_context: z.string().nullable(),
  session_id: z.string().nullable(),
  parent_agent_id: z.string().nullable(),
  trace_id: z.string().nullable(),
  attribution: z.enum(attributionKinds),
  key_id: z.string().nullable(),
  provider: z.string().nullable(),
  endpoint: z.string(),
  model: z.string().nullable(),
  response_model: z.string().nullable(),
  stream: z.boolean(),
  status: z.number().int().nullable(),
  /** null only while the call is in flight; a restart turns leftovers into `interrupted`. */
  outcome: z.enum(outcomes).nullable(),
  input_tokens: count,
  output_tokens: count,
  cache_read_tokens: count,
  cache_write_tokens: count,
  /** The part of `cache_write_tokens` written to Anthropic's 1-hour cache (priced higher). */
  cache_write_1h_tokens: count.default(null),
  reasoning_tokens: count,
  usage_source: z.enum(usageSources),
  /** `cost_nano_usd` / 1e9, for reading; null when no price source knows the model. */
  cost_usd: z.number().nullable(),
  /** The exact cost in billionths of a US dollar; sums and summaries add these integers. */
  cost_nano_usd: z.number().int().nullable().default(null),
  price_source: z.string().nullable(),
  prompt_hash: z.string().nullable(),
  response_hash: z.string().nullable(),
  error_type: z.string().nullable(),
  /** JSON text: `act` (RFC 8693 delegation chain), `asserted` (claims the verified identity did not allow), `unverified` (fields kept as sent that the credential does not vouch for). */
  delegation: z.string().nullable(),
  /**
   * JSON text of an object of the call's tags (`{"team":"platform"}`: keys lower-case, sorted),
   * or null without any; covered by the hash chain (record hash v3).
   */
  tags: z.string().nullable().default(null),
  /** The same for tags declared personal (`tags.personal`): behind the salted commitment, erased with the user. */
  personal_tags: z.string().nullable().default(null),
  /** The consent that covered the call (`consent` "record" or "enforce"), or null: none did, or consent is off. */
  consent_id: z.string().nullable().default(null),
  /** What the call was for: the covering consent's purpose. */
  purpose: z.string().nullable().default(null),
  /** The covering consent's lawful basis (GDPR Art. 6(1)): consent, contract, legitimate-interest… */
  lawful_basis: z.string().nullable().default(null),
  /**
   * How the consent was established: `jwt` (a verified token named it), `header` (X-Consent-ID in
   * open mode: asserted), `lookup` (the proxy found it), `none` (no consent covered the call);
   * null when consent is off for the call.
   */
  consent_source: z.enum(consentSources).nullable().default(null),
});

export type AuditRecord = z.infer<typeof auditRecordSchema>;
export type Outcome = (typeof outcomes)[number];
export type AttributionKind = (typeof attributionKinds)[number];
export type UsageSource = (typeof usageSources)[number];
export type ConsentSource = (typeof consentSources)[number];

/** Field order for CSV headers and tables. */
export const recordFields = Object.keys(auditRecordSchema.shape) as (keyof AuditRecord)[];

/** Normalised token usage (DESIGN §6): input includes cached tokens, output includes reasoning. */
export interface Usage {
  input_tokens: number | null;
  output_tokens: number | null;
  cache_read_tokens: number | null;
  cache_write_tokens: number | null;
  /** The part of `cache_write_tokens` that went to a 1-hour cache (Anthropic). */
  cache_write_1h_tokens: number | null;
  reasoning_tokens: number | null;
}

export const noUsage: Usage = {
  input_tokens: null,
  output_tokens: null,
  cache_read_tokens: null,
  cache_write_tokens: null,
  cache_write_1h_tokens: null,
  reasoning_tokens: null,
};
