/** What a limit plugin reports of its limits and budgets now (`GET /audit/limits`); see LimitHooks.usage. */
import { z } from "zod";

export const limitUsageSchema = z.object({
  /** The plugin that enforces it (filled in by the API). */
  plugin: z.string(),
  tier: z.string(),
  /** Whose meter: `user`, `agent`, `task` or `key`. */
  scope: z.string(),
  /** The identity metered, as refusals name it (e.g. `alice`, `(none) (key key_…)`). */
  who: z.string(),
  /** `requests_per_minute`, `tokens_per_minute`, `tokens_per_day`, `cost_per_day`, `cost_per_month`. */
  limit: z.string(),
  /** Requests, tokens, or nano-USD (billionths of a dollar). */
  unit: z.enum(["requests", "tokens", "nano_usd"]),
  max: z.number(),
  /** Used in the current window (rolling minute, UTC day or month), calls in flight included. */
  used: z.number(),
  /** The part of `used` that calls in flight hold (reservations); 0 for per-minute limits. */
  held: z.number(),
  remaining: z.number(),
  /** When the meter is back to its full quota (ISO 8601). */
  resets_at: z.string(),
  /** The last call that charged this meter (ISO 8601). */
  last_seen: z.string(),
});
export type LimitUsage = z.infer<typeof limitUsageSchema>;
