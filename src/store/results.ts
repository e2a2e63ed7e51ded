/**
 * What the audit API and the CLI get back from a store's reader (`AuditReader`, ./contract.ts):
 * pages of records and summaries. zod schemas, so the OpenAPI document is derived from them.
 */
import { z } from "zod";
import { summaryGrouping } from "./filters.ts";
import { auditRecordSchema } from "../trail/record.ts";

export const recordPageSchema = z.object({
  records: z.array(auditRecordSchema),
  /** The cursor of the next page, or null on the last one. */
  next_cursor: z.string().nullable(),
});

export type RecordPage = z.infer<typeof recordPageSchema>;

const count = z.number().int().nonnegative();

export const summaryRowSchema = z.object({
  /** The agent, user, task, model, provider or day; null for calls without one. */
  key: z.string().nullable(),
  calls: count,
  input_tokens: count,
  output_tokens: count,
  cache_read_tokens: count,
  cache_write_tokens: count,
  cache_write_1h_tokens: count,
  reasoning_tokens: count,
  /** `cost_nano_usd` / 1e9. */
  cost_usd: z.number(),
  /** Exact sum of the records' cost in nano-dollars (exact up to 2^53, about $9 million). */
  cost_nano_usd: count,
  /** Calls with usage but no known price: their cost is missing from `cost_usd`, not zero. */
  unpriced_calls: count,
});

export const summarySchema = z.object({
  by: summaryGrouping,
  since: z.string().nullable(),
  until: z.string().nullable(),
  groups: z.array(summaryRowSchema),
  /** How many groups there are in all (more than `groups` holds when `limit` cut the list). */
  group_count: z.number().int().nonnegative(),
  total: summaryRowSchema,
});

export type SummaryRow = z.infer<typeof summaryRowSchema>;
export type Summary = z.infer<typeof summarySchema>;

/** The token counts a summary row sums, in the order tables and CSV show them. */
export const summaryTokenFields = [
  "input_tokens",
  "output_tokens",
  "cache_read_tokens",
  "cache_write_tokens",
  "cache_write_1h_tokens",
  "reasoning_tokens",
] as const satisfies readonly (keyof SummaryRow)[];
