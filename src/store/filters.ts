/** The filter shapes of the audit API and CLI (zod schemas, shared by both). */
import { z } from "zod";
import { normalizeIdentifier } from "../identifiers.ts";
import { outcomes } from "../trail/record.ts";
import { errorMessage } from "../errors.ts";
import { checkTagKey, parseTagPair } from "../tags.ts";

/** An agent, user or task filter, in the form the proxy stores ids (NFC): either spelling finds the records. */
export const identityFilter = z.string().min(1).transform(normalizeIdentifier);

const isoDate = z
  .string()
  .refine((value) => !Number.isNaN(Date.parse(value)), { message: "expected an ISO 8601 date or date-time" })
  .transform((value) => new Date(value).toISOString());

/**
 * Tag filters: `KEY=VALUE`, one or more (all must match), e.g. `team=platform`; the REST API also
 * takes `tag.KEY=VALUE` query parameters (`?tag.team=platform`, see `tagQuery`).
 */
export const tagFilter = z
  .union([z.string(), z.array(z.string())])
  .transform((pairs, ctx) => {
    const tags: Record<string, string> = {};
    try {
      for (const pair of typeof pairs === "string" ? [pairs] : pairs) {
        const [key, value] = parseTagPair(pair);
        tags[key] = value;
      }
    } catch (error) {
      ctx.addIssue({ code: "custom", message: errorMessage(error) });
      return z.NEVER;
    }
    return tags;
  })
  .describe("KEY=VALUE tags a record must carry (repeatable; all must match); also as tag.KEY=VALUE parameters");

export const recordFilterSchema = z.object({
  agent: identityFilter.optional(),
  user: identityFilter.optional(),
  task: identityFilter.optional(),
  model: z.string().min(1).optional(),
  provider: z.string().min(1).optional(),
  outcome: z.enum(outcomes).optional(),
  tag: tagFilter.optional(),
  /** Records of calls a consent covered (its id, cns_...). */
  consent: z.string().min(1).optional(),
  /** Records of calls made for this purpose (a consent's purpose). */
  purpose: z.string().min(1).optional(),
  since: isoDate.optional(),
  until: isoDate.optional(),
  /** Shorthand for `since` = now minus N days (at most 100 years: a start a date can hold). */
  days: z.coerce.number().positive().max(36_500).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().regex(/^\d+$/, { message: "expected the next_cursor value of a previous page" }).optional(),
});

/**
 * `key`: the proxy key (or token subject); `hour`: UTC hours (`2026-01-31T13`); `status`: the
 * outcome and HTTP status (`completed:200`, `rejected:429`, `upstream_error:502`, `interrupted:`);
 * `purpose` / `basis`: the covering consent's purpose and lawful basis (null: none covered the call);
 * `error`: the error type (`consent_required`, `rate_limited`…; null for calls without one).
 */
export const summaryGroupings = [
  "agent",
  "user",
  "task",
  "model",
  "provider",
  "key",
  "day",
  "hour",
  "status",
  "purpose",
  "basis",
  "error",
] as const;
/** A grouping by one tag's value: `tag:team` (calls without that tag are the `null` group). */
export type TagGrouping = `tag:${string}`;
export type SummaryGrouping = (typeof summaryGroupings)[number] | TagGrouping;

/** `by`: a fixed grouping, or `tag:KEY` (the key read as tags are: lower-case, `_` as `-`). */
export const summaryGrouping = z
  .string()
  .transform((by, ctx): SummaryGrouping => {
    if ((summaryGroupings as readonly string[]).includes(by)) return by as SummaryGrouping;
    if (!/^tag:/i.test(by)) {
      ctx.addIssue({ code: "custom", message: `expected one of ${summaryGroupings.join(", ")}, or tag:KEY (e.g. tag:team)` });
      return z.NEVER;
    }
    try {
      return `tag:${checkTagKey(by.slice(4), `by=${by}`)}`;
    } catch (error) {
      ctx.addIssue({ code: "custom", message: errorMessage(error) });
      return z.NEVER;
    }
  })
  .describe(`${summaryGroupings.join(" | ")} | tag:KEY`);

/** The tag a grouping keys by, or null for the fixed groupings. */
export const tagOfGrouping = (by: SummaryGrouping): string | null => (by.startsWith("tag:") ? by.slice(4) : null);

/**
 * A query string's parameters for the filter schemas: `tag.KEY=VALUE` parameters and repeated
 * `tag=KEY=VALUE` ones gathered into `tag` (a list); every other parameter as its last value.
 */
export function tagQuery(params: URLSearchParams): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = {};
  const tags: string[] = [];
  for (const [name, value] of params) {
    if (name === "tag") tags.push(value);
    else if (name.startsWith("tag.")) tags.push(`${name.slice(4)}=${value}`);
    else query[name] = value;
  }
  if (tags.length > 0) query.tag = tags;
  return query;
}

/** What groups are ordered by (largest first; `key` alphabetically, `time` oldest first). */
export const summarySorts = ["cost", "calls", "input_tokens", "output_tokens", "key"] as const;

export const summaryFilterSchema = recordFilterSchema.omit({ limit: true, cursor: true }).extend({
  by: summaryGrouping,
  /** Group order: cost (default), calls, input or output tokens (largest first), or key. Days and hours are always in time order. */
  sort: z.enum(summarySorts).default("cost"),
  /** Return only the first N groups in that order (the total still covers every group). */
  limit: z.coerce.number().int().min(1).max(100_000).optional(),
});

/** The start of a filter's time range: `days` before now, else `since` (undefined: no start). */
export function sinceOf(filter: { days?: number; since?: string }): string | undefined {
  return filter.days !== undefined ? new Date(Date.now() - filter.days * 86_400_000).toISOString() : filter.since;
}

/** The names of the filters a parsed filter object sets (audit events record names, never their values, which may be personal). */
export const filterNames = (filter: object, skip: readonly string[] = []) =>
  Object.entries(filter).flatMap(([key, value]) => (value !== undefined && !skip.includes(key) ? [key] : []));

export type RecordFilter = z.input<typeof recordFilterSchema>;
export type ParsedRecordFilter = z.output<typeof recordFilterSchema>;
export type SummaryFilter = z.input<typeof summaryFilterSchema>;
export type ParsedSummaryFilter = z.output<typeof summaryFilterSchema>;
